"""Tiny-ImageNet (200 classes, 64x64 RGB) from a local ``tiny-imagenet-200``.

The standard layout::

    tiny-imagenet-200/
      wnids.txt                         200 class ids (optional: else train/'s folders)
      train/<wnid>/images/*.JPEG        500 per class
      val/images/*.JPEG                 10,000
      val/val_annotations.txt           <file>\t<wnid>\t<box...> per line

The labelled ``val`` split is our test split (the ``test`` split has no
labels). Classes are the sorted wnids. Decoding 110,000 JPEGs takes a few
minutes on two cores; ``cache_dir`` keeps the decoded arrays as ``.npy`` files
(no pickle) for the next run.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import os
from typing import List, Sequence, Tuple

import numpy as np

from absl import logging

from bntt_jax import files
from bntt_jax.errors import ConfigError, DataError

SIZE = 64
_LAYOUT = 'a tiny-imagenet-200 directory (train/<wnid>/images/*.JPEG, val/val_annotations.txt)'


def _decode(path: str) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as im:
      im = im.convert('RGB')      # a few images are greyscale
      if im.size != (SIZE, SIZE):
        im = im.resize((SIZE, SIZE), Image.BILINEAR)
      return np.asarray(im, np.uint8)
  except (OSError, ValueError, SyntaxError) as e:
    # Pillow: OSError for truncated or missing files (UnidentifiedImageError is one),
    # ValueError / SyntaxError for some malformed headers.
    raise DataError(f'Tiny-ImageNet image {path!r} cannot be decoded ({type(e).__name__}: '
                    f'{e}): replace it from a fresh copy of tiny-imagenet-200') from None


def _decode_all(paths: Sequence[str], workers: int) -> np.ndarray:
  out = np.empty((len(paths), SIZE, SIZE, 3), np.uint8)
  # PIL releases the GIL while decoding: threads use every core.
  with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
    for i, img in enumerate(pool.map(_decode, paths, chunksize=256)):
      out[i] = img
  return out


def list_files(root: str) -> Tuple[List[str], Tuple[List[str], List[int]], Tuple[List[str], List[int]]]:
  """``(classes, (train_paths, train_labels), (val_paths, val_labels))``."""
  train_dir = os.path.join(root, 'train')
  ann = os.path.join(root, 'val', 'val_annotations.txt')
  if not os.path.isdir(train_dir) or not os.path.isfile(ann):
    raise ConfigError('data directory', root, _LAYOUT)
  wnids_file = os.path.join(root, 'wnids.txt')
  if os.path.isfile(wnids_file):
    with open(wnids_file) as f:
      classes = sorted({line.strip() for line in f if line.strip()})
  else:
    classes = sorted(d for d in os.listdir(train_dir) if os.path.isdir(os.path.join(train_dir, d)))
  index = {c: i for i, c in enumerate(classes)}
  train_paths, train_labels = [], []
  for c in classes:
    img_dir = os.path.join(train_dir, c, 'images')
    if not os.path.isdir(img_dir):
      raise ConfigError('data directory', root, f'{_LAYOUT}; {img_dir} is missing')
    for name in sorted(os.listdir(img_dir)):
      if name.lower().endswith(('.jpeg', '.jpg', '.png')):
        train_paths.append(os.path.join(img_dir, name))
        train_labels.append(index[c])
  val_paths, val_labels = [], []
  with open(ann) as f:
    for line in f:
      parts = line.split()
      if len(parts) < 2:
        continue
      if parts[1] not in index:
        raise ConfigError('val class', parts[1], f'one of the {len(classes)} training classes')
      val_paths.append(os.path.join(root, 'val', 'images', parts[0]))
      val_labels.append(index[parts[1]])
  if not train_paths or not val_paths:
    raise ConfigError('data directory', root, f'{_LAYOUT} with images in it')
  return classes, (train_paths, train_labels), (val_paths, val_labels)


def load(root: str, cache_dir: str = '', workers: int = 0):
  """``((train_x, train_y), (val_x, val_y), classes)``: uint8 ``[N, 64, 64, 3]``, int32 ``[N]``."""
  classes, (tp, tl), (vp, vl) = list_files(root)
  workers = workers or os.cpu_count() or 1
  key = hashlib.sha1('\n'.join([os.path.abspath(root)] + tp + vp).encode()).hexdigest()[:12]
  cached = [os.path.join(cache_dir, f'tiny_imagenet_{key}_{s}.npy') for s in ('train', 'val')]
  arrays = None
  if cache_dir and all(os.path.isfile(p) for p in cached):
    try:
      arrays = [np.load(p, allow_pickle=False) for p in cached]
      if [len(a) for a in arrays] != [len(tp), len(vp)]:
        raise ValueError(f'{[len(a) for a in arrays]} images, not {[len(tp), len(vp)]}')
    except (OSError, ValueError, EOFError) as e:
      # A cache cut by a kill or a full disk is only a cache: decode again.
      logging.warning('Tiny-ImageNet cache %s cannot be read (%s: %s); decoding the images',
                      cached[0], type(e).__name__, e)
      arrays = None
  if arrays is not None:
    xtr, xva = arrays
  else:
    xtr, xva = _decode_all(tp, workers), _decode_all(vp, workers)
    if cache_dir:
      os.makedirs(cache_dir, exist_ok=True)
      for p, a in zip(cached, (xtr, xva)):
        files.atomic_write(p, lambda f, a=a: np.save(f, a, allow_pickle=False), binary=True)
  return (xtr, np.asarray(tl, np.int32)), (xva, np.asarray(vl, np.int32)), classes
