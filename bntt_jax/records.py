"""A run's records on disk, checked before a command reads or writes them (imports no JAX).

A workdir holds ``config.json`` (the config the run was trained under, and its history),
``metrics.jsonl`` (one line per epoch), ``summary.json`` (the final result) and
``checkpoints/`` (:mod:`bntt_jax.metrics`, :mod:`bntt_jax.checkpoint`). A damaged record is
never silently replaced: the command stops with one line naming the file and what to do, or,
where the run rebuilds it from what is intact (``summary.json``), says so.
"""
from __future__ import annotations

import json
import os
from typing import List

from bntt_jax import config_lib
from bntt_jax.errors import ConfigError, DataError

_A_RUN = 'a run directory (python -m bntt_jax.main --workdir=DIR writes one)'
# Names in a workdir, defined here for the modules that write them (which import JAX):
LOCK_NAME = '.lock'            # bntt_jax.runlock
STEPS_FILE = 'steps.jsonl'     # bntt_jax.train's per-step rows
FAILED_FILE = 'failed.json'    # experiments/reproduce.py's record of a run that diverged
# What bntt_jax writes in a workdir (training, python -m bntt_jax.analyze, experiments/
# reproduce.py): a directory holding anything else and no config.json is not a run's.
RUN_ENTRIES = frozenset({'config.json', 'metrics.jsonl', STEPS_FILE, 'summary.json',
                         'checkpoints', 'checkpoints_damaged', LOCK_NAME, 'report.json',
                         'report.md', 'plots', FAILED_FILE})
EVENTS_PREFIX = 'events.out.tfevents.'


def foreign_entries(workdir: str) -> List[str]:
  """The entries of the directory ``workdir`` that no bntt_jax run writes (sorted)."""
  return sorted(n for n in os.listdir(workdir)
                if n not in RUN_ENTRIES and not n.startswith(EVENTS_PREFIX))


def check_run(workdir: str) -> str:
  """Check that ``workdir`` holds a run to read (its ``config.json`` and a checkpoint) and
  return its ``config.json``'s path; reads and writes nothing else.

  Raises:
    ConfigError: no such directory, a file, a directory without ``config.json`` (not a
      run) or without a checkpoint.
    DataError: a damaged ``config.json`` (:func:`config_lib.read_run_record`).
  """
  if not os.path.exists(workdir):
    raise ConfigError('workdir', workdir, f'{_A_RUN}: there is no such directory')
  if not os.path.isdir(workdir):
    raise ConfigError('workdir', workdir, f'{_A_RUN}: it is a file')
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    raise ConfigError('workdir', workdir, f'{_A_RUN}: it holds no config.json, so no run')
  config_lib.read_run_record(path, 'restore it from a copy (the model is rebuilt from it)')
  ckpt = os.path.join(workdir, 'checkpoints')
  if not (os.path.isdir(ckpt) and any(n.isdigit() for n in os.listdir(ckpt))):
    raise ConfigError('workdir', workdir, f'{_A_RUN} with a checkpoint: {ckpt} holds none '
                      '(the run stopped before its first save)')
  return path


def check_workdir(workdir: str) -> List[str]:
  """Before a run starts or resumes in ``workdir``: the records it will read are intact.

  Returns notes to log: records that are damaged but rebuilt by the run (``summary.json``,
  rewritten when the run ends).

  Raises:
    ConfigError: ``workdir`` is a file, cannot be created or written, or is a directory that
      holds no ``config.json`` and files or directories that no run writes (a directory of
      the user's: a run there would write beside them; :data:`RUN_ENTRIES`).
    DataError: a damaged ``config.json`` (the config the run was trained under), or a
      ``metrics.jsonl`` line before its last that is not JSON (its last line may be cut by a
      kill; the run drops it). Nothing is replaced: the line names the file and what to do.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError('workdir', workdir, 'a directory for the run (it is a file)')
  existing = os.path.abspath(workdir)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise ConfigError('workdir', workdir, f'a directory for the run ({existing} is a file)')
  if not os.access(existing, os.W_OK | os.X_OK):
    raise ConfigError('workdir', workdir, f'a directory this user can write ({existing} is '
                      'not writable)')
  notes = []
  path = os.path.join(workdir, 'config.json')
  if os.path.isdir(workdir) and not os.path.exists(path):
    others = foreign_entries(workdir)
    if others:
      shown = ', '.join(repr(n) for n in others[:3]) + (', ...' if len(others) > 3 else '')
      raise ConfigError('workdir', workdir, f'a new or empty directory, or a run\'s (it holds '
                        f'no config.json and {len(others)} '
                        f'{"entry" if len(others) == 1 else "entries"} no run writes: {shown})')
  if os.path.exists(path):
    config_lib.read_run_record(
        path, 'restore it from a copy, or move it away to resume under this command\'s config '
        '(a checkpoint that does not fit it stops the run), or use a new --workdir')
  path = os.path.join(workdir, 'metrics.jsonl')
  if os.path.isfile(path):
    with open(path, 'rb') as f:
      lines = [line for line in f.read().split(b'\n') if line.strip()]
    for i, line in enumerate(lines[:-1]):
      try:
        json.loads(line)
      except ValueError as e:
        raise DataError(f'run record {path!r} line {i + 1} of {len(lines)} cannot be read '
                        f'({type(e).__name__}: {str(e).splitlines()[0]}): it holds the epochs '
                        'trained; restore it from a copy, or move it away (the run then '
                        'records the epochs from its checkpoint on)') from None
  path = os.path.join(workdir, 'summary.json')
  if os.path.isfile(path):
    try:
      with open(path) as f:
        json.load(f)
    except (OSError, ValueError) as e:
      notes.append(f'{path} cannot be read ({type(e).__name__}); the run rewrites it when it '
                   'ends')
  return notes


def remove_unused(workdir: str) -> None:
  """Remove ``workdir`` where a run that stopped before its first record (e.g. at its data)
  left only what it made to start: its lock file and empty directories. A file anywhere else
  in it (a ``config.json``, a checkpoint) keeps it; so does anything that cannot be removed."""
  if not os.path.isdir(workdir):
    return
  for root, _, names in os.walk(workdir):
    if any(root != workdir or n != LOCK_NAME for n in names):
      return
  try:
    if os.path.exists(os.path.join(workdir, LOCK_NAME)):
      os.remove(os.path.join(workdir, LOCK_NAME))
    for root, _, _ in os.walk(workdir, topdown=False):
      os.rmdir(root)
  except OSError:   # e.g. a link to a directory, or another process writing there now
    pass


def read_summary(workdir: str):
  """A finished run's ``summary.json``, or ``None`` where the run has none (not finished).

  Raises:
    DataError: a ``summary.json`` that cannot be read (not JSON, no ``final_test_accuracy``),
      naming the file and what to do; nothing is replaced.
  """
  path = os.path.join(workdir, 'summary.json')
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      summary = json.load(f)
    summary['final_test_accuracy']   # pylint: disable=pointless-statement
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise DataError(f'run record {path!r} of a finished run cannot be read '
                    f'({type(e).__name__}): remove it and rerun to rebuild it from the run\'s '
                    'checkpoint (the run resumes at its last step and evaluates again)'
                    ) from None
  return summary

