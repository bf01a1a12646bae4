"""Leaky integrate-and-fire neurons with surrogate gradients (spec section 1).

One step of a LIF layer, with ``I`` the normalised synaptic input::

    u <- leak * u + I           integrate (the leak acts on the previous membrane)
    s  = H(u - theta)           fire, strictly greater than theta
    u <- u - theta * s          soft reset; no gradient flows through the reset

The Heaviside step has a surrogate derivative. Following the reference, every
surrogate is written as a function of ``x = u / theta - 1`` and the chain rule
adds the factor ``1 / theta``: ``dS/du = surrogate(x) / theta``.

Functions here are pure and time-agnostic except :func:`lif_sequence`, which
runs the recurrence over a leading time axis ``[T, ...]`` with ``lax.scan``.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from bntt_jax import errors
from bntt_jax import norms
from bntt_jax import vma

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Surrogate:
  """A surrogate derivative dS/dx of the spike, ``x = u / theta - 1``.

  Attributes:
    name: ``triangle`` (the paper's), ``fast_sigmoid`` or ``arctan``.
    alpha: the shape parameter: peak height for ``triangle`` (reference 0.3),
      slope ``k`` for ``fast_sigmoid`` (``1 / (1 + k|x|)^2``), and ``alpha`` of
      ``alpha / 2 / (1 + (pi/2 alpha x)^2)`` for ``arctan``.
  """
  name: str = 'triangle'
  alpha: float = 0.3

  def __post_init__(self):
    errors.check_one_of('surrogate', self.name, tuple(sorted(SURROGATES)))
    errors.check_positive('surrogate_alpha', self.alpha)

  def grad(self, x: Array) -> Array:
    return SURROGATES[self.name](x, self.alpha)


def _triangle(x, alpha):
  return alpha * jnp.maximum(0.0, 1.0 - jnp.abs(x))


def _fast_sigmoid(x, k):
  return 1.0 / jnp.square(1.0 + k * jnp.abs(x))


def _arctan(x, alpha):
  return (alpha / 2.0) / (1.0 + jnp.square(math.pi / 2.0 * alpha * x))


SURROGATES: dict[str, Callable[[Array, float], Array]] = {
    'triangle': _triangle,
    'fast_sigmoid': _fast_sigmoid,
    'arctan': _arctan,
}

DEFAULT_ALPHA = {'triangle': 0.3, 'fast_sigmoid': 25.0, 'arctan': 2.0}


def make_surrogate(name: str, alpha: Optional[float] = None) -> Surrogate:
  """A surrogate by name, with that surrogate's usual ``alpha`` when not given."""
  surrogate = Surrogate(name)   # checks the name
  if alpha is None:
    alpha = DEFAULT_ALPHA[name]
  return dataclasses.replace(surrogate, alpha=float(alpha) if errors.is_number(alpha) else alpha)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def spike(u: Array, threshold: float, surrogate: Surrogate) -> Array:
  """Heaviside ``u > threshold`` (0/1 in ``u``'s dtype) with a surrogate VJP."""
  return (u > threshold).astype(u.dtype)


def _spike_fwd(u, threshold, surrogate):
  return spike(u, threshold, surrogate), u


def _spike_bwd(threshold, surrogate, u, g):
  x = u / threshold - 1.0
  return (g * surrogate.grad(x).astype(g.dtype) / threshold,)


spike.defvjp(_spike_fwd, _spike_bwd)


@dataclasses.dataclass(frozen=True)
class LIFParams:
  """Static settings of a LIF layer (hashable: they parametrise compiled code)."""
  leak: float = 0.95
  threshold: float = 1.0
  surrogate: Surrogate = Surrogate()

  def __post_init__(self):
    if not errors.is_number(self.leak) or not 0.0 < self.leak <= 1.0:
      raise errors.ConfigError('leak', self.leak, 'a number in (0, 1]')
    errors.check_positive('threshold', self.threshold)


def lif_step(u: Array, current: Array, p: LIFParams) -> Tuple[Array, Array]:
  """One LIF step. ``u``, ``current``: same shape. Returns ``(u_next, spikes)``."""
  u = p.leak * u + current
  s = spike(u, p.threshold, p.surrogate)
  # The reset is a constant to autodiff, as in the reference (a fresh tensor).
  u = u - p.threshold * jax.lax.stop_gradient(s)
  return u, s


def lif_sequence(currents: Array, p: LIFParams, unroll: int = 1) -> Array:
  """The LIF recurrence over the leading time axis.

  Args:
    currents: ``[T, ...]`` synaptic input per step.
    p: the neuron's settings.
    unroll: ``lax.scan`` unroll factor.

  Returns:
    spikes ``[T, ...]`` in ``currents.dtype``; the membrane starts at zero.
  """
  def body(u, i):
    u, s = lif_step(u, i, p)
    return u, s

  u0 = vma.like_inputs(jnp.zeros_like(currents[0]), currents)
  _, s = jax.lax.scan(body, u0, currents, unroll=unroll)
  return s


class LIF(nn.Module):
  """A LIF layer as a Flax module (no parameters).

  ``__call__(currents)`` takes ``[T, ...]`` and returns spikes ``[T, ...]``;
  :meth:`step` takes one step's ``(membrane, current)`` and returns
  ``(membrane, spikes)`` for time loops written by the caller.
  """
  leak: float = 0.95
  threshold: float = 1.0
  surrogate: Surrogate = Surrogate()

  @property
  def settings(self) -> LIFParams:
    return LIFParams(self.leak, self.threshold, self.surrogate)

  def __call__(self, currents: Array) -> Array:
    return lif_sequence(currents, self.settings)

  def step(self, u: Array, current: Array) -> Tuple[Array, Array]:
    return lif_step(u, current, self.settings)


# The lane width of a TPU vector register (and the minor tile of its float32 arrays): an array
# whose last axis is shorter is padded up to it in memory.
LANES = 128


def lif_affine_sequence(x: Array, mul: Array, add: Array, p: LIFParams, unroll: int = 1) -> Array:
  """LIF driven by a per-step, per-channel affine map of its input, fused.

  Equal to ``lif_sequence(x * mul + add)`` (with ``mul``/``add`` broadcast per
  step and statistics group), but the map, the recurrence and, in the
  backward pass, the reductions for ``mul`` and ``add`` run inside one scan
  over time, so each step's slice is read from memory once.

  Memory: the forward pass keeps for the backward only what it cannot cheaply
  recompute: its input ``x`` (the synaptic currents, which the gradient of
  ``mul`` needs anyway) and the spikes, as int8. The backward recomputes the
  membranes with a forward scan of the same arithmetic, the reset taken from the
  saved spikes (so the recomputed membranes follow the forward's exactly, and a
  rounding difference could never flip a reset), and writes each step's surrogate
  term over the incoming gradient; the reverse scan then writes the input gradient
  over that. No ``[k, ...]`` membrane is stored, and the backward holds one float
  ``[k, ...]`` buffer beyond its residuals. (Recomputing backwards in time,
  ``u[t-1] = (u[t] - I[t]) / leak``, would need no temporary but amplifies
  rounding by ``leak ** -k``: 169x over 100 steps at leak 0.95.)

  Args:
    x: ``[k, N, ..., C]`` synaptic input (any float dtype).
    mul, add: ``[k, G, C]``; the batch axis is split into ``G`` equal groups.
    p: the neuron's settings.

  Returns:
    spikes ``[k, N, ..., C]`` in ``promote(x.dtype, float32)``.

  Layout: a layer of ``C < 128`` channels (``128 % C == 0``) runs its recurrence on a view of
  its input with 128 values in the last axis, ``mul``/``add`` tiled to match (the same
  arithmetic per neuron): on a TPU, whose arrays are tiled by 128 lanes in their last axis,
  a 64-channel layer's ``[k, ..., 64]`` arrays would otherwise fill half of every tile, doubling
  the memory of the loop's inputs, outputs and the backward's recomputed membranes. (A
  row-major reshape: free on CPUs and GPUs.)
  """
  fold = lane_fold(x, mul)
  if fold == 1:
    return _lif_affine(x, mul, add, p, unroll)
  lanes = lambda a: jnp.tile(a, (1, 1, fold))
  s = _lif_affine(x.reshape(x.shape[0], -1, LANES), lanes(mul), lanes(add), p, unroll)
  return s.reshape(x.shape)


def lane_fold(x: Array, mul: Array) -> int:
  """How many positions' channels fill :data:`LANES` in ``x [k, N, ..., C]``'s last axis
  (1: none; each statistics group's slice must hold whole rows of 128)."""
  c = x.shape[-1]
  per_group = math.prod(x.shape[1:]) // mul.shape[1]
  if c >= LANES or LANES % c or per_group % LANES:
    return 1
  return LANES // c


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _lif_affine(x: Array, mul: Array, add: Array, p: LIFParams, unroll: int = 1) -> Array:
  """:func:`lif_affine_sequence` on any layout, its custom VJP."""
  return _lif_affine_fwd(x, mul, add, p, unroll)[0]


def _grouped(x: Array, mul: Array) -> Tuple[Array, Tuple[int, ...], Tuple[int, ...], Any]:
  """``x [k, N, ...]`` as ``[k, G, N / G, ...]`` (as it is for one group), the broadcast
  shape of a step's ``mul``/``add`` against a step of it, the axes of a step that its
  statistics reduce (all but ``G`` and ``C``), and the membrane dtype.

  One group adds no unit axis: XLA:CPU gives ``[k, 1, N, ...]`` a layout of its own and
  copies ``x`` into it, a copy that lived from the forward to the backward."""
  g = mul.shape[1]
  xg = x if g == 1 else x.reshape(x.shape[:1] + (g, x.shape[1] // g) + x.shape[2:])
  lead = () if g == 1 else (g,)
  bshape = lead + (1,) * (xg.ndim - 2 - len(lead)) + mul.shape[-1:]
  red = tuple(range(len(lead), xg.ndim - 2))
  return xg, bshape, red, jnp.promote_types(x.dtype, jnp.float32)


def _channel_sum(a: Array, red: Tuple[int, ...]) -> Array:
  """``jnp.sum(a, red)`` over a step's adjacent non-group, non-channel axes ``red``, as
  ``[G or 1, C]``.

  On CPU as ``[G or 1, R, C]`` over ``R``, the one form XLA:CPU sums fast (a leading axis, or
  several, 10x slower; :func:`bntt_jax.norms.merge_for_cpu`); elsewhere as written (there the
  reshape could cost a relayout)."""
  shape = (a.shape[:red[0]] or (1,)) + a.shape[-1:]
  return jax.lax.platform_dependent(
      a, cpu=lambda a: jnp.sum(*norms.merge_for_cpu(a, red)).reshape(shape),
      default=lambda a: jnp.sum(a, axis=red).reshape(shape))


def _integrate(p: LIFParams, u, xt, mt, at, bshape, dt):
  """One step's membrane before the spike: ``leak * u + x * mul + add``."""
  return p.leak * u + (xt.astype(dt) * mt.reshape(bshape).astype(dt) +
                       at.reshape(bshape).astype(dt))


def _after(a: Array, shape: Tuple[int, ...], dtype: Any) -> Array:
  """An array of ``shape`` whose values do not matter (each is written, or replaced by zero,
  before it is read), created only once ``a`` exists: a broadcast of one of ``a``'s values.

  The scans below carry such arrays instead of zeros or a scan's own stacked outputs (which
  start as zeros): XLA:CPU's scheduler creates a constant array at the program's start, so
  every layer's loop buffers were live through the whole training step."""
  return jnp.broadcast_to(a.reshape(-1)[0].astype(dtype), shape)


def _lif_affine_fwd(x, mul, add, p, unroll):
  xg, bshape, _, dt = _grouped(x, mul)

  def body(carry, inp):
    u, s = carry       # the membrane (zero before the first step) and the spikes so far
    t, xt, mt, at = inp
    u = _integrate(p, jnp.where(t == 0, 0.0, u), xt, mt, at, bshape, dt)
    st = (u > p.threshold).astype(dt)
    return (u - p.threshold * st, jax.lax.dynamic_update_index_in_dim(s, st, t, 0)), None

  u0 = vma.like_inputs(_after(x, xg.shape[1:], dt), mul, add)
  s0 = vma.like_inputs(_after(x, xg.shape, dt), mul, add)
  (_, s), _ = jax.lax.scan(body, (u0, s0), (jnp.arange(x.shape[0]), xg, mul, add),
                           unroll=unroll)
  return s.reshape(x.shape), (x, mul, add, s.astype(jnp.int8))


def _lif_affine_bwd(p, unroll, res, g_s):
  x, mul, add, spikes = res
  xg, bshape, red, dt = _grouped(x, mul)
  steps = jnp.arange(x.shape[0])
  # One [k, ...] buffer: the incoming gradient, overwritten step by step first by the
  # surrogate term, then by the input gradient. Starting from the cotangent, it exists only
  # once this layer's backward can run (see _after).
  buf = vma.like_inputs(g_s.reshape(xg.shape).astype(dt), x, mul, add)

  def surrogate_term(carry, inp):
    # Recomputes the membrane with the forward's arithmetic, the reset from the saved
    # spikes (so a rounding difference could never flip a reset).
    u, buf = carry
    t, xt, mt, at, st = inp
    u = _integrate(p, jnp.where(t == 0, 0.0, u), xt, mt, at, bshape, dt)
    gt = jax.lax.dynamic_index_in_dim(buf, t, keepdims=False)
    e = gt * p.surrogate.grad(u / p.threshold - 1.0).astype(dt) / p.threshold
    return (u - p.threshold * st.astype(dt),
            jax.lax.dynamic_update_index_in_dim(buf, e, t, 0)), None

  u0 = vma.like_inputs(_after(buf, xg.shape[1:], dt), x, mul, add)
  (_, buf), _ = jax.lax.scan(surrogate_term, (u0, buf), (steps, xg, mul, add, spikes),
                             unroll=unroll)

  def body(carry, inp):
    # delta_t = dL/du_pre_t: the spike's surrogate term plus the leaked future
    # (the reset carries no gradient).
    delta, buf = carry
    t, xt, mt = inp
    delta = jax.lax.dynamic_index_in_dim(buf, t, keepdims=False) + p.leak * jnp.where(
        t == x.shape[0] - 1, 0.0, delta)
    dx = delta * mt.reshape(bshape).astype(dt)
    dmul = _channel_sum(delta * xt.astype(dt), red).reshape(mt.shape)
    dadd = _channel_sum(delta, red).reshape(mt.shape)
    return (delta, jax.lax.dynamic_update_index_in_dim(buf, dx, t, 0)), (dmul, dadd)

  delta0 = vma.like_inputs(_after(buf, xg.shape[1:], dt), x, mul)
  (_, dx), (dmul, dadd) = jax.lax.scan(body, (delta0, buf), (steps, xg, mul),
                                       reverse=True, unroll=unroll)
  return (vma.cotangent_for(dx.reshape(x.shape).astype(x.dtype), x),
          vma.cotangent_for(dmul.astype(mul.dtype), mul),
          vma.cotangent_for(dadd.astype(add.dtype), add))


_lif_affine.defvjp(_lif_affine_fwd, _lif_affine_bwd)
