"""Speed/memory options: bfloat16 synapses within 1 point of float32 on digits
(mean of 3 seeds); donated buffers change nothing."""
import functools

import jax
import numpy as np
import optax

from bntt_jax import config_lib, default_config, train
import pytest

pytestmark = pytest.mark.full   # the full tier: tests/conftest.py


def _digits_accuracy(tmp_path, dtype, seed):
  config = default_config.get_config()
  config.model.dtype = dtype
  config.seed = seed
  summary = train.train_and_evaluate(config, str(tmp_path / f'{dtype}-{seed}'))
  return summary['final_test_accuracy']


def test_bfloat16_synapses_within_one_point_of_float32_on_digits(tmp_path):
  f32 = [_digits_accuracy(tmp_path, 'float32', s) for s in range(3)]
  bf16 = [_digits_accuracy(tmp_path, 'bfloat16', s) for s in range(3)]
  assert min(f32) > 0.95 and min(bf16) > 0.95, (f32, bf16)
  assert abs(np.mean(bf16) - np.mean(f32)) <= 0.01, (f32, bf16)


def test_donated_train_step_gives_the_same_state():
  config = default_config.get_config()
  config.model.timesteps = 3
  model = config_lib.create_model(config, 10)
  lr_fn = optax.constant_schedule(0.1)
  make = functools.partial(train.create_train_state, config=config, model=model,
                           input_shape=(8, 8, 1), learning_rate_fn=lr_fn)
  rng = np.random.RandomState(0)
  batch = {'image': rng.randn(8, 8, 8, 1).astype(np.float32),
           'label': rng.randint(0, 10, 8).astype(np.int32), 'index': np.arange(8)}
  step = functools.partial(train.train_step, learning_rate_fn=lr_fn)
  outs = []
  for donate in ((), (0,)):
    state = make(jax.random.PRNGKey(0))
    f = jax.jit(step, donate_argnums=donate)
    for _ in range(2):
      state, _ = f(state, batch, jax.random.PRNGKey(1))
    outs.append(jax.device_get(state.params))
  for a, b in zip(jax.tree_util.tree_leaves(outs[0]), jax.tree_util.tree_leaves(outs[1])):
    np.testing.assert_array_equal(a, b)
