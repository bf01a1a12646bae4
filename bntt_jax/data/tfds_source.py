"""TensorFlow Datasets (CIFAR-10/100, MNIST, Fashion-MNIST) into numpy.

Reading goes through ``builder.as_data_source`` (random-access ArrayRecord
files), which needs no TensorFlow. Preparing a dataset the first time
(``download_and_prepare``: download, decode, write ArrayRecord) does need
TensorFlow; without it the run stops with one line naming the package to
install. A dataset already prepared in the older TFRecord format is read with
``as_dataset`` instead (that too needs TensorFlow).

Without network (air-gapped clusters, most TPU pod workers) a dataset that is
not prepared stops the run with one line: where tfds looked, and the command
that prepares it on a machine with network, to copy over.
"""
from __future__ import annotations

import importlib.util
from typing import Optional

import numpy as np

from bntt_jax.errors import ConfigError, DataError

SPLITS = ('train', 'test')


def require_tensorflow(name: str, why: str) -> None:
  if importlib.util.find_spec('tensorflow') is None:
    raise ConfigError(f'tfds dataset {name!r} ({why}) without TensorFlow', 'installed',
                      'pip install tensorflow-cpu')


def prepare_command(name: str) -> str:
  """A command that prepares ``name`` in a directory DIR, as :func:`load` reads it."""
  return (f'python -c "import tensorflow_datasets as tfds; tfds.builder({name!r}, '
          "data_dir=DIR, file_format='array_record').download_and_prepare("
          "file_format='array_record')\"")


def _download_failed(error: BaseException) -> bool:
  """Whether ``error`` (or its cause) is a failed download rather than a bug."""
  names = ('ConnectionError', 'Timeout', 'DownloadError', 'NonMatchingChecksumError',
           'HTTPError', 'URLError', 'SSLError', 'ProxyError')
  while error is not None:
    if isinstance(error, OSError) or any(n in type(error).__name__ for n in names):
      return True
    error = error.__cause__ if error.__cause__ is not None else error.__context__
  return False


def _to_numpy(source, image_key: str, label_key: str):
  n = len(source)
  first = source[0]
  x = np.empty((n,) + np.asarray(first[image_key]).shape, np.uint8)
  y = np.empty((n,), np.int32)
  for i in range(n):
    ex = first if i == 0 else source[i]
    x[i] = ex[image_key]
    y[i] = ex[label_key]
  return x, y


def load(name: str, *, data_dir: Optional[str] = None, download: bool = True,
         image_key: str = 'image', label_key: str = 'label'):
  """``((train_x, train_y), (test_x, test_y), num_classes)`` of a tfds dataset.

  Images come back ``uint8 [N, H, W, C]``, labels ``int32 [N]``, every example
  of each split in its stored order.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    builder = tfds.builder(name, data_dir=data_dir, file_format='array_record')
  except ValueError:
    # Already prepared in another format (TFRecord, by an earlier tfds.load): use it.
    builder = tfds.builder(name, data_dir=data_dir)
  return load_builder(builder, download=download, image_key=image_key, label_key=label_key)


def load_builder(builder, *, download: bool = True, image_key: str = 'image',
                 label_key: str = 'label'):
  """:func:`load` for a ``tfds.core.DatasetBuilder``: prepare if needed, then read."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  name = builder.name
  if not builder.is_prepared():
    root = str(builder.data_dir_root)
    where = (f'prepare it on a machine with network with {prepare_command(name)} and copy '
             f'DIR/{name} into {root}')
    if not download:
      raise ConfigError(f'tfds dataset {name!r} in data_dir', str(builder.data_dir),
                        f'a prepared dataset, or config.data.download=True; or {where}')
    require_tensorflow(name, 'preparing it')
    try:
      builder.download_and_prepare(file_format='array_record')
    except Exception as e:  # pylint: disable=broad-except
      if not _download_failed(e):
        raise
      first = (str(e).strip().splitlines() or [''])[0]
      if len(first) > 200:
        first = first[:197] + '...'
      raise DataError(f'tfds dataset {name!r} is not prepared in {root!r} (looked in '
                      f'{str(builder.data_dir)!r}) and could not be downloaded '
                      f'({type(e).__name__}: {first}): {where}') from None
  num_classes = int(builder.info.features[label_key].num_classes)
  try:
    sources = builder.as_data_source(split=list(SPLITS))
    arrays = [_to_numpy(s, image_key, label_key) for s in sources]
  except NotImplementedError:
    # Prepared earlier as TFRecord: no random access, read it with tf.data.
    require_tensorflow(name, 'reading its TFRecord files')
    arrays = []
    for split in SPLITS:
      d = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
      arrays.append((np.asarray(d[image_key], np.uint8), np.asarray(d[label_key], np.int32)))
  return arrays[0], arrays[1], num_classes
