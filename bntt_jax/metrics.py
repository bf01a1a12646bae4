"""What a run leaves for people and scripts: JSON lines, a summary, a progress bar.

Files (written by process 0 only):

* ``config.json``: the run's current config, and under ``history`` every config
  it was trained under with the step it took effect
  (``bntt_jax.config_lib.config_record``).
* ``metrics.jsonl``: one JSON object per epoch (0-indexed ``epoch``; ``step``
  = optimizer steps done; accuracies are fractions in [0, 1]; ``spike_rate``
  = spikes per neuron over all steps of one inference, spec S8, a number in
  [0, T]).
* ``summary.json``: the final result (see ``train.train_and_evaluate``).
"""
from __future__ import annotations

import datetime
import json
import math
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, TextIO

from bntt_jax import files


def _clean(obj):
  """JSON-safe: numpy scalars to Python, non-finite floats to null."""
  if isinstance(obj, dict):
    return {str(k): _clean(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_clean(v) for v in obj]
  if hasattr(obj, 'item') and getattr(obj, 'ndim', 1) == 0:
    obj = obj.item()
  if isinstance(obj, float) and not math.isfinite(obj):
    return None
  return obj


def write_json(path: str, obj: Dict[str, Any]) -> None:
  """Atomically (:func:`bntt_jax.files.atomic_write`): a killed run never leaves half a file."""
  text = json.dumps(_clean(obj), indent=2, sort_keys=False) + '\n'
  files.atomic_write(path, lambda f: f.write(text))


def read_json(path: str) -> Dict[str, Any]:
  with open(path) as f:
    return json.load(f)


def read_jsonl(path: str) -> List[Dict[str, Any]]:
  if not os.path.isfile(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if line:
        try:
          rows.append(json.loads(line))
        except json.JSONDecodeError:   # a line cut by a kill: drop it
          break
  return rows


class JsonlWriter:
  """Appends one JSON object per line to ``path``."""

  def __init__(self, path: str):
    self.path = path

  def keep_epochs_before(self, epoch: int) -> None:
    """On resume: drop lines of epochs that will be run again."""
    rows = [r for r in read_jsonl(self.path) if r.get('epoch', -1) < epoch]
    files.atomic_write(self.path, lambda f: f.writelines(json.dumps(r) + '\n' for r in rows))

  def write(self, row: Dict[str, Any]) -> None:
    with open(self.path, 'a') as f:
      f.write(json.dumps(_clean(row)) + '\n')
      f.flush()


def spike_rates(spike_sums: Sequence[float], neurons: Sequence[int], examples: float):
  """Network-wide and per-layer spike rates (spec S8) from summed spike counts.

  Args:
    spike_sums: per hidden layer, spikes summed over steps and examples.
    neurons: per hidden layer, neurons of one example.
    examples: number of examples behind the sums.
  Returns:
    ``(total spikes / total neurons, [per layer])``, spikes per neuron per
    inference, averaged over examples.
  """
  if examples <= 0:
    return float('nan'), [float('nan')] * len(neurons)
  per_layer = [float(s) / (n * examples) for s, n in zip(spike_sums, neurons)]
  return float(sum(spike_sums)) / (sum(neurons) * examples), per_layer


def _hms(seconds: float) -> str:
  return str(datetime.timedelta(seconds=int(max(seconds, 0))))


class ProgressBar:
  """A one-line bar with rate and ETA on a terminal; silent otherwise.

  ``update(step, **fields)`` with the global step; the ETA uses the rate of
  this process's steps after the first (which includes compilation).
  """

  def __init__(self, total: int, initial: int = 0, enabled: Optional[bool] = None,
               stream: TextIO = sys.stderr, width: int = 24):
    self.total, self.stream, self.width = total, stream, width
    self.enabled = stream.isatty() if enabled is None else enabled
    self._first: Optional[tuple] = None
    self._initial = initial
    self._shown = False

  def update(self, step: int, **fields) -> None:
    if not self.enabled:
      return
    now = time.perf_counter()
    if self._first is None:
      self._first = (step, now)
      eta = '?'
    else:
      done = step - self._first[0]
      rate = done / max(now - self._first[1], 1e-9)
      eta = _hms((self.total - step) / rate) if done > 0 else '?'
    frac = step / max(self.total, 1)
    filled = int(self.width * frac)
    bar = '#' * filled + '-' * (self.width - filled)
    extra = '  '.join(f'{k} {v}' for k, v in fields.items())
    self.stream.write(f'\r[{bar}] {step}/{self.total}  {extra}  ETA {eta}\x1b[K')
    self.stream.flush()
    self._shown = True

  def close(self) -> None:
    if self.enabled and self._shown:
      self.stream.write('\n')
      self.stream.flush()
      self._shown = False
