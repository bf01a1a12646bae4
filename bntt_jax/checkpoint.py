"""Checkpoints in the workdir with orbax (no pickle anywhere).

Layout::

    WORKDIR/checkpoints/<step>/state/   orbax PyTree: {step, params, batch_stats, opt_state}
    WORKDIR/checkpoints/<step>/meta/    JSON: the running epoch's training sums, the best
                                        test accuracy so far, wall seconds spent

``<step>`` is the number of optimizer steps taken. Orbax writes each
checkpoint to a temporary directory and renames it when complete, so a run
killed mid-save leaves the previous checkpoints intact, and the next run
resumes from the newest complete one. Every process calls ``save`` and
``restore``; orbax writes shared arrays once.
"""
from __future__ import annotations

import logging as py_logging
import os
from typing import Any, Dict, Optional, Tuple

from absl import logging
import jax
import orbax.checkpoint as ocp

STATE_FIELDS = ('step', 'params', 'batch_stats', 'opt_state')


def quiet_logs() -> None:
  """Orbax logs every save in ~30 INFO lines; keep its warnings only."""
  def keep(record):
    return record.levelno >= py_logging.WARNING or f'{os.sep}orbax{os.sep}' not in record.pathname
  # absl's handler, or the stream handler a library put on the root logger.
  for handler in set(py_logging.getLogger().handlers) | {logging.get_absl_handler()}:
    handler.addFilter(keep)


def _handlers():
  return {'state': ocp.StandardCheckpointHandler(), 'meta': ocp.JsonCheckpointHandler()}


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
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=False,
                                           cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.directory, item_handlers=_handlers(),
                                         options=options)

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state, meta: Dict[str, Any]) -> None:
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state_tree(state)), meta=ocp.args.JsonSave(meta)),
                      force=True)
    self.manager.wait_until_finished()

  def restore(self, step: int, state) -> Tuple[Any, Dict[str, Any]]:
    """``state`` with the saved fields of ``step``, and the saved meta.

    ``state`` gives the structure, shapes and shardings to restore into.

    Raises:
      ValueError: the checkpoint's parameters or statistics do not have the
        names and shapes of ``state``'s (a different model in this directory).
    """
    target = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state_tree(state))
    saved = self.manager.item_metadata(step)['state']
    saved = _shapes({k: saved.tree[k] for k in ('params', 'batch_stats') if k in saved.tree})
    wanted = _shapes({k: target[k] for k in ('params', 'batch_stats')})
    if saved != wanted:
      diff = sorted(set(saved.items()) ^ set(wanted.items()))[0][0]
      raise ValueError(f'{diff}: saved {saved.get(diff)}, this model {wanted.get(diff)}')
    out = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    return state.replace(**out['state']), dict(out['meta'])

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def load_state(workdir: str, step: Optional[int] = None) -> Dict[str, Any]:
  """The saved state tree of a run as numpy arrays (newest step by default).

  For analyses and tests; needs no config (the tree comes back as saved, with
  optimizer states as plain containers). Works whatever devices saved it (a
  TPU pod's run read on a laptop): arrays are restored onto this process's
  first device.
  """
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  with ocp.CheckpointManager(directory, item_handlers=_handlers()) as manager:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {directory}')
    here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here),
        manager.item_metadata(step)['state'].tree)
    out = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target)))
  return jax.tree_util.tree_map(lambda a: jax.device_get(a), out['state'])
