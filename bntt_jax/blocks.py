"""A spiking block: synaptic op (time-agnostic) -> norm -> neuron (-> pool).

A block offers the same layer in the two forms the schedules need:

* ``block(x [k, B, ...], train)``: all steps at once. The synaptic op runs once
  on the ``k * B`` samples, the norm reduces per step, and only the
  elementwise LIF recurrence is scanned over time.
* ``block.step(u, x_t [B, ...], t, train)``: one step, with the membrane ``u``
  carried by the caller's time loop.

Both return the block output (after pooling) and the number of spikes the
neurons emitted per example (before pooling).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Tuple

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp

from bntt_jax import kernels
from bntt_jax import neurons as neurons_lib
from bntt_jax import norms as norms_lib
from bntt_jax import synapses

Array = jax.Array

# The reference's init: xavier-uniform with gain 2, i.e. variance 4 / fan_avg.
reference_init = nn.initializers.variance_scaling(4.0, 'fan_avg', 'uniform')

GLOBAL_POOL = -1


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One hidden layer of a network.

  Attributes:
    kind: ``conv`` (``kernel_size`` square, stride 1, 'SAME' padding) or
      ``dense`` (flattens its input).
    features: output channels / units.
    pool: average-pooling window (and stride) after the neuron; 1 = none,
      ``GLOBAL_POOL`` (-1) = global average over space.
    kernel_size: conv kernel size.
    name: the layer's name in the parameter tree (default ``conv{i}``/``fc{i}``).
  """
  kind: str
  features: int
  pool: int = 1
  kernel_size: int = 3
  name: Optional[str] = None

  def __post_init__(self):
    if self.kind not in ('conv', 'dense'):
      raise ValueError(f'layer kind {self.kind!r} is not one of conv, dense')
    if self.kind == 'dense' and self.pool != 1:
      raise ValueError('a dense layer cannot pool')

  def output_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """Neuron shape (before pooling) for one example's input ``in_shape``."""
    if self.kind == 'conv':
      return tuple(in_shape[:-1]) + (self.features,)
    return (self.features,)

  def pooled_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
    if self.pool == 1:
      return shape
    if self.pool == GLOBAL_POOL:
      return shape[-1:]
    return tuple(d // self.pool for d in shape[:-1]) + shape[-1:]


def avg_pool(x: Array, window: int) -> Array:
  """Average pooling of ``[N, H, W, C]``; ``GLOBAL_POOL`` -> ``[N, C]``.

  Odd trailing rows/columns are dropped (floor), as in PyTorch's AvgPool2d.
  """
  if window == 1:
    return x
  if window == GLOBAL_POOL:
    return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))
  n, h, w, c = x.shape
  ho, wo = h // window, w // window
  x = x[:, :ho * window, :wo * window]
  return x.reshape(n, ho, window, wo, window, c).mean(axis=(2, 4))


class SpikingBlock(nn.Module):
  """Synapse -> norm -> neuron -> pool, for both schedules.

  Attributes:
    spec: the layer's shape.
    num_steps: T (the norm's time axis).
    norm: a name in ``norms.NORMS``; ``norm_kwargs``: its extra settings.
    neuron: ``LIFParams`` or the string ``relu`` (ANN twin).
    dtype: compute dtype of the synaptic op (None: the input's); the norm's
      statistics and the membrane stay in float32 or wider.
    input_kind: what the layer's input holds (:mod:`bntt_jax.synapses`: spikes,
      pooled spikes, real values), for the synapse's narrow residual and its
      ``exact_bf16x3`` check.
    synapse_precision: ``float32`` or ``exact_bf16x3`` (:mod:`bntt_jax.synapses`;
      with ``dtype`` set, the synapse runs in that dtype instead).
    sparse_conv: a float32 3x3 convolution of spikes or pooled spikes runs
      event-driven where :func:`bntt_jax.kernels.sparse_conv.available` and its
      input is sparse enough, its dense parts by the Winograd kernel
      (``conv3x3_where_sparse``; same parameters, same result up to float32 rounding).
    lif_kernel: where the LIF recurrence of ``__call__`` (float32 membranes) runs:
      ``cpu``, the CPU kernel of :mod:`bntt_jax.kernels.lif` where available;
      ``tpu``, the Pallas TPU kernels of :mod:`bntt_jax.kernels.lif_tpu` where
      they take the shapes; else (and ``off``) ``lax.scan``. Equal spikes,
      gradients up to float32 rounding.
    axis_name: the mesh axis the batch is split over when the block runs inside
      ``shard_map`` (the norm's statistics then span it; :mod:`bntt_jax.norms`).
    narrow_input: ``__call__`` computes from a copy of its input in the narrowest exact
      dtype, named for a rematerialising caller to save (:func:`bntt_jax.synapses.narrowed`).
  """
  spec: LayerSpec
  num_steps: int
  norm: str = 'bntt'
  norm_kwargs: Tuple[Tuple[str, Any], ...] = ()
  neuron: Any = neurons_lib.LIFParams()
  dtype: Any = None
  kernel_init: Any = reference_init
  input_kind: str = synapses.REAL
  synapse_precision: str = 'float32'
  sparse_conv: bool = False
  lif_kernel: str = 'off'
  axis_name: Optional[str] = None
  narrow_input: bool = False

  def setup(self):
    s = self.spec
    self.synapse = Synapse(s.kind, s.features, s.kernel_size, kernel_init=self.kernel_init,
                           dtype=self.dtype, precision=self.synapse_precision,
                           input_kind=self.input_kind, sparse_conv=self.sparse_conv,
                           layer=self.name or '')
    self.norm_layer = norms_lib.make_norm(self.norm, self.num_steps, axis_name=self.axis_name,
                                          **dict(self.norm_kwargs))

  def current(self, x: Array) -> Array:
    """Synaptic input ``[N, ...]`` -> ``[N, ...]``, time-agnostic."""
    return self.synapse(x)

  def __call__(self, x: Array, train: bool) -> Tuple[Array, Array]:
    """``x [k, B, ...]`` -> ``(out [k, B, ...pooled], spikes per example [k, B])``."""
    k, b = x.shape[:2]
    if self.narrow_input:
      x = synapses.narrowed(x, self.input_kind)
    i = self.current(x.reshape((k * b,) + x.shape[2:]))
    i = i.reshape((k, b) + i.shape[1:])
    mul, add = self.norm_layer.affine(i, train=train)
    if self.neuron == 'relu':
      s = jax.nn.relu(norms_lib.apply_affine(i, mul, add, stepwise=True))
    else:
      # The norm's per-step affine map runs inside the LIF recurrence (one pass
      # over memory); the membrane is float32 or wider whatever the synapse's dtype.
      s = self._lif(i, mul, add)
    counts = _count(s, 2)
    out = avg_pool(s.reshape((k * b,) + s.shape[2:]), self.spec.pool)
    return out.reshape((k, b) + out.shape[1:]), counts

  def _lif(self, i: Array, mul: Array, add: Array) -> Array:
    if self.lif_kernel == 'tpu':
      from bntt_jax.kernels import lif_tpu  # pylint: disable=g-import-not-at-top
      if lif_tpu.supports(i, mul, add):
        return lif_tpu.lif_affine_sequence(i, mul, add, self.neuron)
      # Said when the step is traced: the scan moves several times the kernels' bytes.
      logging.warning('layer %s: the TPU LIF kernels do not take its input %s%s (see '
                      'kernels.lif_tpu.supports); it runs lax.scan', self.name or '?',
                      i.dtype, list(i.shape))
    if self.lif_kernel == 'cpu' and jnp.promote_types(i.dtype, jnp.float32) == jnp.float32:
      # A bfloat16/float16 synapse's output is widened as the scan widens it: the same numbers.
      i32 = i.astype(jnp.float32)
      if kernels.lif.supports(i32, mul, add) and kernels.lif.available():
        return kernels.lif.lif_affine_sequence(i32, mul, add, self.neuron)
    return neurons_lib.lif_affine_sequence(i, mul, add, self.neuron)

  def step(self, u: Array, x: Array, t: Array, *, train: bool) -> Tuple[Array, Array, Array]:
    """One step: ``(u, x [B, ...], t)`` -> ``(u, out [B, ...pooled], spikes [B])``."""
    i = self.norm_layer(self.current(x), train=train, t=t)
    if self.neuron == 'relu':
      s = jax.nn.relu(i)
    else:
      u, s = neurons_lib.lif_step(u, i.astype(u.dtype), self.neuron)
    return u, avg_pool(s, self.spec.pool), _count(s, 1)


class Synapse(nn.Module):
  """A layer's synaptic op, no bias: a ``kernel_size`` x ``kernel_size`` 'SAME' convolution
  (``kind='conv'``) or a dense layer of the flattened input (``'dense'``).

  The parameter is ``nn.Conv``'s / ``nn.Dense``'s (``kernel``, HWIO or ``[in, out]``, the same
  initialisation), so checkpoints do not depend on how it is computed:

  * ``dtype`` set (bfloat16, float16): input and kernel cast to it, as ``nn.Conv(dtype=...)``;
  * float32: :func:`bntt_jax.synapses.synapse` (``precision``: float32 or exact_bf16x3; the
    input's residual kept in the narrowest dtype exact for ``input_kind``), or, for a 3x3
    convolution of spikes with ``sparse_conv``, the event-driven CPU kernel where available.
  """
  kind: str
  features: int
  kernel_size: int = 3
  kernel_init: Any = reference_init
  dtype: Any = None
  precision: str = 'float32'
  input_kind: str = synapses.REAL
  sparse_conv: bool = False
  layer: str = ''          # the layer's name, for errors

  @nn.compact
  def __call__(self, x: Array) -> Array:
    if self.kind == 'dense':
      x = x.reshape(x.shape[0], -1)
      shape = (x.shape[-1], self.features)
    else:
      shape = (self.kernel_size, self.kernel_size, x.shape[-1], self.features)
    kernel = self.param('kernel', self.kernel_init, shape)
    if self.dtype is not None:
      x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)   # as nn.Conv does
      return synapses.plain(self.kind, x, kernel)
    x, kernel = nn.dtypes.promote_dtype(x, kernel)
    if (self.sparse_conv and self.kind == 'conv' and self.precision == 'float32'
        and x.dtype == jnp.float32 and kernels.sparse_conv.supports(x.shape, kernel.shape, x.dtype)
        and kernels.sparse_conv.available()):
      return kernels.sparse_conv.conv3x3_where_sparse(x, kernel)   # event-driven where sparse
    return synapses.synapse(x, kernel, kind=self.kind, input_kind=self.input_kind,
                            precision=self.precision, layer=self.layer)


def _count(s: Array, lead: int) -> Array:
  """Sum over the non-leading axes, in float32 (spike counts per example)."""
  return jnp.sum(s.astype(jnp.float32), axis=tuple(range(lead, s.ndim)))
