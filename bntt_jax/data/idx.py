"""MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST, ...), plain or gzipped.

An IDX file is a big-endian header -- two zero bytes, a type code (0x08 =
unsigned byte), the number of dimensions ``d`` -- then ``d`` big-endian
uint32 sizes, then the data in C order.
"""
from __future__ import annotations

import glob
import gzip
import os
import zlib
from typing import Tuple

import numpy as np

from bntt_jax.errors import ConfigError, DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype('>i2'), 0x0C: np.dtype('>i4'),
           0x0D: np.dtype('>f4'), 0x0E: np.dtype('>f8')}


def read_idx(path: str) -> np.ndarray:
  """The array stored in one IDX file (``.gz`` is decompressed)."""
  opener = gzip.open if path.endswith('.gz') else open
  try:
    with opener(path, 'rb') as f:
      data = f.read()
  except (EOFError, gzip.BadGzipFile, zlib.error) as e:
    # A download cut short, or a file that is not gzip at all.
    raise DataError(f'IDX file {path!r} is truncated or corrupt ({type(e).__name__}: {e}): '
                    'download it again') from None
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
    raise ConfigError('IDX file', path, 'a file starting with the IDX magic 00 00 <type> <ndim>')
  dtype, ndim = np.dtype(_DTYPES[data[2]]), data[3]
  shape = tuple(int(s) for s in np.frombuffer(data, '>u4', ndim, 4))
  count = int(np.prod(shape)) if shape else 1
  offset = 4 + 4 * ndim
  if len(data) - offset < count * dtype.itemsize:
    raise ConfigError('IDX file', path, f'a file holding {shape} items of {dtype} (it is short)')
  return np.frombuffer(data, dtype, count, offset).reshape(shape).astype(dtype.newbyteorder('='))


def _find(data_dir: str, prefix: str) -> str:
  found = sorted(p for p in glob.glob(os.path.join(data_dir, prefix + '*'))
                 if os.path.isfile(p))
  if not found:
    raise ConfigError('data directory', data_dir,
                      f'a directory with a {prefix}* IDX file (plain or .gz)')
  # Prefer the uncompressed file when both are there.
  found.sort(key=lambda p: p.endswith('.gz'))
  return found[0]


def load_idx_dir(data_dir: str) -> Tuple[Tuple[np.ndarray, np.ndarray], ...]:
  """``((train_x, train_y), (test_x, test_y))`` from a directory of IDX files.

  Files are found by their standard prefixes ``train-images``, ``train-labels``,
  ``t10k-images``, ``t10k-labels`` (``-idx3-ubyte``, ``.idx3-ubyte``, ``.gz``
  all match). Images come back ``uint8 [N, H, W, 1]``, labels ``int32 [N]``.
  """
  out = []
  for split in ('train', 't10k'):
    x_path, y_path = _find(data_dir, f'{split}-images'), _find(data_dir, f'{split}-labels')
    x, y = read_idx(x_path), read_idx(y_path)
    # Converted below to uint8 and int32: other types would be garbled, not converted.
    if x.dtype != np.uint8:
      raise DataError(f'IDX file {x_path!r} holds images of type {x.dtype}: not accepted: '
                      'unsigned bytes (IDX type 0x08), as MNIST-format images are')
    if not np.issubdtype(y.dtype, np.integer):
      raise DataError(f'IDX file {y_path!r} holds labels of type {y.dtype}: not accepted: '
                      'integers (IDX type 0x08, 0x09, 0x0B or 0x0C)')
    if x.ndim == 3:
      x = x[..., None]
    if x.ndim != 4 or y.ndim != 1 or x.shape[0] != y.shape[0]:
      raise ConfigError(f'{split} IDX pair in', data_dir,
                        f'images [N, H, W] and labels [N] of the same N (got {x.shape}, {y.shape})')
    out.append((np.ascontiguousarray(x.astype(np.uint8)), y.astype(np.int32)))
  return tuple(out)
