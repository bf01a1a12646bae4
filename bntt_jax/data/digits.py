"""scikit-learn's bundled handwritten digits: 1,797 grey 8x8 images, 10 classes.

Nothing is downloaded. The images (values 0..16) are scaled to uint8 0..255
and split once, stratified by class, with a fixed seed, so every run of the
default config sees the same 1,437 training and 360 test images.
"""
from __future__ import annotations

import numpy as np


def load(split_seed: int = 0, test_fraction: float = 0.2):
  """Both splits and their info.

  Returns:
    ``Dataset`` with uint8 images ``[N, 8, 8, 1]`` and int32 labels ``[N]``;
    mean and std are those of the training images (in [0, 1] pixel units).
  """
  # pylint: disable=g-import-not-at-top
  from sklearn import datasets as sk_datasets
  from sklearn import model_selection
  from bntt_jax.data import Dataset, DatasetInfo, Split
  # pylint: enable=g-import-not-at-top
  raw = sk_datasets.load_digits()
  x = np.round(raw.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  y = raw.target.astype(np.int32)
  xtr, xte, ytr, yte = model_selection.train_test_split(
      x, y, test_size=test_fraction, random_state=split_seed, stratify=y)
  pixels = xtr.astype(np.float64) / 255.0
  info = DatasetInfo('digits', 10, (8, 8, 1), (float(pixels.mean()),), (float(pixels.std()),))
  return Dataset(Split(xtr, ytr), Split(xte, yte), info)
