"""One evaluation pass over a data set, in fixed-size batches, per example.

Every analysis reads its numbers from per-example arrays, so nothing depends
on the batch size: the data are cut into batches of one size (one compiled
function), the last batch is padded, and the padded rows are cut off before
anything is reduced (nothing dropped, nothing counted twice). Poisson draws
use the global example index as the example id, so an example gets the same
spikes whatever batch it falls in, and every evaluation that passes the same
key (clean, noisy, attacked) sees the same draws.

Evaluation mode throughout (``train=False``: running statistics).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Mapping, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from bntt_jax import network as network_lib
from bntt_jax.analysis import early_exit

Array = jax.Array


def map_batches(fn: Callable, arrays: Tuple[np.ndarray, ...], batch_size: int,
                batch_axis_out: int = 0):
  """Run ``fn(*batch_arrays, ids) -> pytree`` over batches; concatenate the outputs.

  Args:
    fn: takes each of ``arrays`` cut to ``[batch, ...]`` and ``ids [batch]``
      (global example indices, padded rows get ``N..``) and returns a pytree of
      arrays whose axis ``batch_axis_out`` is the batch.
    arrays: arrays with the same leading length ``N``.
    batch_size: rows per call; the last batch is padded by repeating row 0.

  Returns:
    The pytree with the outputs of all batches concatenated and cut to ``N``.
  """
  n = len(arrays[0])
  if n == 0:
    raise ValueError('no examples to evaluate')
  b = min(int(batch_size), n)
  nb = math.ceil(n / b)
  outs = []
  for i in range(nb):
    lo, hi = i * b, min((i + 1) * b, n)
    pad = b - (hi - lo)
    batch = []
    for a in arrays:
      chunk = np.asarray(a[lo:hi])
      if pad:
        chunk = np.concatenate([chunk, np.repeat(np.asarray(a[:1]), pad, axis=0)])
      batch.append(chunk)
    ids = np.arange(lo, lo + b, dtype=np.uint32)
    outs.append(jax.device_get(fn(*batch, ids)))
  cat = lambda *xs: np.concatenate(xs, axis=batch_axis_out)
  full = jax.tree_util.tree_map(cat, *outs)
  cut = lambda x: np.take(x, np.arange(n), axis=batch_axis_out)
  return jax.tree_util.tree_map(cut, full)


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
    if rule not in early_exit.RULES:
      raise ValueError(f'confidence rule {rule!r} is not one of {list(early_exit.RULES)}')
    return self.max_prob if rule == 'max_prob' else self.margin


def forward(model: network_lib.SpikingNetwork, variables: Mapping, x: Array, ids: Array,
            key: Array) -> network_lib.SNNOutput:
  """The evaluation-mode pass every analysis runs: running statistics, the
  Poisson draws of ``key`` and the examples' ids."""
  return model.apply(variables, x, train=False, rngs={'poisson': key}, example_ids=ids)


@functools.partial(jax.jit, static_argnums=0)
def eval_batch(model: network_lib.SpikingNetwork, variables: Mapping, x: Array, ids: Array,
               key: Array) -> dict:
  """Per-example outputs of one batch (see :class:`PassResult`; batch axis last).

  Jitted with the model static: equal models share the compiled function.
  """
  out = forward(model, variables, x, ids, key)
  k = out.readout.shape[0]
  steps = jnp.arange(1, k + 1, dtype=out.readout.dtype).reshape(-1, 1, 1)
  running = jnp.cumsum(out.readout, axis=0) / steps
  # After all steps the logits are the pass's own: the curve's last point IS the evaluation.
  running = running.at[-1].set(out.logits)
  top = jax.lax.top_k(running, min(2, running.shape[-1]))[0]
  return {
      'predictions': jnp.argmax(running, axis=-1).astype(jnp.int32),
      'max_prob': jnp.max(jax.nn.softmax(running, axis=-1), axis=-1),
      'margin': top[..., 0] - top[..., -1],
      'spikes': jnp.stack(out.spikes),
      'input_spikes': out.input_spikes,
  }


def evaluation_pass(model: network_lib.SpikingNetwork, variables: Mapping, images: np.ndarray,
                    labels: np.ndarray, *, key: Array, batch_size: int) -> PassResult:
  """Run all ``T`` steps on every example; see :class:`PassResult`.

  Args:
    images: ``[N, ...]`` model inputs (normalised pixels, or ``[N, T_in, ...]`` frames).
    labels: ``[N]`` int.
    key: the Poisson key (draws depend on it and the example index only).
  """
  step_shape = model.step_shape(np.shape(images)[1:])
  # Every output has the batch as its last axis.
  outs = map_batches(lambda x, ids: eval_batch(model, variables, x, ids, key), (images,),
                     batch_size, batch_axis_out=-1)
  return PassResult(
      predictions=outs['predictions'], max_prob=outs['max_prob'], margin=outs['margin'],
      spikes=outs['spikes'], input_spikes=outs['input_spikes'],
      labels=np.asarray(labels), layer_names=network_lib.default_names(model.layers),
      neurons=tuple(math.prod(s) for s in model.neuron_shapes(step_shape)),
      input_elements=math.prod(step_shape))

