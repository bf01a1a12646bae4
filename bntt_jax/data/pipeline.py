"""Batches for one host: a pure function of (seed, global step), and padded evaluation.

Training batch of global step ``s`` (``e, i = divmod(s, steps_per_epoch)``):
the examples ``perm_e[i * B:(i + 1) * B]`` of the epoch's permutation
``perm_e = permutation(seed, e)``, augmented with draws from
``rng(seed, s)`` made for the whole global batch. Each host then keeps its own
``B / process_count`` consecutive rows. So the data a step sees depend on
neither the number of hosts nor where a run was interrupted: a run resumed at
step ``s`` continues exactly as the uninterrupted one. The last incomplete
training batch of an epoch is dropped (a different remainder each epoch).

Evaluation covers every example exactly once: the split is padded to a
multiple of the global batch and a ``mask`` marks the real examples.

A batch is a dict of numpy arrays (the host's rows):
``image float32 [b, ...]``, ``label int32 [b]``, ``index int32 [b]`` (the
example's index in its split: the id of its Poisson draws) and, in
evaluation, ``mask float32 [b]``.
"""
from __future__ import annotations

import queue
import threading
from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from bntt_jax import errors
from bntt_jax.data import augment as augment_lib

Batch = Dict[str, np.ndarray]

AUGMENTATIONS = ('none', 'crop_flip')
# Domain tags keep the permutation and augmentation streams independent.
_PERM, _AUG = 0, 1


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  """The order of the ``n`` training examples in ``epoch``: ``int64 [n]``."""
  return np.random.default_rng([seed, _PERM, epoch]).permutation(n)


def host_rows(global_batch: int, process_index: int, process_count: int) -> slice:
  """The rows of the global batch that host ``process_index`` builds."""
  if global_batch % process_count:
    raise ValueError(f'global batch {global_batch} does not split over {process_count} hosts')
  local = global_batch // process_count
  return slice(process_index * local, (process_index + 1) * local)


class TrainPipeline:
  """Training batches by global step.

  Args:
    x: ``uint8 [N, H, W, C]`` images, or ``float32 [N, T, H, W, C]`` frames.
    y: ``int32 [N]`` labels.
    global_batch: examples per step over all hosts.
    seed: the run's seed.
    augment: ``none`` or ``crop_flip`` (images only).
    crop_padding: zero padding of the random crop, pixels.
    mean, std: per-channel normalisation (``None``: use values as they are).
  """

  def __init__(self, x: np.ndarray, y: np.ndarray, *, global_batch: int, seed: int,
               augment: str = 'none', crop_padding: int = 4,
               mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
               process_index: int = 0, process_count: int = 1):
    errors.check_one_of('augmentation', augment, AUGMENTATIONS)
    if augment != 'none' and x.ndim != 4:
      raise ValueError(f'augmentation {augment!r} needs images [N, H, W, C], not {x.shape}')
    if len(y) < global_batch:
      raise ValueError(f'batch size {global_batch} is larger than the {len(y)} training examples')
    self.x, self.y = x, y
    self.global_batch, self.seed = global_batch, seed
    self.augment, self.pad = augment, crop_padding
    self.mean, self.std = mean, std
    self.rows = host_rows(global_batch, process_index, process_count)
    self._perm: Tuple[int, Optional[np.ndarray]] = (-1, None)

  @property
  def steps_per_epoch(self) -> int:
    return len(self.y) // self.global_batch

  def _permutation(self, epoch: int) -> np.ndarray:
    if self._perm[0] != epoch:
      self._perm = (epoch, epoch_permutation(self.seed, epoch, len(self.y)))
    return self._perm[1]

  def batch(self, step: int) -> Batch:
    """This host's rows of the batch of global step ``step``."""
    epoch, i = divmod(step, self.steps_per_epoch)
    b = self.global_batch
    idx = self._permutation(epoch)[i * b:(i + 1) * b][self.rows]
    x = self.x[idx]
    if self.augment == 'crop_flip':
      rng = np.random.default_rng([self.seed, _AUG, step])
      oy, ox, flip = (a[self.rows] for a in augment_lib.draw_crop_flip(rng, b, self.pad))
      x = augment_lib.crop_flip(x, oy, ox, flip, self.pad)
    return {'image': augment_lib.normalize(x, self.mean, self.std),
            'label': self.y[idx].astype(np.int32), 'index': idx.astype(np.int32)}

  def iterate(self, start: int, stop: int, prefetch: int = 0) -> Iterator[Batch]:
    """Batches of steps ``start .. stop - 1``, built ``prefetch`` ahead in a thread."""
    gen = (self.batch(s) for s in range(start, stop))
    return prefetch_iterator(gen, prefetch) if prefetch > 0 else gen


def num_eval_batches(n: int, global_batch: int) -> int:
  return -(-n // global_batch)


def eval_batches(x: np.ndarray, y: np.ndarray, *, global_batch: int,
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                 process_index: int = 0, process_count: int = 1) -> Iterator[Batch]:
  """Every example once, in order; the last global batch is padded (``mask`` 0)."""
  n = len(y)
  rows = host_rows(global_batch, process_index, process_count)
  for start in range(0, num_eval_batches(n, global_batch) * global_batch, global_batch):
    gidx = np.arange(start, start + global_batch)[rows]
    mask = gidx < n
    idx = np.where(mask, gidx, 0)
    xb = augment_lib.normalize(x[idx], mean, std)
    yield {'image': xb, 'label': np.where(mask, y[idx], 0).astype(np.int32),
           'index': gidx.astype(np.int32), 'mask': mask.astype(np.float32)}


def prefetch_iterator(it: Iterator, size: int) -> Iterator:
  """Run ``it`` in a daemon thread, ``size`` items ahead (numpy releases the GIL)."""
  q: queue.Queue = queue.Queue(maxsize=size)
  done = object()
  stop = threading.Event()

  def put(item) -> bool:
    while not stop.is_set():
      try:
        q.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def worker():
    try:
      for item in it:
        if not put(item):
          return
      put(done)
    except BaseException as e:  # pylint: disable=broad-except
      put(e)

  threading.Thread(target=worker, daemon=True).start()

  def consume():
    try:
      while True:
        item = q.get()
        if item is done:
          return
        if isinstance(item, BaseException):
          raise item
        yield item
    finally:
      stop.set()
  return consume()
