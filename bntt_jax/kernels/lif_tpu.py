"""The fused LIF recurrence of the ``layer`` schedule as Pallas TPU kernels, one per pass.

:func:`lif_affine_sequence` is :func:`bntt_jax.neurons.lif_affine_sequence` (the LIF driven by a
per-step, per-channel affine map, the BNTT layer's normalisation) for TPUs. XLA:TPU runs that
function's ``lax.scan`` as while loops whose carry and per-step slices go through HBM at every
step (compiled for one v5e: about 24 bytes per neuron and step in the forward, 53 in the
backward, README). Here each grid step copies a block of every operand (all T steps of some
neurons) into VMEM and runs its whole time line there:

* forward: reads the input once, writes the spikes once, as int8 (the residual; the float spikes
  the next layer takes are a convert of them, which XLA fuses into a consumer or writes out);
* backward: reads the input, the int8 spikes and the spikes' gradient once, recomputes the
  membranes into VMEM scratch (the resets from the saved spikes, as the scan's backward does),
  runs the reverse recurrence and writes the input's gradient and, per block, the partial sums of
  ``mul``'s and ``add``'s gradients (XLA adds the blocks).

Two views of the input (:class:`Layout`). A convolution's output in one statistics group is
``[positions, T, batch, channels]`` (``positions``: a block steps the time axis in its middle):
how XLA:TPU lays out a convolution's output of 128 or 256 channels (``{3,0,2,1}``, batch and
channels in the tiles), so the kernels read it, and the next convolution reads their spikes,
with no relayout copy. A 64-channel convolution's output is batch-minor there (``{0,3,2,1}``):
XLA copies it once into the view, its channels padded to 128 lanes (twice its data in HBM;
the ``steps`` view took two copies). Any other input is ``[T, G, rows, lanes]`` (``steps``:
time leading, positions and channels flattened into rows of lanes; a narrow layer's on the
128-lane view of :func:`bntt_jax.neurons.lane_fold`).

Same arithmetic in the same order as the scan (spikes equal; gradients up to the summation order
of the reductions). Operands: a float32 or bfloat16 input whose channels are a multiple of 128
or a divisor of it, in blocks that fit :data:`VMEM_BUDGET`;
:func:`supports` says, and callers use the scan otherwise. ``interpret=True`` runs the same
kernels on any backend (Pallas's interpreter: how the tests check them on CPU). Inside
``shard_map`` each device runs its own rows.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from bntt_jax import neurons
from bntt_jax import versions
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


@dataclasses.dataclass(frozen=True)
class Layout:
  """The kernels' view of ``x [T, N, ..., C]`` and a grid step's block of it.

  ``steps``: ``[T, G, rows, lanes]``, blocks ``(T, block[0] rows, block[1] lanes)``.
  ``positions``: ``[P, T, N, C]`` (``P`` the product of the spatial axes; one group),
  blocks ``(block[0] positions, T, block[1] examples, block[2] channels)``.
  Either way a step's slab of a block has the shape ``block``.
  """
  kind: str
  lanes: int
  block: Tuple[int, ...]

  @property
  def time_axis(self) -> int:
    """The axis of a block (and of the view) that is time."""
    return 0 if self.kind == 'steps' else 1


def position_blocks(steps: int, positions: int, batch: int, channels: int,
                    x_itemsize: int) -> Optional[Tuple[int, int, int]]:
  """``(positions, examples, channels)`` of a grid step's block of a ``[positions, steps, batch,
  channels]`` view: the widest channel block (a multiple of 128 dividing ``channels``, at most
  512; fewer than 128 channels: all, on 128 lanes), the whole batch or the largest multiple of
  32 dividing it, then as many positions (a divisor of ``positions``) as fit
  :data:`VMEM_BUDGET`, each position's examples counted in whole VMEM tiles; None if nothing
  fits."""
  for lb in ([channels] if channels < LANES else range(min(channels, 4 * LANES), 0, -LANES)):
    if channels % lb:
      continue
    lanes = max(lb, LANES)
    fit = VMEM_BUDGET // (steps * _bytes_per_row_step(lanes, x_itemsize))   # unpadded rows
    bb = batch if batch <= fit else next(
        (b for b in range(fit - fit % _ROW_ALIGN, 0, -_ROW_ALIGN) if batch % b == 0), None)
    if bb is None:
      continue
    # VMEM holds each position's examples in whole tiles: 8 rows of 32-bit values, 32 of int8.
    pad = lambda n: -(-bb // n) * n
    per_position = steps * lanes * (
        _bytes_per_row_step(1, x_itemsize) * pad(8) + 2 * (pad(_ROW_ALIGN) - pad(8)))
    fits = [d for d in range(1, positions + 1)
            if positions % d == 0 and d * per_position <= VMEM_BUDGET]
    if fits:
      return max(fits), bb, lb
  return None


def _layout(x, mul) -> Optional[Layout]:
  """The kernels' :class:`Layout` for these operands, or None."""
  c = x.shape[-1]
  if x.ndim >= 4 and mul.shape[1] == 1 and (c % LANES == 0 or (c < LANES and LANES % c == 0)):
    b = position_blocks(x.shape[0], math.prod(x.shape[2:-1]), x.shape[1], c, x.dtype.itemsize)
    if b:
      return Layout('positions', c, b)
  lanes = _lanes(x, mul)
  if not lanes:
    return None
  b = blocks(x.shape[0], math.prod(x.shape[1:]) // (mul.shape[1] * lanes), lanes,
             x.dtype.itemsize)
  return Layout('steps', lanes, b) if b else None


def supports(x, mul, add) -> bool:
  """Whether :func:`lif_affine_sequence` takes these operands (module doc).

  Raises :class:`bntt_jax.errors.ConfigError` (one line) with a JAX outside the tested range
  (:mod:`bntt_jax.versions`): Pallas's API changes between releases.
  """
  versions.require_tested_jax('the Pallas TPU LIF kernels (--config.model.lif_kernel=off runs '
                              'the scan instead)')
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
  t, g, c = x.shape[0], mul.shape[1], x.shape[-1]
  layout = _layout(x, mul)
  if layout.kind == 'positions':
    # [T, N, ..., C] -> [P, T, N, C]; mul/add [T, 1, C] -> [1, T, C].
    v = x.reshape(t, x.shape[1], -1, c).transpose(2, 0, 1, 3)
    maps = lambda a: a.astype(jnp.float32).transpose(1, 0, 2)
    s = _lif(v, maps(mul), maps(add), p, layout, interpret)
    return s.transpose(1, 2, 0, 3).reshape(x.shape)
  fold = layout.lanes // c
  # [T, G, C] -> [G, T, lanes]: a block's affine maps are its group's (T, lanes) slab.
  per_lane = lambda a: jnp.tile(a.astype(jnp.float32), (1, 1, fold)).transpose(1, 0, 2)
  s = _lif(x.reshape(t, g, -1, layout.lanes), per_lane(mul), per_lane(add), p, layout,
           interpret)
  return s.reshape(x.shape)


def _grid(v, layout: Layout):
  """The grid, the BlockSpecs of the view's arrays and of ``mul``/``add`` (``[G, T, lanes]``),
  and the shape and BlockSpec of the backward's per-block partial sums (summed over axis 1)."""
  if layout.kind == 'steps':
    t, g, r, lanes = v.shape
    rb, lb = layout.block
    grid = (g, r // rb, lanes // lb)
    rows = pl.BlockSpec((t, None, rb, lb), lambda gi, ri, li: (0, gi, ri, li))
    maps = pl.BlockSpec((None, t, lb), lambda gi, ri, li: (gi, 0, li))
    part = pl.BlockSpec((None, None, t, lb), lambda gi, ri, li: (gi, ri, 0, li))
    return grid, rows, maps, (g, grid[1], t, lanes), part
  npos, t, n, c = v.shape
  pb, bb, lb = layout.block
  grid = (npos // pb, n // bb, c // lb)
  rows = pl.BlockSpec((pb, t, bb, lb), lambda pi, bi, li: (pi, 0, bi, li))
  maps = pl.BlockSpec((None, t, lb), lambda pi, bi, li: (0, 0, li))
  part = pl.BlockSpec((None, None, t, lb), lambda pi, bi, li: (0, pi * grid[1] + bi, 0, li))
  return grid, rows, maps, (1, grid[0] * grid[1], t, c), part


def _struct(shape, dtype, like) -> jax.ShapeDtypeStruct:
  """A kernel result's type: inside ``shard_map``, varying over the mesh axes ``like`` varies
  over (``check_vma`` asks the kernel's caller to say)."""
  return jax.ShapeDtypeStruct(shape, dtype, manual_axis_type=jax.typeof(like).mat)


def _params():
  return pltpu.CompilerParams(dimension_semantics=('parallel',) * 3)


def _cost(*arrays) -> pl.CostEstimate:
  """What XLA is told the kernel moves: each operand and result once (its blocks tile it), as
  HBM holds it, its last axis padded to whole 128-lane tiles (a 64-channel view's arrays
  fill half of each)."""
  def tiled(a):
    return a.size // a.shape[-1] * -(-a.shape[-1] // LANES) * LANES * a.dtype.itemsize
  return pl.CostEstimate(flops=0, transcendentals=0, bytes_accessed=sum(map(tiled, arrays)))


def _at(ref, t, axis: int):
  """Step ``t``'s slab of a block whose time axis is ``axis`` (0 or 1)."""
  return ref[t] if axis == 0 else ref[:, t]


def _put(ref, t, axis: int, value):
  if axis == 0:
    ref[t] = value
  else:
    ref[:, t] = value


def _channel_sum(v):
  """A slab's sum over all but its last axis, ``(1, lanes)``."""
  while v.ndim > 2:
    v = jnp.sum(v, axis=0)
  return jnp.sum(v, axis=0, keepdims=True)


def _integrate(p: neurons.LIFParams, u, x_ref, m_ref, a_ref, t, axis):
  """Step ``t``'s membrane before the spike, in neurons._integrate's arithmetic:
  ``leak * u + (x * mul + add)``; the forward and the backward's recomputation both call it."""
  return p.leak * u + (_at(x_ref, t, axis).astype(jnp.float32) * m_ref[pl.ds(t, 1), :]
                       + a_ref[pl.ds(t, 1), :])


def _forward_kernel(x_ref, m_ref, a_ref, s_ref, *, p: neurons.LIFParams, axis: int):
  steps = x_ref.shape[axis]
  slab = x_ref.shape[:axis] + x_ref.shape[axis + 1:]

  def step(t, u):
    u = _integrate(p, u, x_ref, m_ref, a_ref, t, axis)
    s = (u > p.threshold).astype(jnp.float32)
    _put(s_ref, t, axis, s.astype(s_ref.dtype))
    return u - p.threshold * s

  jax.lax.fori_loop(0, steps, step, jnp.zeros(slab, jnp.float32))


def _backward_kernel(x_ref, m_ref, a_ref, s_ref, g_ref, dx_ref, dm_ref, da_ref, u_ref, *,
                     p: neurons.LIFParams, axis: int):
  steps = x_ref.shape[axis]
  slab = x_ref.shape[:axis] + x_ref.shape[axis + 1:]

  def recompute(t, u):
    u = _integrate(p, u, x_ref, m_ref, a_ref, t, axis)
    u_ref[t] = u
    return u - p.threshold * _at(s_ref, t, axis).astype(jnp.float32)

  jax.lax.fori_loop(0, steps, recompute, jnp.zeros(slab, jnp.float32))

  def reverse(k, delta):
    t = steps - 1 - k
    # delta_t = dL/du_pre_t: the spike's surrogate term plus the leaked future (no reset term).
    delta = (_at(g_ref, t, axis) * p.surrogate.grad(u_ref[t] / p.threshold - 1.0) / p.threshold
             + p.leak * delta)
    _put(dx_ref, t, axis, (delta * m_ref[pl.ds(t, 1), :]).astype(dx_ref.dtype))
    dm_ref[pl.ds(t, 1), :] = _channel_sum(delta * _at(x_ref, t, axis).astype(jnp.float32))
    da_ref[pl.ds(t, 1), :] = _channel_sum(delta)
    return delta

  jax.lax.fori_loop(0, steps, reverse, jnp.zeros(slab, jnp.float32))


def _run_forward(v, m, a, p, layout, interpret):
  grid, rows, maps, _, _ = _grid(v, layout)
  out = _struct(v.shape, jnp.int8, v)
  m, a = vma.like_inputs((m, a), v)     # one type for every operand inside shard_map
  return pl.pallas_call(
      functools.partial(_forward_kernel, p=p, axis=layout.time_axis), out_shape=out,
      grid=grid, in_specs=[rows, maps, maps], out_specs=rows, compiler_params=_params(),
      cost_estimate=_cost(v, m, a, out), interpret=interpret)(v, m, a)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _lif(v, m, a, p, layout, interpret):
  """Spikes of the view ``v`` (:class:`Layout`), ``m``/``a`` ``[G, T, lanes]``."""
  return _run_forward(v, m, a, p, layout, interpret).astype(jnp.float32)


def _lif_fwd(v, m, a, p, layout, interpret):
  s8 = _run_forward(v, m, a, p, layout, interpret)
  return s8.astype(jnp.float32), (v, m, a, s8)


def _lif_bwd(p, layout, interpret, res, g_s):
  v, m, a, s8 = res
  grid, rows, maps, part_shape, part = _grid(v, layout)
  g32 = vma.like_inputs(g_s.astype(jnp.float32), v)
  mv, av = vma.like_inputs((m, a), v)
  shapes = (_struct(v.shape, v.dtype, g32), _struct(part_shape, jnp.float32, g32),
            _struct(part_shape, jnp.float32, g32))
  steps = v.shape[layout.time_axis]
  dx, dm, da = pl.pallas_call(
      functools.partial(_backward_kernel, p=p, axis=layout.time_axis), out_shape=shapes,
      grid=grid, in_specs=[rows, maps, maps, rows, rows], out_specs=(rows, part, part),
      scratch_shapes=[pltpu.VMEM((steps,) + layout.block, jnp.float32)], compiler_params=_params(),
      cost_estimate=_cost(v, m, a, s8, g32, *shapes), interpret=interpret)(v, mv, av, s8, g32)
  return (vma.cotangent_for(dx, v), vma.cotangent_for(dm.sum(1), m),
          vma.cotangent_for(da.sum(1), a))


_lif.defvjp(_lif_fwd, _lif_bwd)
