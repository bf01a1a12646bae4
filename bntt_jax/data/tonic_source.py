"""Neuromorphic benchmarks through tonic: DVS128 Gesture, N-MNIST, SHD, CIFAR10-DVS.

``load(name, data_dir, ...)`` reads one of the public releases with tonic's own
dataset classes (``tonic.datasets.DVSGesture``, ``NMNIST``, ``SHD``,
``CIFAR10DVS``; tonic >= 1.7, ``pip install "bntt_jax[events]"``), bins each
sample's events into ``T`` frames, optionally downsamples them, caches the frames
as numpy files and returns them batch-major:

=============  =====================  ==============  =======  ===================
name           tonic class            frames          classes  split
=============  =====================  ==============  =======  ===================
dvsgesture     DVSGesture             [T, s, s, 2]    11       the release's
nmnist         NMNIST                 [T, s, s, 2]    10       the release's
shd            SHD                    [T, c]          20       the release's
cifar10dvs     CIFAR10DVS             [T, s, s, 2]    10       seeded, per class
=============  =====================  ==============  =======  ===================

``s`` is ``size`` (the sensor side, 128 or 34, when not set), ``c`` is ``size``
channels (700 when not set); the last axis of camera frames is the polarity
(0 OFF, 1 ON), rows are tonic's ``y``, columns its ``x``. Frames are event counts,
fed to the network as input currents (``model.encoding='frames'``), no Poisson
coding, exactly as :mod:`bntt_jax.data.dvs` does for DVS-CIFAR10.

Where the files must be (``data_dir`` is tonic's ``save_to``)
------------------------------------------------------------
tonic puts each dataset in ``<save_to>/<ClassName>/`` and reads, per split:

* DVSGesture: ``DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy``
  and ``ibmGestureTest/...`` (tonic's preprocessed release, figshare 38022171 /
  38020584: one ``[N, 4]`` array ``x, y, p, t`` per gesture, ``t`` in ms);
* NMNIST: ``NMNIST/Train/<digit>/<id>.bin``, ``NMNIST/Test/...`` (Orchard et al.
  2015, 5-byte events: x, y, polarity bit + 23-bit timestamp in us);
* SHD: ``SHD/shd_train.h5``, ``SHD/shd_test.h5`` (Cramer et al. 2020: ragged
  ``spikes/times`` in s, ``spikes/units`` 0..699, ``labels``);
* CIFAR10DVS: ``CIFAR10DVS/<class>/*.aedat4`` (tonic's AEDAT 4.0 re-encoding of
  the release, figshare 38023437; reading it needs the ``aedat`` package).

tonic decides that a dataset is present when its downloaded archive is there and
the folder holds at least a release's worth of files (100 ``.npy``, 10000
``.bin``, 1000 ``.aedat4``), and downloads it otherwise. Here that check is
replaced (and only that: the listing and the reading are tonic's) by: the split's
extracted folder holds at least one file of its kind (the ``.h5`` file for SHD),
archive or not. A dataset that is absent is then a one-line :class:`DataError`
naming the folder, unless ``download`` is set: then tonic's own ``download()``
fetches the archive into ``data_dir`` and checks its md5.

``data.download`` defaults to True in the config schema (for tfds); the configs of
these datasets (``configs/dvs_gesture.py``, ``nmnist.py``, ``shd.py``) set it to
False, so that a run never starts a multi-GB download unasked;
``--config.data.download=True`` lets tonic fetch it.

Frames
------
``split_by`` (each sample's events, ``t`` in us as tonic gives it):

* ``'time'``: ``T`` equal intervals of ``[t_first, t_last]``, integer edges, the
  last closed (:func:`bntt_jax.data.dvs.time_bins`, the DVS-CIFAR10 rule);
* ``'count'``: ``T`` bins of equal event counts (the same module's rule);
* ``'window'``: ``T`` bins of ``window_us / T`` over ``[t0, t0 + window_us)``;
  later events are dropped. ``t0`` is 0 for SHD (its times count from the start
  of the audio) and the sample's first event for the cameras. This is the fixed
  time step of most published baselines (e.g. 10 ms bins over 1 s of SHD).

``size`` downsamples the sensor by ``method``: ``'area'`` (sum-preserving area
resampling, :func:`bntt_jax.data.dvs.area_weights`; integer factors are plain sums
over blocks) or ``'floor'`` (``x' = floor(x * size / sensor)``), as in the DVS path.
SHD's channels are resampled the same way along their one axis.

The DVS-CIFAR10 frames through tonic
------------------------------------
Given the same events, the frames here equal :func:`bntt_jax.data.dvs.events_to_frames`
(same binning, same resampling; ``tests/test_tonic.py`` checks it on recordings
written in both formats). What can differ is the events: tonic's ``CIFAR10DVS`` reads
the AEDAT 4.0 re-encoding made with iniVation's DV, whose origin is the top left; we take
its axes to be ``x = 127 - raw x``, ``y = 127 - raw y`` of the DVS128 address (jAER's
view with its bottom-left origin moved to the top left). That is an assumption, not
checked against the real files, which cannot be fetched on this machine. Our reader's default
``orientation='spikingjelly'`` is that view transposed; ``orientation='spikingjelly'``
here transposes tonic's frames to it, ``'tonic'`` keeps them as read. Timestamps
differ by an offset at most, which the binning ignores (it counts from each
sample's first event).

Cache
-----
With ``cache_dir`` set, each split's frames are stored once, in two files named by
a SHA-256 key over every setting (dataset, split, ``timesteps``, ``size``,
``split_by``, ``window_us``, ``method``, ``orientation``, the N-MNIST flags,
:data:`READER_VERSION`, tonic's version) and the source listing (relative paths,
byte sizes, mtimes in ns):

* ``tonic_<name>-<key>.frames.npy``: ``float32 [N, ...]``, read back memory-mapped;
* ``tonic_<name>-<key>.meta.npz``: the key, the labels, each row's sample index and
  the samples that could not be read (with the reason).

Both load with ``allow_pickle=False``; they are written to a temporary file and
renamed into place (frames first, then meta, which marks the entry complete). The
CIFAR10-DVS split is drawn after loading, so ``seed``/``train_fraction`` reuse it.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import logging
import os
import time
import warnings
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from bntt_jax import errors
from bntt_jax import files
from bntt_jax.data import dvs
from bntt_jax.errors import ConfigError, DataError

# Bump whenever reading or binning changes the numbers: it is part of the cache key.
READER_VERSION = 1
SPLIT_BY = ('time', 'count', 'window')
METHODS = dvs.METHODS
ORIENTATIONS = ('tonic', 'spikingjelly')
ON_ERROR = dvs.ON_ERROR
INSTALL_HINT = 'pip install "bntt_jax[events]" (tonic>=1.7)'

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Spec:
  """One dataset as tonic lays it out.

  Attributes:
    tonic_class: the class in ``tonic.datasets`` (also its folder under ``save_to``).
    sensor: tonic's ``sensor_size``, ``(W, H, P)``.
    num_classes: labels ``0..num_classes-1``.
    splits: tonic's ``train`` argument per split (None: the class has no split, one
      pool that is split here by seed).
    present: per split, the path under ``<save_to>/<tonic_class>`` that holds it and
      the file ending that must be found in it (``''``: the path is that file).
    layout: what ``data_dir`` must hold, for errors.
    time_origin: ``'zero'`` (the ``window`` starts at t = 0) or ``'first'`` (at the
      sample's first event).
    default_timesteps: T when ``timesteps`` is not set.
  """
  tonic_class: str
  sensor: Tuple[int, int, int]
  num_classes: int
  splits: Optional[Dict[str, bool]]
  present: Dict[str, Tuple[str, str]]
  layout: str
  time_origin: str = 'first'
  default_timesteps: int = 20
  extra_options: Tuple[str, ...] = ()

  @property
  def one_d(self) -> bool:
    return self.sensor[1] == 1


SPECS: Dict[str, Spec] = {
    'dvsgesture': Spec(
        'DVSGesture', (128, 128, 2), 11, {'train': True, 'test': False},
        {'train': ('ibmGestureTrain', '.npy'), 'test': ('ibmGestureTest', '.npy')},
        'DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy and '
        'DVSGesture/ibmGestureTest/... (tonic\'s DVSGesture release, extracted)'),
    'nmnist': Spec(
        'NMNIST', (34, 34, 2), 10, {'train': True, 'test': False},
        {'train': ('Train', '.bin'), 'test': ('Test', '.bin')},
        'NMNIST/Train/<digit>/<id>.bin and NMNIST/Test/... (the N-MNIST release, extracted)',
        default_timesteps=10, extra_options=('first_saccade_only', 'stabilize')),
    'shd': Spec(
        'SHD', (700, 1, 1), 20, {'train': True, 'test': False},
        {'train': ('shd_train.h5', ''), 'test': ('shd_test.h5', '')},
        'SHD/shd_train.h5 and SHD/shd_test.h5 (the SHD release, unzipped)',
        time_origin='zero', default_timesteps=100),
    'cifar10dvs': Spec(
        'CIFAR10DVS', (128, 128, 2), 10, None, {'all': ('', '.aedat4')},
        'CIFAR10DVS/<class>/*.aedat4 (tonic\'s AEDAT 4.0 CIFAR10-DVS, extracted)'),
}
NAMES = tuple(SPECS)
_COMMON_OPTIONS = ('timesteps', 'size', 'split_by', 'window_us', 'method', 'cache_dir',
                   'on_error')
_SPLIT_OPTIONS = ('seed', 'train_fraction', 'orientation')   # cifar10dvs only


class SampleError(ValueError):
  """A sample that cannot be read; the message is one line naming its file."""


def options_of(name: str) -> Tuple[str, ...]:
  """The ``data.options`` keys dataset ``name`` takes."""
  spec = SPECS[name]
  return _COMMON_OPTIONS + spec.extra_options + (_SPLIT_OPTIONS if spec.splits is None else ())


def example_shape(name: str, options: Dict[str, Any]) -> Tuple[int, ...]:
  """One example's frames shape under ``options`` (without reading anything)."""
  spec = SPECS[name]
  t = int(options.get('timesteps', spec.default_timesteps))
  size = int(options.get('size', spec.sensor[0]))
  return (t, size) if spec.one_d else (t, size, size, spec.sensor[2])


# -- tonic --------------------------------------------------------------------


def import_tonic(name: str):
  """The ``tonic`` module, or a one-line ``ConfigError`` saying how to install it."""
  try:
    import tonic  # pylint: disable=g-import-not-at-top  (an optional extra)
    import tonic.datasets  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    raise ConfigError('data source for ' + name, 'tonic',
                      f'an installed tonic ({INSTALL_HINT}; import failed: {e})') from None
  if name == 'cifar10dvs' and importlib.util.find_spec('aedat') is None:
    raise ConfigError('data source for cifar10dvs', 'tonic',
                      'an installed aedat package too (tonic reads CIFAR10DVS\'s AEDAT 4.0 '
                      'files with it: pip install aedat)')
  return tonic


def _present(location: str, rel: str, ending: str) -> bool:
  path = os.path.join(location, rel)
  if not ending:
    return os.path.isfile(path)
  if not os.path.isdir(path):
    return False
  for _, _, names in os.walk(path):
    if any(n.endswith(ending) for n in names):
      return True
  return False


@functools.lru_cache(maxsize=None)
def _reading_class(base: type, download: bool, name: str, split: str) -> type:
  """tonic's class with its presence check replaced (module doc), and its download refused
  unless ``download``. Same name as ``base``: tonic reads ``<save_to>/<class name>``."""
  spec = SPECS[name]
  rel, ending = spec.present[split]

  def _check_exists(self):
    return _present(self.location_on_system, rel, ending)

  def download_(self):
    if not download:
      where = os.path.join(self.location_on_system, rel)
      raise DataError(f'tonic dataset {name}: {where} is missing or holds no '
                      f'{ending or "file"} (expected under data.dir: {spec.layout}; '
                      'set --config.data.download=True to let tonic download it)')
    base.download(self)

  return type(base.__name__, (base,), {'_check_exists': _check_exists, 'download': download_,
                                       '__module__': base.__module__})


def open_split(name: str, data_dir: str, split: str, *, download: bool = False,
               nmnist_flags: Optional[Dict[str, bool]] = None):
  """tonic's dataset object of one split (``'train'``, ``'test'``, or ``'all'``)."""
  spec = SPECS[name]
  datasets = import_tonic(name).datasets
  cls = _reading_class(getattr(datasets, spec.tonic_class), bool(download), name, split)
  kwargs = dict(nmnist_flags or {})
  if spec.splits is not None:
    kwargs['train'] = spec.splits[split]
  try:
    return cls(os.fspath(data_dir), **kwargs)
  except DataError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (tonic's own errors: one line)
    where = os.path.join(os.fspath(data_dir), spec.tonic_class, spec.present[split][0])
    raise DataError(f'tonic dataset {name}: {where} cannot be read by tonic\'s '
                    f'{spec.tonic_class} ({type(e).__name__}: {_one_line(e)})') from None


def _one_line(e: BaseException) -> str:
  text = ' '.join(str(e).split())
  return text[:300] or type(e).__name__


def _sources(ds, name: str) -> Tuple[Tuple[str, ...], Tuple[int, ...], Tuple[int, ...], str]:
  """The files a split reads: relative paths, sizes, mtimes (for the cache key), root."""
  spec = SPECS[name]
  root = ds.location_on_system
  if spec.one_d:
    paths = [os.path.join(root, ds.data_filename)]
  else:
    paths = list(ds.data)
  sizes, mtimes = [], []
  for p in paths:
    st = os.stat(p)
    sizes.append(int(st.st_size))
    mtimes.append(int(st.st_mtime_ns))
  return tuple(os.path.relpath(p, root) for p in paths), tuple(sizes), tuple(mtimes), root


def _sample_path(ds, name: str, i: int) -> str:
  if SPECS[name].one_d:
    return f'{os.path.join(ds.location_on_system, ds.data_filename)} (sample {i})'
  return ds.data[i]


def _precheck(name: str, path: str) -> None:
  """Damage tonic's readers would not name: N-MNIST's byte count."""
  if name == 'nmnist':
    size = os.path.getsize(path)
    if size % 5:
      raise SampleError(f'{path}: truncated N-MNIST file: {size} bytes is not a whole number '
                        'of 5-byte events')


def read_sample(ds, name: str, i: int) -> Tuple[Dict[str, np.ndarray], int]:
  """Sample ``i`` of a tonic split: ``({'t', 'x', 'y', 'p'} int64 arrays, label)``.

  ``t`` in us as tonic gives it; ``y`` and ``p`` are 0 for SHD. Raises
  :class:`SampleError` (one line naming the file) for a sample tonic cannot read, one
  without events, or one whose coordinates, polarities or label are out of range.
  """
  spec = SPECS[name]
  path = _sample_path(ds, name, i)
  if not spec.one_d:
    _precheck(name, path)
  try:
    events, target = ds[i]
  except Exception as e:  # pylint: disable=broad-except  (tonic's readers' errors)
    raise SampleError(f'{path}: cannot be read by tonic\'s {spec.tonic_class} '
                      f'({type(e).__name__}: {_one_line(e)})') from None
  names = events.dtype.names or ()
  if not {'t', 'x'} <= set(names):
    raise SampleError(f'{path}: tonic returned events with fields {names}, not t, x, ...')
  n = events.shape[0]
  if n == 0:
    raise SampleError(f'{path}: holds no events')
  w, h, p_count = spec.sensor
  ev = {'t': np.asarray(events['t']).astype(np.int64),
        'x': np.asarray(events['x']).astype(np.int64)}
  ev['y'] = (np.asarray(events['y']).astype(np.int64) if 'y' in names and not spec.one_d
             else np.zeros(n, np.int64))
  ev['p'] = (np.asarray(events['p']).astype(np.int64) if p_count > 1
             else np.zeros(n, np.int64))   # SHD: tonic's artificial polarity 1, one channel
  for key, hi in (('x', w), ('y', h), ('p', p_count)):
    lo_v, hi_v = int(ev[key].min()), int(ev[key].max())
    if lo_v < 0 or hi_v >= hi:
      raise SampleError(f'{path}: event {key} spans {lo_v}..{hi_v}, outside 0..{hi - 1}')
  label = int(np.asarray(target).reshape(()))
  if not 0 <= label < spec.num_classes:
    raise SampleError(f'{path}: label {label} is outside 0..{spec.num_classes - 1}')
  return ev, label


# -- frames -------------------------------------------------------------------


def time_bins(t: np.ndarray, timesteps: int, split_by: str, window_us: int = 0,
              origin: str = 'first') -> np.ndarray:
  """Each event's bin ``0..timesteps-1``, or -1 (outside the window: dropped)."""
  if split_by != 'window':
    return dvs.time_bins(t, timesteps, split_by)
  t = np.asarray(t, np.int64)
  t0 = (t.min() if t.size else 0) if origin == 'first' else 0
  rel = t - t0
  bins = rel * timesteps // window_us
  return np.where((rel >= 0) & (rel < window_us), bins, -1)


def _resample(counts: np.ndarray, axis: int, sensor: int, size: int, method: str) -> np.ndarray:
  if size == sensor:
    return counts
  if method == 'floor':
    idx = np.arange(sensor) * size // sensor
    m = np.zeros((size, sensor))
    m[idx, np.arange(sensor)] = 1.0
  else:
    m = dvs.area_weights(sensor, size)
  return np.moveaxis(np.tensordot(m, np.moveaxis(counts, axis, 0), axes=1), 0, axis)


def events_to_frames(ev: Dict[str, np.ndarray], *, sensor: Tuple[int, int, int],
                     timesteps: int, size: int, split_by: str, method: str = 'area',
                     window_us: int = 0, origin: str = 'first') -> np.ndarray:
  """Event counts per bin, pixel (or channel) and polarity, ``float32``.

  Args:
    ev: ``{'t', 'x', 'y', 'p'}`` int arrays (:func:`read_sample`).
    sensor: ``(W, H, P)``; ``H == 1`` is a 1-D sensor (SHD's channels).
    timesteps, split_by, window_us, origin: the binning (module doc, :func:`time_bins`).
    size: output side (or channels); ``sensor[0]`` keeps the sensor's resolution.
    method: ``'area'`` or ``'floor'`` resampling (module doc).

  Returns:
    ``[timesteps, size, size, P]`` (rows ``y``, columns ``x``) or, for a 1-D sensor,
    ``[timesteps, size]``.
  """
  w, h, p_count = sensor
  b = time_bins(ev['t'], timesteps, split_by, window_us, origin)
  keep = b >= 0
  b, x, y, p = b[keep], ev['x'][keep], ev['y'][keep], ev['p'][keep]
  if h == 1:
    counts = np.bincount(b * w + x, minlength=timesteps * w).reshape(timesteps, w)
    return _resample(counts.astype(np.float64), 1, w, size, method).astype(np.float32)
  if method == 'floor':   # counts of the scaled coordinates, as bntt_jax.data.dvs does
    xs, ys = x * size // w, y * size // h
    counts = np.bincount(((b * size + ys) * size + xs) * p_count + p,
                         minlength=timesteps * size * size * p_count)
    return counts.reshape(timesteps, size, size, p_count).astype(np.float32)
  counts = np.bincount(((b * h + y) * w + x) * p_count + p,
                       minlength=timesteps * h * w * p_count)
  full = counts.reshape(timesteps, h, w, p_count).astype(np.float64)
  out = _resample(_resample(full, 1, h, size, method), 2, w, size, method)
  return out.astype(np.float32)


# -- loading ------------------------------------------------------------------


@dataclasses.dataclass
class _Split:
  frames: np.ndarray     # float32 [M, ...]
  labels: np.ndarray     # int32 [M]
  index: np.ndarray      # int64 [M]: each row's sample index in tonic's split
  failed: list           # [(sample, reason)]


def _cache_paths(cache_dir: str, name: str, key: str) -> Tuple[str, str]:
  digest = hashlib.sha256(key.encode()).hexdigest()[:24]
  stem = os.path.join(cache_dir, f'tonic_{name}-{digest}')
  return stem + '.frames.npy', stem + '.meta.npz'


def _load_cache(frames_path: str, meta_path: str, key: str, shape_tail: tuple):
  cached = dvs.read_frame_cache(frames_path, meta_path, key, shape_tail, 'tonic',
                                arrays=('labels',))
  if cached is None:
    return None
  frames, index, failed, extra = cached
  return _Split(frames, extra['labels'].astype(np.int32), index, failed)


def _save_cache(frames_path: str, meta_path: str, key: str, split: _Split) -> None:
  dvs.write_frame_cache(frames_path, meta_path, key, split.frames, split.index, split.failed,
                        labels=split.labels)


def _preprocess(ds, name: str, settings: dict, on_error: str) -> _Split:
  spec = SPECS[name]
  n = len(ds)
  shape_tail = example_shape(name, settings)
  frames = np.empty((n,) + shape_tail, np.float32)
  labels, index, failed = [], [], []
  start = time.monotonic()
  # tonic lists a folder's files in the file system's order: sorted by path, the rows (and
  # the CIFAR10-DVS split drawn from them) do not depend on it.
  order = range(n) if spec.one_d else sorted(range(n), key=lambda i: ds.data[i])
  for done, i in enumerate(order, 1):
    try:
      ev, label = read_sample(ds, name, i)
    except SampleError as e:
      if on_error == 'stop':
        raise
      failed.append((_sample_path(ds, name, i), str(e)))
      continue
    f = events_to_frames(ev, sensor=spec.sensor, timesteps=settings['timesteps'],
                         size=settings['size'], split_by=settings['split_by'],
                         method=settings['method'], window_us=settings['window_us'],
                         origin=spec.time_origin)
    if settings['orientation'] == 'spikingjelly':
      f = f.transpose(0, 2, 1, 3)
    frames[len(index)] = f
    labels.append(label)
    index.append(i)
    if done % 1000 == 0:
      _log.info('tonic %s: %d/%d samples in %.0f s', name, done, n, time.monotonic() - start)
  return _Split(frames[:len(index)], np.asarray(labels, np.int32), np.asarray(index, np.int64),
                failed)


def _report_failures(name: str, failed: Sequence, on_error: str) -> None:
  if not failed:
    return
  if on_error == 'stop':
    raise SampleError(failed[0][1] + (f' (and {len(failed) - 1} more unreadable samples)'
                                      if len(failed) > 1 else ''))
  for _, reason in failed:
    warnings.warn(f'skipping {name} sample: {reason}', RuntimeWarning, stacklevel=3)


def _is_int(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def check_settings(name: str, options: Dict[str, Any]) -> dict:
  """The settings that shape the frames, defaults filled in; ``ConfigError`` for a bad one."""
  errors.check_one_of('tonic dataset', name, NAMES)
  spec = SPECS[name]
  accepted = options_of(name)
  for key in options:
    if key not in accepted:
      raise ConfigError(f'data.options key for {name}', key, f'one of {", ".join(accepted)}')
  t = options.get('timesteps', spec.default_timesteps)
  errors.check_int_at_least('data.options.timesteps', t, 1)
  size = options.get('size', spec.sensor[0])
  if not _is_int(size) or not 1 <= size <= spec.sensor[0]:
    raise ConfigError('data.options.size', size, f'an integer in 1..{spec.sensor[0]} (the '
                      f'{"channels" if spec.one_d else "output side"}; {spec.sensor[0]} = none)')
  split_by = options.get('split_by', 'time')
  errors.check_one_of('data.options.split_by', split_by, SPLIT_BY)
  window = options.get('window_us', 0)
  if split_by == 'window':
    errors.check_int_at_least('data.options.window_us (split_by window)', window, 1)
  elif window not in (0, None):
    raise ConfigError('data.options.window_us', window, f'0 unless split_by is window '
                      f'(it is {split_by!r})')
  method = options.get('method', 'area')
  errors.check_one_of('data.options.method', method, METHODS)
  orientation = options.get('orientation', 'tonic')
  errors.check_one_of('data.options.orientation', orientation, ORIENTATIONS)
  errors.check_one_of('data.options.on_error', options.get('on_error', 'stop'), ON_ERROR)
  flags = {}
  for key in spec.extra_options:
    v = options.get(key, False)
    if not isinstance(v, bool):
      raise ConfigError(f'data.options.{key}', v, 'True or False')
    flags[key] = v
  return dict(reader_version=READER_VERSION, dataset=name, timesteps=int(t), size=int(size),
              split_by=split_by, window_us=int(window or 0), method=method,
              orientation=orientation, sensor=list(spec.sensor), dtype='float32', **flags)


def _load_split(name: str, data_dir: str, split: str, settings: dict, *, download: bool,
                cache_dir, on_error: str) -> _Split:
  spec = SPECS[name]
  flags = {k: settings[k] for k in spec.extra_options}
  ds = open_split(name, data_dir, split, download=download, nmnist_flags=flags)
  rel, sizes, mtimes, root = _sources(ds, name)
  if not rel:
    raise DataError(f'tonic dataset {name}: tonic lists no samples in '
                    f'{os.path.join(root, spec.present[split][0])}')
  key = json.dumps({'settings': settings, 'split': split,
                    'tonic': import_tonic(name).__version__,
                    'sources': [list(r) for r in zip(rel, sizes, mtimes)]},
                   sort_keys=True, separators=(',', ':'))
  shape_tail = example_shape(name, settings)
  out = None
  if cache_dir is not None:
    frames_path, meta_path = _cache_paths(os.fspath(cache_dir), name, key)
    out = _load_cache(frames_path, meta_path, key, shape_tail)
    if out is not None:
      _log.info('tonic %s %s frames from cache %s', name, split, frames_path)
  if out is None:
    out = _preprocess(ds, name, settings, on_error)
    if cache_dir is not None:
      _save_cache(frames_path, meta_path, key, out)
  _report_failures(name, out.failed, on_error)
  if out.labels.size == 0:
    raise DataError(f'tonic dataset {name}: no sample of {root} ({split}) could be read')
  return out


def load(name: str, data_dir: str, *, download: bool = False, seed: int = 0,
         options: Optional[Dict[str, Any]] = None):
  """Both splits of tonic dataset ``name`` as frames.

  Args:
    name: one of :data:`NAMES`.
    data_dir: tonic's ``save_to`` (module doc: where each dataset's files are).
    download: let tonic download a dataset that is not there (md5-checked).
    seed: the seed of CIFAR10-DVS's per-class split (``options['seed']`` overrides it).
    options: ``data.options``: ``timesteps``, ``size``, ``split_by``, ``window_us``,
      ``method``, ``cache_dir``, ``on_error`` (``'stop'``: an unreadable sample is a
      one-line error naming it; ``'skip'``: a warning naming it), N-MNIST's
      ``first_saccade_only``/``stabilize`` (tonic's), CIFAR10-DVS's ``train_fraction``,
      ``seed`` and ``orientation``.

  Returns:
    ``((train_frames, train_labels), (test_frames, test_labels))``: ``float32 [N, ...]``
    frames (:func:`example_shape`), ``int32 [N]`` labels, ordered by file path (SHD: by
    sample index).

  Raises:
    ConfigError: tonic missing, or a bad option. DataError: files absent or damaged.
  """
  options = dict(options or {})
  settings = check_settings(name, options)
  on_error = options.get('on_error', 'stop')
  cache_dir = options.get('cache_dir') or None
  spec = SPECS[name]
  try:
    if spec.splits is not None:
      tr, te = (_load_split(name, data_dir, s, settings, download=download,
                            cache_dir=cache_dir, on_error=on_error) for s in ('train', 'test'))
      return _take(tr, slice(None)), _take(te, slice(None))
    pool = _load_split(name, data_dir, 'all', settings, download=download,
                       cache_dir=cache_dir, on_error=on_error)
  except SampleError as e:
    raise DataError(str(e)) from None
  try:
    is_train = dvs.split_train_test(pool.labels, options.get('train_fraction', 0.9),
                                    options.get('seed', seed))
  except ValueError as e:
    raise ConfigError('data.options (the CIFAR10-DVS split)',
                      {k: options.get(k) for k in ('train_fraction', 'seed')}, str(e)) from None
  return _take(pool, is_train), _take(pool, ~is_train)


def _take(split: _Split, rows):
  """``(frames, labels)`` of ``rows``: read out of a cache's memory map into memory, or the
  frames just made, without a second copy (N-MNIST's training frames are 5.5 GB)."""
  x = split.frames[rows]
  if isinstance(split.frames, np.memmap):
    x = np.array(x, np.float32)
  return np.ascontiguousarray(x, np.float32), split.labels[rows].astype(np.int32)
