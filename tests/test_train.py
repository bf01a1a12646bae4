"""train_and_evaluate end to end: the cifar10 config on mock tfds data, non-finite stops."""
import json
import os

import jax
import numpy as np
import pytest

from bntt_jax import checkpoint, config_lib, train
from bntt_jax.errors import ConfigError, NonFiniteLossError

CONFIGS = os.path.join(os.path.dirname(__file__), '..', 'configs')


def _rows(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def test_cifar10_config_trains_end_to_end_on_mock_tfds(tmp_path):
  tfds = pytest.importorskip('tensorflow_datasets')
  config = config_lib.load_config(os.path.join(CONFIGS, 'cifar10.py'))
  # The real recipe, shrunk: T 2, 2 steps of 4 images, 10 test images in batches of 4.
  config.model.timesteps = 2
  config.train.batch_size = 4
  config.train.epochs = 1
  config.eval.batch_size = 4
  config.eval.num_keys = 2
  config.eval.top5 = True
  workdir = str(tmp_path / 'run')
  with tfds.testing.mock_data(num_examples=10):
    summary = train.train_and_evaluate(config, workdir)
  rows = _rows(workdir)
  assert len(rows) == 1
  row = rows[0]
  assert row['epoch'] == 0 and row['step'] == 2            # 10 // 4 steps, the remainder dropped
  assert row['lr'] == pytest.approx(0.3)
  for k in ('train_accuracy', 'test_accuracy'):
    assert 0.0 <= row[k] <= 1.0
  assert np.isfinite(row['train_loss']) and row['train_loss'] > 0
  assert 0.0 < row['spike_rate'] <= 2.0                       # spikes per neuron over T = 2 steps
  assert row['img_per_s'] > 0
  assert set(row['spike_rate_per_layer']) == {f'conv{i}' for i in range(1, 8)} | {'fc1'}
  # Every test example once: accuracies are multiples of 1/10.
  assert summary['test_examples'] == 10
  for acc in summary['final_test_accuracies']:
    assert abs(acc * 10 - round(acc * 10)) < 1e-9
  assert summary['final_test_accuracy'] == pytest.approx(np.mean(summary['final_test_accuracies']))
  assert summary['epochs'] == 1 and summary['timesteps'] == 2 and summary['seed'] == 0
  assert summary['best_test_accuracy'] == row['test_accuracy']
  assert row['test_top5_accuracy'] >= row['test_accuracy']
  assert 1.0 >= summary['final_test_top5_accuracy'] >= summary['final_test_accuracy']
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['model']['arch'] == 'vgg9'
  state = checkpoint.load_state(workdir)
  assert int(state['step']) == 2
  assert state['params']['conv1']['norm_layer']['scale'].shape == (2, 64)   # gamma[t], T = 2
  # What the analyses restore: the config and the variables of the last checkpoint.
  run_config, variables = train.load_run(workdir)
  assert run_config.model.arch == 'vgg9' and list(run_config.data.mean) == list(config.data.mean)
  assert variables['batch_stats']['conv1']['norm_layer']['mean'].shape == (2, 64)
  np.testing.assert_array_equal(variables['params']['fc_out']['kernel'],
                                state['params']['fc_out']['kernel'])


def _digits_config(**train):
  config = config_lib.load_config(os.path.join(CONFIGS, 'digits.py'))
  config.model.timesteps = 2
  config.model.arch_kwargs = {'widths': (4, 8), 'hidden': 16}
  config.train.batch_size = 256          # 5 steps per epoch
  config.eval.batch_size = 400
  config.eval.num_keys = 1
  for k, v in train.items():
    config.train[k] = v
  return config


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  # lr is multiplied by 1e30 from epoch 2 on: epochs 0-1 are fine, epoch 2 diverges.
  config = _digits_config(epochs=4, lr_schedule='step', lr_boundaries=(0.25,), lr_decay=1e30,
                          learning_rate=1.0, log_every_steps=1, checkpoint_every_steps=0)
  config.model.neuron = 'relu'
  config.model.encoding = 'direct'
  config.model.norm = 'none'
  workdir = str(tmp_path / 'run')
  with pytest.raises(NonFiniteLossError, match=r'non-finite training loss .* at step 1[01] '
                     r'\(epoch 2\); training stopped; the last good checkpoint is step 10'):
    train.train_and_evaluate(config, workdir)
  state = checkpoint.load_state(workdir)
  assert int(state['step']) == 10
  assert all(np.isfinite(a).all() for a in jax.tree_util.tree_leaves(state['params']))
  assert [r['epoch'] for r in _rows(workdir)] == [0, 1]
  assert not os.path.exists(os.path.join(workdir, 'summary.json'))


def test_rerun_in_the_same_workdir_resumes_and_extends(tmp_path):
  """A finished run rerun with more epochs continues from its last checkpoint.

  (Bitwise equality with an uninterrupted run, killed mid-epoch, is
  test_main.test_sigkill_and_resume_ends_with_the_same_parameters.)
  """
  workdir = str(tmp_path / 'run')
  config = _digits_config(epochs=1, lr_schedule='constant', learning_rate=0.05)
  first = train.train_and_evaluate(config, workdir)
  config.train.epochs = 2
  summary = train.train_and_evaluate(config, workdir)
  rows = _rows(workdir)
  assert [r['epoch'] for r in rows] == [0, 1] and [r['step'] for r in rows] == [5, 10]
  assert summary['steps'] == 10 and int(checkpoint.load_state(workdir)['step']) == 10
  assert summary['wall_seconds'] > first['wall_seconds']      # time accumulates over resumes
  assert rows[1]['train_loss'] < rows[0]['train_loss']
  # A different model in the same workdir is refused in one line, not a restore traceback.
  config.model.timesteps = 3
  with pytest.raises(ConfigError, match=r"workdir .* is not accepted: a new directory, or one "
                     r"holding a run of this config \(its checkpoint at step 10 does not fit"):
    train.train_and_evaluate(config, workdir)
