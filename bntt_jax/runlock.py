"""One run per workdir: ``WORKDIR/.lock``, held by process 0 for the run's life.

Two runs writing one workdir interleave their checkpoints and write every epoch of
``metrics.jsonl`` twice, so the second stops at once, before it reads or writes anything,
with one line naming the first.

The lock is a JSON file ``{host, pid, start_ticks, started}`` created atomically: written
to a temporary name, then hard-linked to ``.lock``, which fails if ``.lock`` exists (on
NFS too, unlike ``O_EXCL`` on old clients). It is removed when the run ends, however it
ends, except by SIGKILL or a crash of the machine. A lock left that way is *stale* and is
taken over, with one line saying so, when its holder is on this host and its pid is gone,
a zombie, or a process that started at another time (a pid reused since; ``start_ticks``
is the start time from ``/proc/<pid>/stat``). A holder on another host cannot be checked
from here: the run stops and says to delete the file if that run is no longer running.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from typing import Iterator, Optional

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

from bntt_jax import records
from bntt_jax.errors import ConfigError

LOCK_NAME = records.LOCK_NAME


def start_ticks(pid: int) -> Optional[int]:
  """When ``pid`` started (clock ticks after boot), or None off Linux / for no such pid."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      stat = f.read()
  except OSError:
    return None
  # The command name (field 2) may hold spaces and parentheses: count from the last ')'.
  fields = stat[stat.rindex(')') + 2:].split()
  return int(fields[19])          # field 22 of proc(5): starttime


def _state(pid: int) -> Optional[str]:
  try:
    with open(f'/proc/{pid}/stat') as f:
      stat = f.read()
  except OSError:
    return None
  return stat[stat.rindex(')') + 2:].split()[0]


def _alive(holder: dict) -> bool:
  """Whether the holder, a process on this host, still runs."""
  pid = int(holder['pid'])
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:      # another user's process: it exists
    pass
  if _state(pid) == 'Z':       # exited, not yet reaped by its parent
    return False
  recorded, now = holder.get('start_ticks'), start_ticks(pid)
  return recorded is None or now is None or int(recorded) == now


class Lock:
  """A held lock; :meth:`release` removes it (idempotent)."""

  def __init__(self, path: str, content: str):
    self.path, self._content = path, content

  def release(self) -> None:
    if self._content is None:
      return
    try:
      with open(self.path) as f:
        mine = f.read() == self._content
      if mine:                 # never remove a lock someone else took over
        os.unlink(self.path)
    except OSError:
      pass
    self._content = None


def _describe(holder: dict) -> str:
  return (f"the run of pid {holder.get('pid')} on host {holder.get('host')} "
          f"(started {holder.get('started', '?')})")


def acquire(workdir: str) -> Lock:
  """Take ``workdir/.lock``.

  Raises:
    ConfigError: another run holds it, or it cannot be read (one line naming it).
  """
  path = os.path.join(workdir, LOCK_NAME)
  host, pid = socket.gethostname(), os.getpid()
  content = json.dumps({'host': host, 'pid': pid, 'start_ticks': start_ticks(pid),
                        'started': time.strftime('%Y-%m-%d %H:%M:%S')})
  tmp = f'{path}.{host}.{pid}.tmp'
  with open(tmp, 'w') as f:
    f.write(content)
  try:
    for _ in range(5):         # a lock released or taken over under our feet: look again
      try:
        os.link(tmp, path)
        return Lock(path, content)
      except FileExistsError:
        pass
      try:
        with open(path) as f:
          raw = f.read()
      except FileNotFoundError:
        continue
      try:
        holder = json.loads(raw)
        holder['pid'] = int(holder['pid'])
      except (ValueError, KeyError, TypeError):
        raise ConfigError('workdir', workdir, f'its lock {path} cannot be read: if no run is '
                          f'using this directory, delete {path}') from None
      if holder.get('host') != host:
        raise ConfigError('workdir', workdir, f'it is in use by {_describe(holder)}, lock {path} '
                          f'(if that run is no longer running, delete {path})')
      if _alive(holder):
        raise ConfigError('workdir', workdir, f'it is in use by {_describe(holder)}, lock {path}; '
                          'wait for it to end or use another --workdir')
      # Stale: move it away under a name of our own, then check that what we moved is the
      # stale lock we read, not one another run took over with in the meantime.
      stale = f'{path}.stale.{host}.{pid}'
      try:
        os.rename(path, stale)
      except FileNotFoundError:
        continue
      with open(stale) as f:
        moved = f.read()
      if moved != raw:
        with contextlib.suppress(FileExistsError):
          os.link(stale, path)
        os.unlink(stale)
        continue
      os.unlink(stale)
      logging.warning('taking over the lock of pid %d on host %s (started %s) in %s: that '
                      'process is no longer running', holder['pid'], host,
                      holder.get('started', '?'), workdir)
    raise ConfigError('workdir', workdir, f'its lock {path} changed hands five times while '
                      'this run tried to take it')
  finally:
    os.unlink(tmp)


@contextlib.contextmanager
def hold(workdir: str, enabled: bool = True) -> Iterator[Optional[Lock]]:
  """``acquire`` for the duration of a ``with`` block (nothing when not ``enabled``)."""
  lock = acquire(workdir) if enabled else None
  try:
    yield lock
  finally:
    if lock is not None:
      lock.release()


@contextlib.contextmanager
def hold_for_run(workdir: str) -> Iterator[Optional[Lock]]:
  """:func:`hold` by process 0 of a (multi-process) run; every process stops if it is refused.

  The others learn process 0's answer from one broadcast: they would otherwise go on
  into the run's first collective and wait there for a process that has stopped.
  """
  lock, error = None, None
  if jax.process_index() == 0:
    try:
      lock = acquire(workdir)
    except ConfigError as e:
      error = e
  if jax.process_count() > 1:
    refused = int(multihost_utils.broadcast_one_to_all(np.int32(error is not None)))
    if refused and error is None:
      error = ConfigError('workdir', workdir, f'it is in use by another run (process 0 found '
                          f'its lock {os.path.join(workdir, LOCK_NAME)})')
  if error is not None:
    raise error
  try:
    yield lock
  finally:
    if lock is not None:
      lock.release()
