"""Building the kernels: each C++ source of this package compiled once, registered with XLA.

Each source ``kernels/<name>.cc`` defines XLA FFI handlers (and may include the headers there).
:func:`load` compiles it once per machine and variant with the system's C++ compiler (``$CXX``,
default ``g++``, ``-O3 -std=c++17 -Wall`` and the variant's flags; its warnings are logged) into
a cache directory (``$BNTT_KERNEL_CACHE``, default ``~/.cache/bntt_jax``; the file name holds
the variant and a hash of the source and the headers, jaxlib's version, every compiler flag and
the CPU's model and flags, and is written atomically), runs the library's self-test where it
has one (its kernels on small problems against a direct convolution in double: a build that
gives wrong numbers is refused, not used) and registers its handlers as XLA custom-call targets
for the CPU, named ``<target>_<variant>``.

The variants (:data:`VARIANTS`; ``kernels/simd.h`` holds each one's vector type):

* ``avx512``: ``-march=native`` on a CPU with AVX-512F (16 floats a vector).
* ``avx2``: ``-march=x86-64 -mavx2 -mfma -mtune=native`` on a CPU with AVX2 and FMA (8 floats):
  explicit flags, not ``-march=native``, so that on an AVX-512 host it holds no AVX-512
  instruction and runs as on any AVX2 machine (Haswell and Zen 1 onwards).
* ``generic``: no target flag: the compiler's baseline (SSE2 on x86-64, NEON on aarch64), for
  any Linux CPU with a C++17 compiler. Tested here on x86-64 only; elsewhere the self-test is
  what stands between a wrong build and a wrong result.

``$BNTT_KERNEL_ISA`` picks one (``auto``, the default: the first of :data:`VARIANTS` that the
CPU runs). A value not among them is a :class:`~bntt_jax.errors.ConfigError`; a variant the
CPU cannot run is refused like any other failure (XLA's operations instead, the reason logged
and returned by :func:`reason`).

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
from typing import Mapping, Tuple

import jax

from absl import logging

from bntt_jax import errors
from bntt_jax import files
from bntt_jax import vma

_KERNELS = os.path.dirname(os.path.abspath(__file__))
_loaded: dict = {}   # (source name, variant) -> (ok, reason)
_cpu: list = []

ENV = 'BNTT_KERNEL_ISA'
VARIANTS = ('avx512', 'avx2', 'generic')   # widest first: 'auto' takes the first that runs
# variant -> (the /proc/cpuinfo flags it needs, its compiler flags).
_TARGETS = {
    'avx512': (('avx512f',), ('-march=native',)),
    'avx2': (('avx', 'avx2', 'fma'), ('-march=x86-64', '-mtune=native', '-mavx2', '-mfma')),
    'generic': ((), ()),
}


def source(name: str) -> str:
  return os.path.join(_KERNELS, f'{name}.cc')


def cpu_lines() -> list:
  """The 'model name' and 'flags' lines of /proc/cpuinfo (what -march=native compiles for)."""
  if not _cpu:
    try:
      with open('/proc/cpuinfo') as f:
        _cpu.extend(sorted({line for line in f if line.startswith(('model name', 'flags'))}))
    except OSError:   # not Linux: load() refuses before it builds anything
      pass
  return _cpu


def cpu_flags() -> frozenset:
  """The CPU's feature flags (x86's 'flags' line of /proc/cpuinfo; empty elsewhere)."""
  return frozenset(w for line in cpu_lines() if line.startswith('flags')
                   for w in line.split(':', 1)[-1].split())


def missing(variant: str) -> list:
  """The CPU flags ``variant`` needs and this CPU lacks ([] where it runs here)."""
  return [f for f in _TARGETS[variant][0] if f not in cpu_flags()]


def requested() -> str:
  """``$BNTT_KERNEL_ISA`` ('auto' when unset or empty); ConfigError for another value."""
  value = os.environ.get(ENV, '') or 'auto'
  errors.check_one_of(ENV, value, ('auto',) + VARIANTS)
  return value


def variant() -> str:
  """The variant the kernels are built as now: ``$BNTT_KERNEL_ISA``, or for 'auto' the first of
  :data:`VARIANTS` that this CPU runs (``generic`` runs on any)."""
  value = requested()
  if value == 'auto':
    value = next(v for v in VARIANTS if not missing(v))
  return value


def compile_flags(variant_: str) -> list:
  """The compiler's flags for one variant (all of them are in the cache key)."""
  return ['-O3', '-std=c++17', '-shared', '-fPIC', '-Wall', *_TARGETS[variant_][1],
          f'-DBNTT_ISA_{variant_.upper()}', '-isystem', jax.ffi.include_dir()]


def _build(name: str, variant_: str) -> str:
  """Compile ``kernels/<name>.cc`` as ``variant_`` unless the cache has it; its path."""
  import jaxlib  # pylint: disable=g-import-not-at-top
  cxx = os.environ.get('CXX', 'g++')
  flags = compile_flags(variant_)
  key = hashlib.sha256(' '.join([cxx, jaxlib.__version__, *flags, *cpu_lines()]).encode())
  for path in [source(name)] + sorted(glob.glob(os.path.join(_KERNELS, '*.h'))):
    with open(path, 'rb') as f:
      key.update(f.read())
  cache = os.environ.get('BNTT_KERNEL_CACHE') or os.path.join(
      os.path.expanduser('~'), '.cache', 'bntt_jax')
  path = os.path.join(cache, f'{name}_{variant_}_{key.hexdigest()[:16]}.so')
  if not os.path.exists(path):
    os.makedirs(cache, exist_ok=True)
    # Atomic: a concurrent build or a crash never leaves half a library.
    with files.atomic_path(path) as tmp:
      r = subprocess.run([cxx, *flags, source(name), '-o', tmp, '-lpthread'], check=True,
                         capture_output=True, text=True)
    if r.stderr.strip():
      logging.warning('%s: compiler messages:\n%s', source(name), r.stderr.strip())
  return path


class _Refused(RuntimeError):
  """A reason worth a warning in the log (the variant, the compiler, the self-test)."""


def _self_test(lib, symbol: str) -> None:
  fn = getattr(lib, symbol)
  fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_char_p, ctypes.c_int]
  msg = ctypes.create_string_buffer(512)
  if fn(msg, len(msg)) != 0:
    raise _Refused(f'the build failed its self-test ({msg.value.decode(errors="replace")})')


def load(name: str, targets: Mapping[str, str], self_test: str = '') -> Tuple[bool, str]:
  """Build and register ``kernels/<name>.cc`` once per variant (:func:`variant`);
  ``(True, '')`` or ``(False, why not)``.

  Args:
    name: the source's name.
    targets: XLA custom-call target name -> the handler's symbol in the library (registered
      as ``<target>_<variant>``: :func:`call` adds the suffix).
    self_test: the library's ``int f(char* msg, int len)`` that returns 0 when its kernels
      compute the right numbers ('' for none).
  """
  key = (name, variant())
  if key not in _loaded:
    try:
      if jax.default_backend() != 'cpu' or not sys.platform.startswith('linux'):
        raise RuntimeError('not a Linux CPU backend')
      if jax.device_count() != 1:
        raise RuntimeError(f'{jax.device_count()} devices (the kernels serve one CPU device)')
      if missing(key[1]):
        raise _Refused(f'{ENV}={key[1]}: the CPU has no {", ".join(missing(key[1]))}')
      try:
        lib = ctypes.cdll.LoadLibrary(_build(*key))
      except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, 'stderr', '') or ''
        raise _Refused(f'{e} {detail[-500:]}'.strip()) from e
      if self_test:
        _self_test(lib, self_test)
      for target, symbol in targets.items():
        jax.ffi.register_ffi_target(f'{target}_{key[1]}',
                                    jax.ffi.pycapsule(getattr(lib, symbol)), platform='cpu')
      _loaded[key] = (True, '')
    except RuntimeError as e:
      _loaded[key] = (False, str(e))
      log = logging.warning if isinstance(e, _Refused) else logging.info
      log("bntt_jax.kernels: %s (%s) not in use, XLA's operations instead: %s", name, key[1], e)
  return _loaded[key]


def call(target: str, result_shapes, *args, **attrs):
  """``jax.ffi.ffi_call(target + '_' + variant(), result_shapes)(*args, **attrs)``, its
  results typed as varying over the mesh axes its arguments vary over (inside ``shard_map`` an
  FFI call's results would otherwise be typed as replicated: a later ``psum`` would then count
  them once per device)."""
  out = jax.ffi.ffi_call(f'{target}_{variant()}', result_shapes,
                         vmap_method='sequential')(*args, **attrs)
  return vma.like_inputs(out, *args)


def reason(name: str) -> str:
  """Why ``kernels/<name>.cc`` is not in use as :func:`variant` ('' when it is, or
  :func:`load` was not called)."""
  return _loaded.get((name, variant()), (True, ''))[1]
