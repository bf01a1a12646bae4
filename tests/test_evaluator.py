"""The one evaluator (bntt_jax.evaluator): the analyses' pass on 8 devices equals 1 device
per example; training's evaluation and the analysis pass agree; padded rows never count."""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from bntt_jax import data as data_lib, train
from bntt_jax.analysis import evaluation, spikes as spikes_lib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evaluation_worker  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, 'tests', 'evaluation_worker.py')


def _worker(devices, out):
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  env.pop('XLA_FLAGS', None)
  r = subprocess.run([sys.executable, WORKER, str(devices), str(out)], env=env,
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  return dict(np.load(out))


@pytest.mark.full
def test_the_analysis_pass_on_eight_devices_equals_one_device_per_example(tmp_path):
  """37 examples in global batches of 8 (1 per device on 8 devices, the last padded)."""
  one = _worker(1, tmp_path / 'one.npz')
  eight = _worker(8, tmp_path / 'eight.npz')
  assert int(one['devices']) == 1 and int(eight['devices']) == 8
  for k in ('predictions', 'spikes', 'input_spikes'):
    assert one[k].shape[-1] == evaluation_worker.N
    np.testing.assert_array_equal(one[k], eight[k], err_msg=k)
  for k in ('max_prob', 'margin'):
    np.testing.assert_allclose(one[k], eight[k], rtol=1e-6, atol=1e-7, err_msg=k)
  for k in ('pass_accuracy', 'noisy_accuracy', 'fgsm_accuracy', 'train_accuracy',
            'train_examples'):
    assert float(one[k]) == float(eight[k]), k
  np.testing.assert_allclose(one['train_spike_rate'], eight['train_spike_rate'], rtol=1e-6)
  assert one['spikes'].sum() > 0                  # the layers fire: the spikes compare
  assert float(eight['pass_accuracy']) == float(eight['train_accuracy'])


def test_training_evaluation_and_the_analysis_pass_agree_and_count_no_padded_row():
  """The same state, key and uint8 data (normalised by the evaluator for both): the same
  accuracy and spike rates, with the 37 examples padded to 40 or not padded at all."""
  model, mesh, state, x, y = evaluation_worker.setup()
  key = jax.random.PRNGKey(2)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  neurons = tuple(int(np.prod(s)) for s in model.neuron_shapes((8, 8, 1)))
  kw = dict(mean=evaluation_worker.MEAN, std=evaluation_worker.STD, mesh=mesh)
  ev = {b: train.evaluate(train.parallel_eval_step(mesh), state, data_lib.Split(x, y), key,
                          global_batch=b, neurons=neurons, **kw) for b in (8, 37)}
  res = evaluation.evaluation_pass(model, variables, x, y, key=key, batch_size=8, **kw)
  correct = int((res.predictions[-1] == y).sum())
  assert ev[8]['examples'] == ev[37]['examples'] == 37
  assert ev[8]['accuracy'] == ev[37]['accuracy'] == res.accuracy == correct / 37
  per_layer = spikes_lib.layer_rates(res.spikes, res.neurons).sum(axis=1)
  np.testing.assert_allclose(ev[8]['spike_rate_per_layer'], per_layer, rtol=1e-6)
  np.testing.assert_allclose(ev[37]['spike_rate_per_layer'], per_layer, rtol=1e-6)
  assert per_layer.min() > 0
