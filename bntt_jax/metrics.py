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

import tqdm

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

  def keep_steps_upto(self, step: int) -> None:
    """On resume: drop the per-step lines after ``step`` (they will be logged again)."""
    if not os.path.exists(self.path):
      return
    rows = [r for r in read_jsonl(self.path) if r.get('step', 0) <= step]
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


def hms(seconds: float) -> str:
  return str(datetime.timedelta(seconds=int(max(seconds, 0))))


class ProgressBar:
  """tqdm's bar (rate, ETA, the given fields) on a terminal; nothing otherwise, where
  ``train`` logs a line per host sync instead.

  ``update(step, **fields)`` with the global step; ``close()`` ends the bar's line (an epoch's
  summary follows) and the next ``update`` starts a new one where it stopped.
  """

  def __init__(self, total: int, initial: int = 0, enabled: Optional[bool] = None,
               stream: TextIO = sys.stderr):
    self.enabled = stream.isatty() if enabled is None else enabled
    self.total, self.stream, self._step = total, stream, initial
    self._bar = None

  def update(self, step: int, **fields) -> None:
    if not self.enabled:
      return
    if self._bar is None:
      self._bar = tqdm.tqdm(total=self.total, initial=self._step, file=self.stream,
                            dynamic_ncols=True, unit='step', smoothing=0.1)
    self._bar.set_postfix(fields, refresh=False)
    self._bar.update(step - self._bar.n)
    self._step = step

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None
