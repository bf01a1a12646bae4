"""Temporal early exit (spec section 7): gamma per step, the exit step,
accuracy after k steps, and per-sample dynamic exit.

Exit rule (ours; the paper does not give one). With ``g[t]`` the mean over
BNTT layers of the mean over channels of ``gamma_l[t]`` (steps ``t = 0..T-1``)::

    t0        = min { t in 0..T : g[s] < threshold for every s >= t }
    exit_step = max(1, t0)                 (the number of steps run, 1..T)

i.e. run the steps up to the last one whose mean gamma reaches the threshold,
and drop the tail that stays below it. If the last step's mean gamma is not
below the threshold the tail is empty and ``exit_step = T`` ("never exits").
If every step is below it, one step is still run.

Accuracy after ``k`` steps is read from ONE pass of all ``T`` steps: the
logits after ``k`` steps are ``sum_{t<k} readout[t] / k`` (evaluation uses
the statistics and gamma of steps ``0..k-1`` only, so a pass of ``k`` steps
computes the same numbers).

Dynamic exit (beyond the paper): each sample stops at the first step ``k``
at which its running prediction (logits after ``k`` steps) is confident:
``max_prob``: the largest softmax probability ``>= threshold``; ``margin``:
top-1 minus top-2 logit ``>= threshold``. A sample never confident runs all
``T`` steps. Its prediction is the running prediction at its exit step.
"""
from __future__ import annotations

from typing import Dict, Mapping, Sequence, Tuple

import numpy as np

from bntt_jax import errors
from bntt_jax import network as network_lib

RULES = ('max_prob', 'margin')


def check_rule(rule: str) -> None:
  """The one check of a dynamic-exit confidence rule (``ConfigError`` listing :data:`RULES`)."""
  errors.check_one_of('dynamic_rule', rule, RULES)

EXIT_RULE = ('exit_step = max(1, t0), t0 = min{t in 0..T: mean gamma[s] < threshold for all '
             's >= t} (mean over BNTT layers of the mean over channels of gamma[t]); T when '
             'the last step is not below the threshold')


def bntt_gammas(variables: Mapping, layer_names: Sequence[str]) -> Dict[str, np.ndarray]:
  """Per-step scales ``gamma [T, C]`` of the hidden layers that have them (BNTT).

  Layers whose norm has no per-step scale (``bn``, ``none``, ...) are left out.
  """
  params = variables['params']
  out = {}
  for name in layer_names:
    scale = params.get(name, {}).get('norm_layer', {}).get('scale')
    if scale is not None and np.ndim(scale) == 2:
      out[name] = np.asarray(scale, np.float64)
  return out


def model_gammas(model: network_lib.SpikingNetwork, variables: Mapping) -> Dict[str, np.ndarray]:
  """:func:`bntt_gammas` over ``model``'s hidden layers."""
  return bntt_gammas(variables, network_lib.default_names(model.layers))


def mean_gamma(gammas: Mapping[str, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
  """``(per_layer [L, T], mean [T])``: mean over channels, then over layers."""
  per_layer = np.stack([np.asarray(g).mean(axis=1) for g in gammas.values()])
  return per_layer, per_layer.mean(axis=0)


def exit_step(mean_gamma_per_step: np.ndarray, threshold: float) -> int:
  """Steps to run (1..T) under the module's rule on a ``[T]`` mean gamma."""
  g = np.asarray(mean_gamma_per_step)
  above = np.nonzero(~(g < threshold))[0]
  t0 = int(above[-1]) + 1 if above.size else 0
  return max(1, t0)


def accuracy_after_k(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """``[k, N]`` predictions after ``1..k`` steps, ``[N]`` labels -> ``[k]`` accuracies."""
  return (np.asarray(predictions) == np.asarray(labels)[None]).mean(axis=1)


def dynamic_exit(confidence: np.ndarray, predictions: np.ndarray, threshold: float,
                 min_steps: int = 1) -> Tuple[np.ndarray, np.ndarray]:
  """Per-sample exit: the first step ``k >= min_steps`` with ``confidence >= threshold``.

  Args:
    confidence: ``[T, N]`` confidence of the running prediction after ``1..T`` steps.
    predictions: ``[T, N]`` running predictions.
    threshold: the rule's threshold (``inf`` never exits early, ``-inf`` always
      exits at ``min_steps``).
    min_steps: steps every sample runs at least.

  Returns:
    ``(steps [N] in min_steps..T, prediction at the exit step [N])``.
  """
  confidence = np.asarray(confidence)
  T, n = confidence.shape
  ok = confidence >= threshold
  ok[:min_steps - 1] = False
  ok[-1] = True
  idx = np.argmax(ok, axis=0)
  return idx + 1, np.asarray(predictions)[idx, np.arange(n)]


def dynamic_curve(confidence: np.ndarray, predictions: np.ndarray, labels: np.ndarray,
                  thresholds: Sequence[float], spikes: np.ndarray | None = None,
                  min_steps: int = 1) -> dict:
  """Mean steps, accuracy (and mean hidden spikes up to the exit) per threshold.

  ``spikes``: ``[k, N]`` spikes per example per step (all hidden layers), or None.
  """
  labels = np.asarray(labels)
  cum = None if spikes is None else np.cumsum(np.asarray(spikes, np.float64), axis=0)
  out = {'thresholds': [float(t) for t in thresholds], 'mean_steps': [], 'accuracy': [],
         'mean_spikes': [] if cum is not None else None}
  for th in thresholds:
    steps, pred = dynamic_exit(confidence, predictions, th, min_steps)
    out['mean_steps'].append(float(steps.mean()))
    out['accuracy'].append(float((pred == labels).mean()))
    if cum is not None:
      out['mean_spikes'].append(float(cum[steps - 1, np.arange(len(steps))].mean()))
  return out
