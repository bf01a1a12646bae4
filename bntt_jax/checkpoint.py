"""Checkpoints in the workdir with orbax (no pickle anywhere).

Layout::

    WORKDIR/checkpoints/<step>/state/   orbax PyTree: {step, params, batch_stats, opt_state}
    WORKDIR/checkpoints/<step>/meta/    JSON: the epoch in progress and its training sums
                                        so far, the best test accuracy so far, wall
                                        seconds spent
    WORKDIR/checkpoints/<step>/bntt_manifest.json   every file above with its size and
                                        SHA-256, written by process 0 once the save is done

``<step>`` is the number of optimizer steps taken. Orbax writes each
checkpoint to a temporary directory and renames it when complete, so a run
killed mid-save, or one whose disk fills up, leaves the previous checkpoints
intact, and the next run resumes from the newest complete one. Every process
calls ``save`` and ``restore``; orbax writes shared arrays once.

A checkpoint that cannot be read (a file truncated or lost after it was
written) is skipped by :meth:`Checkpointer.restore_newest`, which resumes from
the next older one and moves the damaged one out of the way, to
``WORKDIR/checkpoints_damaged/<step>``, kept for a look. The manifest finds a
missing, short or changed file before orbax reads it; for a checkpoint without
one (saved by an older version) orbax's own read error decides.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import io
import logging as py_logging
import os
import shutil
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp

from bntt_jax import metrics as metrics_lib
from bntt_jax.errors import CheckpointError, ConfigError

STATE_FIELDS = ('step', 'params', 'batch_stats', 'opt_state')


# Set when a save failed: the run is ending, and what orbax's threads still report about
# that save (after its one-line error) is dropped.
_silenced = False


def _from_orbax(record) -> bool:
  # asyncio reports, at exit, the write tasks of a failed save nobody awaited.
  return f'{os.sep}orbax{os.sep}' in record.pathname or record.name == 'asyncio'


def _handlers():
  # absl's handler, or the stream handler a library put on the root logger.
  return set(py_logging.getLogger().handlers) | {logging.get_absl_handler()}


def quiet_logs() -> None:
  """Orbax logs every save in ~30 INFO lines; keep its warnings only."""
  def keep(record):
    if _from_orbax(record):
      return record.levelno >= py_logging.WARNING and not _silenced
    return True
  for handler in _handlers():
    handler.addFilter(keep)


@contextlib.contextmanager
def _held_back(settle_s: float = 0.5) -> Iterator[None]:
  """Hold back what orbax's threads print while a save or restore runs.

  When one array fails to be written or read, each of orbax's worker threads
  reports it (an absl error with a traceback), tensorstore's callbacks print
  "Event loop is closed" tracebacks to ``sys.stderr`` (orbax's event loop is
  gone by then), and only then does the caller get the error. On success the
  held-back output is put out as it came; on an error it is dropped, after
  ``settle_s`` seconds for the late ones, and the caller says what failed.
  """
  held: List[py_logging.LogRecord] = []

  def hold(record):
    if _from_orbax(record):
      held.append(record)
      return False
    return True
  handlers = _handlers()
  for handler in handlers:
    handler.addFilter(hold)
  stderr, sys.stderr = sys.stderr, io.StringIO()
  ok = False
  try:
    yield
    ok = True
  finally:
    if not ok:
      time.sleep(settle_s)
      _drop_unraisable_orbax_coroutines()
    printed, sys.stderr = sys.stderr.getvalue(), stderr
    for handler in handlers:
      handler.removeFilter(hold)
    if ok:
      sys.stderr.write(printed)
      for record in held:
        py_logging.getLogger(record.name).handle(record)


def _drop_unraisable_orbax_coroutines() -> None:
  """The coroutines of a failed orbax operation, collected later, each print their copy
  of its error ("Exception ignored in: <coroutine ...>"); the caller has reported it."""
  previous = sys.unraisablehook
  if getattr(previous, 'bntt_jax_drops_orbax', False):
    return

  def hook(unraisable):
    code = getattr(unraisable.object, 'cr_code', None)
    if code is not None and f'{os.sep}orbax{os.sep}' in code.co_filename:
      return
    previous(unraisable)
  hook.bntt_jax_drops_orbax = True
  sys.unraisablehook = hook


def _chain(error: BaseException) -> List[BaseException]:
  """``error`` and its causes, outermost first."""
  out = []
  while error is not None and error not in out:
    out.append(error)
    error = error.__cause__ if error.__cause__ is not None else error.__context__
  return out


def one_line(error: BaseException, limit: int = 300) -> str:
  """``Type: first line`` of the innermost cause of ``error`` (tensorstore's errors
  carry the array's whole spec after the first line)."""
  root = _chain(error)[-1]
  lines = str(root).strip().splitlines()
  text = f'{type(root).__name__}: {lines[0] if lines else ""}'.rstrip(': ')
  return text if len(text) <= limit else text[:limit - 3] + '...'


_DISK_FULL = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))


def _disk_full(error: BaseException) -> bool:
  # Tensorstore's errors are ValueErrors that quote the OS error's text.
  return any((isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT))
             or any(text in str(e) for text in _DISK_FULL) for e in _chain(error))


def state_bytes(state) -> int:
  """Bytes of the saved arrays of ``state`` (global shapes), before compression."""
  return int(sum(np.prod(leaf.shape, dtype=np.int64) * np.dtype(leaf.dtype).itemsize
                 for leaf in jax.tree_util.tree_leaves(state_tree(state))))


MANIFEST = 'bntt_manifest.json'


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      h.update(block)
  return h.hexdigest()


def _mib(n: int) -> str:
  return f'{n / 2**20:.1f} MiB'


def _item_handlers():
  return {'state': ocp.StandardCheckpointHandler(), 'meta': ocp.JsonCheckpointHandler()}


class ModelMismatchError(ValueError):
  """The checkpoint holds another model (names or shapes of its arrays differ)."""


def _shapes(tree) -> Dict[str, Tuple[int, ...]]:
  """``{'params/conv1/...': shape}`` of the leaves of ``tree``."""
  def name(k):
    return str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k))))
  return {'/'.join(name(k) for k in path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def state_tree(state) -> Dict[str, Any]:
  """The saved part of a ``TrainState`` (its functions are rebuilt from the config)."""
  return {f: getattr(state, f) for f in STATE_FIELDS}


class Checkpointer:
  """An orbax ``CheckpointManager`` for one run directory."""

  def __init__(self, directory: str, keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._closed = False
    if jax.process_index() == 0:
      # Unfinished saves of an earlier run (killed mid-save), removed here and now: orbax's
      # own cleanup (cleanup_tmp_directories) runs in a thread that outlives a run stopping
      # early (a data error) and fails at exit with a traceback. The caller holds the
      # workdir's lock, so no other run is writing these.
      for partial in glob.glob(os.path.join(self.directory, '*.orbax-checkpoint-tmp*')):
        shutil.rmtree(partial, ignore_errors=True)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=False)
    self.manager = ocp.CheckpointManager(self.directory, item_handlers=_item_handlers(),
                                         options=options)

  def _manifest_path(self, step: int) -> str:
    return os.path.join(self.directory, str(step), MANIFEST)

  def _write_manifest(self, step: int) -> None:
    """Every file of checkpoint ``step`` with its size and SHA-256, written last (atomically)."""
    root = os.path.join(self.directory, str(step))
    metrics_lib.write_json(self._manifest_path(step), {
        os.path.relpath(path, root): [os.path.getsize(path), _sha256(path)]
        for path in sorted(glob.glob(os.path.join(root, '**'), recursive=True))
        if os.path.isfile(path) and os.path.basename(path) != MANIFEST})

  def verify(self, step: int) -> Optional[str]:
    """Why checkpoint ``step`` is damaged (a file missing, cut short or changed since it was
    written), by its manifest; None when it is whole or has no manifest (an older run's)."""
    path = self._manifest_path(step)
    if not os.path.isfile(path):
      return None
    try:
      files = metrics_lib.read_json(path)
    except ValueError:
      return f'its manifest {path} cannot be read'
    root = os.path.dirname(path)
    for name, (size, digest) in files.items():
      f = os.path.join(root, name)
      if not os.path.isfile(f):
        return f'{f} is missing'
      if os.path.getsize(f) != size:
        return f'{f} has {os.path.getsize(f):,} bytes, {size:,} when it was written'
      if _sha256(f) != digest:
        return f'{f} has changed since it was written (SHA-256)'
    return None

  def latest_step(self) -> Optional[int]:
    if self._closed:           # what it was at close (a preempted run's last line asks)
      return self._latest_at_close
    return self.manager.latest_step()

  def save(self, step: int, state, meta: Dict[str, Any]) -> None:
    """Write checkpoint ``step``.

    Raises:
      CheckpointError: the disk (or quota) is full; the partial save is
        removed and the previous checkpoint is intact. Other write errors come
        out as orbax raises them.
    """
    global _silenced
    try:
      with _held_back():
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state_tree(state)), meta=ocp.args.JsonSave(meta)),
                          force=True)
        self.manager.wait_until_finished()
      if jax.process_index() == 0:
        self._write_manifest(step)
    except Exception as e:  # pylint: disable=broad-except
      if not _disk_full(e):
        raise
      _silenced = True
      if jax.process_index() == 0:
        for partial in glob.glob(os.path.join(self.directory, f'{step}.orbax-checkpoint-tmp*')):
          shutil.rmtree(partial, ignore_errors=True)
      self.manager.reload()
      previous = self.manager.latest_step()
      need, free = state_bytes(state), shutil.disk_usage(self.directory).free
      raise CheckpointError(
          f'checkpoint of step {step} could not be written to {self.directory}: no space left '
          f'on device (it needs about {need:,} bytes, {_mib(need)}; {free:,} bytes are free); '
          + (f'the previous checkpoint, step {previous}, is intact: free some space and rerun '
             'the same command to resume from it' if previous is not None else
             'no checkpoint was saved before: free some space and rerun the same command')
      ) from None

  def restore(self, step: int, state) -> Tuple[Any, Dict[str, Any]]:
    """``state`` with the saved fields of ``step``, and the saved meta.

    ``state`` gives the structure, shapes and shardings to restore into.

    Raises:
      ModelMismatchError: the checkpoint's parameters or statistics do not
        have the names and shapes of ``state``'s (a different model in this
        directory).
    """
    target = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state_tree(state))
    saved = self.manager.item_metadata(step)['state']
    saved = _shapes({k: saved.tree[k] for k in ('params', 'batch_stats') if k in saved.tree})
    wanted = _shapes({k: target[k] for k in ('params', 'batch_stats')})
    if saved != wanted:
      diff = sorted(set(saved.items()) ^ set(wanted.items()))[0][0]
      raise ModelMismatchError(f'{diff}: saved {saved.get(diff)}, this model {wanted.get(diff)}')
    out = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    return state.replace(**out['state']), dict(out['meta'])

  def restore_newest(self, state, damaged_dir: str) -> Optional[Tuple[Any, Dict[str, Any], int]]:
    """:meth:`restore` of the newest checkpoint that can be read: ``(state, meta, step)``,
    or None when there is none.

    One that cannot be read is skipped with one warning line saying why, and
    moved to ``damaged_dir/<step>`` (so that its step can be saved again and
    ``keep`` counts good checkpoints only). On several processes a checkpoint
    counts as read only if every process read it.

    Raises:
      ModelMismatchError: see :meth:`restore` (not skipped: the directory
        holds another run).
      ConfigError: there are checkpoints and none of them can be read.
    """
    skipped = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      # The manifest first: a damaged file found by orbax's readers is reported by each of
      # its threads, some after the error reaches us (tracebacks after the one line).
      reason = self.verify(step)
      if reason is None:
        try:
          with _held_back():
            restored = self.restore(step, state)
        except ModelMismatchError:
          raise
        except Exception as e:  # pylint: disable=broad-except
          reason = one_line(e)
      ok = reason is None
      if jax.process_count() > 1:
        ok = bool(np.all(multihost_utils.process_allgather(np.int32(ok))))
        reason = reason or 'another process could not read it'
      if not ok:
        skipped.append((step, reason))
        continue
      self._set_aside(skipped, damaged_dir, step)
      return restored + (step,)
    if skipped:
      steps = ', '.join(str(s) for s, _ in skipped)
      raise ConfigError('checkpoint directory', self.directory,
                        f'one with a readable checkpoint: none of its checkpoints (steps '
                        f'{steps}) can be read (step {skipped[0][0]}: {skipped[0][1]}); move '
                        'it away to start afresh, or put back a good copy')
    return None

  def _set_aside(self, skipped, damaged_dir: str, resumed: int) -> None:
    if not skipped:
      return
    for step, reason in skipped:
      dest = os.path.join(damaged_dir, str(step))
      if jax.process_index() == 0:
        os.makedirs(damaged_dir, exist_ok=True)
        n = 1
        while os.path.exists(dest):         # damaged twice at one step: keep both
          dest, n = os.path.join(damaged_dir, f'{step}.{n}'), n + 1
        shutil.move(os.path.join(self.directory, str(step)), dest)
      logging.warning('checkpoint of step %d in %s cannot be read (%s); moved to %s; '
                      'resuming from step %d', step, self.directory, reason, dest, resumed)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices('bntt_jax damaged checkpoints moved')
    self.manager.reload()

  def close(self) -> None:
    """Idempotent: the training loop and ``train_and_evaluate`` both close."""
    if self._closed:
      return
    self._latest_at_close = self.manager.latest_step()
    self._closed = True
    try:
      self.manager.wait_until_finished()
      self.manager.close()
    except Exception:  # pylint: disable=broad-except
      if not _silenced:       # after a failed save, its error is the one that counts
        raise


def load_state(workdir: str, step: Optional[int] = None) -> Dict[str, Any]:
  """The saved state tree of a run as numpy arrays (newest step by default).

  For analyses and tests; needs no config (the tree comes back as saved, with
  optimizer states as plain containers). Works whatever devices saved it (a
  TPU pod's run read on a laptop): arrays are restored onto this process's
  first device.
  """
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  with ocp.CheckpointManager(directory, item_handlers=_item_handlers()) as manager:
    steps = sorted(manager.all_steps(), reverse=True) if step is None else [step]
    if not steps:
      raise FileNotFoundError(f'no checkpoint in {directory}')
    for i, s in enumerate(steps):
      try:
        with _held_back():
          target = jax.tree_util.tree_map(
              lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here),
              manager.item_metadata(s)['state'].tree)
          out = manager.restore(s, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(target)))
        break
      except Exception as e:  # pylint: disable=broad-except
        if i + 1 == len(steps):
          raise
        logging.warning('checkpoint of step %d in %s cannot be read (%s); reading step %d',
                        s, directory, one_line(e), steps[i + 1])
  return jax.tree_util.tree_map(lambda a: jax.device_get(a), out['state'])
