"""Firing-rate control and measurement for the PyTorch peers (torch only; no bntt_jax).

``experiments/benchmark.py --spike-rate=R`` finds, in bntt_jax, one BNTT scale per hidden layer
at which that layer fires at about R per step (``bntt_jax.analysis.calibration``) and hands the
same scales to each peer as a ``gamma=g1,...,gL`` argument: :func:`split_gamma` takes it off the
command line, :func:`set_gammas` writes it into every step's BatchNorm weight of each hidden
layer. The peers draw their own weights, from the same distributions, so after timing each one
measures the rates its own network fired at (:func:`measure_rates`: one untimed forward pass in
training mode, batch statistics as in the timed steps), and reports them beside its timing.
"""
import collections
import sys

import torch


def split_gamma(argv):
  """``(argv without the gamma= argument, [gamma per hidden layer] or None)``."""
  rest, gammas = [], None
  for a in argv:
    if a.startswith('gamma='):
      try:
        gammas = [float(v) for v in a[len('gamma='):].split(',')]
      except ValueError:
        sys.exit(f'{a!r}: gamma= takes comma-separated numbers, one per hidden layer')
    else:
      rest.append(a)
  return rest, gammas


def set_gammas(layers, gammas):
  """``layers``: per hidden layer, its T per-step BatchNorms; each one's weight := gamma."""
  if len(layers) != len(gammas):
    sys.exit(f'gamma=: {len(gammas)} values for {len(layers)} hidden layers')
  with torch.no_grad():
    for bns, g in zip(layers, gammas):
      for bn in bns:
        bn.weight.fill_(g)


def measure_rates(forward, modules, layers=None):
  """Per hidden layer, the mean of the spikes its module outputs during ``forward()``.

  ``modules``: one module per hidden layer whose output (or its first element) are that
  layer's spikes, or their 2x2 average pool (the same mean). ``layers=L``: ``modules`` is one
  module that serves all L layers in turn, called in layer order once per layer and step.
  """
  sums, counts = collections.defaultdict(float), collections.defaultdict(int)
  calls = [0]
  n_layers = layers or len(modules)

  def hook(index):
    def fn(_, __, out):
      s = out[0] if isinstance(out, tuple) else out
      k = calls[0] % n_layers if layers else index
      calls[0] += 1
      sums[k] += float(s.detach().float().mean())
      counts[k] += 1
    return fn

  handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(modules)]
  try:
    with torch.no_grad():
      forward()
  finally:
    for h in handles:
      h.remove()
  return [round(sums[k] / counts[k], 4) for k in range(n_layers)]
