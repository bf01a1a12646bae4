"""Hand-built DVS128 AEDAT 2.0 recordings for tests, written from the published layout.

No writer of the project is used. The layout (iniVation, "AEDAT 2.0"; jAER's
DVS128 extractor):

* header lines starting with ``#`` and ending with CRLF, the first one
  ``#!AER-DAT2.0``;
* per event a big-endian 32-bit address and a big-endian 32-bit timestamp (us);
* DVS128 address: bit 0 raw polarity (0 = ON), bits 1-7 raw x, bits 8-14 raw y,
  bit 15 a sync event (not a pixel).

:func:`make_dataset` writes a tiny CIFAR10-DVS-shaped tree
(``<root>/<class>/cifar10_<class>_<i>.aedat``) for loader and end-to-end tests.
"""
from __future__ import annotations

import os
import struct

import numpy as np

HEADER = (
    b'#!AER-DAT2.0\r\n',
    b'# This is a raw AE data file - do not edit\r\n',
    b'# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n',
    b'# Timestamps tick is 1 us\r\n',
)
SYNC_BIT = 0x8000


def dvs128_address(raw_x: int, raw_y: int, raw_pol: int) -> int:
  return (raw_y << 8) | (raw_x << 1) | raw_pol


def aedat2_bytes(words, header=HEADER) -> bytes:
  """``words``: ``(address, timestamp)`` pairs, packed big-endian with struct."""
  return b''.join(header) + b''.join(struct.pack('>II', a, t) for a, t in words)


def write_recording(path, words, header=HEADER) -> str:
  path = os.fspath(path)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(aedat2_bytes(words, header))
  return path


def recording_event_count(class_index: int, i: int, base: int) -> int:
  """Events in recording ``i`` of class ``class_index``: unique within a dataset
  (up to 100 recordings a class), so a test can tell recordings apart by their
  total count."""
  return base + i + 100 * class_index


def make_dataset(root, classes=('airplane', 'automobile'), per_class: int = 4,
                 base_events: int = 40, duration_us: int = 100_000, seed: int = 0) -> dict:
  """Write ``len(classes) x per_class`` recordings; returns ``{relpath: (label, events)}``.

  Class c puts its events in the c-th horizontal band of raw x (so, in the
  default orientation, a band of rows), which a small network can learn. ON and
  OFF events alternate; timestamps are sorted, starting at an arbitrary offset.
  """
  rng = np.random.default_rng(seed)
  band = 128 // len(classes)
  out = {}
  for c, name in enumerate(classes):
    for i in range(per_class):
      n = recording_event_count(c, i, base_events)
      raw_x = rng.integers(c * band, (c + 1) * band, n)
      raw_y = rng.integers(0, 128, n)
      pol = np.arange(n) % 2
      addr = (raw_y << 8) | (raw_x << 1) | pol
      t = 1_000_000 + np.sort(rng.integers(0, duration_us, n))
      body = np.stack([addr, t], axis=1).astype('>u4').tobytes()
      rel = f'{name}/cifar10_{name}_{i}.aedat'
      path = os.path.join(os.fspath(root), rel)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, 'wb') as f:
        f.write(b''.join(HEADER) + body)
      out[rel] = (c, n)
  return out
