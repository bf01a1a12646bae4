"""Building the kernels: each C++ source of this package compiled once, registered with XLA.

Each source ``kernels/<name>.cc`` defines XLA FFI handlers (and may include the headers there).
:func:`load` compiles it once per machine with the system's C++ compiler (``$CXX``, default
``g++``, ``-O3 -march=native -Wall``; its warnings are logged) into a cache directory
(``$BNTT_KERNEL_CACHE``, default ``~/.cache/bntt_jax``; the file name holds a hash of the
source and the headers, jaxlib's version, the flags and the CPU's model and flags, and is
written atomically) and registers its handlers as XLA custom-call targets for the CPU.

The kernels serve a single CPU device on Linux: an FFI call has no sharding rule, so on several
devices XLA would gather a sharded batch onto each one. Callers fall back to XLA's own
operations where :func:`load` says no, with its reason.
"""
from __future__ import annotations

import ctypes
import glob
import hashlib
import os
import subprocess
import sys
from typing import Iterable, Mapping, Tuple

import jax

from absl import logging

from bntt_jax import files
from bntt_jax import vma

_KERNELS = os.path.dirname(os.path.abspath(__file__))
_loaded: dict = {}   # source name -> (ok, reason)
_cpu: list = []


def source(name: str) -> str:
  return os.path.join(_KERNELS, f'{name}.cc')


def cpu_lines() -> list:
  """The 'model name' and 'flags' lines of /proc/cpuinfo (what -march=native compiles for)."""
  if not _cpu:
    with open('/proc/cpuinfo') as f:
      _cpu.extend(sorted({line for line in f if line.startswith(('model name', 'flags'))}))
  return _cpu


def _build(name: str) -> str:
  """Compile ``kernels/<name>.cc`` unless the cache has it; return the library's path."""
  import jaxlib  # pylint: disable=g-import-not-at-top
  cxx = os.environ.get('CXX', 'g++')
  flags = ['-O3', '-march=native', '-std=c++17', '-shared', '-fPIC', '-Wall',
           '-isystem', jax.ffi.include_dir()]
  key = hashlib.sha256(' '.join([cxx, jaxlib.__version__, *flags, *cpu_lines()]).encode())
  for path in [source(name)] + sorted(glob.glob(os.path.join(_KERNELS, '*.h'))):
    with open(path, 'rb') as f:
      key.update(f.read())
  cache = os.environ.get('BNTT_KERNEL_CACHE') or os.path.join(
      os.path.expanduser('~'), '.cache', 'bntt_jax')
  path = os.path.join(cache, f'{name}_{key.hexdigest()[:16]}.so')
  if not os.path.exists(path):
    os.makedirs(cache, exist_ok=True)
    # Atomic: a concurrent build or a crash never leaves half a library.
    with files.atomic_path(path) as tmp:
      r = subprocess.run([cxx, *flags, source(name), '-o', tmp, '-lpthread'], check=True,
                         capture_output=True, text=True)
    if r.stderr.strip():
      logging.warning('%s: compiler messages:\n%s', source(name), r.stderr.strip())
  return path


def load(name: str, targets: Mapping[str, str], cpu_flags: Iterable[str] = ()) -> Tuple[bool, str]:
  """Build and register ``kernels/<name>.cc`` once; ``(True, '')`` or ``(False, why not)``.

  Args:
    name: the source's name.
    targets: XLA custom-call target name -> the handler's symbol in the library.
    cpu_flags: /proc/cpuinfo flags the source needs (e.g. ``avx512f``).
  """
  if name not in _loaded:
    try:
      if jax.default_backend() != 'cpu' or not sys.platform.startswith('linux'):
        raise RuntimeError('not a Linux CPU backend')
      if jax.device_count() != 1:
        raise RuntimeError(f'{jax.device_count()} devices (the kernels serve one CPU device)')
      for flag in cpu_flags:
        if not any(f' {flag}' in line for line in cpu_lines() if line.startswith('flags')):
          raise RuntimeError(f'the CPU has no {flag}')
      lib = ctypes.cdll.LoadLibrary(_build(name))
      for target, symbol in targets.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)),
                                    platform='cpu')
      _loaded[name] = (True, '')
    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
      detail = getattr(e, 'stderr', '') or ''
      _loaded[name] = (False, f'{e} {detail[-500:]}'.strip())
  return _loaded[name]


def call(target: str, result_shapes, *args, **attrs):
  """``jax.ffi.ffi_call(target, result_shapes)(*args, **attrs)``, its results typed as
  varying over the mesh axes its arguments vary over (inside ``shard_map`` an FFI
  call's results would otherwise be typed as replicated: a later ``psum`` would then
  count them once per device)."""
  out = jax.ffi.ffi_call(target, result_shapes, vmap_method='sequential')(*args, **attrs)
  return vma.like_inputs(out, *args)


def reason(name: str) -> str:
  """Why ``kernels/<name>.cc`` is not in use ('' when it is, or :func:`load` was not called)."""
  return _loaded.get(name, (True, ''))[1]
