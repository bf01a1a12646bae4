"""scikit-learn's bundled handwritten digits: 1,797 grey 8x8 images, 10 classes.

Nothing is downloaded. The images (values 0..16) are scaled to uint8 0..255
and split once, stratified by class, with a fixed seed, so every run of the
default config sees the same 1,437 training and 360 test images.
"""
from __future__ import annotations

import numpy as np

from bntt_jax.errors import ConfigError


def load(split_seed: int = 0, test_fraction: float = 0.2):
  """Both splits: ``((train_x, train_y), (test_x, test_y))``, uint8 images ``[N, 8, 8, 1]``
  and int32 labels ``[N]`` (:func:`bntt_jax.data.load_dataset` adds the info)."""
  # Here, not at the top: scikit-learn takes a second to import, and only this set needs it.
  # pylint: disable=g-import-not-at-top
  from sklearn import datasets as sk_datasets
  from sklearn import model_selection
  # pylint: enable=g-import-not-at-top
  if not (isinstance(test_fraction, (int, float)) and 0 < test_fraction < 1):
    raise ConfigError('digits test_fraction', test_fraction, 'a fraction in (0, 1) of the '
                      '1,797 images')
  raw = sk_datasets.load_digits()
  x = np.round(raw.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  y = raw.target.astype(np.int32)
  xtr, xte, ytr, yte = model_selection.train_test_split(
      x, y, test_size=test_fraction, random_state=split_seed, stratify=y)
  return (xtr, ytr), (xte, yte)
