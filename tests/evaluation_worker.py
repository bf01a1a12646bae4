"""One analysis evaluation pass and one training evaluation on N host CPU devices; save them.

    python tests/evaluation_worker.py DEVICES OUT.npz

Used by test_evaluator.py, which runs it with 1 and with 8 devices (the device count is
fixed when JAX starts) and compares. Both evaluations go through the library's own
functions: ``analysis.evaluation.evaluation_pass``, ``analysis.robustness.robustness_report``
and ``train.evaluate`` (all over ``bntt_jax.evaluator``).
"""
import functools
import sys

from bntt_jax import platform

if __name__ == '__main__':   # tests/test_evaluator.py also imports setup() from here
  platform.configure_xla(num_cpu_devices=int(sys.argv[1]))
  platform.set_matmul_precision('highest')

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import numpy as np
import optax

from bntt_jax import config_lib, data as data_lib, default_config, sharding, train
from bntt_jax.analysis import evaluation, robustness

N, BATCH, MEAN, STD = 37, 8, (0.3,), (0.4,)   # 37: the last batch is padded on any mesh


def setup():
  """The model (the kernels off: one program on 1 and 8 devices), its first state, the data."""
  config = default_config.get_config()
  config.model.timesteps = 3
  config.model.lif_kernel = config.model.sparse_conv = 'off'
  config.model.threshold = 0.25   # every layer fires at the first state
  model = config_lib.create_model(config, 10, axis_name=sharding.DATA_AXIS)
  mesh = sharding.create_mesh()
  state = jax.jit(functools.partial(train.create_train_state, config=config, model=model,
                                    input_shape=(8, 8, 1),
                                    learning_rate_fn=optax.constant_schedule(0.1)),
                  out_shardings=sharding.replicated(mesh))(jax.random.PRNGKey(0))
  rng = np.random.RandomState(0)
  x = rng.randint(0, 256, (N, 8, 8, 1)).astype(np.uint8)
  y = rng.randint(0, 10, N).astype(np.int32)
  return model, mesh, state, x, y


def main():
  assert jax.device_count() == int(sys.argv[1]), jax.devices()
  model, mesh, state, x, y = setup()
  key = jax.random.PRNGKey(2)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  res = evaluation.evaluation_pass(model, variables, x, y, key=key, batch_size=BATCH,
                                   mean=MEAN, std=STD, mesh=mesh)
  rob = robustness.robustness_report(model, variables, x, y, key=key, batch_size=BATCH,
                                     space=robustness.InputSpace(MEAN, STD),
                                     noise_sigmas=(0.2,), fgsm_epsilons=(0.1,), mean=MEAN,
                                     std=STD, mesh=mesh)
  neurons = tuple(int(np.prod(s)) for s in model.neuron_shapes((8, 8, 1)))
  ev = train.evaluate(train.parallel_eval_step(mesh), state, data_lib.Split(x, y), key,
                      global_batch=BATCH, mean=MEAN, std=STD, mesh=mesh, neurons=neurons)
  out = {k: getattr(res, k) for k in ('predictions', 'max_prob', 'margin', 'spikes',
                                      'input_spikes')}
  out.update(pass_accuracy=res.accuracy, noisy_accuracy=rob['gaussian']['accuracy'][0],
             fgsm_accuracy=rob['fgsm']['accuracy'][0], devices=mesh.devices.size,
             train_accuracy=ev['accuracy'], train_examples=ev['examples'],
             train_spike_rate=ev['spike_rate'])
  np.savez(sys.argv[2], **out)


if __name__ == '__main__':
  main()
