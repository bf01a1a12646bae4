"""Spike rates to order: the BNTT scales at which each hidden layer fires at a given rate.

An untrained VGG9 fires at 20-26 % of its neurons per step; a trained BNTT network at a few
percent, where the event-driven convolutions have less to do. ``experiments/benchmark.py
--spike-rate=R`` times that regime on an untrained network by setting every step's gamma of
each hidden layer to the value :func:`calibrate_gammas` finds for it.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bntt_jax import network


def layer_rates(out) -> jax.Array:
  """Per hidden layer, the fraction of its neurons that fired per step (``[L]``), from a
  forward pass's :class:`bntt_jax.network.SNNOutput`."""
  return jnp.stack([s.sum() / (n * s.size) for s, n in zip(out.spikes, out.neurons)])


def with_gammas(params, names, gammas):
  """``params`` with every step's BNTT scale of hidden layer ``names[l]`` set to ``gammas[l]``
  (``params`` itself is not changed)."""
  params = dict(params)
  for i, name in enumerate(names):
    scale = params[name]['norm_layer']['scale']
    params[name] = {**params[name],
                    'norm_layer': {**params[name]['norm_layer'],
                                   'scale': jnp.full_like(scale, gammas[i])}}
  return params


def calibrate_gammas(model, variables, x, key, target: float, iters: int = 16):
  """Per hidden layer, the BNTT scale at which that layer fires at about ``target`` per step.

  Every step's gamma of a layer is set to one value per layer. Because the norm divides out
  the scale of the layer's input, a layer's rate depends on its own gamma (and only weakly on
  the layers below, through the shape of its input's distribution), and it grows with it: the
  gammas are found together by bisection on ``log gamma`` in [ln 1e-3, ln 4], ``iters``
  forward passes in training mode (batch statistics, as a training step uses them) on ``x``.

  Returns ``(gammas [L], rates [L])``: numpy arrays, the rates measured at those gammas.
  """
  if not 0 < target < 1:
    raise ValueError(f'target {target!r} is not accepted: a fraction of neurons firing per '
                     'step in (0, 1)')
  names = network.default_names(model.layers)

  @jax.jit
  def rates_at(log_gamma):
    params = with_gammas(variables['params'], names, jnp.exp(log_gamma))
    out, _ = model.apply({'params': params, 'batch_stats': variables['batch_stats']}, x,
                         train=True, rngs={'poisson': key}, mutable=['batch_stats'])
    return layer_rates(out)

  lo = np.full(len(names), np.log(1e-3))
  hi = np.full(len(names), np.log(4.0))
  for _ in range(iters):
    mid = (lo + hi) / 2
    low = np.asarray(rates_at(mid)) < target
    lo, hi = np.where(low, mid, lo), np.where(low, hi, mid)
  log_gamma = (lo + hi) / 2
  return np.exp(log_gamma), np.asarray(rates_at(log_gamma))
