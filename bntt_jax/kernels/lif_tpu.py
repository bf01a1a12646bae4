"""The fused LIF recurrence of the ``layer`` schedule as Pallas TPU kernels, one per pass.

:func:`lif_affine_sequence` is :func:`bntt_jax.neurons.lif_affine_sequence` (the LIF driven by a
per-step, per-channel affine map, the BNTT layer's normalisation) for TPUs. XLA:TPU runs that
function's ``lax.scan`` as while loops whose carry and per-step slices go through HBM at every
step (compiled for one v5e: about 24 bytes per neuron and step in the forward, 53 in the
backward, README). Here each grid step copies a block, ``[T, rows, lanes]``, of every operand
into VMEM and runs its whole time line there:

* forward: reads the input once, writes the spikes once, as int8 (the residual; the float spikes
  the next layer takes are a convert of them, which XLA fuses into a consumer or writes out);
* backward: reads the input, the int8 spikes and the spikes' gradient once, recomputes the
  membranes into VMEM scratch (the resets from the saved spikes, as the scan's backward does),
  runs the reverse recurrence and writes the input's gradient and, per block, the partial sums of
  ``mul``'s and ``add``'s gradients (XLA adds the blocks).

Same arithmetic in the same order as the scan (spikes equal; gradients up to the summation order
of the reductions). Operands: a float32 or bfloat16 input whose channels fill 128 lanes, a
multiple of 128 or a divisor of it (narrow layers run on the 128-lane view of
:func:`bntt_jax.neurons.lane_fold`), rows that split into blocks fitting :data:`VMEM_BUDGET`;
:func:`supports` says, and callers use the scan otherwise. ``interpret=True`` runs the same
kernels on any backend (Pallas's interpreter: how the tests check them on CPU). Inside
``shard_map`` each device runs its own rows.
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from bntt_jax import neurons
from bntt_jax import vma

LANES = neurons.LANES
# VMEM one grid step may use (its double-buffered blocks and the backward's scratch): under the
# 16 MiB that Mosaic allows a kernel by default on v4, v5e and v5p.
VMEM_BUDGET = 12 * 2**20
_ROW_ALIGN = 32     # an int8 array's tile is (32, 128): a block of spikes spans whole tiles


def _lanes(x, mul) -> int:
  """The last axis of the kernels' view of ``x [T, N, ..., C]``: ``C`` if a multiple of 128, 128
  for a narrow layer with a 128-lane view, 0 for neither."""
  c = x.shape[-1]
  if c % LANES == 0:
    return c
  return LANES if neurons.lane_fold(x, mul) > 1 else 0


def _bytes_per_row_step(lanes: int, x_itemsize: int) -> int:
  """VMEM per block row and step of the backward (the larger pass): input, int8 spikes, their
  float32 gradient and the input's gradient, each double-buffered, and the f32 membrane scratch."""
  return lanes * (2 * (x_itemsize + 1 + 4 + x_itemsize) + 4)


def block_rows(steps: int, rows: int, lanes: int, x_itemsize: int) -> Optional[int]:
  """Rows per grid step of ``lanes`` lanes: all ``rows`` if they fit :data:`VMEM_BUDGET`, else
  the largest multiple of 32 that divides them and fits; None if none does."""
  fit = VMEM_BUDGET // (steps * _bytes_per_row_step(lanes, x_itemsize))
  if rows <= fit:
    return rows
  for r in range(fit - fit % _ROW_ALIGN, 0, -_ROW_ALIGN):
    if rows % r == 0:
      return r
  return None


def blocks(steps: int, rows: int, lanes: int, x_itemsize: int) -> Optional[Tuple[int, int]]:
  """``(rows, lanes)`` of a grid step's block of a ``[steps, rows, lanes]`` slab: the widest
  lane block (a multiple of 128 dividing ``lanes``, at most 512) whose rows fit
  (:func:`block_rows`); None if none does."""
  for lb in range(min(lanes, 4 * LANES), 0, -LANES):
    if lanes % lb == 0:
      rb = block_rows(steps, rows, lb, x_itemsize)
      if rb is not None:
        return rb, lb
  return None


def _layout(x, mul) -> Optional[Tuple[int, int, int]]:
  """``(lanes, block rows, block lanes)`` of the kernels for these operands, or None."""
  lanes = _lanes(x, mul)
  if not lanes:
    return None
  b = blocks(x.shape[0], math.prod(x.shape[1:]) // (mul.shape[1] * lanes), lanes,
             x.dtype.itemsize)
  return (lanes,) + b if b else None


def supports(x, mul, add) -> bool:
  """Whether :func:`lif_affine_sequence` takes these operands (module doc)."""
  return (x.ndim >= 3 and x.dtype in (jnp.float32, jnp.bfloat16) and mul.shape == add.shape
          and mul.ndim == 3 and mul.shape[0] == x.shape[0] and mul.shape[2] == x.shape[-1]
          and x.shape[1] % mul.shape[1] == 0
          and all(jnp.promote_types(a.dtype, jnp.float32) == jnp.float32 for a in (mul, add))
          and _layout(x, mul) is not None)


def lif_affine_sequence(x, mul, add, p: neurons.LIFParams, interpret: bool = False):
  """Spikes ``[T, N, ..., C]`` (float32) of the LIF driven by ``x * mul + add`` (module doc).

  Args:
    x: ``[T, N, ..., C]`` float32 or bfloat16 synaptic input.
    mul, add: ``[T, G, C]``; the batch axis is split into ``G`` equal groups.
    p: the neuron's settings.
    interpret: run the kernels in Pallas's interpreter (any backend).
  """
  if not supports(x, mul, add):
    raise ValueError(f'the TPU LIF kernel does not take x {x.dtype}{list(x.shape)} with '
                     f'mul/add {list(mul.shape)}: see lif_tpu.supports')
  t, g = x.shape[0], mul.shape[1]
  lanes, rb, lb = _layout(x, mul)
  fold = lanes // x.shape[-1]
  # [T, G, C] -> [G, T, lanes]: a block's affine maps are its group's (T, lanes) slab.
  per_lane = lambda a: jnp.tile(a.astype(jnp.float32), (1, 1, fold)).transpose(1, 0, 2)
  s = _lif(x.reshape(t, g, -1, lanes), per_lane(mul), per_lane(add), p, (rb, lb), interpret)
  return s.reshape(x.shape)


def _grid(x4, block):
  t, g, r, lanes = x4.shape
  rb, lb = block
  rows = pl.BlockSpec((t, None, rb, lb), lambda gi, ri, li: (0, gi, ri, li))
  maps = pl.BlockSpec((None, t, lb), lambda gi, ri, li: (gi, 0, li))
  return (g, r // rb, lanes // lb), rows, maps


def _struct(shape, dtype, like) -> jax.ShapeDtypeStruct:
  """A kernel result's type: inside ``shard_map``, varying over the mesh axes ``like`` varies
  over (``check_vma`` asks the kernel's caller to say)."""
  return jax.ShapeDtypeStruct(shape, dtype, manual_axis_type=jax.typeof(like).mat)


def _params():
  return pltpu.CompilerParams(dimension_semantics=('parallel',) * 3)


def _cost(*arrays) -> pl.CostEstimate:
  """What XLA is told the kernel moves: each operand and result once (its blocks tile it)."""
  return pl.CostEstimate(flops=0, transcendentals=0,
                         bytes_accessed=sum(a.size * a.dtype.itemsize for a in arrays))


def _integrate(p: neurons.LIFParams, u, x_ref, m_ref, a_ref, t):
  """Step ``t``'s membrane before the spike, in neurons._integrate's arithmetic:
  ``leak * u + (x * mul + add)``; the forward and the backward's recomputation both call it."""
  return p.leak * u + (x_ref[t].astype(jnp.float32) * m_ref[pl.ds(t, 1), :]
                       + a_ref[pl.ds(t, 1), :])


def _forward_kernel(x_ref, m_ref, a_ref, s_ref, *, p: neurons.LIFParams):
  steps, rb, lanes = x_ref.shape

  def step(t, u):
    u = _integrate(p, u, x_ref, m_ref, a_ref, t)
    s = (u > p.threshold).astype(jnp.float32)
    s_ref[t] = s.astype(s_ref.dtype)
    return u - p.threshold * s

  jax.lax.fori_loop(0, steps, step, jnp.zeros((rb, lanes), jnp.float32))


def _backward_kernel(x_ref, m_ref, a_ref, s_ref, g_ref, dx_ref, dm_ref, da_ref, u_ref, *,
                     p: neurons.LIFParams):
  steps, rb, lanes = x_ref.shape

  def recompute(t, u):
    u = _integrate(p, u, x_ref, m_ref, a_ref, t)
    u_ref[t] = u
    return u - p.threshold * s_ref[t].astype(jnp.float32)

  jax.lax.fori_loop(0, steps, recompute, jnp.zeros((rb, lanes), jnp.float32))

  def reverse(k, delta):
    t = steps - 1 - k
    # delta_t = dL/du_pre_t: the spike's surrogate term plus the leaked future (no reset term).
    delta = (g_ref[t] * p.surrogate.grad(u_ref[t] / p.threshold - 1.0) / p.threshold
             + p.leak * delta)
    dx_ref[t] = (delta * m_ref[pl.ds(t, 1), :]).astype(dx_ref.dtype)
    dm_ref[pl.ds(t, 1), :] = jnp.sum(delta * x_ref[t].astype(jnp.float32), axis=0,
                                     keepdims=True)
    da_ref[pl.ds(t, 1), :] = jnp.sum(delta, axis=0, keepdims=True)
    return delta

  jax.lax.fori_loop(0, steps, reverse, jnp.zeros((rb, lanes), jnp.float32))


def _run_forward(x4, m, a, p, block, interpret):
  grid, rows, maps = _grid(x4, block)
  out = _struct(x4.shape, jnp.int8, x4)
  m, a = vma.like_inputs((m, a), x4)     # one type for every operand inside shard_map
  return pl.pallas_call(
      functools.partial(_forward_kernel, p=p), out_shape=out, grid=grid,
      in_specs=[rows, maps, maps], out_specs=rows, compiler_params=_params(),
      cost_estimate=_cost(x4, m, a, out), interpret=interpret)(x4, m, a)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _lif(x4, m, a, p, block, interpret):
  """Spikes of the grouped view ``x4 [T, G, R, lanes]``, ``m``/``a`` ``[G, T, lanes]``, in
  blocks of ``block = (rows, lanes)``."""
  return _run_forward(x4, m, a, p, block, interpret).astype(jnp.float32)


def _lif_fwd(x4, m, a, p, block, interpret):
  s8 = _run_forward(x4, m, a, p, block, interpret)
  return s8.astype(jnp.float32), (x4, m, a, s8)


def _lif_bwd(p, block, interpret, res, g_s):
  x4, m, a, s8 = res
  t, g, _, lanes = x4.shape
  grid, rows, maps = _grid(x4, block)
  part = pl.BlockSpec((None, None, t, block[1]), lambda gi, ri, li: (gi, ri, 0, li))
  g32 = vma.like_inputs(g_s.astype(jnp.float32), x4)
  mv, av = vma.like_inputs((m, a), x4)
  shapes = (_struct(x4.shape, x4.dtype, g32),
            _struct((g, grid[1], t, lanes), jnp.float32, g32),
            _struct((g, grid[1], t, lanes), jnp.float32, g32))
  dx, dm, da = pl.pallas_call(
      functools.partial(_backward_kernel, p=p), out_shape=shapes, grid=grid,
      in_specs=[rows, maps, maps, rows, rows], out_specs=(rows, part, part),
      scratch_shapes=[pltpu.VMEM((t,) + tuple(block), jnp.float32)], compiler_params=_params(),
      cost_estimate=_cost(x4, m, a, s8, g32, *shapes), interpret=interpret)(x4, mv, av, s8, g32)
  return (vma.cotangent_for(dx, x4), vma.cotangent_for(dm.sum(1), m),
          vma.cotangent_for(da.sum(1), a))


_lif.defvjp(_lif_fwd, _lif_bwd)
