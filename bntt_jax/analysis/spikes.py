"""Spike rates (supplementary D, S8) from per-example spike counts.

``R_s(l) = #spikes of layer l over all time steps / #neurons of layer l``,
per example and averaged over the examples: spikes per neuron over the whole
inference, a number in ``[0, T]``, used undivided. The per-step rates (spikes
per neuron at step t, in ``[0, 1]``) sum over the steps to ``R_s``.

Counts are those the network reports (``SNNOutput.spikes``): the neurons'
spikes before pooling. The input's "spikes" are ``sum |input|`` per step,
the number of input spikes under rate coding.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from bntt_jax import metrics


def layer_rates(spikes: np.ndarray, neurons: Sequence[int]) -> np.ndarray:
  """S8 rate per layer and step.

  Args:
    spikes: ``[L, k, N]`` spikes per layer, step and example.
    neurons: ``[L]`` neurons per example of each layer.

  Returns:
    ``[L, k]``: mean over examples of spikes per neuron at each step (in
    ``[0, 1]``); summed over steps it is ``R_s`` (in ``[0, k]``).
  """
  spikes = np.asarray(spikes, np.float64)
  # The S8 rate of each step's counts, by the one function training reports it with.
  per_step = [metrics.spike_rates(spikes[:, t].sum(axis=1), neurons, spikes.shape[2])[1]
              for t in range(spikes.shape[1])]
  return np.asarray(per_step, np.float64).reshape(spikes.shape[1], len(neurons)).T


def input_rate(input_spikes: np.ndarray, input_elements: int) -> np.ndarray:
  """Input spikes per input element at each step: ``[k, N]`` -> ``[k]``."""
  return np.asarray(input_spikes, np.float64).mean(axis=1) / float(input_elements)


def spikes_per_example(spikes: np.ndarray, input_spikes: np.ndarray | None = None) -> np.ndarray:
  """Total spikes of one inference, per example: ``[L, k, N]`` (+ ``[k, N]``) -> ``[N]``.

  Hidden layers only unless ``input_spikes`` is given (then they are added).
  """
  total = np.asarray(spikes, np.float64).sum(axis=(0, 1))
  if input_spikes is not None:
    total = total + np.asarray(input_spikes, np.float64).sum(axis=0)
  return total


def spike_report(spikes: np.ndarray, neurons: Sequence[int], layer_names: Sequence[str],
                 input_spikes: np.ndarray, input_elements: int, *, spiking_input: bool) -> dict:
  """The report's ``spike_rates`` section.

  Args:
    spikes: ``[L, k, N]``; neurons: ``[L]``; layer_names: ``[L]``.
    input_spikes: ``[k, N]`` sum of ``|input|`` per example and step.
    input_elements: input values per example per step.
    spiking_input: the input is Poisson spikes (else its rate is the mean
      ``|input|`` and not a spike rate).
  """
  per_step = layer_rates(spikes, neurons)
  in_step = input_rate(input_spikes, input_elements)
  return {
      'definition': ('S8: spikes of a layer over all steps / its neurons, per example, '
                     'mean over examples (in [0, T]); per_step: the same at each step '
                     '(in [0, 1]), summing to rate. Counts before pooling.'),
      'layers': list(layer_names),
      'neurons': [int(n) for n in neurons],
      'steps': int(per_step.shape[1]),
      'rate': per_step.sum(axis=1).tolist(),
      'rate_per_step': per_step.tolist(),
      'input_is_spikes': bool(spiking_input),
      'input_rate': float(in_step.sum()),
      'input_rate_per_step': in_step.tolist(),
      'spikes_per_layer': np.asarray(spikes, np.float64).sum(axis=1).mean(axis=1).tolist(),
      'total_spikes': float(spikes_per_example(spikes).mean()),
      'total_input_spikes': float(np.asarray(input_spikes, np.float64).sum(axis=0).mean()),
  }
