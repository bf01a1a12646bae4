"""Vectorised numpy augmentation of uint8 image batches ``[B, H, W, C]``.

Random crop with zero padding and horizontal flip are one fancy-indexing
gather per batch (no Python loop over examples), much faster than per-image
``np.pad`` + slicing (README, Performance: ``experiments/input_pipeline.py``'s figures).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np


def draw_crop_flip(rng: np.random.Generator, n: int, pad: int) -> Tuple[np.ndarray, ...]:
  """Offsets ``[n]`` in ``0..2*pad`` (rows, columns) and flips ``[n]`` (bool)."""
  oy = rng.integers(0, 2 * pad + 1, size=n)
  ox = rng.integers(0, 2 * pad + 1, size=n)
  flip = rng.random(n) < 0.5
  return oy, ox, flip


def crop_flip(images: np.ndarray, oy: np.ndarray, ox: np.ndarray, flip: np.ndarray,
              pad: int) -> np.ndarray:
  """Crop ``H x W`` at ``(oy, ox)`` from the zero-padded images, then flip.

  Equals, per example, torchvision's ``RandomCrop(H, padding=pad)`` followed
  by ``RandomHorizontalFlip`` with those draws.

  Args:
    images: ``uint8 [B, H, W, C]``.
    oy, ox: ``[B]`` top-left corners in the padded image, ``0..2*pad``.
    flip: ``[B]`` bool.
    pad: zero padding on every side, in pixels.
  Returns:
    ``[B, H, W, C]``, same dtype.
  """
  b, h, w, _ = images.shape
  padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else images
  rows = oy[:, None] + np.arange(h)                                     # [B, H]
  ar = np.arange(w)
  # Flip after crop: output column x reads cropped column w - 1 - x.
  cols = ox[:, None] + np.where(flip[:, None], w - 1 - ar, ar)           # [B, W]
  return padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def normalize(images: np.ndarray, mean: Optional[Sequence[float]],
              std: Optional[Sequence[float]]) -> np.ndarray:
  """``uint8 [..., C]`` -> ``float32 (x / 255 - mean) / std``; ``mean=None``: the values as
  they are (model inputs; float32 unless already floating point)."""
  if mean is None:
    images = np.asarray(images)
    return images if np.issubdtype(images.dtype, np.floating) else images.astype(np.float32)
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)
  scale = 1.0 / (255.0 * std)
  # One multiply-add on float32: (x / 255 - m) / s = x * scale - m / s.
  out = images.astype(np.float32)
  out *= scale
  out -= mean / std
  return out
