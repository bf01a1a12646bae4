"""Tiny copies of DVS Gesture, N-MNIST and SHD in their releases' own on-disk layout, for tests.

Written from the published formats, read back by tonic's own dataset classes (no writer of
tonic or of the project is used):

* DVS128 Gesture, tonic's preprocessed release (figshare 38022171 / 38020584, extracted):
  ``DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy``, one integer array
  ``[N, 4]`` per gesture, columns ``x, y, p, t`` with ``t`` in ms (tonic multiplies it by
  1000). ``ibmGestureTest/`` likewise.
* N-MNIST (Orchard et al. 2015; ``Train.zip``/``Test.zip`` extracted):
  ``NMNIST/Train/<digit>/<id>.bin``, 5 bytes per event: x, y, then polarity in bit 7 of
  byte 2 and a 23-bit timestamp (us) in bits 6-0 of byte 2 and bytes 3-4, big-endian.
  An event with y = 240 is a timestamp overflow marker (+2**13 us for what follows).
* SHD (Cramer et al. 2020; ``shd_train.h5.zip`` unzipped): ``SHD/shd_train.h5`` with
  ragged ``spikes/times`` (float16 seconds) and ``spikes/units`` (uint16, 0..699),
  ``labels`` (uint16), ``extra/speaker`` (uint16) and ``extra/keys`` (class names).

Each writer returns the events it wrote, per split, as ``[(t_us, x, y, p, label), ...]``
arrays so that a test can compute the expected frames independently of the reader.
"""
from __future__ import annotations

import os
from typing import Dict, List, Tuple

import numpy as np

Sample = Tuple[Dict[str, np.ndarray], int]   # ({'t' us, 'x', 'y', 'p'}, label)


def _events(rng, n, width, height, band_of, label, t_scale_us, duration, n_bands):
  band = max(height // n_bands, 1)
  lo = (band_of(label) * band) % height
  y = rng.integers(lo, min(lo + band, height), n)
  x = rng.integers(0, width, n)
  p = np.arange(n) % 2
  t = np.sort(rng.integers(0, duration, n)) * t_scale_us
  return t, x, y, p


def write_dvsgesture(root, *, per_split=(('train', 'user01_fluorescent', 11),
                                          ('test', 'user24_led', 11)),
                     events: int = 60, seed: int = 0) -> Dict[str, List[Sample]]:
  """One gesture per label per listed (split, user folder, labels); events in a band of rows
  chosen by the label. Returns ``{'train': [...], 'test': [...]}`` in tonic's listing order
  (files sorted by the folder walk are not guaranteed: tests compare by label)."""
  rng = np.random.default_rng(seed)
  out: Dict[str, List[Sample]] = {'train': [], 'test': []}
  for split, user, n_labels in per_split:
    folder = os.path.join(os.fspath(root), 'DVSGesture',
                          'ibmGestureTrain' if split == 'train' else 'ibmGestureTest', user)
    os.makedirs(folder, exist_ok=True)
    for label in range(n_labels):
      n = events + label
      t_ms, x, y, p = _events(rng, n, 128, 128, lambda c: c, label, 1, 1500, 11)
      t_ms = t_ms + 17   # a recording that does not start at 0
      np.save(os.path.join(folder, f'{label}.npy'),
              np.stack([x, y, p, t_ms], axis=1).astype(np.int64))
      out[split].append(({'t': t_ms * 1000, 'x': x, 'y': y, 'p': p}, label))
  return out


def nmnist_bytes(x, y, p, t_us) -> bytes:
  """The 5-byte N-MNIST events, t < 2**23 (no overflow markers)."""
  x, y, p, t = (np.asarray(a, np.int64) for a in (x, y, p, t_us))
  raw = np.stack([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF], axis=1)
  return raw.astype(np.uint8).tobytes()


OVERFLOW = bytes([0, 240, 0, 0, 0])


def write_nmnist(root, *, per_digit: Dict[str, int] = None, events: int = 50, seed: int = 0,
                 overflow_in=('train', 0, 0)) -> Dict[str, List[Sample]]:
  """``per_digit[split]`` recordings per digit 0..9; one recording (``overflow_in``: split,
  digit, index) carries an overflow marker in the middle. Returns samples in tonic's order
  (digit folders sorted, files sorted)."""
  per_digit = per_digit or {'train': 2, 'test': 1}
  rng = np.random.default_rng(seed)
  out: Dict[str, List[Sample]] = {}
  for split, count in per_digit.items():
    out[split] = []
    for digit in range(10):
      folder = os.path.join(os.fspath(root), 'NMNIST', 'Train' if split == 'train' else 'Test',
                            str(digit))
      os.makedirs(folder, exist_ok=True)
      for i in range(count):
        n = events + digit + 10 * i
        t, x, y, p = _events(rng, n, 34, 34, lambda c: c, digit, 1, 300_000, 10)
        data = nmnist_bytes(x, y, p, t)
        if (split, digit, i) == tuple(overflow_in):
          half = n // 2
          data = data[:5 * half] + OVERFLOW + data[5 * half:]
          t = t.copy()
          t[half:] += 2 ** 13
        with open(os.path.join(folder, f'{i:05d}.bin'), 'wb') as f:
          f.write(data)
        out[split].append(({'t': t, 'x': x, 'y': np.asarray(y), 'p': p}, digit))
  return out


SHD_KEYS = [f'english-{d}' for d in ('zero', 'one', 'two', 'three', 'four', 'five', 'six',
                                      'seven', 'eight', 'nine')] + [
    f'german-{d}' for d in ('null', 'eins', 'zwei', 'drei', 'vier', 'fuenf', 'sechs',
                            'sieben', 'acht', 'neun')]


def write_shd_file(path, samples: List[Tuple[np.ndarray, np.ndarray, int]]) -> None:
  """``samples``: ``(times in s, units, label)``, written as the release lays them out."""
  import h5py  # pylint: disable=g-import-not-at-top  (tonic's dependency, not ours)
  os.makedirs(os.path.dirname(os.fspath(path)), exist_ok=True)
  with h5py.File(path, 'w') as f:
    vf16 = h5py.vlen_dtype(np.dtype('float16'))
    vu16 = h5py.vlen_dtype(np.dtype('uint16'))
    times = f.create_dataset('spikes/times', (len(samples),), dtype=vf16)
    units = f.create_dataset('spikes/units', (len(samples),), dtype=vu16)
    for i, (t, u, _) in enumerate(samples):
      times[i] = np.asarray(t, np.float16)
      units[i] = np.asarray(u, np.uint16)
    f.create_dataset('labels', data=np.asarray([s[2] for s in samples], np.uint16))
    f.create_dataset('extra/speaker', data=np.arange(len(samples), dtype=np.uint16) % 12)
    f.create_dataset('extra/keys', data=np.asarray(SHD_KEYS, dtype='S'))


def write_shd(root, *, per_split: Dict[str, int] = None, spikes: int = 80,
              seed: int = 0) -> Dict[str, List[Sample]]:
  """``per_split[split]`` samples cycling through the 20 labels; a label's spikes fall in
  its own band of 35 channels. Times are float16 seconds in [0.05, 0.95]; the returned
  events hold tonic's microseconds (float16 -> float64 * 1e6, truncated to int)."""
  per_split = per_split or {'train': 40, 'test': 20}
  rng = np.random.default_rng(seed)
  out: Dict[str, List[Sample]] = {}
  for split, count in per_split.items():
    rows, out[split] = [], []
    for i in range(count):
      label = i % 20
      n = spikes + i
      units = rng.integers(35 * label, 35 * (label + 1), n)
      times = np.sort(rng.uniform(0.05, 0.95, n)).astype(np.float16)
      rows.append((times, units, label))
      t_us = (times.astype(np.float64) * 1e6).astype(np.int64)
      out[split].append(({'t': t_us, 'x': units, 'y': np.zeros(n, np.int64),
                          'p': np.zeros(n, np.int64)}, label))
    write_shd_file(os.path.join(os.fspath(root), 'SHD', f'shd_{split}.h5'), rows)
  return out


# -- CIFAR10-DVS as tonic reads it: AEDAT 4.0 ---------------------------------
#
# The layout (iniVation, "AEDAT 4.0"; the schemas events.fbs and ioheader.fbs that DV and the
# aedat decoder share):
#   "#!AER-DAT4.0\r\n", then the IO header, a size-prefixed flatbuffer (file id "IOHE"):
#   table { compression: int32 = 0 (none); file_data_position: int64 = -1; description: string }
#   whose description is DV's XML naming each output stream (typeIdentifier, info/sizeX, sizeY);
#   then packets: uint32 stream id, uint32 byte length (little-endian), and a size-prefixed
#   flatbuffer (file id "EVTS") table { elements: [Event] } of
#   struct Event { t: int64 (us); x: int16; y: int16; on: bool } (16 bytes, aligned to 8).
# Packets are written uncompressed (compression 0, which the format allows); the real files
# use LZ4, which the decoder undoes before the same flatbuffers.

AEDAT4_MAGIC = b'#!AER-DAT4.0\r\n'


def _aedat4_description(width: int, height: int) -> str:
  return ('<dv version="2.0"><node name="outInfo" path="/mainloop/Recorder/outInfo/">'
          '<node name="0" path="/mainloop/Recorder/outInfo/0/">'
          '<attr key="compression" type="string">NONE</attr>'
          '<attr key="originalModuleName" type="string">converter</attr>'
          '<attr key="originalOutputName" type="string">events</attr>'
          '<attr key="typeDescription" type="string">Array of events (polarity ON/OFF).</attr>'
          '<attr key="typeIdentifier" type="string">EVTS</attr>'
          '<node name="info" path="/mainloop/Recorder/outInfo/0/info/">'
          f'<attr key="sizeX" type="int">{width}</attr>'
          f'<attr key="sizeY" type="int">{height}</attr>'
          '<attr key="source" type="string">DVS128</attr>'
          '</node></node></node></dv>')


def _ioheader(width: int, height: int) -> bytes:
  import flatbuffers  # pylint: disable=g-import-not-at-top  (only the AEDAT 4.0 writer)
  b = flatbuffers.Builder(1024)
  desc = b.CreateString(_aedat4_description(width, height))
  b.StartObject(3)
  b.PrependInt64Slot(1, -1, -1)
  b.PrependUOffsetTRelativeSlot(2, desc, 0)
  b.FinishSizePrefixed(b.EndObject(), file_identifier=b'IOHE')
  return bytes(b.Output())


def _event_packet(t, x, y, on) -> bytes:
  import flatbuffers  # pylint: disable=g-import-not-at-top
  b = flatbuffers.Builder(1024 + 16 * len(t))
  b.StartVector(16, len(t), 8)
  for ti, xi, yi, oi in reversed(list(zip(t, x, y, on))):
    b.Prep(8, 16)
    b.Pad(3)
    b.PrependBool(bool(oi))
    b.PrependInt16(int(yi))
    b.PrependInt16(int(xi))
    b.PrependInt64(int(ti))
  vec = b.EndVector()
  b.StartObject(1)
  b.PrependUOffsetTRelativeSlot(0, vec, 0)
  b.FinishSizePrefixed(b.EndObject(), file_identifier=b'EVTS')
  return bytes(b.Output())


def aedat4_bytes(t, x, y, on, *, width: int = 128, height: int = 128,
                 packet_size: int = 64) -> bytes:
  """One event stream (id 0) in packets of ``packet_size`` events."""
  out = [AEDAT4_MAGIC, _ioheader(width, height)]
  for s in range(0, len(t), packet_size):
    pkt = _event_packet(t[s:s + packet_size], x[s:s + packet_size], y[s:s + packet_size],
                        on[s:s + packet_size])
    out.append(np.asarray([0, len(pkt)], '<u4').tobytes() + pkt)
  return b''.join(out)


def write_cifar10dvs(root, *, classes=('airplane', 'automobile'), per_class: int = 4,
                     base_events: int = 40, seed: int = 0, aedat2_root=None
                     ) -> Dict[str, Sample]:
  """``CIFAR10DVS/<class>/cifar10_<class>_<i>.aedat4``, and, with ``aedat2_root``, the same
  recordings as the public AEDAT 2.0 release (``<class>/cifar10_<class>_<i>.aedat``).

  The AEDAT 4.0 copy holds DV's view of each DVS128 address: ``x = 127 - raw x``,
  ``y = 127 - raw y`` (jAER's x flip, then DV's top-left origin), ``on = raw bit == 0``;
  timestamps shifted by a constant. Returns ``{relative .aedat4 path: (events, label)}``
  with events in that view.
  """
  import dvs_fixtures  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  band = 128 // len(classes)
  out = {}
  for c, name in enumerate(classes):
    for i in range(per_class):
      n = base_events + i + 100 * c
      raw_x = rng.integers(c * band, (c + 1) * band, n)
      raw_y = rng.integers(0, 128, n)
      raw_p = np.arange(n) % 2
      t = 1_000_000 + np.sort(rng.integers(0, 100_000, n))
      x, y, on = 127 - raw_x, 127 - raw_y, raw_p == 0
      t4 = t + 5_000_000_000   # DV's absolute clock: a constant offset
      rel = f'{name}/cifar10_{name}_{i}.aedat4'
      path = os.path.join(os.fspath(root), 'CIFAR10DVS', rel)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, 'wb') as f:
        f.write(aedat4_bytes(t4, x, y, on))
      if aedat2_root is not None:
        words = [(dvs_fixtures.dvs128_address(int(a), int(b), int(p)), int(ti))
                 for a, b, p, ti in zip(raw_x, raw_y, raw_p, t)]
        dvs_fixtures.write_recording(
            os.path.join(os.fspath(aedat2_root), f'{name}/cifar10_{name}_{i}.aedat'), words)
      out[rel] = ({'t': t4, 'x': x, 'y': y, 'p': on.astype(np.int64)}, c)
  return out
