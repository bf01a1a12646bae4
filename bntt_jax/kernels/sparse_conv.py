"""Event-driven 3x3 convolutions for XLA:CPU: forward and weight gradient from the input's nonzeros.

A convolution whose input is spikes (0/1, mostly zeros) does most of its dense work on
zeros. ``conv3x3(x, w)`` is a 'SAME', stride-1 convolution of ``x [N, H, W, C]`` with
``w [3, 3, C, D]`` that computes its forward and its weight gradient in C++ (``sparse_conv.cc``,
AVX-512, AVX2 or generic: :mod:`bntt_jax.kernels.build`) from each input pixel's nonzero
channels. Its input gradient is dense (so is its operand, the output gradient): Winograd's
F(4x4, 3x3) in C++ where that kernel runs (:mod:`bntt_jax.kernels.winograd`, a quarter of the
multiplies, its own rounding), else XLA's convolution. The forward and the weight gradient are exact for any input, in the float32
arithmetic of a different summation order; all three are deterministic; only the speed of the
first two depends on the sparsity (README, Performance, gives VGG9's sparsity and the kernels'
times).

Average-pooled spikes (``k / 4``: the input of VGG9's conv3 and conv5) are nonzero wherever one
spike of the window fired, so their density is several times the rate (an untrained VGG9's pooled
inputs are ~68 % nonzero, a trained one's ~8-20 %), and an untrained network's unpooled spikes are
22-27 % nonzero. The event-driven forward wins below about a tenth nonzero against the Winograd
kernel's dense forward, below about half against XLA's. :func:`conv3x3_where_sparse` decides at
run time, per call, from the input's nonzero fraction, between the event-driven forward and the
dense one (``lax.cond``).

The kernels are compiled on first use (:mod:`bntt_jax.kernels.build`). :func:`available` says
whether that worked (Linux, a compiler, a build that passed its self-test, a single CPU device: an
FFI call has no sharding rule); blocks fall back to XLA's convolution otherwise, so results never depend on
it beyond rounding. ``jax.grad`` and ``jax.vjp`` work through it, once (its backward has no
gradient rule of its own); forward-mode autodiff (``jax.jvp``) does not.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from bntt_jax.kernels import build
from bntt_jax.kernels import winograd
from bntt_jax import vma

_FORWARD, _WEIGHT_GRAD = 'bntt_sparse_conv_forward', 'bntt_sparse_conv_weight_grad'

# Above this fraction of nonzero inputs the dense forward is the faster one (VGG9's conv2-conv7
# shapes at T x B = 400 on a 2-core AVX-512 CPU, README, Performance): XLA's convolution above
# about half, the Winograd kernel (:mod:`bntt_jax.kernels.winograd`) above about a tenth.
MAX_DENSITY_XLA = 0.5
MAX_DENSITY_WINOGRAD = 0.1


def available() -> bool:
  """Whether :func:`conv3x3` runs its own kernels here (built and registered on first call)."""
  return build.load('sparse_conv', {_FORWARD: 'BnttSparseConvForward',
                                     _WEIGHT_GRAD: 'BnttSparseConvWeightGrad'},
                     self_test='BnttSparseConvSelfTest')[0]


def unavailable_reason() -> str:
  """Why :func:`available` is False ('' when it is True or was not asked)."""
  return build.reason('sparse_conv')


def variant() -> str:
  """The instruction-set variant it is built as (:func:`bntt_jax.kernels.build.variant`)."""
  return build.variant()


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
  _require()
  return _kernel_forward(x, w)


def _require():
  if not available():
    raise RuntimeError(f'the sparse convolution kernels are not available here: '
                       f'{unavailable_reason()}')


def _kernel_forward(x, w):
  n, h, wd, _ = x.shape
  return build.call(_FORWARD, jax.ShapeDtypeStruct((n, h, wd, w.shape[3]), jnp.float32), x, w)


def _weight_grad(x, g, w_shape):
  return build.call(_WEIGHT_GRAD, jax.ShapeDtypeStruct(w_shape, jnp.float32), x, g)


def _fwd(x, w):
  return conv3x3(x, w), (x, w)


def _winograd(w_shape, dtype) -> bool:
  return winograd.supports(w_shape, dtype) and winograd.available()


def input_grad(g, w):
  """The input gradient for the output gradient ``g``: dense (``g`` is), by the Winograd kernel
  where it runs (:mod:`bntt_jax.kernels.winograd`), else by XLA's convolution."""
  if _winograd(w.shape, g.dtype):
    return winograd.input_grad(g, w)
  x = jax.ShapeDtypeStruct(g.shape[:3] + w.shape[2:3], g.dtype)
  return jax.linear_transpose(lambda x: dense_conv3x3(x, w), x)(g)[0]


def _bwd(res, g):
  x, w = res
  return input_grad(g, w), vma.cotangent_for(_weight_grad(x, g, w.shape), w)


conv3x3.defvjp(_fwd, _bwd)


def max_density(w_shape, dtype=jnp.float32) -> float:
  """The largest fraction of nonzero inputs at which :func:`conv3x3_where_sparse` runs the
  event-driven forward for a filter of ``w_shape``: lower where the dense forward is Winograd's."""
  return MAX_DENSITY_WINOGRAD if _winograd(w_shape, dtype) else MAX_DENSITY_XLA


def dense_forward(x, w):
  """The dense forward: the Winograd kernel where it runs, else XLA's convolution."""
  return winograd.conv3x3(x, w) if _winograd(w.shape, x.dtype) else dense_conv3x3(x, w)


def event_driven(x, w_shape) -> jax.Array:
  """Whether :func:`conv3x3_where_sparse` runs the kernel's forward for ``x`` and a filter of
  ``w_shape``: at most :func:`max_density` of its values nonzero (a boolean scalar, computed at
  run time)."""
  return jnp.mean((x != 0).astype(jnp.float32)) <= max_density(w_shape, x.dtype)


@jax.custom_vjp
def conv3x3_where_sparse(x, w):
  """:func:`conv3x3`, whose forward is the dense one (:func:`dense_forward`) where ``x`` is
  dense (:func:`event_driven` false): a spiking layer's output above a tenth of its neurons
  firing (an untrained VGG9's 22-27 %), pooled spikes often.

  The weight gradient is the kernel's at any density: at the ~68 % nonzeros of an untrained
  VGG9's pooled spikes it takes about XLA's time (README, Performance), and XLA:CPU compiles a
  weight-gradient convolution inside a conditional's branch into a loop hundreds of times
  slower than its top-level one, so it cannot be the other branch."""
  return _where_sparse_fwd(x, w)[0]


def _where_sparse_fwd(x, w):
  _require()
  y = jax.lax.cond(event_driven(x, w.shape), _kernel_forward, dense_forward, x, w)
  return y, (x, w)


conv3x3_where_sparse.defvjp(_where_sparse_fwd, _bwd)
