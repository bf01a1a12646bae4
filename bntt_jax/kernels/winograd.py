"""Dense 3x3 convolutions for XLA:CPU by Winograd's F(4x4, 3x3): a quarter of the multiplies.

A training step's input gradients of the spiking layers' convolutions are dense (their operand,
the output gradient, is), and with the event-driven forwards and weight gradients
(:mod:`bntt_jax.kernels.sparse_conv`) they were most of a low-rate step's convolution time.
:func:`input_grad` computes the input gradient of a 'SAME', stride-1 convolution by
``w [3, 3, C, D]`` from the output gradient ``g [N, H, W, D]``, and :func:`conv3x3` the
convolution itself, in C++ (``winograd.cc``, AVX-512, AVX2 or generic:
:mod:`bntt_jax.kernels.build`): each 4x4 output tile from the 6x6 input
tile around it with 36 multiplies per channel pair instead of 144 (Lavin & Gray, CVPR 2016).

It is not the direct convolution's arithmetic: each output is a cancelling sum of transformed
terms up to ~10x its size, so its error, relative to ``max|y|``, is about ten times XLA's
float32 convolution's: measured 0.2-8e-6 for 16-144 channels, 1.3e-5 at 256 in and out,
against XLA's 0.3-9e-7 (``tests/test_winograd.py``, which bounds it at 2e-5). It is
deterministic: each tile is computed whole by one thread.

The kernel is compiled on first use (:mod:`bntt_jax.kernels.build`); :func:`available` says
whether that worked (Linux, a compiler, a build that passed its self-test, one CPU device). Both functions are plain
(no ``custom_vjp``): :mod:`bntt_jax.kernels.sparse_conv` calls :func:`input_grad` in its backward.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bntt_jax.kernels import build

_TARGET = 'bntt_winograd_conv'


def available() -> bool:
  """Whether the Winograd kernel runs here (built and registered on first call)."""
  return build.load('winograd', {_TARGET: 'BnttWinogradConv'},
                    self_test='BnttWinogradSelfTest')[0]


def unavailable_reason() -> str:
  """Why :func:`available` is False ('' when it is True or was not asked)."""
  return build.reason('winograd')


def variant() -> str:
  """The instruction-set variant it is built as (:func:`bntt_jax.kernels.build.variant`)."""
  return build.variant()


def supports(w_shape, dtype) -> bool:
  """Whether the kernel takes a 3x3 filter ``w_shape`` (both channel counts multiples of 16)."""
  return (len(w_shape) == 4 and tuple(w_shape[:2]) == (3, 3) and jnp.dtype(dtype) == jnp.float32
          and w_shape[2] % 16 == 0 and w_shape[3] % 16 == 0)


def _require():
  if not available():
    raise RuntimeError(f'the Winograd kernel is not available here: {unavailable_reason()}')


def conv3x3(x, w):
  """'SAME' 3x3 convolution of ``x [N, H, W, C]`` by ``w [3, 3, C, D]`` (no gradient rule)."""
  _require()
  n, h, wd, _ = x.shape
  return build.call(_TARGET, jax.ShapeDtypeStruct((n, h, wd, w.shape[3]), jnp.float32), x, w,
                    transpose=np.int32(0))


def input_grad(g, w):
  """The input gradient of ``conv(x, w)`` ('SAME', ``w [3, 3, C, D]``) for the output gradient
  ``g [N, H, W, D]``: the convolution of ``g`` by ``w`` flipped in space, channels swapped."""
  _require()
  n, h, wd, _ = g.shape
  return build.call(_TARGET, jax.ShapeDtypeStruct((n, h, wd, w.shape[2]), jnp.float32), g, w,
                    transpose=np.int32(1))
