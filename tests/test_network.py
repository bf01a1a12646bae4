"""Networks: hand trajectory, schedule equality, parameter counts, learning."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jax._src.ad_checkpoint import saved_residuals

from bntt_jax import blocks, models, network, neurons


def _tiny(schedule):
  return network.SpikingNetwork(
      layers=(blocks.LayerSpec('dense', 3),), num_classes=2, num_steps=3, norm='none',
      neuron=neurons.LIFParams(leak=0.9, threshold=1.0), encoding='direct', schedule=schedule)


@pytest.mark.parametrize('schedule', ['layer', 'step'])
def test_two_layer_trajectory_by_hand(schedule):
  """x = [1, 0.5] and W1 give constant currents I = [0.75, 1.0, 0.125].

  t   u_a (I .75)             u_b (I 1.0)              u_c
  1   .75      -> no spike    1.0  -> no (strict >)     .125
  2   1.425    -> spike, .425 1.9  -> spike, .9         .2375
  3   1.1325   -> spike       1.81 -> spike             .33875
  (a hard reset would give .75 at t=3: no spike; '>=' would fire b at t=1.)
  Readout W2 rows [1, -1], [.5, 2], [3, 3]: per step [0, 0], [1.5, 1], [1.5, 1];
  logits = sum / 3 = [1, 2/3].
  """
  with jax.enable_x64(True):
    m = _tiny(schedule)
    x = jnp.asarray([[1.0, 0.5]])
    v = m.init({'params': jax.random.PRNGKey(0)}, x, train=True)
    w1 = jnp.asarray([[0.5, 1.25, -0.25], [0.5, -0.5, 0.75]])
    w2 = jnp.asarray([[1.0, -1.0], [0.5, 2.0], [3.0, 3.0]])
    params = {'fc1': {'synapse': {'kernel': w1}}, 'fc_out': {'kernel': w2}}
    out = m.apply({'params': params}, x, train=True)
    np.testing.assert_array_equal(out.readout[:, 0], [[0, 0], [1.5, 1.0], [1.5, 1.0]])
    np.testing.assert_allclose(out.logits[0], [1.0, 2.0 / 3.0], rtol=1e-15)
    np.testing.assert_array_equal(out.spikes[0][:, 0], [0, 2, 2])
    np.testing.assert_array_equal(out.input_spikes[:, 0], [1.5, 1.5, 1.5])
    assert out.layer_names == ('fc1',) and out.neurons == (3,)
    # Early exit: the first two steps only.
    out2 = m.apply({'params': params}, x, train=False, num_steps=2)
    np.testing.assert_allclose(out2.logits[0], [0.75, 0.5])
    with pytest.raises(ValueError, match='num_steps 4 is not accepted'):
      m.apply({'params': params}, x, train=False, num_steps=4)


def _train_outputs(model, variables, x, key):
  def loss_fn(params):
    out, upd = model.apply({'params': params, 'batch_stats': variables['batch_stats']}, x,
                           train=True, rngs={'poisson': key}, mutable=['batch_stats'])
    loss = jnp.sum(out.logits * jnp.arange(out.logits.shape[-1]))   # any smooth function
    return loss, (out, upd['batch_stats'])
  (loss, (out, bs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables['params'])
  return out, grads, bs


def _max_rel(a, b):
  a, b = np.asarray(a), np.asarray(b)
  return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


@pytest.mark.parametrize('arch,shape,steps', [
    pytest.param('vgg9', (2, 32, 32, 3), 3, marks=pytest.mark.full),
    ('smallnet', (6, 8, 8, 1), 5)])
def test_step_and_layer_schedules_agree(arch, shape, steps):
  with jax.enable_x64(True):
    x = jnp.asarray(np.random.RandomState(0).randn(*shape))
    results = {}
    for sched in ('layer', 'step'):
      m = models.create_model(arch, num_classes=10, num_steps=steps, schedule=sched)
      v = m.init({'params': jax.random.PRNGKey(1), 'poisson': jax.random.PRNGKey(2)}, x,
                 train=False)
      v = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), v)
      results[sched] = jax.jit(functools.partial(_train_outputs, m))(v, x, jax.random.PRNGKey(3))
    (ol, gl, bl), (os_, gs, bs) = results['layer'], results['step']
    assert _max_rel(os_.logits, ol.logits) < 1e-10
    assert _max_rel(os_.readout, ol.readout) < 1e-10
    for a, b in zip(jax.tree_util.tree_leaves(gs), jax.tree_util.tree_leaves(gl)):
      assert _max_rel(a, b) < 1e-10
    for a, b in zip(jax.tree_util.tree_leaves(bs), jax.tree_util.tree_leaves(bl)):
      assert _max_rel(a, b) < 1e-10
    # Not vacuous: every layer fires, at 1 %..50 % of its neurons per step.
    for name, count, n in zip(ol.layer_names, ol.spikes, ol.neurons):
      np.testing.assert_array_equal(count, os_.spikes[ol.layer_names.index(name)])
      rate = float(np.mean(count)) / n
      assert 0.01 <= rate <= 0.5, (name, rate)


@pytest.mark.full
def test_step_schedule_evaluation_matches_layer():
  x = jnp.asarray(np.random.RandomState(1).randn(4, 8, 8, 1).astype(np.float32))
  outs = []
  for sched in ('layer', 'step'):
    m = models.smallnet(num_steps=4, schedule=sched)
    v = m.init({'params': jax.random.PRNGKey(1), 'poisson': jax.random.PRNGKey(2)}, x,
               train=False)
    # Running statistics from a training pass, then evaluate for 3 of 4 steps.
    _, upd = m.apply(v, x, train=True, rngs={'poisson': jax.random.PRNGKey(5)},
                     mutable=['batch_stats'])
    outs.append(m.apply({'params': v['params'], **upd}, x, train=False, num_steps=3,
                        rngs={'poisson': jax.random.PRNGKey(6)}))
  np.testing.assert_allclose(outs[0].logits, outs[1].logits, rtol=1e-5, atol=1e-6)


def _count(tree, pred):
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return sum(int(np.prod(v.shape)) for path, v in flat if pred(jax.tree_util.keystr(path)))


@pytest.mark.parametrize('arch,classes,steps,weights,gammas', [
    ('vgg9', 10, 25, 5_938_880, 54_400),
    ('vgg11', 100, 30, 11_724_480, 205_440),
])
def test_parameter_counts(arch, classes, steps, weights, gammas):
  m = models.create_model(arch, num_classes=classes, num_steps=steps)
  v = jax.eval_shape(lambda: m.init({'params': jax.random.PRNGKey(0),
                                     'poisson': jax.random.PRNGKey(0)},
                                    jnp.zeros((1, 32, 32, 3)), train=False))
  assert _count(v['params'], lambda p: 'kernel' in p) == weights
  assert _count(v['params'], lambda p: "'scale'" in p) == gammas
  assert _count(v['params'], lambda p: True) == weights + gammas
  for leaf in jax.tree_util.tree_leaves(v['batch_stats']):
    assert leaf.shape[0] == steps


def test_reference_init_is_xavier_uniform_gain_2():
  m = models.vgg9(num_steps=2)
  v = m.init({'params': jax.random.PRNGKey(0), 'poisson': jax.random.PRNGKey(0)},
             jnp.zeros((1, 32, 32, 3)), train=False)
  k = np.asarray(v['params']['conv2']['synapse']['kernel'])   # 3x3x64x64
  bound = 2.0 * np.sqrt(6.0 / (64 * 9 + 64 * 9))
  assert np.abs(k).max() <= bound and np.abs(k).max() > 0.97 * bound
  np.testing.assert_allclose(k.std(), bound / np.sqrt(3), rtol=0.02)


@pytest.mark.full
def test_dvsnet_and_smallnet_shapes():
  m = models.dvsnet(num_steps=3)
  x = jnp.zeros((2, 5, 42, 42, 2))   # [B, T_in, H, W, polarity]
  out, v = m.init_with_output({'params': jax.random.PRNGKey(0)}, x, train=False)
  assert out.logits.shape == (2, 10) and out.readout.shape == (3, 2, 10)
  assert m.neuron_shapes((42, 42, 2)) == ((42, 42, 64), (42, 42, 128), (21, 21, 128),
                                          (10, 10, 256), (5, 5, 256), (512,))
  m = models.smallnet(num_steps=2)
  out, _ = m.init_with_output({'params': jax.random.PRNGKey(0), 'poisson': jax.random.PRNGKey(1)},
                              jnp.zeros((2, 28, 28, 1)), train=False)
  assert out.logits.shape == (2, 10)


def test_model_rejects_bad_arguments():
  with pytest.raises(ValueError, match="model 'vgg99' is not accepted: one of dvsnet, mlp, smallnet"):
    models.create_model('vgg99', num_classes=10, num_steps=2)
  with pytest.raises(ValueError, match='timesteps 0 is not accepted'):
    models.vgg9(num_steps=0)
  with pytest.raises(ValueError, match=r'leak 0.0 is not accepted: a number in \(0, 1\]'):
    models.vgg9(num_steps=2, leak=0.0)


@pytest.mark.full
def test_vgg9_learns_a_few_fixed_images():
  rng = np.random.RandomState(0)
  x = jnp.asarray(rng.randn(8, 32, 32, 3).astype(np.float32))
  y = jnp.asarray(np.arange(8) % 10)
  m = models.vgg9(num_steps=4)
  v = m.init({'params': jax.random.PRNGKey(0), 'poisson': jax.random.PRNGKey(1)}, x,
             train=False)
  tx = optax.sgd(0.05, momentum=0.9)

  @jax.jit
  def step(params, bs, opt, i):
    def loss_fn(p):
      out, upd = m.apply({'params': p, 'batch_stats': bs}, x, train=True,
                         rngs={'poisson': jax.random.fold_in(jax.random.PRNGKey(2), i)},
                         mutable=['batch_stats'])
      return optax.softmax_cross_entropy_with_integer_labels(out.logits, y).mean(), upd
    (loss, upd), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, updates), upd['batch_stats'], opt, loss

  params, bs, opt = v['params'], v['batch_stats'], tx.init(v['params'])
  losses = []
  for i in range(25):
    params, bs, opt, loss = step(params, bs, opt, i)
    losses.append(float(loss))
  assert min(losses[-3:]) < 0.5 * losses[0], losses


@pytest.mark.parametrize('encoding', ['poisson', 'direct'])
def test_remat_keeps_each_layer_input_only_in_its_narrowest_exact_dtype(encoding):
  """With ``remat=True`` (layer schedule) the backward keeps, of all the activations, only
  each block's input: int8 spikes, bfloat16 pooled spikes, the coded input as it is, and
  nothing computed from them.

  Measured before (``nn.remat`` saving the blocks' float32 inputs): the residuals included
  float32 ``[T, B, 8, 8, 8]`` spikes and ``[T, B, 4, 4, 16]`` pooled spikes."""
  k, b = 3, 4
  layers = (models.conv(8, 1), models.conv(16, 2), models.dense(32))
  m = network.SpikingNetwork(layers, num_classes=10, num_steps=k,
                             remat=True, encoding=encoding, lif_kernel='off', sparse_conv='off')
  x = jnp.asarray(np.random.RandomState(0).rand(b, 8, 8, 1), jnp.float32)
  v = m.init({'params': jax.random.PRNGKey(1), 'poisson': jax.random.PRNGKey(2)}, x, train=False)

  def loss(params):
    out, _ = m.apply({'params': params, 'batch_stats': v['batch_stats']}, x, train=True,
                     rngs={'poisson': jax.random.PRNGKey(3)}, mutable=['batch_stats'])
    return out.logits.sum()

  big = [(a.shape, a.dtype) for a, _ in saved_residuals(loss, v['params'])
         if a.shape[:2] == (k, b) and math.prod(a.shape) > k * b * 16]
  assert sorted(big, key=str) == sorted([
      ((k, b, 8, 8, 1), jnp.dtype(jnp.float32)),     # conv1's input: the coder's
      ((k, b, 8, 8, 8), jnp.dtype(jnp.int8)),        # conv2's: spikes
      ((k, b, 4, 4, 16), jnp.dtype(jnp.bfloat16))], key=str), big   # fc1's: 2x2-pooled spikes


@pytest.mark.full
@pytest.mark.parametrize('schedule', ['layer', 'step'])
def test_remat_gives_the_same_gradients(schedule):
  with jax.enable_x64(True):
    x = jnp.asarray(np.random.RandomState(0).randn(4, 8, 8, 1))
    grads = []
    for remat in (False, True):
      m = models.smallnet(num_steps=3, schedule=schedule, remat=remat)
      v = jax.tree_util.tree_map(
          lambda a: a.astype(jnp.float64),
          m.init({'params': jax.random.PRNGKey(1), 'poisson': jax.random.PRNGKey(2)}, x,
                 train=False))
      grads.append(jax.jit(functools.partial(_train_outputs, m))(v, x, jax.random.PRNGKey(3))[1])
    for a, b in zip(jax.tree_util.tree_leaves(grads[0]), jax.tree_util.tree_leaves(grads[1])):
      assert np.abs(np.asarray(b)).max() > 0
      assert _max_rel(a, b) < 1e-10   # recomputation may reorder float64 sums
