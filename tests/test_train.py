"""train_and_evaluate end to end: the cifar10 config on mock tfds data, non-finite stops."""
import json
import os

import jax
import numpy as np
import pytest

from bntt_jax import checkpoint, config_lib, preemption, run_lib, train
from bntt_jax.errors import ConfigError, NonFiniteLossError, Preempted

CONFIGS = os.path.join(os.path.dirname(__file__), '..', 'configs')


def _rows(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


@pytest.mark.full
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
  # What ran the CPU-kernel ops is recorded (one CPU device: the kernels, where they build).
  assert set(summary['kernels']) == {'sparse_conv', 'winograd', 'lif'}
  assert all(v in ('kernel (avx512)', 'kernel (avx2)', 'kernel (generic)')
             or v.startswith('xla (unavailable') for v in summary['kernels'].values())
  assert summary['best_test_accuracy'] == row['test_accuracy']
  assert row['test_top5_accuracy'] >= row['test_accuracy']
  assert 1.0 >= summary['final_test_top5_accuracy'] >= summary['final_test_accuracy']
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['model']['arch'] == 'vgg9'
  state = checkpoint.load_state(workdir)
  assert int(state['step']) == 2
  assert state['params']['conv1']['norm_layer']['scale'].shape == (2, 64)   # gamma[t], T = 2
  # What the analyses restore: the config and the variables of the last checkpoint.
  run_config, variables = run_lib.load_run(workdir)
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


@pytest.mark.full
def test_rerun_in_the_same_workdir_resumes_and_extends(tmp_path):
  """A finished run rerun with more epochs continues from its last checkpoint.

  (Bitwise equality with an uninterrupted run, killed mid-epoch, is
  test_main.test_sigkill_and_resume_ends_with_the_same_parameters.)
  """
  workdir = str(tmp_path / 'run')
  config = _digits_config(epochs=1, lr_schedule='constant', learning_rate=0.05)
  first = train.train_and_evaluate(config, workdir)
  # As a checkpoint written before meta had the epoch in progress and the rate.
  meta_path = os.path.join(workdir, 'checkpoints', '5', 'meta', 'metadata')
  with open(meta_path) as f:
    meta = json.load(f)
  assert meta['epoch'] == 1
  with open(meta_path, 'w') as f:
    json.dump({k: v for k, v in meta.items() if k not in ('epoch', 'lr')}, f)
  # Checkpoints of that time had no manifest either (with this one, the edit reads as damage).
  os.remove(os.path.join(workdir, 'checkpoints', '5', checkpoint.MANIFEST))
  config.train.epochs = 2
  summary = train.train_and_evaluate(config, workdir)
  rows = _rows(workdir)
  assert [r['epoch'] for r in rows] == [0, 1] and [r['step'] for r in rows] == [5, 10]
  assert summary['steps'] == 10 and int(checkpoint.load_state(workdir)['step']) == 10
  assert summary['wall_seconds'] > first['wall_seconds']      # time accumulates over resumes
  assert rows[1]['train_loss'] < rows[0]['train_loss']
  # A different model in the same workdir is refused in one line, not a restore traceback:
  # by the saved config, and without one (config.json deleted) by the checkpoint's shapes.
  config.model.timesteps = 3
  with pytest.raises(ConfigError, match=r"config for resuming at step 10 is not accepted: .*"
                     r"model.timesteps \(2 -> 3\) changed"):
    train.train_and_evaluate(config, workdir)
  os.remove(os.path.join(workdir, 'config.json'))
  with pytest.raises(ConfigError, match=r"workdir .* is not accepted: a new directory, or one "
                     r"holding a run of this config \(its checkpoint at step 10 does not fit"):
    train.train_and_evaluate(config, workdir)


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('whole') / 'run')
  config = _digits_config(epochs=2, checkpoint_every_steps=0)
  config.eval.num_keys = 2
  return workdir, config, train.train_and_evaluate(config, workdir)


# Boundaries of a fresh 2-epoch run of 5 steps each: 1-3 while starting, 4-8 the steps of
# epoch 0, 9 after its checkpoint, 10-14 epoch 1, 15 after its checkpoint, 16 before the
# second final evaluation.
@pytest.mark.full
@pytest.mark.parametrize('boundary,saved,newest', [
    (8, 5, 5),      # epoch 0's last step: saved before its evaluation, which the rerun does
    (9, None, 5),   # after epoch 0's checkpoint: nothing new to save
    (12, 8, 8),     # mid-epoch (epoch 1's third step)
    (16, None, 10), # between the final evaluations: the rerun evaluates the last checkpoint
    (2, None, None),  # while starting: nothing trained, nothing saved
])
def test_preempted_at_any_boundary_resumes_to_the_uninterrupted_run(
    tmp_path, monkeypatch, uninterrupted, boundary, saved, newest):
  """A preemption notice (here: the monitor's check patched to fire at the n-th boundary)
  saves the step just done, or nothing where nothing changed since the last checkpoint;
  the rerun ends with the uninterrupted run's parameters, rows and summary. Before: there
  was no preemption handling (bntt_jax.preemption did not exist)."""
  whole, config, summary = uninterrupted
  real = preemption.Monitor.reached
  calls = []

  def fires(self, step):
    calls.append(step)
    hit = real(self, step) or len(calls) >= boundary
    if hit:
      self.signal_name = 'SIGTERM'
    return hit
  monkeypatch.setattr(preemption.Monitor, 'reached', fires)
  workdir = str(tmp_path / 'run')
  with pytest.raises(Preempted) as e:
    train.train_and_evaluate(config, workdir)
  assert e.value.step == newest
  # What each boundary reports: the step the state is at.
  assert calls == [0, 0, 0, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10, 10, 10][:boundary]
  if saved is not None:
    assert str(e.value).startswith(f'SIGTERM: saved the checkpoint of step {saved} in ')
  elif newest is not None:
    assert f'the checkpoint of step {newest} ' in str(e.value)
  else:
    assert 'stopped before the first checkpoint; rerun the same command to start again' in str(
        e.value)
  if newest is not None:
    assert int(checkpoint.load_state(workdir)['step']) == newest
  assert not os.path.exists(os.path.join(workdir, '.lock'))
  monkeypatch.undo()
  again = train.train_and_evaluate(config, workdir)
  a, b = checkpoint.load_state(whole), checkpoint.load_state(workdir)
  assert int(a['step']) == int(b['step']) == 10
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(x, y)
  strip = lambda rows: [{k: v for k, v in r.items() if k not in ('img_per_s', 'wall_seconds')}
                        for r in rows]
  assert strip(_rows(whole)) == strip(_rows(workdir)) and len(_rows(workdir)) == 2
  assert again['final_test_accuracies'] == summary['final_test_accuracies']
  assert again['best_test_accuracy'] == summary['best_test_accuracy']
