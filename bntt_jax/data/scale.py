"""A dataset at a reduced scale that keeps its data real: smaller images, fewer examples.

``config.data.image_size`` (area-downsampling by an integer factor: each output pixel is the
mean of a ``f x f`` block, rounded to uint8), ``config.data.train_examples`` and
``config.data.test_examples`` (a class-balanced subset: the first n of a seeded order that
takes the classes in turn, so every class has n / classes examples, give or take one).
``run_lib.load_data`` applies them to every image dataset after loading, so training and the
analyses of a run see the same examples. 0 keeps a dataset as it is.

The per-channel mean of an area-downsampled image is the original's; its standard deviation is
a little smaller (averaging), and the normalisation keeps the dataset's statistics.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from bntt_jax.errors import ConfigError


def area_downsample(images: np.ndarray, size: int) -> np.ndarray:
  """``uint8 [N, H, W, C]`` -> ``uint8 [N, size, size, C]``, block means (``H / size`` must be an
  integer, and ``H == W``)."""
  n, h, w, c = images.shape
  if h != w or size < 1 or h % size:
    raise ConfigError('data.image_size', size,
                      f'a divisor of the images\' side {h} (images {h}x{w}; 0 keeps them)')
  f = h // size
  if f == 1:
    return images
  blocks = images.reshape(n, size, f, size, f, c).astype(np.float32)
  return np.round(blocks.mean(axis=(2, 4))).astype(np.uint8)


def class_balanced(labels: np.ndarray, n: int, seed: int, what: str = 'examples') -> np.ndarray:
  """Indices of ``n`` examples: a seeded shuffle of each class, then the classes in turn
  (class-balanced to within one example; sorted, so the subset keeps the split's order)."""
  if n < 1 or n > len(labels):
    raise ConfigError(what, n, f'an integer in 1..{len(labels)} (the split\'s size)')
  rng = np.random.default_rng(seed)
  per_class = [rng.permutation(np.flatnonzero(labels == k)) for k in np.unique(labels)]
  order = []
  for i in range(max(len(p) for p in per_class)):
    order.extend(int(p[i]) for p in per_class if i < len(p))
  return np.sort(np.asarray(order[:n], np.int64))


def reduce(ds, *, image_size: int = 0, train_examples: int = 0, test_examples: int = 0,
           seed: int = 0):
  """``ds`` (a :class:`bntt_jax.data.Dataset` of images) at the reduced scale; frames datasets
  take none of these settings."""
  if not (image_size or train_examples or test_examples):
    return ds
  if ds.info.kind != 'image' and image_size:
    raise ConfigError('data.image_size', image_size, f'0 for {ds.info.name} (frames, not images)')
  train, test, info = ds.train, ds.test, ds.info
  if train_examples:
    idx = class_balanced(train.y, train_examples, seed, 'data.train_examples')
    train = dataclasses.replace(train, x=train.x[idx], y=train.y[idx])
  if test_examples:
    idx = class_balanced(test.y, test_examples, seed + 1, 'data.test_examples')
    test = dataclasses.replace(test, x=test.x[idx], y=test.y[idx])
  if image_size:
    train = dataclasses.replace(train, x=area_downsample(train.x, image_size))
    test = dataclasses.replace(test, x=area_downsample(test.x, image_size))
    info = dataclasses.replace(info, shape=tuple(train.x.shape[1:]))
  return dataclasses.replace(ds, train=train, test=test, info=info)
