"""One evaluation pass over a data set, per example, through :mod:`bntt_jax.evaluator`.

Every analysis reads its numbers from per-example arrays, so nothing depends
on the batch size or the device count: the evaluator cuts the data into
global batches of one size (one compiled function), pads the last one, shards
each over the mesh and cuts the padded rows off before anything is reduced
(nothing dropped, nothing counted twice). Poisson draws use the global
example index as the example id, so an example gets the same spikes whatever
batch or device it falls on, and every evaluation that passes the same key
(clean, noisy, attacked) sees the same draws.

Evaluation mode throughout (``train=False``: running statistics).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from bntt_jax import evaluator
from bntt_jax import network as network_lib
from bntt_jax import sharding
from bntt_jax.analysis import early_exit

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class PassResult:
  """Per-example results of one evaluation pass of ``k`` steps over ``N`` examples.

  Attributes:
    predictions: ``[k, N]`` int, class predicted by the logits after ``t + 1`` steps.
    max_prob: ``[k, N]`` largest softmax probability of those logits.
    margin: ``[k, N]`` top-1 minus top-2 of those logits.
    spikes: ``[L, k, N]`` spikes per hidden layer, step and example.
    input_spikes: ``[k, N]`` sum of ``|input|`` per step and example.
    labels: ``[N]``.
    layer_names: ``[L]`` hidden layer names; neurons: ``[L]`` neurons per example.
    input_elements: input values per example per step.
  """
  predictions: np.ndarray
  max_prob: np.ndarray
  margin: np.ndarray
  spikes: np.ndarray
  input_spikes: np.ndarray
  labels: np.ndarray
  layer_names: Tuple[str, ...]
  neurons: Tuple[int, ...]
  input_elements: int

  @property
  def accuracy(self) -> float:
    """Accuracy after all steps (the normal evaluation)."""
    return float((self.predictions[-1] == self.labels).mean())

  def confidence(self, rule: str) -> np.ndarray:
    early_exit.check_rule(rule)
    return self.max_prob if rule == 'max_prob' else self.margin


def forward(model: network_lib.SpikingNetwork, variables: Mapping, x: Array, ids: Array,
            key: Array) -> network_lib.SNNOutput:
  """The evaluation-mode pass every analysis runs: running statistics, the
  Poisson draws of ``key`` and the examples' ids."""
  return model.apply(variables, x, train=False, rngs={'poisson': key}, example_ids=ids)


def pass_outputs(variables: Mapping, batch: Mapping[str, Array], key: Array, *,
                 model: network_lib.SpikingNetwork) -> dict:
  """Per-example outputs of one batch (see :class:`PassResult`; batch axis first): the
  per-batch function of :func:`evaluation_pass` (:mod:`bntt_jax.evaluator`)."""
  out = forward(model, variables, batch['image'], batch['index'], key)
  k = out.readout.shape[0]
  steps = jnp.arange(1, k + 1, dtype=out.readout.dtype).reshape(-1, 1, 1)
  running = jnp.cumsum(out.readout, axis=0) / steps
  # After all steps the logits are the pass's own: the curve's last point IS the evaluation.
  running = running.astype(jnp.promote_types(running.dtype, out.logits.dtype))
  running = running.at[-1].set(out.logits)
  top = jax.lax.top_k(running, min(2, running.shape[-1]))[0]
  return {
      'predictions': jnp.argmax(running, axis=-1).astype(jnp.int32).T,
      'max_prob': jnp.max(jax.nn.softmax(running, axis=-1), axis=-1).T,
      'margin': (top[..., 0] - top[..., -1]).T,
      'spikes': jnp.moveaxis(jnp.stack(out.spikes), -1, 0),
      'input_spikes': out.input_spikes.T,
  }


def evaluation_pass(model: network_lib.SpikingNetwork, variables: Mapping, images: np.ndarray,
                    labels: np.ndarray, *, key: Array, batch_size: int,
                    mean: Optional[Sequence[float]] = None,
                    std: Optional[Sequence[float]] = None,
                    mesh: Optional[jax.sharding.Mesh] = None) -> PassResult:
  """Run all ``T`` steps on every example; see :class:`PassResult`.

  Args:
    images: ``[N, ...]``: ``uint8`` pixels normalised with ``mean``/``std`` as the batches
      are built, or model inputs as they are (``mean=None``: normalised pixels, or
      ``[N, T_in, ...]`` frames).
    labels: ``[N]`` int.
    key: the Poisson key (draws depend on it and the example index only).
    batch_size: examples per global batch (rounded up to a multiple of the devices).
    mesh: the devices the batches are split over (default: all of them).
  """
  mesh = mesh or sharding.create_mesh()
  step_shape = model.step_shape(np.shape(images)[1:])
  step = evaluator.compile_step(pass_outputs, mesh, per_example_out=True, model=model)
  outs = evaluator.per_example(step, variables, images, labels, key, batch_size=batch_size,
                               mesh=mesh, mean=mean, std=std)
  last = lambda a: np.moveaxis(a, 0, -1)   # the batch as the last axis
  return PassResult(
      predictions=last(outs['predictions']), max_prob=last(outs['max_prob']),
      margin=last(outs['margin']), spikes=last(outs['spikes']),
      input_spikes=last(outs['input_spikes']),
      labels=np.asarray(labels), layer_names=network_lib.default_names(model.layers),
      neurons=tuple(math.prod(s) for s in model.neuron_shapes(step_shape)),
      input_elements=math.prod(step_shape))
