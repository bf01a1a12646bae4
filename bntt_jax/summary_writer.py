"""TensorBoard event files of scalars, written without TensorFlow or TensorBoard installed.

``SummaryWriter(logdir).scalars(step, {'train/loss': 0.3, ...})`` appends one ``Event`` per
call to ``logdir/events.out.tfevents.<time>.<host>`` (what ``tensorboard --logdir`` reads, the
flax examples' convention). The format: TFRecord framing (little-endian length, masked CRC-32C
of it, the payload, masked CRC-32C of that) around ``tensorflow.Event`` protocol buffers
(``wall_time`` = 1, ``step`` = 2, ``file_version`` = 3, ``summary`` = 5; ``Summary.value`` = 1;
``Value.tag`` = 1, ``Value.simple_value`` = 2), encoded here by hand. :func:`read_scalars`
reads them back (for tests and scripts).
"""
from __future__ import annotations

import os
import socket
import struct
import time
from typing import Dict, Iterator, List, Mapping, Tuple


def _crc32c_table() -> List[int]:
  table = []
  for i in range(256):
    c = i
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    table.append(c)
  return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  c = 0xFFFFFFFF
  for b in data:
    c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
  return c ^ 0xFFFFFFFF


def _masked(data: bytes) -> int:
  c = crc32c(data)
  return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
  out = bytearray()
  n &= (1 << 64) - 1
  while True:
    b = n & 0x7F
    n >>= 7
    if n:
      out.append(b | 0x80)
    else:
      out.append(b)
      return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited field."""
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _event(wall_time: float, step: int, *, file_version: str = '',
           scalars: Mapping[str, float] = ()) -> bytes:
  out = b'\x09' + struct.pack('<d', wall_time) + b'\x10' + _varint(int(step))
  if file_version:
    out += _field(3, file_version.encode())
  if scalars:
    values = b''.join(_field(1, _field(1, tag.encode()) + b'\x15' + struct.pack('<f', float(v)))
                      for tag, v in scalars.items())
    out += _field(5, values)
  return out


def _record(payload: bytes) -> bytes:
  head = struct.pack('<Q', len(payload))
  return head + struct.pack('<I', _masked(head)) + payload + struct.pack('<I', _masked(payload))


class SummaryWriter:
  """Scalars to a new event file in ``logdir`` (created); every call is flushed."""

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    self.path = os.path.join(
        logdir, f'events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}')
    with open(self.path, 'ab') as f:
      f.write(_record(_event(time.time(), 0, file_version='brain.Event:2')))

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    with open(self.path, 'ab') as f:
      f.write(_record(_event(time.time(), step, scalars=values)))


def _read_varint(buf: bytes, i: int) -> Tuple[int, int]:
  n = shift = 0
  while True:
    b = buf[i]
    i += 1
    n |= (b & 0x7F) << shift
    shift += 7
    if not b & 0x80:
      return n, i


def _fields(buf: bytes) -> Iterator[Tuple[int, object]]:
  i = 0
  while i < len(buf):
    key, i = _read_varint(buf, i)
    number, wire = key >> 3, key & 7
    if wire == 0:
      value, i = _read_varint(buf, i)
    elif wire == 1:
      value, i = buf[i:i + 8], i + 8
    elif wire == 5:
      value, i = buf[i:i + 4], i + 4
    elif wire == 2:
      n, i = _read_varint(buf, i)
      value, i = buf[i:i + n], i + n
    else:
      raise ValueError(f'unsupported protobuf wire type {wire}')
    yield number, value


def read_scalars(path: str) -> Dict[str, List[Tuple[int, float]]]:
  """``tag -> [(step, value), ...]`` of one event file, checking every record's CRCs (a
  record cut by a kill ends the file)."""
  out: Dict[str, List[Tuple[int, float]]] = {}
  with open(path, 'rb') as f:
    data = f.read()
  i = 0
  while i + 12 <= len(data):
    head = data[i:i + 8]
    (n,) = struct.unpack('<Q', head)
    if struct.unpack('<I', data[i + 8:i + 12])[0] != _masked(head) or i + 16 + n > len(data):
      break
    payload = data[i + 12:i + 12 + n]
    if struct.unpack('<I', data[i + 12 + n:i + 16 + n])[0] != _masked(payload):
      break
    i += 16 + n
    step = 0
    for number, value in _fields(payload):
      if number == 2:
        step = value
      elif number == 5:
        for _, v in _fields(value):
          tag, simple = '', None
          for k, x in _fields(v):
            if k == 1:
              tag = x.decode()
            elif k == 2:
              simple = struct.unpack('<f', x)[0]
          if simple is not None:
            out.setdefault(tag, []).append((step, simple))
  return out
