"""One run per workdir: the lock file, live and stale holders."""
import json
import os
import socket
import subprocess
import sys

import pytest

from bntt_jax import runlock
from bntt_jax.errors import ConfigError


def _write_lock(workdir, **fields):
  holder = {'host': socket.gethostname(), 'pid': os.getpid(), 'started': '2024-01-01 00:00:00'}
  holder.update(fields)
  (workdir / '.lock').write_text(json.dumps(holder))


def test_lock_is_created_with_the_holder_and_removed_on_release(tmp_path):
  lock = runlock.acquire(str(tmp_path))
  holder = json.loads((tmp_path / '.lock').read_text())
  assert holder['pid'] == os.getpid() and holder['host'] == socket.gethostname()
  lock.release()
  assert not (tmp_path / '.lock').exists()
  lock.release()                                   # twice is fine (atexit and finally)
  with runlock.hold(str(tmp_path)):
    assert (tmp_path / '.lock').exists()
  assert not (tmp_path / '.lock').exists()


def test_released_when_the_run_raises(tmp_path):
  with pytest.raises(RuntimeError):
    with runlock.hold(str(tmp_path)):
      raise RuntimeError('training failed')
  assert not (tmp_path / '.lock').exists()


def test_a_live_holder_stops_a_second_run_naming_it(tmp_path):
  sleeper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
  try:
    _write_lock(tmp_path, pid=sleeper.pid, start_ticks=runlock.start_ticks(sleeper.pid))
    with pytest.raises(ConfigError) as e:
      runlock.acquire(str(tmp_path))
  finally:
    sleeper.kill()
    sleeper.wait()
  message = str(e.value)
  assert message.startswith(f"workdir {str(tmp_path)!r} is not accepted: it is in use by the "
                            f'run of pid {sleeper.pid} on host {socket.gethostname()}')
  assert str(tmp_path / '.lock') in message and '\n' not in message
  assert json.loads((tmp_path / '.lock').read_text())['pid'] == sleeper.pid   # untouched


def test_a_dead_holder_is_taken_over_with_a_warning(tmp_path, caplog):
  dead = subprocess.Popen([sys.executable, '-c', 'pass'])
  dead.wait()
  _write_lock(tmp_path, pid=dead.pid)
  lock = runlock.acquire(str(tmp_path))
  assert json.loads((tmp_path / '.lock').read_text())['pid'] == os.getpid()
  assert any(f'taking over the lock of pid {dead.pid}' in r.getMessage() for r in caplog.records)
  lock.release()


def test_a_reused_pid_is_not_mistaken_for_the_holder(tmp_path):
  # Our own pid is alive, but started at another time than the recorded holder.
  _write_lock(tmp_path, pid=os.getpid(), start_ticks=1)
  lock = runlock.acquire(str(tmp_path))
  lock.release()


def test_another_hosts_lock_is_refused_with_how_to_remove_it(tmp_path):
  _write_lock(tmp_path, host='some-other-host', pid=1234)
  with pytest.raises(ConfigError) as e:
    runlock.acquire(str(tmp_path))
  message = str(e.value)
  assert 'in use by the run of pid 1234 on host some-other-host' in message
  assert f'if that run is no longer running, delete {tmp_path / ".lock"}' in message


def test_an_unreadable_lock_is_refused_naming_the_file(tmp_path):
  (tmp_path / '.lock').write_text('{not json')
  with pytest.raises(ConfigError) as e:
    runlock.acquire(str(tmp_path))
  assert f'delete {tmp_path / ".lock"}' in str(e.value)
