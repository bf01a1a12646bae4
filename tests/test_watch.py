"""Runs you can watch: without a terminal, a log line every ``train.log_every_steps``; the same
scalars in ``steps.jsonl`` and in TensorBoard event files; BNTT's mean gamma per step."""
import glob
import json
import os
import struct
import subprocess
import sys

import pytest

from bntt_jax import metrics
from bntt_jax import summary_writer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_crc32c_is_castagnolis():
  # The standard check value of CRC-32C, and RFC 3720's 32 bytes of zeros.
  assert summary_writer.crc32c(b'123456789') == 0xE3069283
  assert summary_writer.crc32c(bytes(32)) == 0x8A9136AA


def test_event_files_round_trip_and_a_torn_record_ends_the_file(tmp_path):
  w = summary_writer.SummaryWriter(str(tmp_path))
  w.scalars(10, {'train/loss': 0.5, 'gamma/t01': 0.25})
  w.scalars(20, {'train/loss': 0.125})
  assert summary_writer.read_scalars(w.path) == {'train/loss': [(10, 0.5), (20, 0.125)],
                                                 'gamma/t01': [(10, 0.25)]}
  with open(w.path, 'ab') as f:
    f.write(struct.pack('<Q', 100) + b'\x00\x00')   # a record cut by a kill
  assert summary_writer.read_scalars(w.path)['train/loss'][-1] == (20, 0.125)


def test_tensorboard_reads_the_event_files(tmp_path):
  event_accumulator = pytest.importorskip(
      'tensorboard.backend.event_processing.event_accumulator')
  w = summary_writer.SummaryWriter(str(tmp_path))
  w.scalars(3, {'train/loss': 0.75})
  acc = event_accumulator.EventAccumulator(str(tmp_path))
  acc.Reload()
  assert [(e.step, e.value) for e in acc.Scalars('train/loss')] == [(3, 0.75)]


def test_steps_rows_are_kept_up_to_the_resumed_step(tmp_path):
  w = metrics.JsonlWriter(str(tmp_path / 'steps.jsonl'))
  for s in (10, 20, 30):
    w.write({'step': s})
  w.keep_steps_upto(20)
  assert [r['step'] for r in metrics.read_jsonl(w.path)] == [10, 20]


@pytest.fixture(scope='module')
def logged_run(tmp_path_factory):
  """digits, BNTT, T 2, 3 epochs of 5 steps, log every 2 steps, output to a file (no TTY);
  each epoch evaluated on 100 of the 360 test digits."""
  workdir = tmp_path_factory.mktemp('watch') / 'run'
  log = workdir.parent / 'log.txt'
  cmd = [sys.executable, '-m', 'bntt_jax.main', f'--workdir={workdir}',
         '--config.model.timesteps=2', '--config.train.epochs=3',
         '--config.train.batch_size=256', '--config.train.log_every_steps=2',
         '--config.eval.num_keys=1', '--config.eval.epoch_examples=100']
  with open(log, 'w') as f:
    r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, timeout=600,
                       env=dict(os.environ, BNTT_CPU_RUNTIME='default'))
  assert r.returncode == 0, log.read_text()[-3000:]
  return workdir, log.read_text()


def test_a_run_without_a_terminal_logs_every_log_every_steps(logged_run):
  _, log = logged_run
  lines = [l for l in log.splitlines() if '] step ' in l]
  steps = [int(l.split('] step ')[1].split('/')[0]) for l in lines]
  # 5 steps per epoch: a sync every 2 steps and at each epoch's end.
  assert steps == [2, 4, 5, 6, 8, 10, 12, 14, 15]
  assert all(f'/15 epoch' in l and ' loss ' in l and ' acc ' in l and ' lr ' in l
             and ' img/s ETA ' in l for l in lines)


def test_epochs_evaluate_a_subset_and_the_final_evaluation_the_whole_test_split(logged_run):
  workdir, _ = logged_run
  for row in metrics.read_jsonl(str(workdir / 'metrics.jsonl')):
    assert abs(row['test_accuracy'] * 100 - round(row['test_accuracy'] * 100)) < 1e-9
  summary = metrics.read_json(str(workdir / 'summary.json'))
  assert summary['test_examples'] == 360          # digits' whole test split
  assert summary['num_classes'] == 10 and summary['classes_inferred'] is False


def test_steps_jsonl_and_the_event_files_hold_the_same_scalars(logged_run):
  workdir, _ = logged_run
  rows = metrics.read_jsonl(str(workdir / 'steps.jsonl'))
  assert [r['step'] for r in rows] == [2, 4, 5, 6, 8, 10, 12, 14, 15]
  assert all(len(r['mean_gamma']) == 2 and set(r['gamma_per_layer']) == {'conv1', 'conv2',
                                                                          'fc1'} for r in rows)
  assert rows[0]['spikes_per_image'] > 0 and 0 <= rows[-1]['train_accuracy'] <= 1
  (events,) = glob.glob(str(workdir / 'events.out.tfevents.*'))
  scalars = summary_writer.read_scalars(events)
  assert [s for s, _ in scalars['train/train_loss']] == [r['step'] for r in rows]
  for (_, v), r in zip(scalars['train/train_loss'], rows):
    assert v == pytest.approx(r['train_loss'], rel=1e-6)
  assert [v for _, v in scalars['gamma/t02']] == pytest.approx(
      [r['mean_gamma'][1] for r in rows], rel=1e-6)
  epochs = metrics.read_jsonl(str(workdir / 'metrics.jsonl'))
  assert scalars['test/accuracy'] == [(e['step'], pytest.approx(e['test_accuracy']))
                                      for e in epochs]
