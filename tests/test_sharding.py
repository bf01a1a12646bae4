"""Data parallelism: 8 devices == 1 device, padded evaluation, 2 processes == 1 process."""
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from bntt_jax import checkpoint

pytestmark = pytest.mark.full   # the full tier: tests/conftest.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, 'tests', 'sharding_worker.py')


def _env(**extra):
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  env.pop('XLA_FLAGS', None)
  env.update(extra)
  return env


def _worker(devices, out, *flags):
  r = subprocess.run([sys.executable, WORKER, str(devices), str(out), *flags], env=_env(),
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  return dict(np.load(out))


def _assert_same(a, b, rtol):
  assert set(a) == set(b)
  for k in a:
    scale = max(np.abs(a[k]).max(), 1e-30)
    assert np.abs(a[k] - b[k]).max() / scale < rtol, k


@pytest.mark.parametrize('per_device', [False, True])
def test_eight_devices_equal_one_device_for_a_step_and_the_evaluation(tmp_path, per_device):
  """Same global batch: loss, gradients, updated params and running statistics
  (1e-5); evaluation of 1,001 examples in padded batches of 64 equals too."""
  flags = ('--per-device-stats',) if per_device else ()
  one = _worker(1, tmp_path / 'one.npz', *flags)
  eight = _worker(8, tmp_path / 'eight.npz', *flags)
  _assert_same(one, eight, 1e-5)
  assert int(one['eval_examples']) == int(eight['eval_examples']) == 1001
  assert one['eval_accuracy'] == eight['eval_accuracy']
  assert any(np.abs(v).max() > 0 for k, v in one.items() if k.startswith('grad'))
  assert float(one['eval_spike_rate']) > 0
  if per_device:
    glob = _worker(1, tmp_path / 'global.npz')
    assert abs(float(glob['loss']) - float(one['loss'])) > 1e-3   # the option does change things


@pytest.mark.full
def test_remat_on_eight_devices_equals_one_device_without_it(tmp_path):
  """``remat=True`` inside ``shard_map`` (each block keeping only its narrow input): the same
  loss, gradients, parameters, statistics and evaluation as the plain step on one device."""
  one = _worker(1, tmp_path / 'one.npz')
  eight = _worker(8, tmp_path / 'eight_remat.npz', '--remat')
  _assert_same(one, eight, 1e-5)
  assert one['eval_accuracy'] == eight['eval_accuracy']


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _digits_args(workdir, epochs=1):
  # The native CPU kernels serve one device only, so a 2-process run uses XLA's operations;
  # the 1-process run that it must equal does too (the kernels round differently, and a
  # spiking network's training amplifies rounding over tens of steps).
  return [sys.executable, '-m', 'bntt_jax.main', f'--workdir={workdir}',
          f'--config.train.epochs={epochs}', '--config.model.timesteps=4',
          '--config.train.checkpoint_every_steps=0', '--config.model.lif_kernel=off',
          '--config.model.sparse_conv=off']


def _start_two(workdir, epochs, port, **env):
  procs = []
  for i in range(2):
    e = _env(JAX_COORDINATOR_ADDRESS=f'localhost:{port}', JAX_NUM_PROCESSES='2',
             JAX_PROCESS_ID=str(i), **env)
    procs.append(subprocess.Popen(_digits_args(workdir, epochs), cwd=ROOT, env=e,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  return procs


def test_two_processes_train_like_one_process(tmp_path):
  """Two processes of one device each train an epoch like one process with two devices.

  The reference has the same two devices, so the same data-parallel program: each device sums
  its half of the batch, and the halves are added. A single device sums the batch in another
  order; one step agrees with it to 1e-5 (the 8-device test), but over this epoch's 44 steps
  the spiking network amplifies that float32 rounding (measured: parameters 6e-4 apart).
  """
  procs = _start_two(tmp_path / 'two', 1, _free_port())
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  r = subprocess.run(_digits_args(tmp_path / 'one'), cwd=ROOT,
                     env=_env(XLA_FLAGS='--xla_force_host_platform_device_count=2'),
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  two, one = checkpoint.load_state(tmp_path / 'two'), checkpoint.load_state(tmp_path / 'one')
  assert int(two['step']) == int(one['step']) > 10
  for a, b in zip(jax.tree_util.tree_leaves(two['params']),
                  jax.tree_util.tree_leaves(one['params'])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # Only process 0 writes the run's files.
  assert (tmp_path / 'two' / 'summary.json').exists()
  assert 'final test accuracy' in outs[0][1] and 'final test accuracy' in outs[1][1]


def test_killing_one_process_stops_the_other_within_120_s(tmp_path):
  procs = _start_two(tmp_path / 'run', 200, _free_port())
  try:
    # Wait until both are training (a checkpoint at the first epoch's end).
    deadline = time.time() + 300
    while not (tmp_path / 'run' / 'metrics.jsonl').exists():
      assert time.time() < deadline and all(p.poll() is None for p in procs)
      time.sleep(1)
    procs[1].send_signal(signal.SIGKILL)
    t0 = time.time()
    _, err = procs[0].communicate(timeout=180)
    elapsed = time.time() - t0
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  assert procs[0].returncode != 0
  assert elapsed < 120, elapsed
  assert 'error: process 0 of 2' in err or 'another task died' in err, err[-2000:]


@pytest.mark.parametrize('sig,service', [
    (signal.SIGTERM, 'true'),     # JAX's preemption service agrees on the step
    (signal.SIGINT, 'true'),      # passed on to it as a SIGTERM
    (signal.SIGTERM, 'false'),    # service off: the flags are all-gathered every step
], ids=['sigterm-service', 'sigint-service', 'sigterm-gathered'])
def test_a_signal_to_one_of_two_processes_saves_the_same_step_on_both_and_exits(
    tmp_path, sig, service):
  """Before: with the service, neither signal stopped the run (JAX's notifier swallowed
  the SIGTERM; the SIGINT's KeyboardInterrupt did not end it either): the test timed out
  waiting, nothing saved. Without the service, the SIGTERM killed process 1 at once and
  process 0 stopped with a cross-process error (exit 1)."""
  workdir = tmp_path / 'run'
  procs = _start_two(workdir, 200, _free_port(), JAX_ENABLE_PREEMPTION_SERVICE=service)
  rows = workdir / 'metrics.jsonl'     # created empty at the start: wait for epoch 0's row
  try:
    deadline = time.time() + 300
    while not (rows.exists() and rows.read_text().count('\n') >= 1):
      assert time.time() < deadline and all(p.poll() is None for p in procs)
      time.sleep(0.2)
    procs[1].send_signal(sig)
    outs = [p.communicate(timeout=120)[1] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  steps = []
  for p, err in zip(procs, outs):
    assert p.returncode == 3, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith('preempted:')]
    assert len(lines) == 1 and 'checkpoint of step ' in lines[0], err[-3000:]
    steps.append(int(lines[0].split('checkpoint of step ')[1].split()[0]))
  assert steps[0] == steps[1]
  saved = max(int(p.name) for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit())
  assert saved == steps[0]
  assert int(checkpoint.load_state(workdir)['step']) == saved
  assert not (workdir / 'summary.json').exists()
