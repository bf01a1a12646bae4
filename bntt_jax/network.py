"""A spiking network: encoder -> spiking blocks -> accumulating readout, and the
two schedules that run it through time.

Nothing feeds back across layers and the input at step t crosses every layer
at step t, so two orders of the same arithmetic give the same numbers:

``step``
  one ``lax.scan`` (``flax.linen.scan``) over time carrying every layer's
  membrane; each step runs all layers. The shape of streaming inference.
``layer`` (time-batched)
  each block runs all steps before the next block: the synaptic op once over
  ``T * B`` samples, the norm per step, only the elementwise LIF recurrence
  scanned. Much faster where convolutions dominate (see README).

The readout accumulates ``fc_out(s^t)``; ``logits = sum_t fc_out(s^t) / k``
over the ``k`` steps run. ``k < T`` in evaluation runs the first k steps with
the statistics and scales of steps ``0..k-1`` (early exit); ``k > T`` is an
error.

Collections: ``params`` and ``batch_stats``; per-step variables have a leading
time axis (see :mod:`bntt_jax.norms`). Rng stream ``'poisson'`` feeds the rate
coder.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from bntt_jax import blocks as blocks_lib
from bntt_jax import coding
from bntt_jax import errors
from bntt_jax import neurons as neurons_lib
from bntt_jax import norms as norms_lib
from bntt_jax import synapses
from bntt_jax import vma

Array = jax.Array

SCHEDULES = ('layer', 'step')
ENCODINGS = ('poisson', 'direct', 'frames')
SPARSE_CONV = ('auto', 'off')
LIF_KERNEL = ('auto', 'tpu', 'off')
_BLOCK_LIF_KERNEL = {'auto': 'cpu', 'tpu': 'tpu', 'off': 'off'}


@flax.struct.dataclass
class SNNOutput:
  """What a forward pass returns.

  Attributes:
    logits: ``[B, classes]``, accumulated readout voltage / steps run.
    readout: ``[k, B, classes]``, the readout's contribution at each step
      (``cumsum(readout, 0) / (t + 1)`` are the logits after ``t + 1`` steps).
    spikes: per hidden layer, spikes per example per step ``[k, B]``.
    input_spikes: ``[k, B]``, per example per step, the sum of ``|input|``
      (the number of input spikes under rate coding).
    layer_names: the hidden layers' names (static).
    neurons: the hidden layers' neurons per example (static).
  """
  logits: Array
  readout: Array
  spikes: Tuple[Array, ...]
  input_spikes: Array
  layer_names: Tuple[str, ...] = flax.struct.field(pytree_node=False, default=())
  neurons: Tuple[int, ...] = flax.struct.field(pytree_node=False, default=())


def check_settings(*, num_steps, schedule: str, encoding: str, sparse_conv: str,
                   lif_kernel: str, synapse_precision: str = 'float32') -> None:
  """The one check of a network's settings (:class:`SpikingNetwork` calls it when built,
  ``config_lib.validate`` for a config's): ``ConfigError`` naming the first bad one."""
  errors.check_int_at_least('timesteps', num_steps, 1)
  errors.check_one_of('schedule', schedule, SCHEDULES)
  errors.check_one_of('encoding', encoding, ENCODINGS)
  errors.check_one_of('sparse_conv', sparse_conv, SPARSE_CONV)
  errors.check_one_of('lif_kernel', lif_kernel, LIF_KERNEL)
  errors.check_one_of('synapse_precision', synapse_precision, synapses.PRECISIONS)


def default_names(layers: Sequence[blocks_lib.LayerSpec]) -> Tuple[str, ...]:
  names, n = [], {'conv': 0, 'dense': 0}
  for spec in layers:
    n[spec.kind] += 1
    names.append(spec.name or f"{'conv' if spec.kind == 'conv' else 'fc'}{n[spec.kind]}")
  return tuple(names)


class SpikingNetwork(nn.Module):
  """Encoder, hidden spiking layers and an accumulating readout.

  Attributes:
    layers: the hidden layers, in order.
    num_classes: readout width.
    num_steps: T, the steps trained (and the default steps run).
    norm / norm_kwargs: the norm of every hidden layer (``norms.NORMS``).
    neuron: ``LIFParams`` for every hidden layer, or ``'relu'`` for the ANN twin.
    encoding: ``poisson`` (rate-coded static input ``[B, ...]``), ``direct``
      (static input as a constant current) or ``frames`` (``[B, T, ...]``).
    rescale: the Poisson coder's rescale (spike probability ``|x| / rescale``).
    schedule: ``layer`` or ``step``.
    unroll: ``lax.scan`` unroll factor of the ``step`` schedule.
    dtype: compute dtype of the synaptic ops (None: float32 params' dtype).
    remat: rematerialise in the backward each block (``layer``: of its activations only its
      input is kept, a spiking layer's as int8 or bfloat16, :func:`bntt_jax.synapses.narrowed`;
      one more forward synaptic op per layer) or each step (``step``).
    synapse_precision: ``float32`` or ``exact_bf16x3``: the synaptic ops whose
      input is exact in bfloat16 (spikes, pooled spikes: :meth:`input_kinds`) as
      three bf16 products with float32 accumulation, the others in float32
      (:mod:`bntt_jax.synapses`). Ignored where ``dtype`` sets a low precision.
    sparse_conv: ``auto``: a 3x3 convolution whose input is a spiking layer's
      output runs event-driven where it can (:mod:`bntt_jax.kernels.sparse_conv`;
      of pooled spikes, where fewer than half are nonzero); ``off``: XLA's
      convolutions only.
    lif_kernel: ``auto``: a LIF layer of the ``layer`` schedule (float32
      membranes, any synapse dtype) runs its recurrence in one CPU kernel per
      pass where it can (:mod:`bntt_jax.kernels.lif`); ``tpu``: in one Pallas TPU
      kernel per pass where its shapes allow (:mod:`bntt_jax.kernels.lif_tpu`; a
      program for TPUs only); ``off``: ``lax.scan``.
    axis_name: the mesh axis the batch is split over, for a network applied
      inside ``jax.shard_map`` (data parallelism: each device runs its examples,
      the norms' statistics span the axis; :mod:`bntt_jax.sharding`). ``None``:
      the batch is all here (or split by GSPMD, which replicates the layer
      schedule's ``[T * B]`` synaptic ops: use ``shard_map``).
  """
  layers: Tuple[blocks_lib.LayerSpec, ...]
  num_classes: int
  num_steps: int
  norm: str = 'bntt'
  norm_kwargs: Tuple[Tuple[str, Any], ...] = ()
  neuron: Any = neurons_lib.LIFParams()
  encoding: str = 'poisson'
  rescale: float = 2.0
  schedule: str = 'layer'
  unroll: int = 1
  dtype: Any = None
  remat: bool = False
  synapse_precision: str = 'float32'
  sparse_conv: str = 'auto'
  lif_kernel: str = 'auto'
  axis_name: Optional[str] = None

  def __post_init__(self):
    check_settings(num_steps=self.num_steps, schedule=self.schedule, encoding=self.encoding,
                   sparse_conv=self.sparse_conv, lif_kernel=self.lif_kernel,
                   synapse_precision=self.synapse_precision)
    super().__post_init__()

  def setup(self):
    remat_layers = self.remat and self.schedule == 'layer'
    # A rematerialised block keeps only its input, in the narrowest exact dtype (int8 spikes),
    # and recomputes the rest of its forward in the backward.
    block = nn.remat(blocks_lib.SpikingBlock, static_argnums=(2,),
                     policy=jax.checkpoint_policies.save_only_these_names(synapses.NARROW_INPUT)
                     ) if remat_layers else blocks_lib.SpikingBlock
    names = default_names(self.layers)
    *kinds, readout_kind = self.input_kinds()
    precision = self._precision_for
    self.blocks = [
        block(spec, self.num_steps, self.norm, self.norm_kwargs, self.neuron, self.dtype,
              input_kind=kind, synapse_precision=precision(kind),
              sparse_conv=synapses.is_spikes(kind) and self.sparse_conv == 'auto',
              lif_kernel=_BLOCK_LIF_KERNEL[self.lif_kernel], axis_name=self.axis_name,
              narrow_input=remat_layers, name=name)
        for spec, name, kind in zip(self.layers, names, kinds)]
    self.fc_out = blocks_lib.Synapse('dense', self.num_classes, dtype=self.dtype,
                                     precision=precision(readout_kind), input_kind=readout_kind,
                                     layer='fc_out')

  def _precision_for(self, kind: str) -> str:
    """A layer's synapse precision: exact_bf16x3 only where its input is exact in bf16."""
    if self.synapse_precision == 'exact_bf16x3' and synapses.exact_dtype(kind) is not None:
      return 'exact_bf16x3'
    return 'float32'

  def _readout(self, h: Array) -> Array:
    out = self.fc_out(h)
    return out.astype(jnp.promote_types(out.dtype, jnp.float32))

  def step_shape(self, example_shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """One step's input for one example, from one example's shape (no batch
    axis): frames ``(T_in, ...)`` drop their time axis, static inputs are as given."""
    return tuple(example_shape[1:] if self.encoding == 'frames' else example_shape)

  def input_kinds(self, example_shape: Optional[Tuple[int, ...]] = None) -> Tuple[str, ...]:
    """What each hidden layer's input holds, then the readout's (:mod:`bntt_jax.synapses`):
    the coder's signed spikes or real values for the first layer; then a LIF layer's spikes,
    or their average over its pooling window (a global pool needs ``example_shape``, one
    example's input shape, to know its window; without it the kind is ``real``); ``real``
    after ReLU (the ANN twin)."""
    kinds = [synapses.SIGNED_SPIKES if self.encoding == 'poisson' else synapses.REAL]
    shapes = (self.neuron_shapes(self.step_shape(example_shape))
              if example_shape is not None else None)
    for i, spec in enumerate(self.layers):
      if self.neuron == 'relu':
        kinds.append(synapses.REAL)
      elif spec.pool == 1:
        kinds.append(synapses.SPIKES)
      elif spec.pool == blocks_lib.GLOBAL_POOL:
        kinds.append(synapses.pooled(math.prod(shapes[i][:-1])) if shapes else synapses.REAL)
      else:
        kinds.append(synapses.pooled(spec.pool * spec.pool))
    return tuple(kinds)

  def spike_inputs(self) -> Tuple[bool, ...]:
    """Per hidden layer, whether its input is a spiking layer's output, pooled or not (where
    ``sparse_conv='auto'`` makes a 3x3 convolution event-driven)."""
    return tuple(synapses.is_spikes(k) for k in self.input_kinds()[:-1])

  def neuron_shapes(self, step_input_shape: Tuple[int, ...]) -> Tuple[Tuple[int, ...], ...]:
    """Per hidden layer, the neuron shape of one example, from one step's input shape."""
    shapes, shape = [], tuple(step_input_shape)
    for spec in self.layers:
      out = spec.output_shape(shape)
      shapes.append(out)
      shape = spec.pooled_shape(out)
    return tuple(shapes)

  def __call__(self, x: Array, *, train: bool, num_steps: Optional[int] = None,
               example_ids: Optional[Array] = None) -> SNNOutput:
    """Run ``num_steps`` (default T) steps.

    Args:
      x: ``[B, ...]`` static input, or ``[B, T_in, ...]`` frames.
      train: batch statistics (and their running update) or running statistics.
      num_steps: steps to run, ``1..T``.
      example_ids: ``[B]`` ids for the Poisson draws (default: batch position).
    """
    k = self.num_steps if num_steps is None else int(num_steps)
    if not 1 <= k <= self.num_steps:
      raise ValueError(f'num_steps {k} is not accepted: the network was built for '
                       f'1..{self.num_steps} steps')
    self._check_input(x)
    key = self.make_rng('poisson') if self.encoding == 'poisson' else None
    step_shape = self.step_shape(x.shape[1:])
    names = default_names(self.layers)
    neurons = tuple(math.prod(s) for s in self.neuron_shapes(step_shape))
    # Both schedules share one variable layout; init creates it the layer way
    # (variables cannot be created inside the step schedule's scan).
    if self.schedule == 'layer' or self.is_initializing():
      readout, spikes, in_spikes = self._run_layer(x, key, k, train, example_ids)
    else:
      readout, spikes, in_spikes = self._run_step(x, key, k, train, example_ids)
    return SNNOutput(logits=readout.sum(0) / k, readout=readout, spikes=tuple(spikes),
                     input_spikes=in_spikes, layer_names=names, neurons=neurons)

  def _check_input(self, x: Array) -> None:
    """A one-line ``ValueError`` for an input the layers cannot take (before it reaches XLA)."""
    frames = self.encoding == 'frames'
    want = '[B, T_in, H, W, C] frames' if frames else '[B, H, W, C] images'
    if not jnp.issubdtype(x.dtype, jnp.floating):
      raise ValueError(f'input x of dtype {x.dtype} is not accepted: a float array {want} '
                       '(uint8 pixels scaled to [0, 1] and normalised, as '
                       'bntt_jax.data.pipeline gives them)')
    if self.layers and self.layers[0].kind == 'conv' and x.ndim != (5 if frames else 4):
      raise ValueError(f'input x of shape {x.shape} is not accepted: {want} for the first '
                       f'convolution (encoding {self.encoding})')

  # -- encoders ---------------------------------------------------------------

  def _encode_all(self, x, key, k, example_ids):
    if self.encoding == 'poisson':
      return coding.poisson_encode(key, x, k, self.rescale, example_ids)
    return coding.direct_encode(x, k, frames=self.encoding == 'frames')

  def _encode_step(self, x, key, t, example_ids):
    if self.encoding == 'poisson':
      return coding.poisson_step(key, x, t, self.rescale, example_ids)
    return coding.direct_step(x, t, frames=self.encoding == 'frames')

  # -- schedules --------------------------------------------------------------

  def _run_layer(self, x, key, k, train, example_ids):
    h = self._encode_all(x, key, k, example_ids)
    in_spikes = _abs_sum(h, 2)
    spikes = []
    for blk in self.blocks:
      h, c = blk(h, train)   # positional: remat takes it as static
      spikes.append(c)
    readout = self._readout(h.reshape((k * h.shape[1],) + h.shape[2:]))
    return readout.reshape((k, -1) + readout.shape[1:]), spikes, in_spikes

  def _run_step(self, x, key, k, train, example_ids):
    b = x.shape[0]
    step_shape = self.step_shape(x.shape[1:])
    mem_dtype = jnp.promote_types(x.dtype, jnp.float32)
    u0 = vma.like_inputs(tuple(jnp.zeros((b,) + s, mem_dtype)
                               for s in self.neuron_shapes(step_shape)), x)

    def body(mdl, us, t):
      h = mdl._encode_step(x, key, t, example_ids)
      in_spikes = _abs_sum(h, 1)
      new_us, counts = [], []
      for blk, u in zip(mdl.blocks, us):
        u, h, c = blk.step(u, h, t, train=train)
        new_us.append(u)
        counts.append(c)
      return tuple(new_us), (mdl._readout(h), tuple(counts), in_spikes)

    if self.remat:
      body = nn.remat(body)
    # Training updates row t of the running statistics at step t: they are carried.
    # Evaluation only reads them: they are broadcast like the parameters.
    carried = ['batch_stats'] if train else []
    broadcast = ['params'] + ([] if train else ['batch_stats'])
    scan = nn.scan(body, variable_broadcast=broadcast, variable_carry=carried,
                   split_rngs={'params': False}, length=k, unroll=self.unroll)
    _, (readout, counts, in_spikes) = scan(self, u0, jnp.arange(k))
    return readout, list(counts), in_spikes


def _abs_sum(h: Array, lead: int) -> Array:
  return jnp.sum(jnp.abs(h.astype(jnp.float32)), axis=tuple(range(lead, h.ndim)))
