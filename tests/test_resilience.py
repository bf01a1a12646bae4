"""What clusters do to runs: preemption, damaged checkpoints, a shared workdir, a changed
config on resume, a full disk. End to end through the command line on the digits default."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from bntt_jax import checkpoint

pytestmark = pytest.mark.full   # the full tier: tests/conftest.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# 89 steps per epoch (1,437 training digits, batch 16), T 2, 4 epochs: about 10 s a run.
STEPS_PER_EPOCH = 89
TINY = ['--config.train.epochs=4', '--config.model.timesteps=2', '--config.train.batch_size=16',
        '--config.train.checkpoint_every_steps=0', '--config.eval.num_keys=1']


def _env(cache_dir):
  env = dict(os.environ)
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  env['JAX_COMPILATION_CACHE_DIR'] = str(cache_dir)   # the runs compile the same programs once
  return env


def _main(args, cache_dir, timeout=300):
  return subprocess.run([sys.executable, '-m', 'bntt_jax.main'] + args, cwd=ROOT,
                        env=_env(cache_dir), capture_output=True, text=True, timeout=timeout)


def _start(args, cache_dir):
  return subprocess.Popen([sys.executable, '-m', 'bntt_jax.main'] + args, cwd=ROOT,
                          env=_env(cache_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def _error_lines(stderr):
  return [line for line in stderr.splitlines() if line.startswith('error:')]


def _steps(workdir):
  d = os.path.join(workdir, 'checkpoints')
  return sorted(int(p) for p in os.listdir(d) if p.isdigit()) if os.path.isdir(d) else []


def _rows(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [{k: v for k, v in json.loads(line).items() if k not in ('img_per_s', 'wall_seconds')}
            for line in f]


def _assert_same_parameters(a, b):
  sa, sb = checkpoint.load_state(str(a)), checkpoint.load_state(str(b))
  assert int(sa['step']) == int(sb['step'])
  la, lb = jax.tree_util.tree_leaves(sa), jax.tree_util.tree_leaves(sb)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(x, y)


def _wait_for(predicate, proc, timeout=240):
  deadline = time.time() + timeout
  while not predicate():
    assert proc.poll() is None, 'the run ended early: ' + proc.communicate()[1][-2000:]
    assert time.time() < deadline, 'timed out'
    time.sleep(0.02)


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
  return tmp_path_factory.mktemp('jax_cache')


@pytest.fixture(scope='module')
def whole(tmp_path_factory, cache):
  """An uninterrupted run of TINY: the reference."""
  workdir = tmp_path_factory.mktemp('whole') / 'run'
  r = _main(TINY + [f'--workdir={workdir}'], cache)
  assert r.returncode == 0, r.stderr[-3000:]
  assert _steps(workdir) == [3 * STEPS_PER_EPOCH, 4 * STEPS_PER_EPOCH]
  return workdir


def test_sigterm_mid_epoch_saves_that_step_exits_3_and_resumes_to_equal_parameters(
    tmp_path, cache, whole):
  """Before: the run died at once with -15 (143 from a shell) and left only the epoch-end
  checkpoint at step 89, so everything since was lost."""
  workdir = tmp_path / 'run'
  proc = _start(TINY + [f'--workdir={workdir}'], cache)
  try:
    # Into the second epoch: its first row is written, the epoch-end save is done.
    _wait_for(lambda: (workdir / 'metrics.jsonl').exists()
              and (workdir / 'metrics.jsonl').read_text().count('\n') >= 1, proc)
    time.sleep(0.3)
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    elapsed = time.time() - t0
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 3, err[-3000:]
  assert elapsed < 15, elapsed                       # steps are ms, a save well under 1 s
  lines = [line for line in err.splitlines() if line.startswith('preempted:')]
  assert len(lines) == 1, err[-3000:]
  assert 'Traceback' not in err
  saved = _steps(workdir)[-1]
  assert f'checkpoint of step {saved}' in lines[0] and 'rerun the same command' in lines[0]
  assert STEPS_PER_EPOCH < saved < 4 * STEPS_PER_EPOCH
  assert not (workdir / 'summary.json').exists()

  r = _main(TINY + [f'--workdir={workdir}'], cache)
  assert r.returncode == 0, r.stderr[-3000:]
  assert f'Resuming from the checkpoint at step {saved}' in r.stderr
  _assert_same_parameters(whole, workdir)
  assert _rows(whole) == _rows(workdir) and len(_rows(workdir)) == 4
  sa, sb = (json.loads((d / 'summary.json').read_text()) for d in (whole, workdir))
  assert sa['final_test_accuracies'] == sb['final_test_accuracies']


def _damage(workdir, step):
  """Truncate the largest array file of a checkpoint to 100 bytes."""
  files = [os.path.join(d, f) for d, _, fs in os.walk(workdir / 'checkpoints' / str(step))
           for f in fs]
  biggest = max(files, key=os.path.getsize)
  with open(biggest, 'r+b') as f:
    f.truncate(100)


def test_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, cache, whole):
  """Before: every rerun stopped with a TensorStore traceback (exit 1), although step 267
  was intact."""
  workdir = tmp_path / 'run'
  shutil.copytree(whole, workdir)
  newest, previous = 4 * STEPS_PER_EPOCH, 3 * STEPS_PER_EPOCH
  _damage(workdir, newest)
  r = _main(TINY + [f'--workdir={workdir}'], cache)
  assert r.returncode == 0, r.stderr[-3000:]
  assert 'Traceback' not in r.stderr
  skipped = [line for line in r.stderr.splitlines()
             if f'checkpoint of step {newest}' in line and 'cannot be read' in line]
  assert len(skipped) == 1, r.stderr[-3000:]
  assert f'resuming from step {previous}' in skipped[0]
  moved = workdir / 'checkpoints_damaged' / str(newest)
  assert str(moved) in skipped[0] and moved.is_dir()     # kept for a look, out of the way
  assert f'Resuming from the checkpoint at step {previous}' in r.stderr
  _assert_same_parameters(whole, workdir)                # the damaged step retrained
  assert _rows(whole) == _rows(workdir)


def test_no_readable_checkpoint_is_one_line_naming_the_directory(tmp_path, cache, whole):
  """Before: a TensorStore traceback, exit 1."""
  workdir = tmp_path / 'run'
  shutil.copytree(whole, workdir)
  for step in _steps(workdir):
    _damage(workdir, step)
  r = _main(TINY + [f'--workdir={workdir}'], cache)
  assert r.returncode == 2, r.stderr[-3000:]
  lines = _error_lines(r.stderr)
  assert len(lines) == 1 and str(workdir / 'checkpoints') in lines[0], r.stderr[-3000:]
  assert 'none of its checkpoints (steps 356, 267) can be read' in lines[0]
  assert 'Traceback' not in r.stderr


def test_second_run_in_a_live_workdir_stops_and_a_killed_runs_lock_is_taken_over(
    tmp_path, cache):
  """Before: the second run started training in the same workdir; here it then died
  (exit 1, a FileNotFoundError traceback) clearing what it took for its own unfinished
  saves, the first run's save in progress (the issue saw both finish, every epoch twice
  in metrics.jsonl). There was no lock to take over."""
  workdir = tmp_path / 'run'
  long = TINY[1:] + ['--config.train.epochs=200', f'--workdir={workdir}']
  first = _start(long, cache)
  try:
    _wait_for(lambda: (workdir / 'metrics.jsonl').exists(), first)
    t0 = time.time()
    second = _main(long, cache, timeout=120)
    elapsed = time.time() - t0
    assert second.returncode == 2, second.stderr[-3000:]
    assert elapsed < 30, elapsed                          # before any data or compilation
    lines = _error_lines(second.stderr)
    assert len(lines) == 1, second.stderr[-3000:]
    assert f'in use by the run of pid {first.pid} on host ' in lines[0]
    assert str(workdir / '.lock') in lines[0]
    assert 'Traceback' not in second.stderr
    time.sleep(1.0)
    assert first.poll() is None                           # the first run is unaffected
    rows = _rows(workdir)
    assert [r['epoch'] for r in rows] == list(range(len(rows)))   # each epoch once
    first.send_signal(signal.SIGKILL)
    first.wait()
  finally:
    if first.poll() is None:
      first.kill()
  assert (workdir / '.lock').exists()                    # left behind by kill -9
  r = _main(TINY[1:] + ['--config.train.epochs=1', f'--workdir={workdir}'], cache)
  assert r.returncode == 0, r.stderr[-3000:]
  taken = [line for line in r.stderr.splitlines() if 'taking over the lock' in line]
  assert len(taken) == 1 and f'pid {first.pid}' in taken[0], r.stderr[-3000:]
  assert not (workdir / '.lock').exists()                # released at the end


def test_resume_with_a_changed_model_setting_stops_naming_the_keys(tmp_path, cache, whole):
  """Before: the run went on at leak 0.8 and overwrote config.json's 0.95."""
  workdir = tmp_path / 'run'
  shutil.copytree(whole, workdir)
  before = (workdir / 'config.json').read_text()
  r = _main(TINY + ['--config.model.leak=0.8', '--config.train.learning_rate=0.05',
                    f'--workdir={workdir}'], cache)
  assert r.returncode == 2, r.stderr[-3000:]
  lines = _error_lines(r.stderr)
  assert len(lines) == 1, r.stderr[-3000:]
  assert 'model.leak (0.95 -> 0.8)' in lines[0]
  assert 'train.learning_rate (0.1 -> 0.05)' in lines[0]
  assert (workdir / 'config.json').read_text() == before
  assert _steps(workdir) == _steps(whole)                  # nothing trained


def test_resume_with_more_epochs_continues_and_config_json_keeps_both(tmp_path, cache, whole):
  """Before: config.json held only the new config: the first 4 epochs' record was lost."""
  workdir = tmp_path / 'run'
  shutil.copytree(whole, workdir)
  r = _main(TINY + ['--config.train.epochs=5', f'--workdir={workdir}'], cache)
  assert r.returncode == 0, r.stderr[-3000:]
  assert f'Resuming from the checkpoint at step {4 * STEPS_PER_EPOCH}' in r.stderr
  assert _steps(workdir)[-1] == 5 * STEPS_PER_EPOCH
  saved = json.loads((workdir / 'config.json').read_text())
  assert saved['train']['epochs'] == 5                     # the plain config: the current one
  history = saved['history']
  assert [h['step'] for h in history] == [0, 4 * STEPS_PER_EPOCH]
  assert history[0]['config']['train']['epochs'] == 4
  assert history[1]['config']['train']['epochs'] == 5
  assert history[1]['changed'] == {'train.epochs': [4, 5]}
  # The readers of a run (analyses) get the current config.
  from bntt_jax import run_lib   # pylint: disable=g-import-not-at-top
  config, _ = run_lib.load_run(str(workdir))
  assert config.train.epochs == 5 and 'history' not in config


def _tmpfs_works():
  try:
    r = subprocess.run(['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c',
                        'mount -t tmpfs -o size=64k tmpfs /mnt'], capture_output=True,
                       timeout=30)
  except (OSError, subprocess.TimeoutExpired):
    return False
  return r.returncode == 0


@pytest.mark.skipif(not _tmpfs_works(), reason='needs unshare and a tmpfs mount')
def test_full_disk_is_one_line_with_path_and_bytes_and_the_previous_checkpoint_restores(
    tmp_path, cache):
  """The checkpoint directory on a 1,900 KiB tmpfs: two ~750 KiB checkpoints fit, the third
  does not. Before: exit 1 with an asyncio "Event loop is closed" traceback."""
  workdir, kept = tmp_path / 'run', tmp_path / 'kept'
  (workdir / 'checkpoints').mkdir(parents=True)
  args = TINY[1:] + ['--config.train.epochs=3', '--config.train.checkpoint_every_steps=20',
                     f'--workdir={workdir}']
  cmd = ' '.join([sys.executable, '-m', 'bntt_jax.main'] + args)
  script = (f'mount -t tmpfs -o size=1900k tmpfs {workdir}/checkpoints && cd {ROOT} && '
            f'{cmd}; rc=$?; cp -a {workdir}/checkpoints {kept}; exit $rc')
  r = subprocess.run(['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c', script],
                     env=_env(cache), capture_output=True, text=True, timeout=300)
  assert r.returncode == 1, r.stderr[-3000:]
  lines = _error_lines(r.stderr)
  assert len(lines) == 1, r.stderr[-3000:]
  assert 'Traceback' not in r.stderr and 'Event loop is closed' not in r.stderr
  assert 'no space left on device' in lines[0] and str(workdir / 'checkpoints') in lines[0]
  assert 'checkpoint of step 60 could not be written' in lines[0]
  assert 'bytes' in lines[0] and 'the previous checkpoint, step 40, is intact' in lines[0]
  assert sorted(os.listdir(kept)) == ['20', '40']        # no partial save left or listed
  restored = tmp_path / 'restored'
  restored.mkdir()
  shutil.copytree(kept, restored / 'checkpoints')
  state = checkpoint.load_state(str(restored))
  assert int(state['step']) == 40
