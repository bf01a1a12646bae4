"""Normalisation of the synaptic input of a spiking layer (spec sections 1, 2, 10).

Every norm here takes the synaptic input in one of two forms:

* all steps at once, ``x: [k, N, ..., C]`` with ``k <= num_steps`` (``t=None``),
  what the time-batched ``layer`` schedule uses;
* one step, ``x: [N, ..., C]`` with the step index ``t`` (a traced scalar is
  fine), what the ``step`` schedule (``lax.scan`` over time) uses.

Both give the same numbers. Statistics are per channel (the last axis) over
the batch and spatial axes. Training normalises with the biased batch
variance; running statistics follow PyTorch's rule, ``new = (1 - momentum) *
old + momentum * batch`` with the *unbiased* batch variance, and evaluation
normalises with them. This differs from ``flax.linen.BatchNorm`` (momentum is
the weight of the old value there, and the variance is biased).

Variables (``'params'`` and ``'batch_stats'`` collections):

========  ==============================  ===================================
norm      params                          batch_stats
========  ==============================  ===================================
bntt      ``scale [T, C]``                ``mean [T, C]``, ``var [T, C]``
bn        ``scale [C]`` (+``bias [C]``)   ``mean [C]``, ``var [C]``
tdbn      ``scale [C]``, ``bias [C]``     ``mean [C]``, ``var [C]``
tebn      ``scale [C]``, ``bias [C]``,    ``mean [C]``, ``var [C]``
          ``step_scale [T]``
none      --                              --
========  ==============================  ===================================

``bn``, ``tdbn`` and ``tebn`` pool their statistics over time as well, so in
training they need every step's input at once: the ``step`` schedule can run
them in evaluation only.

Statistics are computed in at least float32 whatever the input dtype.

``stat_groups = G > 1`` computes the batch statistics separately over G equal
consecutive slices of the batch axis (per-device statistics when the batch is
sharded over G devices; each slice then lives on one device). The running
statistics are updated with the mean over the groups of each group's
statistics.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

EPSILON = 1e-4
MOMENTUM = 0.1


def _stat_dtype(dtype):
  return jnp.promote_types(dtype, jnp.float32)


def batch_moments(x: Array, axes: Tuple[int, ...], groups: int = 1,
                  batch_axis: int = 0) -> Tuple[Array, Array, int]:
  """Mean and biased variance of ``x`` over ``axes``, in at least float32.

  With ``groups > 1`` the batch axis (``batch_axis``, which must be in
  ``axes``) is split into ``groups`` equal consecutive slices and the moments
  get a leading group axis ``[G, ...]``.

  Returns:
    ``(mean, var, m)`` with ``m`` the number of samples behind each moment.
  """
  x = x.astype(_stat_dtype(x.dtype))
  if groups > 1:
    n = x.shape[batch_axis]
    if n % groups:
      raise ValueError(f'batch {n} does not split into {groups} statistics groups')
    x = x.reshape(x.shape[:batch_axis] + (groups, n // groups) + x.shape[batch_axis + 1:])
    x = jnp.moveaxis(x, batch_axis, 0)
    axes = tuple(a + 1 for a in axes)
  m = 1
  for a in axes:
    m *= x.shape[a]
  mean = jnp.mean(x, axis=axes, keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
  return jnp.squeeze(mean, axes), jnp.squeeze(var, axes), m


def running_update(old_mean: Array, old_var: Array, mean: Array, var: Array, m: int,
                   momentum: float, groups: int = 1) -> Tuple[Array, Array]:
  """PyTorch's running-statistics rule with the unbiased batch variance."""
  unbiased = var * (m / max(m - 1, 1))
  if groups > 1:
    mean, unbiased = mean.mean(0), unbiased.mean(0)
  return ((1.0 - momentum) * old_mean + momentum * mean,
          (1.0 - momentum) * old_var + momentum * unbiased)


def _bcast(v: Array, ndim: int, lead: int = 0) -> Array:
  """Shape ``[*lead_dims, C]`` -> broadcastable against ``ndim`` dims."""
  return v.reshape(v.shape[:lead] + (1,) * (ndim - lead - 1) + v.shape[-1:])


class _TimeNorm(nn.Module):
  """Shared machinery; subclasses define the statistics and the affine part."""

  def _check_steps(self, k: int):
    if k > self.num_steps:
      raise ValueError(f'{k} time steps asked of a norm trained for {self.num_steps}; '
                       f'accepted: 1..{self.num_steps}')

  def _running(self, shape):
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros(shape, jnp.float32))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones(shape, jnp.float32))
    return ra_mean, ra_var


class BNTT(_TimeNorm):
  """Batch Normalisation Through Time (the paper's layer).

  Statistics of step ``t`` alone, a separate scale ``gamma[t]`` per step, no
  shift; one pair of running statistics per step.

  Attributes:
    num_steps: T, the length of the leading axis of every variable.
    epsilon: added to the variance (reference 1e-4).
    momentum: PyTorch convention (weight of the batch value), 0.1.
    use_bias: add a per-step shift ``beta[t]`` (the paper removes it).
    stat_groups: see the module docstring.
  """
  num_steps: int
  epsilon: float = EPSILON
  momentum: float = MOMENTUM
  use_bias: bool = False
  stat_groups: int = 1
  scale_init: Callable[..., Array] = nn.initializers.ones
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, *, train: bool, t: Optional[Array] = None) -> Array:
    T, C = self.num_steps, x.shape[-1]
    gamma = self.param('scale', self.scale_init, (T, C), self.param_dtype)
    beta = (self.param('bias', nn.initializers.zeros, (T, C), self.param_dtype)
            if self.use_bias else None)
    ra_mean, ra_var = self._running((T, C))

    if t is None:  # x: [k, N, ..., C]
      k = x.shape[0]
      self._check_steps(k)
      axes = tuple(range(1, x.ndim - 1))
      lead, batch_axis = 1, 1
      pick = lambda v: v[:k]
    else:  # x: [N, ..., C] at step t
      axes = tuple(range(0, x.ndim - 1))
      lead, batch_axis = 0, 0
      pick = lambda v: jax.lax.dynamic_index_in_dim(v, t, 0, keepdims=False)

    if train:
      mean, var, m = batch_moments(x, axes, self.stat_groups, batch_axis)
      if not self.is_initializing():
        new_mean, new_var = running_update(pick(ra_mean.value), pick(ra_var.value), mean, var,
                                           m, self.momentum, self.stat_groups)
        if t is None:
          ra_mean.value = ra_mean.value.at[:k].set(new_mean)
          ra_var.value = ra_var.value.at[:k].set(new_var)
        else:
          ra_mean.value = jax.lax.dynamic_update_index_in_dim(ra_mean.value, new_mean, t, 0)
          ra_var.value = jax.lax.dynamic_update_index_in_dim(ra_var.value, new_var, t, 0)
    else:
      mean, var = pick(ra_mean.value), pick(ra_var.value)

    g = pick(gamma)
    b = pick(beta) if beta is not None else None
    return _affine(x, mean, var, g, b, self.epsilon, lead, self.stat_groups if train else 1,
                   batch_axis)


def _affine(x, mean, var, scale, bias, eps, lead, groups=1, batch_axis=0):
  """``scale * (x - mean) / sqrt(var + eps) + bias`` in x's dtype.

  ``mean``/``var`` are ``[*lead, C]`` (or ``[G, *lead, C]`` with groups);
  ``scale``/``bias`` ``[*lead, C]``.
  """
  dt = x.dtype
  inv = jax.lax.rsqrt(var + eps)
  if groups > 1:
    n = x.shape[batch_axis]
    xg = x.reshape(x.shape[:batch_axis] + (groups, n // groups) + x.shape[batch_axis + 1:])
    xg = jnp.moveaxis(xg, batch_axis, 0)  # [G, ...]
    mul = inv * scale[None]
    add = -mean * mul + (bias[None] if bias is not None else 0.0)
    nd = xg.ndim - 1
    y = xg * _bcast(mul, nd + 1, lead + 1).astype(dt) + _bcast(add, nd + 1, lead + 1).astype(dt)
    y = jnp.moveaxis(y, 0, batch_axis)
    return y.reshape(x.shape)
  mul = inv * scale
  add = -mean * mul
  if bias is not None:
    add = add + bias
  return x * _bcast(mul, x.ndim, lead).astype(dt) + _bcast(add, x.ndim, lead).astype(dt)


class _PooledNorm(_TimeNorm):
  """Statistics over time, batch and space; one set of running statistics."""
  num_steps: int
  epsilon: float = EPSILON
  momentum: float = MOMENTUM
  stat_groups: int = 1
  param_dtype: Any = jnp.float32

  def _normalise(self, x, t, train, scale, bias):
    C = x.shape[-1]
    ra_mean, ra_var = self._running((C,))
    if t is None:
      self._check_steps(x.shape[0])
      axes, batch_axis = tuple(range(0, x.ndim - 1)), 1
    else:
      axes, batch_axis = tuple(range(0, x.ndim - 1)), 0
    if train:
      if t is not None:
        raise ValueError(f'norm {type(self).__name__} pools statistics over all time steps: '
                         'train it with the layer schedule (the step schedule can evaluate it)')
      mean, var, m = batch_moments(x, axes, self.stat_groups, batch_axis)
      if not self.is_initializing():
        ra_mean.value, ra_var.value = running_update(ra_mean.value, ra_var.value, mean, var, m,
                                                     self.momentum, self.stat_groups)
      groups = self.stat_groups
    else:
      mean, var, groups = ra_mean.value, ra_var.value, 1
    return _affine(x, mean, var, scale, bias, self.epsilon, 0, groups, batch_axis)


class BN(_PooledNorm):
  """Plain BN over the time-stacked batch: one scale (optional shift) for all steps."""
  use_bias: bool = False

  @nn.compact
  def __call__(self, x, *, train: bool, t=None):
    C = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (C,), self.param_dtype)
    bias = (self.param('bias', nn.initializers.zeros, (C,), self.param_dtype)
            if self.use_bias else None)
    return self._normalise(x, t, train, scale, bias)


class TDBN(_PooledNorm):
  """Threshold-dependent BN (Zheng et al., AAAI 2021).

  ``y = gamma * alpha * theta * xhat + beta`` with statistics over
  ``(T, B, H, W)``; ``alpha`` is a fixed constant and ``theta`` the firing
  threshold of the neurons the norm feeds.
  """
  alpha: float = 1.0
  threshold: float = 1.0

  @nn.compact
  def __call__(self, x, *, train: bool, t=None):
    C = x.shape[-1]
    gamma = self.param('scale', nn.initializers.ones, (C,), self.param_dtype)
    beta = self.param('bias', nn.initializers.zeros, (C,), self.param_dtype)
    return self._normalise(x, t, train, gamma * (self.alpha * self.threshold), beta)


class TEBN(_PooledNorm):
  """Temporal effective BN (Duan et al., NeurIPS 2022).

  ``y_t = p[t] * (gamma * xhat + beta)`` with statistics over ``(T, B, H, W)``
  and ``p`` a learnable scale per step, initialised to 1.
  """

  @nn.compact
  def __call__(self, x, *, train: bool, t=None):
    C = x.shape[-1]
    gamma = self.param('scale', nn.initializers.ones, (C,), self.param_dtype)
    beta = self.param('bias', nn.initializers.zeros, (C,), self.param_dtype)
    p = self.param('step_scale', nn.initializers.ones, (self.num_steps,), self.param_dtype)
    y = self._normalise(x, t, train, gamma, beta)
    if t is None:
      pk = p[:x.shape[0]].reshape((-1,) + (1,) * (x.ndim - 1))
    else:
      pk = jax.lax.dynamic_index_in_dim(p, t, 0, keepdims=False)
    return y * pk.astype(y.dtype)


class Identity(nn.Module):
  """``norm = none``: the surrogate-gradient baseline without normalisation."""
  num_steps: int = 1

  def __call__(self, x, *, train: bool, t=None):
    if t is None and x.shape[0] > self.num_steps:
      raise ValueError(f'{x.shape[0]} time steps asked of a network trained for '
                       f'{self.num_steps}; accepted: 1..{self.num_steps}')
    return x


NORMS = {'bntt': BNTT, 'bn': BN, 'tdbn': TDBN, 'tebn': TEBN, 'none': Identity}
# Norms whose statistics at step t use step t alone (trainable in the step schedule).
CAUSAL_NORMS = ('bntt', 'none')


def make_norm(name: str, num_steps: int, **kwargs) -> nn.Module:
  """A norm module by name; ``kwargs`` that the norm does not take are dropped.

  This lets one config carry e.g. ``threshold`` (used by tdbn only).
  """
  if name not in NORMS:
    raise ValueError(f'norm {name!r} is not one of {sorted(NORMS)}')
  cls = NORMS[name]
  fields = {f for f in cls.__dataclass_fields__}
  return cls(num_steps=num_steps, **{k: v for k, v in kwargs.items() if k in fields})
