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
    ConfigError: ``workdir`` is a file, or cannot be created or written.
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

