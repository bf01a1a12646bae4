"""The fused LIF recurrence of the ``layer`` schedule as one CPU kernel per pass.

:func:`lif_affine_sequence` is :func:`bntt_jax.neurons.lif_affine_sequence` (the LIF driven by a
per-step, per-channel affine map, the BNTT layer's normalisation) computed by a C++ kernel
(``lif.cc``): each element's whole time line runs in one thread on a block of rows that
stays in cache, so the forward pass reads the input and writes the spikes once, and the backward
pass recomputes the membranes instead of storing them (no ``[T, ...]`` residual besides the
input) and reads the input and the spikes' gradient once. ``lax.scan`` instead streams every
operand's slice at each step, which on XLA:CPU costs several times the memory traffic.

Same numbers as the scan: the forward uses the fused multiply-adds XLA emits, so spikes are
equal; gradients equal it up to float32 summation order (``dmul`` and ``dadd`` are summed over
fixed row ranges in a fixed order: deterministic). Float32 only; compiled on first use
(:mod:`bntt_jax.kernels.build`); :func:`available` is False off a single Linux CPU device, and
callers then use the scan. ``jax.grad`` and ``jax.vjp`` pass through it; forward-mode autodiff
(``jax.jvp``) does not, and ``jax.vmap`` runs it once per mapped element.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from bntt_jax.kernels import build
from bntt_jax import neurons
from bntt_jax import vma

_FORWARD, _BACKWARD = 'bntt_lif_forward', 'bntt_lif_backward'
_SURROGATE_CODE = {'triangle': 0, 'fast_sigmoid': 1, 'arctan': 2}


def available() -> bool:
  """Whether :func:`lif_affine_sequence` runs its kernel here (built on first call)."""
  return build.load('lif', {_FORWARD: 'BnttLifForward', _BACKWARD: 'BnttLifBackward'})[0]


def unavailable_reason() -> str:
  return build.reason('lif')


def variant() -> str:
  """The instruction-set variant it is built as: its flags (no hand-written vectors here)."""
  return build.variant()


def supports(x, mul, add) -> bool:
  """Whether the kernel takes these operands: float32, ``x [T, N, ..., C]``, ``mul`` and ``add``
  ``[T, G, C]`` with ``N`` divisible into the ``G`` groups."""
  return (all(a.dtype == jnp.float32 for a in (x, mul, add)) and x.ndim >= 3
          and mul.shape == add.shape and mul.ndim == 3 and mul.shape[0] == x.shape[0]
          and mul.shape[2] == x.shape[-1] and x.shape[1] % mul.shape[1] == 0)


def _grouped(x, mul):
  """``x [T, N, ..., C]`` -> ``[T, G, M, C]`` with ``G = mul.shape[1]``."""
  return x.reshape(x.shape[0], mul.shape[1], -1, x.shape[-1])


def _attrs(p: neurons.LIFParams) -> dict:
  return dict(leak=np.float32(p.leak), threshold=np.float32(p.threshold))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def lif_affine_sequence(x, mul, add, p: neurons.LIFParams):
  """Spikes ``[T, N, ..., C]`` of the LIF driven by ``x * mul + add`` (see the module doc).

  Args:
    x: ``[T, N, ..., C]`` float32 synaptic input.
    mul, add: ``[T, G, C]`` float32; the batch axis is split into ``G`` equal groups.
    p: the neuron's settings.
  """
  if not available():
    raise RuntimeError(f'the LIF kernel is not available here: {unavailable_reason()}')
  xg = _grouped(x, mul)
  s = build.call(_FORWARD, jax.ShapeDtypeStruct(xg.shape, jnp.float32), xg, mul, add,
                  **_attrs(p))
  return s.reshape(x.shape)


def _fwd(x, mul, add, p):
  return lif_affine_sequence(x, mul, add, p), (x, mul, add)


def _bwd(p, res, g):
  x, mul, add = res
  xg = _grouped(x, mul)
  f32 = lambda a: jax.ShapeDtypeStruct(a.shape, jnp.float32)
  dx, dmul, dadd = build.call(
      _BACKWARD, (f32(xg), f32(mul), f32(add)), xg, mul, add,
      _grouped(g.astype(jnp.float32), mul), **_attrs(p),
      surrogate=np.int32(_SURROGATE_CODE[p.surrogate.name]), alpha=np.float32(p.surrogate.alpha))
  return (vma.cotangent_for(dx.reshape(x.shape), x), vma.cotangent_for(dmul, mul),
          vma.cotangent_for(dadd, add))


lif_affine_sequence.defvjp(_fwd, _bwd)
