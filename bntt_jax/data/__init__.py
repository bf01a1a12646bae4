"""Datasets as in-memory numpy arrays, by name.

``load_dataset(name, ...)`` returns a :class:`Dataset`: the train and test
splits (images ``uint8 [N, H, W, C]`` or frames ``float32 [N, T, H, W, C]``,
labels ``int32 [N]``) and a :class:`DatasetInfo` (classes, per-example shape,
per-channel mean and std in [0, 1] pixel units, or ``None`` for frames, which
are neither augmented nor normalised).

=============  =========================  =====================================
name           sources                    where the data come from
=============  =========================  =====================================
digits         sklearn                    scikit-learn's bundled 8x8 digits
                                          (no download), a fixed seeded split
cifar10        tfds                       ``tfds.data_source('cifar10')``
cifar100       tfds                       ``tfds.data_source('cifar100')``
mnist          tfds, idx                  tfds, or a directory of IDX files
fashion_mnist  tfds, idx                  tfds, or a directory of IDX files
tiny_imagenet  directory                  a local ``tiny-imagenet-200``
dvs_cifar10    directory                  ``bntt_jax.data.dvs`` (lazy import)
dvsgesture     tonic                      ``bntt_jax.data.tonic_source``: tonic's
nmnist         tonic                      classes reading ``data_dir`` (their
shd            tonic                      ``save_to``); tonic is an optional
cifar10dvs     tonic                      extra, ``bntt_jax[events]``
=============  =========================  =====================================

``source='auto'`` picks the first source of the row. Every loader reads all
of a split into memory, as uint8 (CIFAR-10's training split: 50,000 x 32 x 32 x 3 bytes).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from bntt_jax.data import digits
from bntt_jax.data import idx
from bntt_jax.errors import ConfigError, DataError


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the model and the pipeline need to know about a dataset.

  Attributes:
    name: the registry name.
    num_classes: number of labels.
    shape: one example's shape, ``(H, W, C)`` for images, ``(T, H, W, C)``
      for frames.
    mean, std: per-channel statistics of pixels scaled to [0, 1] (images), or
      ``None`` (frames: used as they are).
    kind: ``image`` (uint8, augmented and normalised by the pipeline) or
      ``frames`` (float32, used as they are).
    classes_inferred: ``num_classes`` was counted from the data (a tiny-imagenet-200
      directory without ``wnids.txt``: its class directories; a dataset the registry knows
      no class count of: the largest label + 1), not known beforehand; runs log it.
  """
  name: str
  num_classes: int
  shape: Tuple[int, ...]
  mean: Optional[Tuple[float, ...]]
  std: Optional[Tuple[float, ...]]
  kind: str = 'image'
  classes_inferred: bool = False


@dataclasses.dataclass(frozen=True)
class Split:
  """One split: ``x [N, ...]`` (uint8 images or float32 frames), ``y int32 [N]``."""
  x: np.ndarray
  y: np.ndarray

  def __len__(self) -> int:
    return int(self.y.shape[0])


@dataclasses.dataclass(frozen=True)
class Dataset:
  train: Split
  test: Split
  info: DatasetInfo


# The reference's CIFAR statistics (spec section 5); CIFAR-100 uses the same.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)
# Tiny-ImageNet training-set statistics.
TINY_MEAN = (0.4802, 0.4481, 0.3975)
TINY_STD = (0.2302, 0.2265, 0.2262)


def _digits(*, source, data_dir, download, split_seed, options):
  try:
    (xtr, ytr), (xte, yte) = digits.load(split_seed=split_seed, **options)
  except TypeError as e:   # an option digits.load does not take
    raise ConfigError('data.options', sorted(options), f'keyword arguments of '
                      f'bntt_jax.data.digits.load ({e})') from None
  pixels = xtr.astype(np.float64) / 255.0   # the training images' statistics
  info = DatasetInfo('digits', 10, (8, 8, 1), (float(pixels.mean()),), (float(pixels.std()),))
  return Dataset(Split(xtr, ytr), Split(xte, yte), info)


def _tfds(tfds_name, mean, std):
  def load(*, source, data_dir, download, split_seed, options):
    del split_seed
    if source == 'idx':
      (xtr, ytr), (xte, yte) = idx.load_idx_dir(data_dir)
      # MNIST-format sets have their registry's count; the labels are checked against it.
      num_classes = REGISTRY[tfds_name].num_classes
      inferred = not num_classes
      if inferred:
        num_classes = int(max(ytr.max(initial=0), yte.max(initial=0))) + 1
    else:
      inferred = False
      from bntt_jax.data import tfds_source  # pylint: disable=g-import-not-at-top
      (xtr, ytr), (xte, yte), num_classes = tfds_source.load(
          tfds_name, data_dir=data_dir or None, download=download, **options)
    info = DatasetInfo(tfds_name, num_classes, tuple(xtr.shape[1:]), mean, std,
                       classes_inferred=inferred)
    return Dataset(Split(xtr, ytr), Split(xte, yte), info)
  return load


def _tiny_imagenet(*, source, data_dir, download, split_seed, options):
  from bntt_jax.data import tiny_imagenet  # pylint: disable=g-import-not-at-top
  (xtr, ytr), (xte, yte), classes = tiny_imagenet.load(data_dir, **options)
  # Without wnids.txt the classes are the directories there are (a subset: fewer classes).
  inferred = not os.path.isfile(os.path.join(data_dir, 'wnids.txt'))
  info = DatasetInfo('tiny_imagenet', len(classes), tuple(xtr.shape[1:]), TINY_MEAN, TINY_STD,
                     classes_inferred=inferred)
  return Dataset(Split(xtr, ytr), Split(xte, yte), info)


def _dvs_cifar10(*, source, data_dir, download, split_seed, options):
  # Imported only when asked for.
  from bntt_jax.data.dvs import load_dvs_cifar10  # pylint: disable=g-import-not-at-top
  options = dict(options)
  options.setdefault('seed', split_seed)
  try:
    (xtr, ytr), (xte, yte) = load_dvs_cifar10(data_dir, **options)
  except TypeError as e:   # an option load_dvs_cifar10 does not take
    raise ConfigError('data.options', sorted(options), f'keyword arguments of '
                      f'bntt_jax.data.dvs.load_dvs_cifar10 ({e})') from None
  except ValueError as e:   # a corrupt recording (on_error='stop') or a bad setting
    raise DataError(str(e)) from None
  info = DatasetInfo('dvs_cifar10', 10, tuple(xtr.shape[1:]), None, None, kind='frames')
  return Dataset(Split(np.asarray(xtr, np.float32), np.asarray(ytr, np.int32)),
                 Split(np.asarray(xte, np.float32), np.asarray(yte, np.int32)), info)


def _tonic(name: str):
  def load(*, source, data_dir, download, split_seed, options):
    # Imported only when asked for (tonic itself only inside tonic_source, an optional extra).
    from bntt_jax.data import tonic_source  # pylint: disable=g-import-not-at-top
    (xtr, ytr), (xte, yte) = tonic_source.load(name, data_dir, download=download,
                                               seed=split_seed, options=options)
    info = DatasetInfo(name, tonic_source.SPECS[name].num_classes, tuple(xtr.shape[1:]), None,
                       None, kind='frames')
    return Dataset(Split(xtr, ytr), Split(xte, yte), info)
  return load


def _tonic_shape(name: str):
  def shape(options):
    from bntt_jax.data import tonic_source  # pylint: disable=g-import-not-at-top
    return tonic_source.example_shape(name, options)
  return shape


def _tonic_entry(name: str, num_classes: int, layout: str) -> '_Entry':
  return _Entry(_tonic(name), ('tonic',), ('tonic',), f'tonic\'s save_to directory holding '
                f'{layout} (see bntt_jax.data.tonic_source)', 'frames',
                shape=_tonic_shape(name), num_classes=num_classes)


def _dvs_shape(options: Dict[str, Any]) -> Tuple[int, ...]:
  size = int(options.get('size', 42))
  return (int(options.get('timesteps', 20)), size, size, 2)


@dataclasses.dataclass(frozen=True)
class _Entry:
  loader: Callable[..., Dataset]
  sources: Tuple[str, ...]
  needs_dir: Tuple[str, ...] = ()      # the sources that read config.data.dir
  dir_layout: str = ''                 # what that directory must hold (for errors)
  kind: str = 'image'                  # image | frames (see DatasetInfo)
  # One example's shape and the classes, known without reading the data (a plan of a
  # run compiles its steps on a machine that may not hold the dataset).
  shape: Callable[[Dict[str, Any]], Tuple[int, ...]] = lambda options: ()
  num_classes: int = 0


_GREY8, _GREY28, _RGB32 = (lambda o: (8, 8, 1)), (lambda o: (28, 28, 1)), (lambda o: (32, 32, 3))

REGISTRY: Dict[str, _Entry] = {
    'digits': _Entry(_digits, ('sklearn',), shape=_GREY8, num_classes=10),
    'cifar10': _Entry(_tfds('cifar10', CIFAR_MEAN, CIFAR_STD), ('tfds',), shape=_RGB32,
                      num_classes=10),
    'cifar100': _Entry(_tfds('cifar100', CIFAR_MEAN, CIFAR_STD), ('tfds',), shape=_RGB32,
                       num_classes=100),
    'mnist': _Entry(_tfds('mnist', MNIST_MEAN, MNIST_STD), ('tfds', 'idx'), ('idx',),
                    'a directory of MNIST IDX files (train-images*, train-labels*, '
                    't10k-images*, t10k-labels*; plain or .gz)', shape=_GREY28, num_classes=10),
    'fashion_mnist': _Entry(_tfds('fashion_mnist', FASHION_MEAN, FASHION_STD), ('tfds', 'idx'),
                            ('idx',), 'a directory of IDX files (train-images*, '
                            'train-labels*, t10k-images*, t10k-labels*; plain or .gz)',
                            shape=_GREY28, num_classes=10),
    'tiny_imagenet': _Entry(_tiny_imagenet, ('directory',), ('directory',),
                            'a tiny-imagenet-200 directory (train/<wnid>/images, '
                            'val/val_annotations.txt)', shape=lambda o: (64, 64, 3),
                            num_classes=200),
    'dvs_cifar10': _Entry(_dvs_cifar10, ('directory',), ('directory',),
                          'a CIFAR10-DVS directory (see bntt_jax.data.dvs)', 'frames',
                          shape=_dvs_shape, num_classes=10),
    'dvsgesture': _tonic_entry('dvsgesture', 11,
                               'DVSGesture/ibmGestureTrain, ibmGestureTest'),
    'nmnist': _tonic_entry('nmnist', 10, 'NMNIST/Train, NMNIST/Test'),
    'shd': _tonic_entry('shd', 20, 'SHD/shd_train.h5, SHD/shd_test.h5'),
    'cifar10dvs': _tonic_entry('cifar10dvs', 10, 'CIFAR10DVS/<class>/*.aedat4'),
}


def example_spec(name: str, options: Optional[Dict[str, Any]] = None) -> Tuple[Tuple[int, ...], int]:
  """``(one example's shape, classes)`` of dataset ``name`` under ``options``, without
  reading it (what its loader returns: tested against each loader)."""
  resolve_source(name, 'auto')
  entry = REGISTRY[name]
  return tuple(entry.shape(dict(options or {}))), entry.num_classes


def resolve_source(name: str, source: str) -> str:
  """The source ``source`` names for dataset ``name`` (``auto``: its first)."""
  if name not in REGISTRY:
    raise ConfigError('dataset', name, f'one of {", ".join(sorted(REGISTRY))}')
  sources = REGISTRY[name].sources
  if source == 'auto':
    return sources[0]
  if source not in sources:
    raise ConfigError(f'data source for {name}', source,
                      f'one of {", ".join(("auto",) + sources)}')
  return source


def check_data_dir(name: str, source: str, data_dir: str) -> None:
  """Raise a one-line ``ConfigError`` if ``source`` needs a directory that is missing."""
  source = resolve_source(name, source)
  entry = REGISTRY[name]
  if source in entry.needs_dir and (not data_dir or not os.path.isdir(data_dir)):
    raise ConfigError('data directory', data_dir or '(config.data.dir is empty)',
                      f'{entry.dir_layout} (set --config.data.dir=DIR)')


def load_dataset(name: str, *, source: str = 'auto', data_dir: str = '', download: bool = True,
                 split_seed: int = 0, options: Optional[Dict[str, Any]] = None,
                 num_classes: Optional[int] = None) -> Dataset:
  """Load both splits of dataset ``name`` into memory.

  Args:
    name: a key of :data:`REGISTRY`.
    source: ``auto`` or one of the dataset's sources.
    data_dir: the directory read by ``idx``/``directory`` sources; the tfds
      data directory for ``tfds`` (empty: tfds's default, ``~/tensorflow_datasets``).
    download: let tfds download and prepare a dataset that is not prepared yet.
    split_seed: seed of datasets whose train/test split we draw (digits, DVS).
    options: loader-specific keyword arguments (``config.data.options``).
    num_classes: the classes the labels must lie in, ``0..num_classes - 1`` (a config's
      ``model.num_classes``); default: the dataset's (:class:`DatasetInfo`).

  Raises:
    ConfigError: a name, source, directory or option that is not accepted.
    DataError: data that do not match (:func:`check_dataset`): labels outside the classes,
      examples of another shape or dtype, images and labels of different counts.
  """
  source = resolve_source(name, source)
  check_data_dir(name, source, data_dir)
  options = dict(options or {})
  ds = REGISTRY[name].loader(source=source, data_dir=data_dir, download=download,
                             split_seed=split_seed, options=options)
  check_dataset(ds, num_classes, where=data_dir or source, options=options)
  return ds


def check_dataset(ds: Dataset, num_classes: Optional[int] = None, *, where: str = '',
                  options: Optional[Dict[str, Any]] = None) -> None:
  """A one-line ``DataError`` (naming the split and ``where`` the data came from) unless each
  split holds as many labels as examples, integer labels in ``0..C - 1`` (``C``:
  ``num_classes``, default ``ds.info.num_classes``), and examples of the shape the registry
  gives ``ds.info.name`` (under ``options``) in the dtype of its kind (uint8 images, float32
  frames)."""
  info = ds.info
  c = num_classes or info.num_classes
  stated = 'config model.num_classes' if num_classes else (
      'inferred from the data' if info.classes_inferred else 'the dataset\'s')
  entry = REGISTRY.get(info.name)
  expected = tuple(entry.shape(dict(options or {}))) if entry else ()
  dtype = np.float32 if info.kind == 'frames' else np.uint8
  at = f' in {where}' if where else ''
  for split_name, split in (('train', ds.train), ('test', ds.test)):
    what = f'{info.name} {split_name} split{at}'
    x, y = split.x, split.y
    if y.ndim != 1 or x.shape[:1] != y.shape:
      raise DataError(f'{what}: {x.shape[0]} examples and labels of shape {y.shape} are not '
                      'accepted: one label per example')
    if expected and tuple(x.shape[1:]) != expected:
      raise DataError(f'{what}: examples of shape {tuple(x.shape[1:])} are not accepted: '
                      f'{expected}, the shape of {info.name} (the model and a plan are built '
                      'for it)')
    if x.dtype != dtype:
      raise DataError(f'{what}: examples of dtype {x.dtype} are not accepted: {np.dtype(dtype)}')
    if not np.issubdtype(y.dtype, np.integer):
      raise DataError(f'{what}: labels of dtype {y.dtype} are not accepted: integers')
    bad = (y < 0) | (y >= c)
    if bad.any():
      raise DataError(f'{what}: label {int(y[bad][0])} is not accepted ({int(bad.sum())} of '
                      f'{len(y)} labels lie outside 0..{c - 1}): {info.name} has {c} classes '
                      f'({stated}); fix the labels, or state the classes with '
                      '--config.model.num_classes=N')
