"""Synaptic ops of a spiking layer: 'SAME' convolutions and dense layers, no bias.

The inputs of these ops are mostly spikes: ``{0, 1}`` from a LIF layer, ``{-1, 0, 1}`` from
the Poisson coder, ``k / 4`` after a 2x2 average pool. Such values are exact in narrow
dtypes, and this module uses that twice:

* **Narrow residuals.** The backward pass needs an op's input for its weight gradient; it is
  kept as int8 (spikes) or bfloat16 (pooled spikes) instead of float32, and widened back in
  the backward (the same values: the same gradient).
* **Exact bf16x3 products** (``precision='exact_bf16x3'``). A float32 weight splits exactly into
  three bfloat16 parts, ``w = hi + mid + lo`` (:func:`split_bf16x3`: each part holds the next
  8 of the 24 significant bits), and a product of a bf16-exact input with a bf16 part is exact
  in float32. So ``conv(s, w) = conv(s, hi) + conv(s, mid) + conv(s, lo)`` with float32
  accumulation is the float32 convolution up to the order of the sum, computed on bf16 matrix
  units (TPU MXU, GPU tensor cores) in 3 passes instead of XLA:TPU's 6 for float32 at
  ``'highest'`` precision, or a GPU's float32 CUDA cores. The three parts are stacked along
  the contracted axis, ``conv([s, s, s], [hi; mid; lo])``, so the matrix unit adds the three
  products into one float32 accumulator and the output is written once (stacked along the
  output channels instead, three float32 outputs are written and read back: on a TPU, whose
  training step is bandwidth-bound, more bytes than the float32 convolution moves). The weight
  gradient ``s^T dy`` splits over ``dy`` the same way, stacked along the examples. The input
  gradient ``dy w^T`` has no exact operand and runs in float32.

Which inputs are exact is a property of the network (:meth:`bntt_jax.network.SpikingNetwork.
input_kinds`), checked statically: :func:`exact_dtype` says for an input kind, and an op
asked for ``exact_bf16x3`` on another kind refuses (one line naming the layer).
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.ad_checkpoint import checkpoint_name

from bntt_jax import errors
from bntt_jax import vma

Array = jax.Array

# What a synaptic op computes in (bfloat16 synapses are a dtype: the model's ``dtype``).
PRECISIONS = ('float32', 'exact_bf16x3')

# Input kinds (what a layer's input holds) and the narrowest dtype that holds them exactly.
SPIKES = 'spikes'            # {0, 1}: a LIF layer's output
SIGNED_SPIKES = 'signed'     # {-1, 0, 1}: the Poisson coder's
REAL = 'real'                # pixels, event counts, ReLU activations: no narrower dtype


def pooled(window_elements: int) -> str:
  """The kind of spikes averaged over ``window_elements`` positions: ``k / n``."""
  return f'pooled/{int(window_elements)}'


def is_spikes(kind: str) -> bool:
  """Whether input ``kind`` is a spiking layer's output: its spikes, or their average."""
  return kind == SPIKES or kind.startswith('pooled/')


def exact_dtype(kind: str) -> Optional[jnp.dtype]:
  """The narrowest dtype that holds every value of input ``kind`` exactly (None: float32).

  Spikes: int8. Averages ``k / n`` of ``n`` spikes: bfloat16 when ``n`` is a power of two up
  to 256 (``k <= n <= 256`` has at most 8 significant bits, and dividing by a power of two is
  exact); other ``n`` (a 3x3 pool: ``k / 9``) have no exact narrow dtype.
  """
  if kind in (SPIKES, SIGNED_SPIKES):
    return jnp.dtype(jnp.int8)
  if kind.startswith('pooled/'):
    n = int(kind.split('/')[1])
    if 0 < n <= 256 and n & (n - 1) == 0:
      return jnp.dtype(jnp.bfloat16)
  return None


def split_bf16x3(w: Array) -> Tuple[Array, Array, Array]:
  """``(hi, mid, lo)`` in bfloat16 with ``hi + mid + lo == w`` exactly (float32 ``w``).

  Rounding to nearest leaves a remainder of at most half a bf16 ulp, which is a multiple of
  ``w``'s float32 ulp: after ``hi`` at most 16 significant bits remain, after ``mid`` at most
  8, which ``lo`` holds exactly (down to float32's smallest normal numbers).
  """
  w = w.astype(jnp.float32)
  hi = w.astype(jnp.bfloat16)
  r = w - hi.astype(jnp.float32)
  mid = r.astype(jnp.bfloat16)
  lo = (r - mid.astype(jnp.float32)).astype(jnp.bfloat16)
  return hi, mid, lo


# The name under which a block's input, narrowed, is saved for the backward of a rematerialised
# block (:func:`narrowed`; ``jax.checkpoint_policies.save_only_these_names``).
NARROW_INPUT = 'narrow_input'


@jax.custom_jvp
def _straight_through(value: Array, x: Array) -> Array:
  """``value`` (equal to ``x``), with ``x``'s tangent: the cotangent passes to ``x``."""
  return value


@_straight_through.defjvp
def _straight_through_jvp(primals, tangents):
  return primals[0], tangents[1]


def narrowed(x: Array, kind: str) -> Array:
  """``x``, a spiking layer's output (``is_spikes(kind)``), computed from a copy in the
  narrowest exact dtype (the same values) named :data:`NARROW_INPUT`, gradients passed
  straight to ``x``; ``x`` of another kind as it is, named.

  Under ``jax.checkpoint`` with ``save_only_these_names(NARROW_INPUT)`` the backward then
  recomputes from the narrow copy (int8 spikes, bfloat16 pooled spikes) and keeps neither
  ``x`` nor anything computed from it: a spiking layer's state between its forward and its
  backward is one byte per input (two for pooled spikes). (The coder's output is left as it
  is: it is data, and a copy would be kept beside it, not instead of it.)
  """
  narrow = exact_dtype(kind)
  if not is_spikes(kind) or narrow is None:
    return checkpoint_name(x, NARROW_INPUT)
  saved = checkpoint_name(x.astype(narrow), NARROW_INPUT)
  return _straight_through(saved.astype(x.dtype), x)


# -- the ops ---------------------------------------------------------------------------------

_DN = ('NHWC', 'HWIO', 'NHWC')
# The weight gradient as a convolution: the input's channels play the batch, its examples the
# contracted features; dy is the kernel; the output's spatial axes are the kernel's.
_DN_WEIGHT_GRAD = ('CHWN', 'IHWO', 'HWNC')


def _conv(x, w, precision=None, preferred=None):
  return lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=_DN,
                                  precision=precision, preferred_element_type=preferred)


def _conv_weight_grad(x, g, kernel_hw, preferred=None):
  """``dL/dw`` of ``_conv(x, w)`` for ``g = dL/dy``: ``[kh, kw, C, D]``."""
  kh, kw = kernel_hw
  pad = ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)
  return lax.conv_general_dilated(x, g, (1, 1), pad, dimension_numbers=_DN_WEIGHT_GRAD,
                                  precision=lax.Precision.DEFAULT,
                                  preferred_element_type=preferred)


def _dense(x, w, precision=None, preferred=None):
  return lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())), precision=precision,
                         preferred_element_type=preferred)


def _dense_weight_grad(x, g, preferred=None):
  return lax.dot_general(x, g, (((0,), (0,)), ((), ())), precision=lax.Precision.DEFAULT,
                         preferred_element_type=preferred)


def _op(kind: str, x, w, **kw):
  return _conv(x, w, **kw) if kind == 'conv' else _dense(x, w, **kw)


def plain(kind: str, x: Array, w: Array) -> Array:
  """The op as XLA computes it in the operands' dtype, autodiff's gradient (bfloat16 synapses)."""
  return _op(kind, x, w)


def _bf16x3_forward(kind, x, w):
  # The three parts stacked along the contracted axis (the input channels), the input
  # repeated to match: the matrix unit accumulates the three products in float32 itself,
  # and the output is written once.
  xb = x.astype(jnp.bfloat16)
  x3 = jnp.concatenate([xb, xb, xb], axis=-1)
  w3 = jnp.concatenate(split_bf16x3(w), axis=-2)
  return _op(kind, x3, w3, precision=lax.Precision.DEFAULT, preferred=jnp.float32)


def _bf16x3_weight_grad(kind, x, g, w_shape):
  # dw = x^T dy: here the contracted axis is the examples' (and pixels'), so the parts of dy
  # are stacked along the batch, the input repeated to match.
  xb = x.astype(jnp.bfloat16)
  x3 = jnp.concatenate([xb, xb, xb], axis=0)
  g3 = jnp.concatenate(split_bf16x3(g), axis=0)
  if kind == 'conv':
    return _conv_weight_grad(x3, g3, w_shape[:2], preferred=jnp.float32)
  return _dense_weight_grad(x3.reshape(-1, x3.shape[-1]), g3.reshape(-1, g3.shape[-1]),
                            preferred=jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _synapse(x, w, kind, precision, residual):
  if precision == 'exact_bf16x3':
    return _bf16x3_forward(kind, x, w)
  return _op(kind, x, w)


def _synapse_fwd(x, w, kind, precision, residual):
  saved = x.astype(residual) if residual is not None else x
  return _synapse(x, w, kind, precision, residual), (saved, w)


def _synapse_bwd(kind, precision, residual, res, g):
  saved, w = res
  x = saved.astype(w.dtype)
  dx = jax.vjp(lambda x: _op(kind, x, w), x)[1](g)[0]
  if precision == 'exact_bf16x3':
    dw = _bf16x3_weight_grad(kind, x, g, w.shape)
  else:
    dw = jax.vjp(lambda w: _op(kind, x, w), w)[1](g)[0]
  return vma.cotangent_for(dx, saved), vma.cotangent_for(dw, w)


_synapse.defvjp(_synapse_fwd, _synapse_bwd)


def synapse(x: Array, w: Array, *, kind: str, input_kind: str = REAL,
            precision: str = 'float32', layer: str = '') -> Array:
  """The synaptic op of a layer in float32 or wider (module doc).

  Args:
    x: ``[N, H, W, C]`` (conv, 'SAME', stride 1) or ``[N, F]`` (dense).
    w: ``[kh, kw, C, D]`` or ``[F, D]``, of ``x``'s dtype (float32, or float64).
    kind: ``conv`` or ``dense``.
    input_kind: what ``x`` holds (:func:`exact_dtype`): its residual is kept in the narrowest
      exact dtype.
    precision: ``float32`` (XLA's float32 op at the configured matmul precision) or
      ``exact_bf16x3``.
    layer: the layer's name, for errors.

  Raises:
    ValueError: ``exact_bf16x3`` for an input bfloat16 does not hold exactly.
  """
  errors.check_one_of('synapse_precision', precision, PRECISIONS)
  narrow = exact_dtype(input_kind)
  if precision == 'exact_bf16x3' and narrow is None:
    raise ValueError(f'synapse precision exact_bf16x3 is not accepted for layer {layer!r}: its '
                     f'input ({input_kind}) is not exact in bfloat16; only spikes and pooled '
                     f'spikes are')
  if precision == 'exact_bf16x3' and (x.dtype, w.dtype) != (jnp.float32, jnp.float32):
    raise ValueError(f'synapse precision exact_bf16x3 is not accepted for layer {layer!r} with '
                     f'{x.dtype} operands: it splits float32 weights')
  return _synapse(x, w, kind, precision, narrow)
