"""Writing a file so that a kill, a crash or a full disk never leaves half of it.

Every file the library writes whole (JSON records, caches, compiled kernels) goes through
:func:`atomic_path`: the content is written to a temporary file beside the target, flushed to
disk, then renamed over it (``os.replace`` is atomic on POSIX filesystems), so a reader sees
the old file or the new one, never a part.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Callable, IO, Iterator


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """A temporary path beside ``path`` to write; renamed to ``path`` when the block ends without
  an exception, removed when it raises."""
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f'.{os.path.basename(path)}.', suffix='.tmp')
  os.close(fd)
  try:
    yield tmp
    with open(tmp, 'rb') as f:   # on disk before the rename: a crash cannot leave it empty
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


def atomic_write(path: str, write: Callable[[IO], None], binary: bool = False) -> None:
  """``write(file)`` into ``path`` atomically (:func:`atomic_path`)."""
  with atomic_path(path) as tmp:
    with open(tmp, 'wb' if binary else 'w') as f:
      write(f)
