"""Run one training step / one evaluation on N host CPU devices; save the numbers.

    python tests/sharding_worker.py DEVICES OUT.npz [--per-device-stats] [--remat]

Used by test_sharding.py: the test runs it with 1 and with 8 devices (the device
count is fixed when JAX starts, so each count needs its own process) and
compares. Everything goes through the training code's own functions
(create_train_state, train_step, evaluate, sharding).
"""
import functools
import sys

from bntt_jax import platform

DEVICES = int(sys.argv[1])
platform.configure_xla(num_cpu_devices=DEVICES)
platform.set_matmul_precision('highest')

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bntt_jax import config_lib, data as data_lib, default_config, sharding, train
from bntt_jax.data import pipeline


def main():
  out_path = sys.argv[2]
  per_device = '--per-device-stats' in sys.argv
  assert jax.device_count() == DEVICES, jax.devices()
  config = default_config.get_config()
  config.model.timesteps = 3
  config.train.batch_size = 16
  config.eval.batch_size = 64
  config.model.remat = '--remat' in sys.argv
  if per_device and DEVICES > 1:
    config.model.batch_stats = 'per_device'     # one statistics group per device
  elif per_device:
    config.model.norm_kwargs = {'stat_groups': 8}   # the same 8 groups on one device
  rng = np.random.RandomState(0)
  x = rng.randint(0, 17, (1001, 8, 8, 1)).astype(np.uint8)
  y = rng.randint(0, 10, 1001).astype(np.int32)
  mean, std = (0.3,), (0.4,)

  mesh = sharding.create_mesh()
  model = config_lib.create_model(config, 10, axis_name=sharding.DATA_AXIS)
  repl = sharding.replicated(mesh)
  lr_fn = optax.constant_schedule(0.1)
  state = jax.jit(functools.partial(train.create_train_state, config=config, model=model,
                                    input_shape=(8, 8, 1), learning_rate_fn=lr_fn),
                  out_shardings=repl)(jax.random.PRNGKey(0))
  batch = pipeline.TrainPipeline(x, y, global_batch=16, seed=0, augment='none', crop_padding=0,
                                 mean=mean, std=std, process_index=0,
                                 process_count=1).batch(0)
  gbatch = sharding.global_batch(dict(batch), mesh)
  key = jax.random.PRNGKey(1)

  def grads_fn(state, batch, key):
    return train.gradients(state, batch, jax.random.fold_in(key, state.step),
                           axis_name=sharding.DATA_AXIS)[3]

  grads = jax.jit(sharding.data_parallel(grads_fn, mesh))(state, gbatch, key)
  new_state, metrics = train.parallel_train_step(mesh, lr_fn)(state, gbatch, key)
  eval_fn = train.parallel_eval_step(mesh)
  neurons = tuple(int(np.prod(s)) for s in model.neuron_shapes((8, 8, 1)))
  ev = train.evaluate(eval_fn, new_state, data_lib.Split(x, y), jax.random.PRNGKey(2),
                      global_batch=64, mean=mean, std=std, mesh=mesh, neurons=neurons)
  flat = {}
  for prefix, tree in (('grad', grads), ('params', new_state.params),
                       ('stats', new_state.batch_stats)):
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
      flat[prefix + jax.tree_util.keystr(path)] = np.asarray(leaf)
  flat['loss'] = np.asarray(metrics['loss'] / metrics['count'])
  flat['spikes'] = np.asarray(metrics['spikes'])
  for k in ('accuracy', 'loss', 'examples', 'spike_rate'):
    flat['eval_' + k] = np.asarray(ev[k])
  np.savez(out_path, **flat)


if __name__ == '__main__':
  main()
