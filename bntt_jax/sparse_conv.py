"""Event-driven 3x3 convolutions for XLA:CPU: forward and weight gradient from the input's nonzeros.

A convolution whose input is spikes (0/1, ~20-30 % ones in VGG9) does most of its dense work on
zeros. ``conv3x3(x, w)`` is a 'SAME', stride-1 convolution of ``x [N, H, W, C]`` with
``w [3, 3, C, D]`` that computes its forward and its weight gradient in C++ (AVX-512,
``kernels/sparse_conv.cc``) from each input pixel's nonzero channels, and its input gradient
with XLA's dense convolution (the output gradient is dense). It is exact for any input, in the
float32 arithmetic of a different summation order, and deterministic; only its speed depends on
the sparsity (README, Performance: at VGG9's 22-26 % the forward and the weight gradient take
about half the dense convolution's time).

The kernels are compiled once per machine with the system's C++ compiler (``$CXX``, default
``g++``) into a cache directory (``$BNTT_KERNEL_CACHE``, default ``~/.cache/bntt_jax``) and
registered as XLA FFI targets. :func:`available` says whether that worked (Linux, a CPU with
AVX-512, a compiler, a single CPU device: an FFI call has no sharding rule); blocks fall back to
XLA's convolution otherwise, so results never depend on it beyond rounding. The input gradient
is XLA's, so ``jax.grad`` and ``jax.vjp`` work through it; forward-mode autodiff (``jax.jvp``)
does not.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'kernels', 'sparse_conv.cc')
_FORWARD, _WEIGHT_GRAD = 'bntt_sparse_conv_forward', 'bntt_sparse_conv_weight_grad'
_state: dict = {}


def _build(cpu: list) -> str:
  """Compile the kernels (once per source, jaxlib, compiler and kind of CPU: ``cpu``, the
  model name and flags lines of /proc/cpuinfo, for -march=native) and return the path."""
  import jaxlib  # pylint: disable=g-import-not-at-top
  cxx = os.environ.get('CXX', 'g++')
  flags = ['-O3', '-march=native', '-std=c++17', '-shared', '-fPIC', '-w',
           '-isystem', jax.ffi.include_dir()]
  with open(_SOURCE, 'rb') as f:
    key = hashlib.sha256(f.read() + ' '.join([cxx, jaxlib.__version__, *flags, *cpu]).encode())
  cache = os.environ.get('BNTT_KERNEL_CACHE') or os.path.join(
      os.path.expanduser('~'), '.cache', 'bntt_jax')
  path = os.path.join(cache, f'sparse_conv_{key.hexdigest()[:16]}.so')
  if not os.path.exists(path):
    os.makedirs(cache, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix='.so', dir=cache)
    os.close(fd)
    try:
      subprocess.run([cxx, *flags, _SOURCE, '-o', tmp, '-lpthread'], check=True,
                     capture_output=True, text=True)
      os.replace(tmp, path)   # atomic: a concurrent build or a crash never leaves half a library
    finally:
      if os.path.exists(tmp):
        os.unlink(tmp)
  return path


def available() -> bool:
  """Whether :func:`conv3x3` runs its own kernels here (built and registered on first call)."""
  if 'ok' not in _state:
    _state['ok'], _state['why'] = False, ''
    try:
      if jax.default_backend() != 'cpu' or not sys.platform.startswith('linux'):
        raise RuntimeError('not a Linux CPU backend')
      if jax.device_count() != 1:
        # An FFI call has no sharding rule: XLA would gather a sharded batch onto every device.
        raise RuntimeError(f'{jax.device_count()} devices (the kernels serve one CPU device)')
      with open('/proc/cpuinfo') as f:
        cpu = sorted({line for line in f if line.startswith(('model name', 'flags'))})
      if not any(' avx512f' in line for line in cpu):
        raise RuntimeError('the CPU has no AVX-512F')
      lib = ctypes.cdll.LoadLibrary(_build(cpu))
      for name, symbol in ((_FORWARD, 'BnttSparseConvForward'),
                           (_WEIGHT_GRAD, 'BnttSparseConvWeightGrad')):
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, symbol)), platform='cpu')
      _state['ok'] = True
    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
      detail = getattr(e, 'stderr', '') or ''
      _state['why'] = f'{e} {detail[-500:]}'.strip()
  return _state['ok']


def unavailable_reason() -> str:
  """Why :func:`available` is False ('' when it is True or was not asked)."""
  return _state.get('why', '')


def supports(x_shape, w_shape, dtype) -> bool:
  """Whether :func:`conv3x3` takes these operands (else use XLA's convolution)."""
  return (len(x_shape) == 4 and tuple(w_shape[:2]) == (3, 3) and jnp.dtype(dtype) == jnp.float32
          and w_shape[2] % 16 == 0 and w_shape[3] % 64 == 0 and w_shape[2] <= 65535)


def dense_conv3x3(x, w):
  """The same convolution by XLA (the reference and the input gradient's route)."""
  return jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@jax.custom_vjp
def conv3x3(x, w):
  """'SAME' 3x3 convolution of ``x [N, H, W, C]`` by ``w [3, 3, C, D]``, float32 (module doc)."""
  n, h, wd, _ = x.shape
  return jax.ffi.ffi_call(_FORWARD, jax.ShapeDtypeStruct((n, h, wd, w.shape[3]), jnp.float32),
                          vmap_method='sequential')(x, w)


def _fwd(x, w):
  return conv3x3(x, w), (x, w)


def _bwd(res, g):
  x, w = res
  dx = jax.vjp(lambda x: dense_conv3x3(x, w), x)[1](g)[0]
  dw = jax.ffi.ffi_call(_WEIGHT_GRAD, jax.ShapeDtypeStruct(w.shape, jnp.float32),
                        vmap_method='sequential')(x, g)
  return dx, dw


conv3x3.defvjp(_fwd, _bwd)
