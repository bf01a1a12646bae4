"""DVS-CIFAR10 (Li et al. 2017): AEDAT 2.0 reader, event binning, cached frames.

The paper (supplementary section C, after Wu et al., AAAI 2019) downsamples the
128x128 recordings to 42x42 and splits each recording into 20 intervals whose
events are accumulated per polarity. This module turns the public release into
``float32 [N, T, 42, 42, 2]`` frames (batch-major; the network's ``frames``
encoding takes ``[B, T, H, W, C]``) and ``int32 [N]`` labels.

The public release
------------------
CIFAR10-DVS (Li, Liu, Ji, Li, Shi, Front. Neurosci. 11:309, 2017), figshare
article 4724671: one zip per class (``airplane.zip`` ... ``truck.zip``), each
unpacking to ``<class>/cifar10_<class>_<i>.aedat``, i = 0..999. The release's
README: recordings of CIFAR-10 images moving on an LCD, taken with a DVS128
(128x128), viewable in jAER with the DVS128 chip class. There is no official
train/test split; we draw a seeded per-class one (:func:`split_train_test`).
(The "TEBN split", i < 100 as test, is another convention.)

File format (read, not copied, from the sources below)
------------------------------------------------------
AEDAT 2.0, the jAER format (tonic issue #170: "The data in CIFAR10-DVS is in
aedat 2.0 format"; iniVation docs, "AEDAT 2.0" and "AEDAT File Formats"):

* a header of lines that start with ``#`` and end with CRLF; the first one is
  the version line ``#!AER-DAT2.0``;
* then events of 8 bytes: a 32-bit address and a 32-bit timestamp, both
  big-endian, timestamps in microseconds, in time order.

The address is interpreted by the jAER chip class, here DVS128 (SensorsINI/jaer,
``ch/unizh/ini/jaer/chip/retina/DVS128.java``, ``DVS128.Extractor``)::

    bit 0      raw polarity; jAER: "The ON events have raw polarity 0",
               its event type is (1 - addr) & 1, 1 = ON
    bits 1-7   raw x (mask 0x00FE); jAER flips it: x = 127 - raw x
    bits 8-14  raw y (mask 0x7F00); jAER keeps it, origin at the lower left
    bit 15     sync event from the external IN pin (0x8000), not a pixel
    bit 31     jAER special event (0x80000000), not a pixel

Special events are dropped; any other address bit set means the file is not a
DVS128 recording (or is corrupt) and is an error. (iniVation's AEDAT 1.0 page
says raw bit 0 = 1 is ON, which contradicts jAER's extractor; we follow jAER,
as spikingjelly and CAVIAR's ``dat2mat.m`` do.) Because a DVS128 address
never sets bits 16-30, the first event byte is never ``#`` and the end of the
header is unambiguous. A file without a version line is read as 2.0, as every
public reader of this dataset does; a 1.0 file (6-byte events) would then
almost surely fail the length or address-bit check rather than be misread.

Orientation. Public readers disagree on how raw (x, y) become image axes:

* spikingjelly (``datasets/cifar10_dvs.py``, ``_load_origin_data``) and an
  earlier tonic (``datasets/cifar10dvs.py``, ``load_origin_data``):
  ``x = 127 - raw y, y = 127 - raw x, p = 1 - raw bit``, citing
  jackd/events-tfds PR #1; their commented-out alternative ``x = 127 - raw x,
  y = raw y`` "will get the same data with dat2mat.m", i.e. jAER's view.
* jackd/events-tfds ``cifar10_dvs`` builder: jAER's view (``x = 127 - raw x``).
* tonic ``io.read_dvs_128``: ``x = raw y, y = raw x`` (no flips).
* tonic's current ``CIFAR10DVS`` reads an AEDAT 4.0 re-encoding made with
  iniVation's DV (figshare 38023437), not the public ``.aedat`` files.

Our default ``orientation='spikingjelly'`` follows the most used SNN pipeline,
so that frames (``y`` = row from the top, ``x`` = column) line up with the
literature; ``'jaer'`` gives jAER's view (``y`` counted from the bottom). The
polarity channel is ``p``: 0 = OFF, 1 = ON in both.

Timestamps are read unsigned and unwrapped (a drop of more than 2**31 us adds
2**32), so a recording that crosses jAER's 32-bit wrap keeps its order.

Why not tonic: installing tonic 1.7 pulls librosa, numba, llvmlite, soundfile,
soxr, expelliarmus, importRosbag and more, its CIFAR10DVS class reads only the
AEDAT 4.0 re-encoding, and its AEDAT 2.0 helper reads with ``np.fromfile``,
which silently drops a truncated last record. The reader here is ~60 lines of
vectorised numpy and reports truncation.

Frames
------
Time (``split_by``): ``'time'`` (default) cuts ``[t_first, t_last]`` into
``T`` equal intervals ``[t0 + k*span/T, t0 + (k+1)*span/T)``, the last one
closed so the last event counts; an event exactly on an edge opens the next
interval. Bins are computed in integer arithmetic (``(t - t0) * T // span``),
so edges are exact. A recording whose events share one timestamp puts them
all in bin 0. ``'count'``: ``T`` bins of equal event counts (sizes differ by
at most one, ``bin(i) = i * T // N`` over events in time order). spikingjelly
(``integrate_events_by_fixed_frames_number``) differs slightly: its 'number'
bins hold ``floor(N/T)`` events with the rest in the last, and in some
versions its 'time' bins are ``floor(span/T)`` wide with the rest in the last.

Space (``method``), 128 -> 42 is not an integer factor:

* ``'area'`` (default): area resampling of the per-bin 128x128 count frames,
  sum-preserving: output pixel k covers sensor coordinates
  ``[k*128/42, (k+1)*128/42)`` and each sensor pixel's count is shared among
  the output pixels its unit square overlaps, in proportion to the overlap
  (per axis; the weights are multiples of 1/42 and every sensor pixel's
  weights sum to 1). Equal to OpenCV's ``INTER_AREA`` times ``(128/42)**2``.
  Chosen because every output pixel integrates exactly the same sensor area
  and the event count per bin and polarity is kept; values are fractional.
* ``'floor'``: scale event coordinates, ``x' = floor(x * 42 / 128)``; integer
  counts, but 40 output rows/columns collect 3 sensor rows/columns and 2
  (indices 0 and 21) collect 4, a fixed stripe pattern of +33 % density.

The network reads counts as real-valued input currents either way (spec
section 8 counts its first layer as MACs).

Cache
-----
``load_dvs_cifar10(..., cache_dir=...)`` stores the frames of every readable
recording once, in two files named by a SHA-256 key over the preprocessing
settings (``timesteps``, ``size``, ``split_by``, ``method``, ``orientation``,
sensor size, :data:`READER_VERSION`) and the source listing (class folders,
relative paths, byte sizes, mtimes in ns):

* ``dvs_cifar10-<key>.frames.npy``: ``float32 [N, T, size, size, 2]``, read back
  memory-mapped;
* ``dvs_cifar10-<key>.meta.npz``: the key JSON, the listing index of each row,
  the labels, the class names and the files that could not be read (with the
  reason). Plain arrays only; both files load with ``allow_pickle=False``.

Both are written to a temporary file in ``cache_dir`` and renamed into place
(frames first, then meta, which marks the cache complete). Any change of
setting or source gives a new key, so the cache is rebuilt; old caches are left
for the user to delete. The train/test split is applied after loading, so
changing ``seed`` or ``train_fraction`` reuses the cache.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
import warnings
from typing import Sequence

import numpy as np

from bntt_jax import errors
from bntt_jax import files

# Bump whenever reading or binning changes the numbers: it is part of the cache key.
READER_VERSION = 1
SENSOR_SIZE = 128
SPLIT_BY = ('time', 'count')
METHODS = ('area', 'floor')
ORIENTATIONS = ('spikingjelly', 'jaer')
ON_ERROR = ('stop', 'skip')
DEFAULT_METHOD = 'area'
DEFAULT_ORIENTATION = 'spikingjelly'
EXTENSION = '.aedat'
CACHE_PREFIX = 'dvs_cifar10-'

EVENT_DTYPE = np.dtype([('t', np.int64), ('x', np.int16), ('y', np.int16), ('p', np.int8)])

# AEDAT 2.0 event: big-endian uint32 address, uint32 timestamp (us).
_RAW_DTYPE = np.dtype([('addr', '>u4'), ('t', '>u4')])
_VERSION_TAG = b'#!AER-DAT'
# DVS128 raw address (jAER DVS128.Extractor).
_POL_MASK = 0x0001
_X_MASK, _X_SHIFT = 0x00FE, 1
_Y_MASK, _Y_SHIFT = 0x7F00, 8
_SYNC_BIT = 0x8000
_SPECIAL_BIT = 0x80000000
_KNOWN_BITS = _POL_MASK | _X_MASK | _Y_MASK | _SYNC_BIT | _SPECIAL_BIT

_log = logging.getLogger(__name__)


class RecordingError(ValueError):
  """A recording that cannot be read; the message is one line naming the file."""


# -- reading ------------------------------------------------------------------


def _header_end(buf: bytes, path: str) -> int:
  """Byte offset of the first event; checks the version line if there is one."""
  pos = 0
  while pos < len(buf) and buf[pos] == ord('#'):
    end = buf.find(b'\n', pos)
    if end < 0:
      raise RecordingError(f'{path}: truncated in the AEDAT header (a "#" line has no end)')
    line = buf[pos:end + 1]
    if pos == 0 and line.startswith(_VERSION_TAG):
      version = line[len(_VERSION_TAG):].strip().decode('ascii', 'replace')
      if version != '2.0':
        raise RecordingError(f'{path}: AEDAT {version} is not read here; only AEDAT 2.0 '
                             '(the public CIFAR10-DVS release) is')
    pos = end + 1
  return pos


def _unwrap_timestamps(t: np.ndarray) -> np.ndarray:
  """int64 timestamps from uint32 ones, adding 2**32 after each 32-bit wrap."""
  t = t.astype(np.int64)
  if t.size < 2:
    return t
  wraps = np.concatenate([[0], np.cumsum(np.diff(t) < -(1 << 31))])
  return t + (wraps << 32)


def read_aedat(path, *, orientation: str = DEFAULT_ORIENTATION) -> np.ndarray:
  """Events of one DVS128 AEDAT 2.0 recording.

  Args:
    path: the ``.aedat`` file.
    orientation: ``'spikingjelly'`` (``x = 127 - raw y``, ``y = 127 - raw x``)
      or ``'jaer'`` (``x = 127 - raw x``, ``y = raw y``); see the module doc.

  Returns:
    A structured array of :data:`EVENT_DTYPE` in file order: ``t`` (int64 us,
    unwrapped), ``x``, ``y`` (0..127), ``p`` (1 = ON, 0 = OFF). Sync and
    special events are dropped.

  Raises:
    RecordingError: truncated or malformed file, another AEDAT version, or
      address bits a DVS128 never sets. The message names the file.
  """
  errors.check_one_of('orientation', orientation, ORIENTATIONS)
  path = os.fspath(path)
  try:
    with open(path, 'rb') as f:
      buf = f.read()
  except OSError as e:
    raise RecordingError(f'{path}: cannot be read ({e.strerror or e})') from e
  start = _header_end(buf, path)
  body = len(buf) - start
  if body % _RAW_DTYPE.itemsize:
    raise RecordingError(f'{path}: truncated AEDAT 2.0 data: {body} bytes after the header '
                         f'is not a whole number of {_RAW_DTYPE.itemsize}-byte events')
  raw = np.frombuffer(buf, _RAW_DTYPE, offset=start)
  addr = raw['addr'].astype(np.int64)
  bad = np.flatnonzero(addr & ~_KNOWN_BITS)
  if bad.size:
    raise RecordingError(f'{path}: event {bad[0]} has address {addr[bad[0]]:#010x} with bits a '
                         'DVS128 never sets (not a DVS128 AEDAT 2.0 recording, or corrupt)')
  pixel = (addr & (_SYNC_BIT | _SPECIAL_BIT)) == 0
  addr = addr[pixel]
  raw_x = (addr & _X_MASK) >> _X_SHIFT
  raw_y = (addr & _Y_MASK) >> _Y_SHIFT
  events = np.empty(addr.size, EVENT_DTYPE)
  events['t'] = _unwrap_timestamps(raw['t'][pixel])
  if orientation == 'spikingjelly':
    events['x'] = SENSOR_SIZE - 1 - raw_y
    events['y'] = SENSOR_SIZE - 1 - raw_x
  else:
    events['x'] = SENSOR_SIZE - 1 - raw_x
    events['y'] = raw_y
  events['p'] = 1 - (addr & _POL_MASK)
  return events


# -- binning ------------------------------------------------------------------


def time_bins(t: np.ndarray, timesteps: int, split_by: str) -> np.ndarray:
  """The interval ``0..timesteps-1`` of each event (int64), see the module doc."""
  errors.check_one_of('split_by', split_by, SPLIT_BY)
  t = np.asarray(t, np.int64)
  n = t.size
  if split_by == 'time':
    if n == 0:
      return np.zeros(0, np.int64)
    t0 = t.min()
    span = t.max() - t0
    if span == 0:
      return np.zeros(n, np.int64)
    return np.minimum((t - t0) * timesteps // span, timesteps - 1)
  bins = np.empty(n, np.int64)   # 'count'
  bins[np.argsort(t, kind='stable')] = np.arange(n, dtype=np.int64) * timesteps // max(n, 1)
  return bins


def area_weights(sensor_size: int, size: int) -> np.ndarray:
  """``[size, sensor_size]`` overlap of output pixel k with sensor pixel x.

  In units of 1/size the sensor pixel is ``[x*size, (x+1)*size)`` and the
  output pixel ``[k*sensor, (k+1)*sensor)``; every column sums to 1.
  """
  k = np.arange(size)[:, None]
  x = np.arange(sensor_size)[None, :]
  lo = np.maximum(x * size, k * sensor_size)
  hi = np.minimum((x + 1) * size, (k + 1) * sensor_size)
  return np.clip(hi - lo, 0, None) / size


def _is_int(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_settings(timesteps, size, split_by, sensor_size, method) -> None:
  if not _is_int(timesteps) or timesteps < 1:
    raise ValueError(f'timesteps {timesteps!r} is not accepted: it must be an integer >= 1')
  if not _is_int(size) or not 1 <= size <= sensor_size:
    raise ValueError(f'size {size!r} is not accepted: it must be an integer in 1..{sensor_size}')
  errors.check_one_of('split_by', split_by, SPLIT_BY)
  errors.check_one_of('method', method, METHODS)


def events_to_frames(events: np.ndarray, timesteps: int, size: int, split_by: str,
                     sensor_size: int = SENSOR_SIZE, *, method: str = DEFAULT_METHOD
                     ) -> np.ndarray:
  """Accumulate events into ``float32 [timesteps, size, size, 2]`` frames.

  Axes: time bin, row (``y``), column (``x``), polarity (0 OFF, 1 ON).

  Args:
    events: structured array with fields ``t``, ``x``, ``y``, ``p`` (as
      :func:`read_aedat` returns), coordinates in ``0..sensor_size-1``.
    timesteps: number of intervals T.
    size: output side (42 for the paper).
    split_by: ``'time'`` (equal durations) or ``'count'`` (equal event counts).
    sensor_size: input side (128 for the DVS128).
    method: ``'area'`` (sum-preserving area resampling) or ``'floor'``
      (``x' = floor(x * size / sensor_size)``); see the module doc.

  No events give all-zero frames; the dataset loader rejects such recordings.
  """
  _check_settings(timesteps, size, split_by, sensor_size, method)
  x = events['x'].astype(np.int64)
  y = events['y'].astype(np.int64)
  p = events['p'].astype(np.int64)
  if x.size:
    lo = min(x.min(), y.min())
    hi = max(x.max(), y.max())
    if lo < 0 or hi >= sensor_size:
      raise ValueError(f'event coordinates span {lo}..{hi}, outside 0..{sensor_size - 1}')
    if p.min() < 0 or p.max() > 1:
      raise ValueError(f'event polarities span {p.min()}..{p.max()}, not 0/1')
  b = time_bins(events['t'], timesteps, split_by)
  if method == 'floor':
    xs, ys = x * size // sensor_size, y * size // sensor_size
    counts = np.bincount(((b * size + ys) * size + xs) * 2 + p,
                         minlength=timesteps * size * size * 2)
    return counts.reshape(timesteps, size, size, 2).astype(np.float32)
  counts = np.bincount(((b * sensor_size + y) * sensor_size + x) * 2 + p,
                       minlength=timesteps * sensor_size * sensor_size * 2)
  full = counts.reshape(timesteps, sensor_size, sensor_size, 2).astype(np.float64)
  a = area_weights(sensor_size, size)
  # [T, 2, S, S] -> a @ frame @ a.T per (bin, polarity): rows then columns.
  out = a @ full.transpose(0, 3, 1, 2) @ a.T
  return out.transpose(0, 2, 3, 1).astype(np.float32)


# -- the dataset --------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Listing:
  """The recordings under a root, in class-major order.

  Attributes:
    root: the dataset folder.
    classes: sorted class-folder names; label = index here.
    files: ``'<class>/<file>.aedat'`` relative paths, sorted within a class.
    labels: ``int32 [N]``.
    sizes: byte sizes ``[N]``.
    mtimes: modification times in ns ``[N]``.
  """
  root: str
  classes: tuple
  files: tuple
  labels: np.ndarray
  sizes: tuple
  mtimes: tuple


def list_recordings(root) -> Listing:
  """Class folders of ``root`` holding ``.aedat`` files, and their files."""
  root = os.fspath(root)
  if not os.path.isdir(root):
    raise ValueError(f'DVS-CIFAR10 root {root!r} is not a directory')
  classes, files, labels, sizes, mtimes = [], [], [], [], []
  for name in sorted(os.listdir(root)):
    folder = os.path.join(root, name)
    if name.startswith('.') or not os.path.isdir(folder):
      continue
    members = sorted(f for f in os.listdir(folder) if f.lower().endswith(EXTENSION))
    if not members:
      continue
    for f in members:
      st = os.stat(os.path.join(folder, f))
      files.append(f'{name}/{f}')
      labels.append(len(classes))
      sizes.append(int(st.st_size))
      mtimes.append(int(st.st_mtime_ns))
    classes.append(name)
  if not classes:
    raise ValueError(f'DVS-CIFAR10 root {root!r} has no class folders with {EXTENSION} files')
  return Listing(root, tuple(classes), tuple(files), np.asarray(labels, np.int32), tuple(sizes),
                 tuple(mtimes))


def split_train_test(labels: np.ndarray, train_fraction: float, seed: int) -> np.ndarray:
  """Seeded per-class split: a bool ``[N]`` mask, True for training.

  Class c keeps ``round(train_fraction * n_c)`` recordings for training (at
  least one each side when ``0 < train_fraction < 1`` and ``n_c >= 2``),
  chosen by ``default_rng([seed, c]).permutation(n_c)``, so one class's draw
  does not depend on the others.
  """
  if not 0.0 <= train_fraction <= 1.0:
    raise ValueError(f'train_fraction {train_fraction!r} is not accepted: it must be in [0, 1]')
  if not _is_int(seed) or seed < 0:
    raise ValueError(f'seed {seed!r} is not accepted: it must be an integer >= 0')
  labels = np.asarray(labels)
  is_train = np.zeros(labels.shape, bool)
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    n = idx.size
    n_train = int(np.floor(train_fraction * n + 0.5))
    if 0.0 < train_fraction < 1.0 and n >= 2:
      n_train = min(max(n_train, 1), n - 1)
    perm = np.random.default_rng([int(seed), int(c)]).permutation(n)
    is_train[idx[perm[:n_train]]] = True
  return is_train


def _cache_key(listing: Listing, settings: dict) -> str:
  blob = {'settings': settings, 'classes': list(listing.classes),
          'sources': [[f, s, m] for f, s, m in zip(listing.files, listing.sizes, listing.mtimes)]}
  return json.dumps(blob, sort_keys=True, separators=(',', ':'))


def _cache_paths(cache_dir: str, key: str) -> tuple:
  digest = hashlib.sha256(key.encode()).hexdigest()[:24]
  stem = os.path.join(cache_dir, CACHE_PREFIX + digest)
  return stem + '.frames.npy', stem + '.meta.npz'


@dataclasses.dataclass
class _Preprocessed:
  frames: np.ndarray      # float32 [M, T, size, size, 2], rows of the readable recordings
  index: np.ndarray       # int64 [M], each row's position in the listing
  failed: list            # [(relative path, reason)]


def read_frame_cache(frames_path: str, meta_path: str, key: str, shape_tail: tuple, what: str,
                     arrays: Sequence[str] = ()):
  """A frames cache written by :func:`write_frame_cache` for the settings ``key``:
  ``(frames float32 [M, *shape_tail] memory-mapped, index int64 [M], failed [(path, reason)],
  {name: array} of ``arrays``)``, or ``None`` (absent, made for other settings, unreadable or
  of another shape: logged, and the caller rebuilds it). ``what`` names the cache in the log."""
  if not (os.path.exists(frames_path) and os.path.exists(meta_path)):
    return None
  try:
    with np.load(meta_path, allow_pickle=False) as meta:
      if str(meta['key']) != key:
        _log.warning('%s cache %s was made for other settings; rebuilding', what, meta_path)
        return None
      index = meta['index'].astype(np.int64)
      failed = list(zip(meta['failed'].tolist(), meta['failed_reasons'].tolist()))
      extra = {name: meta[name] for name in arrays}
    frames = np.load(frames_path, mmap_mode='r', allow_pickle=False)
  except (OSError, ValueError, KeyError) as e:
    _log.warning('%s cache %s cannot be read (%s); rebuilding', what, meta_path, e)
    return None
  if frames.dtype != np.float32 or frames.shape != (index.size,) + shape_tail:
    _log.warning('%s cache %s holds %s %s, not the expected shape; rebuilding', what,
                 frames_path, frames.dtype, frames.shape)
    return None
  return frames, index, failed, extra


def write_frame_cache(frames_path: str, meta_path: str, key: str, frames: np.ndarray,
                      index: np.ndarray, failed: Sequence, **arrays) -> None:
  """The frames and their metadata (``key``, ``index``, ``failed``, ``arrays``) as numpy
  files, each written atomically (no pickle)."""
  os.makedirs(os.path.dirname(frames_path), exist_ok=True)
  files.atomic_write(frames_path, lambda f: np.save(f, frames, allow_pickle=False), binary=True)
  files.atomic_write(meta_path, lambda f: np.savez(
      f, key=np.asarray(key), index=index, failed=np.asarray([p for p, _ in failed], dtype=str),
      failed_reasons=np.asarray([r for _, r in failed], dtype=str), **arrays), binary=True)


def _load_cache(frames_path: str, meta_path: str, key: str, shape_tail: tuple):
  cached = read_frame_cache(frames_path, meta_path, key, shape_tail, 'DVS')
  return None if cached is None else _Preprocessed(*cached[:3])


def _save_cache(frames_path: str, meta_path: str, key: str, listing: Listing,
                pre: _Preprocessed) -> None:
  write_frame_cache(frames_path, meta_path, key, pre.frames, pre.index, pre.failed,
                    labels=listing.labels[pre.index], classes=np.asarray(listing.classes))


def _preprocess(listing: Listing, timesteps: int, size: int, split_by: str, on_error: str,
                method: str, orientation: str) -> _Preprocessed:
  n = len(listing.files)
  frames = np.empty((n, timesteps, size, size, 2), np.float32)
  index, failed = [], []
  start = time.monotonic()
  for i, rel in enumerate(listing.files):
    path = os.path.join(listing.root, rel)
    try:
      events = read_aedat(path, orientation=orientation)
      if events.size == 0:
        raise RecordingError(f'{path}: holds no DVS events')
    except RecordingError as e:
      if on_error == 'stop':
        raise
      failed.append((rel, str(e)))
      continue
    frames[len(index)] = events_to_frames(events, timesteps, size, split_by, SENSOR_SIZE,
                                          method=method)
    index.append(i)
    if (i + 1) % 1000 == 0:
      _log.info('DVS-CIFAR10: %d/%d recordings in %.0f s', i + 1, n, time.monotonic() - start)
  # A prefix view, no copy, when recordings were skipped.
  return _Preprocessed(frames[:len(index)], np.asarray(index, np.int64), failed)


def _report_failures(failed: Sequence, on_error: str) -> None:
  if not failed:
    return
  if on_error == 'stop':
    raise RecordingError(failed[0][1] + (f' (and {len(failed) - 1} more unreadable recordings)'
                                         if len(failed) > 1 else ''))
  for _, reason in failed:
    warnings.warn(f'skipping DVS recording: {reason}', RuntimeWarning, stacklevel=3)


def load_dvs_cifar10(root, *, timesteps: int = 20, size: int = 42, split_by: str = 'time',
                     train_fraction: float = 0.9, seed: int = 0, cache_dir=None,
                     on_error: str = 'stop', method: str = DEFAULT_METHOD,
                     orientation: str = DEFAULT_ORIENTATION):
  """DVS-CIFAR10 as frames, split per class into train and test.

  Args:
    root: the folder holding one sub-folder of ``.aedat`` recordings per class
      (the public release unpacked); label = index of the sorted folder names.
    timesteps: intervals per recording (T).
    size: output side; 128 -> ``size`` by area resampling (module doc).
    split_by: ``'time'`` (equal durations) or ``'count'`` (equal event counts).
    train_fraction: share of each class used for training.
    seed: seed of the per-class split (:func:`split_train_test`).
    cache_dir: where preprocessed frames are kept (None: no cache).
    on_error: a corrupt or truncated recording stops the run (``'stop'``,
      :class:`RecordingError` naming the file) or is skipped with a warning
      naming it (``'skip'``).
    method: the resampling, ``'area'`` or ``'floor'`` (:func:`events_to_frames`).
    orientation: the sensor axes, ``'spikingjelly'`` or ``'jaer'`` (:func:`read_aedat`).

  Returns:
    ``((train_frames, train_labels), (test_frames, test_labels))``: frames
    ``float32 [N, T, size, size, 2]`` (event counts; axes example, time bin,
    row, column, polarity OFF/ON), labels ``int32 [N]``, in listing order.
  """
  _check_settings(timesteps, size, split_by, SENSOR_SIZE, method)
  errors.check_one_of('on_error', on_error, ON_ERROR)
  errors.check_one_of('orientation', orientation, ORIENTATIONS)
  listing = list_recordings(root)
  is_train = split_train_test(listing.labels, train_fraction, seed)
  settings = dict(reader_version=READER_VERSION, timesteps=int(timesteps), size=int(size),
                  split_by=split_by, method=method, orientation=orientation,
                  sensor_size=SENSOR_SIZE, dtype='float32')
  shape_tail = (timesteps, size, size, 2)
  pre = None
  if cache_dir is not None:
    key = _cache_key(listing, settings)
    frames_path, meta_path = _cache_paths(os.fspath(cache_dir), key)
    pre = _load_cache(frames_path, meta_path, key, shape_tail)
    if pre is not None:
      _log.info('DVS-CIFAR10 frames from cache %s', frames_path)
  if pre is None:
    pre = _preprocess(listing, timesteps, size, split_by, on_error, method, orientation)
    if cache_dir is not None:
      _save_cache(frames_path, meta_path, key, listing, pre)
  _report_failures(pre.failed, on_error)
  if pre.index.size == 0:
    raise ValueError(f'DVS-CIFAR10 root {listing.root!r}: no recording could be read')
  labels = listing.labels[pre.index]
  row_train = is_train[pre.index]

  def take(mask):
    # Fancy indexing copies out of the memory map; the rest stays on disk.
    return np.ascontiguousarray(pre.frames[mask], np.float32), labels[mask].astype(np.int32)

  return take(row_train), take(~row_train)
