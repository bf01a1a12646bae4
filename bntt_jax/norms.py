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

Every norm is a per-step, per-channel affine map of its input, so each exposes
:meth:`affine`, returning ``mul`` and ``add`` with ``y = x * mul + add``; the
spiking block fuses that map into the LIF recurrence (one pass over memory
instead of three) and autodiff carries the gradient through the statistics.

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
consecutive slices of the batch axis: per-device statistics when the batch is
sharded over G devices (each slice then lives on one device), as in
data-parallel training without synchronised BN. The running statistics are
updated with the mean over the groups of each group's statistics. Evaluation
uses the running statistics and is not grouped.

``axis_name``: inside ``jax.shard_map`` (data parallelism, :mod:`bntt_jax.sharding`)
each device holds only its slice of the batch. With ``stat_groups = 1`` the
statistics are still those of the global batch: each step's sums (and then its
squared deviations) are all-reduced over the axis, a ``[k, C]`` array per layer,
never the activations. With ``stat_groups = G`` (a multiple of the axis size)
each device computes its ``G / axis size`` groups alone and only the running
statistics are averaged over the axis.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from bntt_jax import errors

Array = jax.Array

EPSILON = 1e-4
MOMENTUM = 0.1


def group(x: Array, groups: int, batch_axis: int) -> Array:
  """Split the batch axis into ``[groups, batch // groups]``."""
  n = x.shape[batch_axis]
  if n % groups:
    raise ValueError(f'batch {n} does not split into {groups} statistics groups')
  return x.reshape(x.shape[:batch_axis] + (groups, n // groups) + x.shape[batch_axis + 1:])


def moments(xg: Array, axes: Tuple[int, ...],
            axis_name: Optional[str] = None) -> Tuple[Array, Array, int]:
  """Mean and biased variance over ``axes`` in at least float32, and the count.

  Two passes (mean, then the mean squared deviation) for accuracy; the VJP
  recomputes ``x - mean`` from ``x`` rather than keeping a full-size
  difference alive for the backward pass. With ``axis_name`` (inside
  ``shard_map``) the sums run over that mesh axis too: the moments of the
  array the shards make up, from one all-reduce of ``[.., C]`` per pass.
  """
  xg = xg.astype(jnp.promote_types(xg.dtype, jnp.float32))
  mean, var = _moments(xg, tuple(axes), axis_name)
  return mean, var, _count(xg, tuple(axes), axis_name)


def _count(x: Array, axes: Tuple[int, ...], axis_name: Optional[str]) -> int:
  m = 1
  for a in axes:
    m *= x.shape[a]
  return m * (jax.lax.axis_size(axis_name) if axis_name else 1)


def _sum(x: Array, axes: Tuple[int, ...], axis_name: Optional[str]) -> Array:
  s = jnp.sum(x, axis=axes, keepdims=True)
  return jax.lax.psum(s, axis_name) if axis_name else s


def _sum_staged(x: Array, axes: Tuple[int, ...], axis_name: Optional[str]) -> Array:
  """:func:`_sum` one axis at a time, the last first (see :func:`merge_for_cpu`); the barrier
  keeps XLA from folding the sums back into one over several axes."""
  for i, a in enumerate(sorted(axes, reverse=True)):
    x = jnp.sum(jax.lax.optimization_barrier(x) if i else x, axis=a, keepdims=True)
  return jax.lax.psum(x, axis_name) if axis_name else x


def _two_pass(x: Array, axes: Tuple[int, ...], axis_name: Optional[str], sum_=_sum):
  m = _count(x, axes, axis_name)
  mean = sum_(x, axes, axis_name) / m
  var = sum_(jnp.square(x - mean), axes, axis_name) / m
  return jnp.squeeze(mean, axes), jnp.squeeze(var, axes)


def merge_for_cpu(x: Array, axes: Tuple[int, ...]) -> Tuple[Array, Tuple[int, ...]]:
  """``x`` with the innermost run of adjacent ``axes`` as one axis between kept ones.

  XLA:CPU sums ``[A, R, C]`` over ``R`` alone 10-20x faster than the same elements over
  several axes or over a leading axis (conv2's statistics at batch 16, ``[25, 1, 16, 32, 32,
  64]`` over (2, 3, 4): 92 ms; as ``[25, 1, 16384, 64]`` over axis 2: 5 ms). A leading 1 is
  added where no kept axis precedes the run; the other reduced axes, all before it, are
  summed after it (:func:`_sum_staged`), on the small partial sums. Returns the reshaped ``x`` and
  its reduced axes, the merged one last. Unchanged where the minor axis is reduced (no faster
  form known).
  """
  axes = sorted(a % x.ndim for a in axes)
  j = len(axes) - 1
  while j and axes[j - 1] == axes[j] - 1:
    j -= 1
  a, b = axes[j], axes[-1] + 1
  if b == x.ndim:
    return x, tuple(axes)
  lead = x.shape[:a] or (1,)
  return x.reshape(lead + (-1,) + x.shape[b:]), tuple(axes[:j]) + (len(lead),)


def _moments_cpu(x: Array, axes: Tuple[int, ...], axis_name: Optional[str]):
  kept = tuple(d for i, d in enumerate(x.shape) if i not in {a % x.ndim for a in axes})
  mean, var = _two_pass(*merge_for_cpu(x, axes), axis_name, sum_=_sum_staged)
  return mean.reshape(kept), var.reshape(kept)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _moments(x: Array, axes: Tuple[int, ...], axis_name: Optional[str]) -> Tuple[Array, Array]:
  # Other platforms sum as written: there the reshape could cost a relayout (XLA:TPU keeps a
  # convolution's output with the batch axis inside the spatial ones).
  return jax.lax.platform_dependent(
      x, cpu=functools.partial(_moments_cpu, axes=axes, axis_name=axis_name),
      default=functools.partial(_two_pass, axes=axes, axis_name=axis_name))


def _moments_fwd(x, axes, axis_name):
  mean, var = _moments(x, axes, axis_name)
  return (mean, var), (x, mean)


def _moments_bwd(axes, axis_name, res, g):
  x, mean = res
  # Inside shard_map the cotangents of the (replicated) moments arrive summed over
  # the axis, so this device's share of x gets its exact gradient without a collective.
  g_mean, g_var = (jnp.expand_dims(v, axes) for v in g)
  m = _count(x, axes, axis_name)
  # d mean / dx = 1/m; d var / dx = 2 (x - mean) / m (the mean's own dependence
  # cancels: sum(x - mean) = 0).
  return ((g_mean + 2.0 * g_var * (x - jnp.expand_dims(mean, axes))) / m,)


_moments.defvjp(_moments_fwd, _moments_bwd)


def running_update(old_mean: Array, old_var: Array, mean: Array, var: Array, m: int,
                   momentum: float, group_axis: int,
                   axis_name: Optional[str] = None) -> Tuple[Array, Array]:
  """PyTorch's running-statistics rule with the unbiased batch variance; the
  group axis of ``mean``/``var`` is averaged out (and, for groups that live on
  different devices, the mesh axis ``axis_name``). The new values keep the old ones' dtypes
  (the batch statistics may be computed wider)."""
  unbiased = var * (m / max(m - 1, 1))
  mean, unbiased = mean.mean(group_axis), unbiased.mean(group_axis)
  if axis_name:
    mean, unbiased = jax.lax.pmean((mean, unbiased), axis_name)
  return (((1.0 - momentum) * old_mean + momentum * mean).astype(old_mean.dtype),
          ((1.0 - momentum) * old_var + momentum * unbiased).astype(old_var.dtype))


def apply_affine(x: Array, mul: Array, add: Array, stepwise: bool) -> Array:
  """``y = x * mul + add`` in ``promote(x.dtype, float32)`` (a bfloat16 synapse
  output is normalised, and feeds the membrane, in float32).

  ``x``: ``[k, N, ..., C]`` with ``mul``/``add`` ``[k, G, C]`` (``stepwise``),
  or ``x``: ``[N, ..., C]`` with ``[G, C]``.
  """
  lead = 1 if stepwise else 0
  dt = jnp.promote_types(x.dtype, jnp.float32)

  def affine(xg):
    bshape = mul.shape[:lead + 1] + (1,) * (xg.ndim - lead - 2) + mul.shape[-1:]
    return (xg.astype(dt) * mul.reshape(bshape).astype(dt)
            + add.reshape(bshape).astype(dt)).reshape(x.shape)

  # On CPU in [.., G, R, C], so that the gradients of mul and add are the sums that XLA:CPU
  # runs fast (see merge_for_cpu); elsewhere as grouped, without a reshape that could cost a
  # relayout.
  return jax.lax.platform_dependent(
      group(x, mul.shape[lead], lead), default=affine,
      cpu=lambda xg: affine(xg.reshape(xg.shape[:lead + 1] + (-1, xg.shape[-1]))))


class _TimeNorm(nn.Module):
  """Shared machinery. Subclasses implement :meth:`affine`."""

  def __call__(self, x: Array, *, train: bool, t: Optional[Array] = None) -> Array:
    mul, add = self.affine(x, train=train, t=t)
    return apply_affine(x, mul, add, stepwise=t is None)

  def _check_steps(self, k: int):
    if k > self.num_steps:
      raise ValueError(f'{k} time steps asked of a norm trained for {self.num_steps}; '
                       f'accepted: 1..{self.num_steps}')

  def _groups(self) -> Tuple[int, Optional[str], Optional[str]]:
    """``(groups in this shard's batch, axis the moments sum over, axis the running
    statistics average over)`` (module docstring)."""
    groups, axis = self.stat_groups, self.axis_name
    if axis is None:
      return groups, None, None
    if groups == 1:
      return 1, axis, None
    devices = jax.lax.axis_size(axis)
    if groups % devices:
      raise ValueError(f'stat_groups {groups} is not accepted with the batch split over '
                       f'{devices} devices: 1 (global statistics) or a multiple of {devices}')
    return groups // devices, None, axis

  def _running(self, shape):
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros(shape, jnp.float32))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones(shape, jnp.float32))
    return ra_mean, ra_var


def _at(v: Array, t) -> Array:
  return jax.lax.dynamic_index_in_dim(v, t, 0, keepdims=False)


class BNTT(_TimeNorm):
  """Batch Normalisation Through Time (the paper's layer).

  Statistics of step ``t`` alone, a separate scale ``gamma[t]`` per step, no
  shift; one pair of running statistics per step.

  Attributes:
    num_steps: T, the length of the leading axis of every variable.
    epsilon: added to the variance (reference 1e-4).
    momentum: PyTorch convention (weight of the batch value), 0.1.
    use_bias: add a per-step shift ``beta[t]`` (the paper removes it).
    stat_groups, axis_name: see the module docstring.
  """
  num_steps: int
  epsilon: float = EPSILON
  momentum: float = MOMENTUM
  use_bias: bool = False
  stat_groups: int = 1
  axis_name: Optional[str] = None
  scale_init: Callable[..., Array] = nn.initializers.ones
  param_dtype: Any = jnp.float32

  @nn.compact
  def affine(self, x: Array, *, train: bool, t: Optional[Array] = None) -> Tuple[Array, Array]:
    """``(mul, add)``: ``[k, G, C]`` for ``x [k, N, ..., C]``, ``[G, C]`` at step t."""
    T, C = self.num_steps, x.shape[-1]
    gamma = self.param('scale', self.scale_init, (T, C), self.param_dtype)
    beta = (self.param('bias', nn.initializers.zeros, (T, C), self.param_dtype)
            if self.use_bias else None)
    ra_mean, ra_var = self._running((T, C))
    stepwise = t is None
    if stepwise:
      k = x.shape[0]
      self._check_steps(k)
      pick = lambda v: v[:k]
    else:
      pick = lambda v: _at(v, t)
    g = pick(gamma)
    b = pick(beta) if beta is not None else None

    if train:
      lead = 1 if stepwise else 0
      groups, moments_axis, running_axis = self._groups()
      xg = group(x, groups, lead)
      # [k, G, C] / [G, C]
      mean, var, m = moments(xg, tuple(range(lead + 1, xg.ndim - 1)), moments_axis)
      if not self.is_initializing():
        new_mean, new_var = running_update(pick(ra_mean.value), pick(ra_var.value), mean, var,
                                           m, self.momentum, group_axis=lead,
                                           axis_name=running_axis)
        if stepwise:
          ra_mean.value = ra_mean.value.at[:k].set(new_mean)
          ra_var.value = ra_var.value.at[:k].set(new_var)
        else:
          ra_mean.value = jax.lax.dynamic_update_index_in_dim(ra_mean.value, new_mean, t, 0)
          ra_var.value = jax.lax.dynamic_update_index_in_dim(ra_var.value, new_var, t, 0)
      g, b = jnp.expand_dims(g, lead), (jnp.expand_dims(b, lead) if b is not None else None)
    else:
      mean, var = pick(ra_mean.value), pick(ra_var.value)
      lead = 1 if stepwise else 0
      mean, var = jnp.expand_dims(mean, lead), jnp.expand_dims(var, lead)
      g, b = jnp.expand_dims(g, lead), (jnp.expand_dims(b, lead) if b is not None else None)
    mul = g * jax.lax.rsqrt(var + self.epsilon)
    add = -mean * mul + (b if b is not None else 0.0)
    return mul, add


class _PooledNorm(_TimeNorm):
  """Statistics over time, batch and space; one set of running statistics."""
  num_steps: int
  epsilon: float = EPSILON
  momentum: float = MOMENTUM
  stat_groups: int = 1
  axis_name: Optional[str] = None
  param_dtype: Any = jnp.float32

  def _pooled_stats(self, x, t, train):
    """Normalising ``(mean, inv_std)``: ``[k, G, C]`` stepwise, ``[G, C]`` at step t."""
    C = x.shape[-1]
    ra_mean, ra_var = self._running((C,))
    stepwise = t is None
    if stepwise:
      self._check_steps(x.shape[0])
    if train:
      if not stepwise:
        raise ValueError(f'norm {type(self).__name__} pools statistics over all time steps: '
                         'train it with the layer schedule (the step schedule can evaluate it)')
      groups, moments_axis, running_axis = self._groups()
      xg = group(x, groups, 1)
      axes = (0,) + tuple(range(2, xg.ndim - 1))
      mean, var, m = moments(xg, axes, moments_axis)   # [G, C]
      if not self.is_initializing():
        ra_mean.value, ra_var.value = running_update(ra_mean.value, ra_var.value, mean, var, m,
                                                     self.momentum, group_axis=0,
                                                     axis_name=running_axis)
    else:
      mean, var = ra_mean.value[None], ra_var.value[None]   # [1, C]
    inv = jax.lax.rsqrt(var + self.epsilon)
    if stepwise:
      k = x.shape[0]
      mean, inv = (jnp.broadcast_to(v[None], (k,) + v.shape) for v in (mean, inv))
    return mean, inv


class BN(_PooledNorm):
  """Plain BN over the time-stacked batch: one scale (optional shift) for all steps."""
  use_bias: bool = False

  @nn.compact
  def affine(self, x, *, train: bool, t=None):
    C = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (C,), self.param_dtype)
    bias = (self.param('bias', nn.initializers.zeros, (C,), self.param_dtype)
            if self.use_bias else 0.0)
    mean, inv = self._pooled_stats(x, t, train)
    mul = inv * scale
    return mul, bias - mean * mul


class TDBN(_PooledNorm):
  """Threshold-dependent BN (Zheng et al., AAAI 2021).

  ``y = gamma * alpha * theta * xhat + beta`` with statistics over
  ``(T, B, H, W)``; ``alpha`` is a fixed constant and ``theta`` the firing
  threshold of the neurons the norm feeds.
  """
  alpha: float = 1.0
  threshold: float = 1.0

  @nn.compact
  def affine(self, x, *, train: bool, t=None):
    C = x.shape[-1]
    gamma = self.param('scale', nn.initializers.ones, (C,), self.param_dtype)
    beta = self.param('bias', nn.initializers.zeros, (C,), self.param_dtype)
    mean, inv = self._pooled_stats(x, t, train)
    mul = inv * gamma * (self.alpha * self.threshold)
    return mul, beta - mean * mul


class TEBN(_PooledNorm):
  """Temporal effective BN (Duan et al., NeurIPS 2022).

  ``y_t = p[t] * (gamma * xhat + beta)`` with statistics over ``(T, B, H, W)``
  and ``p`` a learnable scale per step, initialised to 1.
  """

  @nn.compact
  def affine(self, x, *, train: bool, t=None):
    C = x.shape[-1]
    gamma = self.param('scale', nn.initializers.ones, (C,), self.param_dtype)
    beta = self.param('bias', nn.initializers.zeros, (C,), self.param_dtype)
    p = self.param('step_scale', nn.initializers.ones, (self.num_steps,), self.param_dtype)
    mean, inv = self._pooled_stats(x, t, train)
    if t is None:
      pk = p[:x.shape[0], None, None]   # [k, 1, 1]
    else:
      pk = _at(p, t)
    mul = pk * inv * gamma
    return mul, pk * beta - mean * mul


class Identity(_TimeNorm):
  """``norm = none``: the surrogate-gradient baseline without normalisation."""
  num_steps: int = 1

  def affine(self, x, *, train: bool, t=None):
    del train
    C = x.shape[-1]
    if t is None:
      self._check_steps(x.shape[0])
      shape = (x.shape[0], 1, C)
    else:
      shape = (1, C)
    return jnp.ones(shape, jnp.float32), jnp.zeros(shape, jnp.float32)

  def __call__(self, x, *, train: bool, t=None):
    if t is None:
      self._check_steps(x.shape[0])
    return x


NORMS = {'bntt': BNTT, 'bn': BN, 'tdbn': TDBN, 'tebn': TEBN, 'none': Identity}
# Norms whose statistics at step t use step t alone (trainable in the step schedule).
CAUSAL_NORMS = ('bntt', 'none')


def check_norm(name: str) -> None:
  """The one check of a norm's name (``ConfigError`` listing :data:`NORMS`)."""
  errors.check_one_of('norm', name, tuple(sorted(NORMS)))


def make_norm(name: str, num_steps: int, **kwargs) -> nn.Module:
  """A norm module by name; ``kwargs`` that the norm does not take but another norm does are
  dropped (one config can carry e.g. ``threshold``, used by tdbn only); a key no norm takes
  is a ``ConfigError``.
  """
  check_norm(name)
  errors.check_int_at_least('num_steps', num_steps, 1)
  # A key that no norm takes is a typo (e.g. PyTorch's eps for epsilon), not another norm's.
  known = sorted(set().union(*(c.__dataclass_fields__ for c in NORMS.values()))
                 - {'parent', 'name', 'num_steps'})
  for key in kwargs:
    errors.check_one_of('norm_kwargs key', key, known)
  cls = NORMS[name]
  fields = set(cls.__dataclass_fields__)
  return cls(num_steps=num_steps, **{k: v for k, v in kwargs.items() if k in fields})
