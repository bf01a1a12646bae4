"""Optimiser and schedule: PyTorch's SGD by hand, the paper's lr boundaries."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bntt_jax import optim


def _run(tx, params, grads):
  state = tx.init(params)
  for g in grads:
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
  return params


def test_three_sgd_steps_equal_pytorch_sgd_by_hand():
  """torch.optim.SGD(lr, momentum=0.9, weight_decay=1e-4), dampening 0, lr 0.3, 0.3, 0.03.

  Per step: d = g + wd p; buf = d (first step) or 0.9 buf + d; p -= lr buf.
  Scalar p0 = 1 with gradients 0.5, -0.2, 0.1:
    d0 = 0.5001                  buf = 0.5001           p1 = 0.84997
    d1 = -0.199915003            buf = 0.250174997      p2 = 0.7749175009
    d2 = 0.10007749175009        buf = 0.32523498905009 p3 = 0.7651604512284973
  """
  with jax.enable_x64(True):
    # One step per epoch and 2 epochs: the 0.5 boundary (after epoch 1) is step 2.
    lr = optim.create_learning_rate_fn(base_lr=0.3, schedule='step', epochs=2,
                                       steps_per_epoch=1, boundaries=(0.5,))
    tx = optim.create_optimizer('sgd', lr, momentum=0.9, weight_decay=1e-4)
    grads = [0.5, -0.2, 0.1]
    params = {'kernel': jnp.asarray([1.0, -2.0]), 'bntt': {'scale': jnp.asarray([[1.0]])}}
    tree_grads = [{'kernel': jnp.asarray([g, 2 * g]), 'bntt': {'scale': jnp.asarray([[g]])}}
                  for g in grads]
    out = _run(tx, params, tree_grads)
    np.testing.assert_allclose(float(out['bntt']['scale'][0, 0]), 0.7651604512284973, rtol=1e-13)
    # The same recursion, written as PyTorch runs it, for every parameter.
    for name, p0, scale in (('kernel0', 1.0, 1.0), ('kernel1', -2.0, 2.0)):
      p, buf = p0, None
      for g, rate in zip(grads, (0.3, 0.3, 0.03)):
        d = scale * g + 1e-4 * p
        buf = d if buf is None else 0.9 * buf + d
        p = p - rate * buf
      got = float(out['kernel'][0 if name == 'kernel0' else 1])
      np.testing.assert_allclose(got, p, rtol=1e-13)


def test_adam_decay_is_coupled_and_adamw_decoupled():
  with jax.enable_x64(True):
    p, g, lr, wd = jnp.asarray([2.0]), jnp.asarray([0.5]), 0.01, 0.1
    adam = _run(optim.create_optimizer('adam', lr, weight_decay=wd), p, [g])
    # First Adam step moves by lr * d / (|d| + eps) with d = g + wd p = 0.7.
    np.testing.assert_allclose(adam, p - lr * 0.7 / (0.7 + 1e-8), rtol=1e-12)
    adamw = _run(optim.create_optimizer('adamw', lr, weight_decay=wd), p, [g])
    np.testing.assert_allclose(adamw, p - lr * (0.5 / (0.5 + 1e-8) + wd * 2.0), rtol=1e-12)


def test_lr_boundaries_for_100_epochs_fall_on_the_first_step_of_epochs_51_71_91():
  spe = 7
  lr = optim.create_learning_rate_fn(base_lr=0.3, schedule='step', epochs=100,
                                     steps_per_epoch=spe)
  assert optim.milestone_steps(100, spe) == (51 * spe, 71 * spe, 91 * spe)
  expected = {range(0, 51): 0.3, range(51, 71): 0.03, range(71, 91): 0.003,
              range(91, 100): 0.0003}
  for epochs, rate in expected.items():
    for e in epochs:
      for step in (e * spe, (e + 1) * spe - 1):
        np.testing.assert_allclose(float(lr(step)), rate, rtol=1e-6, err_msg=f'epoch {e}')


@pytest.mark.parametrize('epochs,drops_after', [
    (10, (5, 7, 9)),
    (25, (12, 17, 22)),        # floor(12.5), floor(17.5), floor(22.5)
    (3, (1, 2)),               # floor(2.1) = floor(2.7) = 2: one division there
    (57, (28, 39, 51)),
])
def test_lr_boundaries_use_floor_of_the_fraction(epochs, drops_after):
  assert optim.milestone_steps(epochs, 3) == tuple((e + 1) * 3 for e in drops_after)
  lr = optim.create_learning_rate_fn(base_lr=1.0, schedule='step', epochs=epochs,
                                     steps_per_epoch=3)
  for k, e in enumerate(drops_after):
    np.testing.assert_allclose(float(lr((e + 1) * 3 - 1)), 0.1 ** k, rtol=1e-6)
    np.testing.assert_allclose(float(lr((e + 1) * 3)), 0.1 ** (k + 1), rtol=1e-6)


def test_cosine_and_warmup_schedules():
  lr = optim.create_learning_rate_fn(base_lr=0.2, schedule='cosine', epochs=4, steps_per_epoch=5)
  np.testing.assert_allclose([float(lr(s)) for s in (0, 10, 20)], [0.2, 0.1, 0.0], atol=1e-7)
  lr = optim.create_learning_rate_fn(base_lr=0.2, schedule='cosine', epochs=4, steps_per_epoch=5,
                                     warmup_epochs=1)
  np.testing.assert_allclose([float(lr(s)) for s in (0, 1, 5, 20)], [0.0, 0.04, 0.2, 0.0],
                             atol=1e-7)
  lr = optim.create_learning_rate_fn(base_lr=0.2, schedule='step', epochs=10, steps_per_epoch=5,
                                     warmup_epochs=2)
  np.testing.assert_allclose([float(lr(s)) for s in (5, 10, 30, 40)], [0.1, 0.2, 0.02, 0.002],
                             atol=1e-7)
