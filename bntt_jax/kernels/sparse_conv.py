"""Event-driven 3x3 convolutions for XLA:CPU: forward and weight gradient from the input's nonzeros.

A convolution whose input is spikes (0/1, mostly zeros) does most of its dense work on
zeros. ``conv3x3(x, w)`` is a 'SAME', stride-1 convolution of ``x [N, H, W, C]`` with
``w [3, 3, C, D]`` that computes its forward and its weight gradient in C++ (AVX-512,
``sparse_conv.cc``) from each input pixel's nonzero channels, and its input gradient
with XLA's dense convolution (the output gradient is dense). It is exact for any input, in the
float32 arithmetic of a different summation order, and deterministic; only its speed depends on
the sparsity (README, Performance, gives VGG9's sparsity and the kernels' times).

The kernels are compiled on first use (:mod:`bntt_jax.kernels.build`). :func:`available` says
whether that worked (Linux, a CPU with AVX-512, a compiler, a single CPU device: an FFI call has
no sharding rule); blocks fall back to XLA's convolution otherwise, so results never depend on
it beyond rounding. The input gradient is XLA's, so ``jax.grad`` and ``jax.vjp`` work through
it; forward-mode autodiff (``jax.jvp``) does not.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from bntt_jax.kernels import build
from bntt_jax import vma

_FORWARD, _WEIGHT_GRAD = 'bntt_sparse_conv_forward', 'bntt_sparse_conv_weight_grad'


def available() -> bool:
  """Whether :func:`conv3x3` runs its own kernels here (built and registered on first call)."""
  return build.load('sparse_conv', {_FORWARD: 'BnttSparseConvForward',
                                     _WEIGHT_GRAD: 'BnttSparseConvWeightGrad'},
                     cpu_flags=('avx512f',))[0]


def unavailable_reason() -> str:
  """Why :func:`available` is False ('' when it is True or was not asked)."""
  return build.reason('sparse_conv')


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
  if not available():
    raise RuntimeError(f'the sparse convolution kernels are not available here: '
                       f'{unavailable_reason()}')
  n, h, wd, _ = x.shape
  return build.call(_FORWARD, jax.ShapeDtypeStruct((n, h, wd, w.shape[3]), jnp.float32), x, w)


def _fwd(x, w):
  return conv3x3(x, w), (x, w)


def _bwd(res, g):
  x, w = res
  dx = jax.vjp(lambda x: dense_conv3x3(x, w), x)[1](g)[0]
  dw = build.call(_WEIGHT_GRAD, jax.ShapeDtypeStruct(w.shape, jnp.float32), x, g)
  return dx, vma.cotangent_for(dw, w)


conv3x3.defvjp(_fwd, _bwd)
