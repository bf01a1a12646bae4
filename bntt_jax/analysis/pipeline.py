"""The analyses of one trained network, assembled into one report dict.

``analyze`` runs one evaluation pass of all ``T`` steps over the data (per
example: running predictions, confidences, spikes per layer and step), reads
the spike rates, energy and early-exit numbers from it, then the robustness
evaluations. Its result is plain JSON-able data; :mod:`report` writes it out.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Mapping, Optional, Sequence, Tuple

import jax
import numpy as np

from bntt_jax import default_config
from bntt_jax import errors
from bntt_jax import network as network_lib
from bntt_jax import sharding
from bntt_jax.analysis import early_exit
from bntt_jax.analysis import energy
from bntt_jax.analysis import evaluation
from bntt_jax.analysis import robustness
from bntt_jax.analysis import spikes as spikes_lib

Array = jax.Array
_DEFAULTS = default_config.ANALYSIS   # the config's analysis section: plain data


@dataclasses.dataclass(frozen=True)
class Settings:
  """Everything an analysis chooses; the defaults are the config's
  (``default_config.ANALYSIS``).

  Early exit: ``exit_threshold`` on the mean BNTT gamma (rule in
  :mod:`early_exit`; 0.1 is a public reproduction's figure, not the paper's);
  ``dynamic_rule`` ``max_prob`` (softmax probability) or ``margin`` (logit
  units), swept over ``dynamic_thresholds``; ``dynamic_threshold`` is the
  headline point.

  Energy: ``e_mac_pj``, ``e_ac_pj`` (pJ per operation); TrueNorth
  ``(truenorth_e_dyn, truenorth_e_sta)``; ``truenorth_include_input``: count
  the input spikes in ``#spikes``; ``truenorth_reference``: ``(#spikes, T)``
  of the reference method, or ``()`` for none.

  Robustness: sigmas and epsilons in [0, 1] pixel units (see
  :mod:`robustness`); PGD ``pgd_steps`` of ``pgd_step_ratio * epsilon``;
  ``robustness_examples``: evaluate the first n examples only (0: all).
  """
  exit_threshold: float = _DEFAULTS['exit_threshold']
  dynamic_rule: str = _DEFAULTS['dynamic_rule']
  dynamic_thresholds: Tuple[float, ...] = _DEFAULTS['dynamic_thresholds']
  dynamic_threshold: float = _DEFAULTS['dynamic_threshold']
  e_mac_pj: float = energy.E_MAC_PJ
  e_ac_pj: float = energy.E_AC_PJ
  truenorth_e_dyn: float = energy.TRUENORTH_E_DYN
  truenorth_e_sta: float = energy.TRUENORTH_E_STA
  truenorth_include_input: bool = _DEFAULTS['truenorth_include_input']
  truenorth_reference: Tuple[float, ...] = _DEFAULTS['truenorth_reference']
  noise_sigmas: Tuple[float, ...] = _DEFAULTS['noise_sigmas']
  fgsm_epsilons: Tuple[float, ...] = _DEFAULTS['fgsm_epsilons']
  pgd_epsilons: Tuple[float, ...] = _DEFAULTS['pgd_epsilons']
  pgd_steps: int = _DEFAULTS['pgd_steps']
  pgd_step_ratio: float = _DEFAULTS['pgd_step_ratio']
  pgd_random_start: bool = _DEFAULTS['pgd_random_start']
  robustness_examples: int = _DEFAULTS['robustness_examples']

  def __post_init__(self):
    early_exit.check_rule(self.dynamic_rule)
    if self.truenorth_reference and len(self.truenorth_reference) != 2:
      raise errors.ConfigError('truenorth_reference', self.truenorth_reference,
                               'a pair (#spikes, T)')
    errors.check_int_at_least('pgd_steps', self.pgd_steps, 1)

  @classmethod
  def from_dict(cls, d: Mapping) -> 'Settings':
    """From a mapping (e.g. a config section); lists become tuples; unknown keys are errors."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - fields)
    if unknown:
      raise ValueError(f'analysis settings {unknown} are not among {sorted(fields)}')
    return cls(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in d.items()})


def ann_twin(model: network_lib.SpikingNetwork) -> network_lib.SpikingNetwork:
  """The ANN reference of ``model``: same layers, ReLU, plain BN with a shift, one step of
  direct (real-valued) input."""
  return model.clone(neuron='relu', num_steps=1, encoding='direct', norm='bn',
                     norm_kwargs=(('use_bias', True),))


def describe_model(model: network_lib.SpikingNetwork) -> dict:
  """The static description of a network that a report carries."""
  neuron = model.neuron
  return {
      'layers': [{'name': n, 'kind': s.kind, 'features': s.features, 'pool': s.pool,
                  'kernel_size': s.kernel_size}
                 for n, s in zip(network_lib.default_names(model.layers), model.layers)],
      'num_classes': model.num_classes,
      'num_steps': model.num_steps,
      'norm': model.norm,
      'neuron': 'relu' if neuron == 'relu' else 'lif',
      'leak': None if neuron == 'relu' else neuron.leak,
      'threshold': None if neuron == 'relu' else neuron.threshold,
      'encoding': model.encoding,
      'rescale': model.rescale,
  }


def analyze(model: network_lib.SpikingNetwork, variables: Mapping, images: np.ndarray,
            labels: np.ndarray, *, key: Array, batch_size: int = 256,
            space: Optional[robustness.InputSpace] = None,
            settings: Settings = Settings(), name: str = '',
            mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
            mesh: Optional[jax.sharding.Mesh] = None) -> dict:
  """Spike rates, energy, early exit and robustness of a trained network.

  Args:
    model: the network; an ANN twin (``neuron = relu``) gets accuracy, ANN
      energy and robustness, and ``None`` for spike rates and SNN energy.
    variables: ``{'params', 'batch_stats'}``.
    images: ``[N, ...]``: ``uint8`` pixels, normalised with ``mean``/``std`` as the
      evaluator builds each batch (:mod:`bntt_jax.evaluator`), or model inputs as they
      are (``mean=None``: normalised pixels; ``[N, T_in, ...]`` frames).
    labels: ``[N]`` int.
    key: the Poisson key of every evaluation (clean, noisy, attacked); noise
      and PGD start keys are folded from it.
    batch_size: examples per global batch (the last batch is padded).
    space: what the inputs are in pixel units (noise and attack units); None:
      ``InputSpace.model_units()`` (the model input's units, nothing clipped).
    settings: see :class:`Settings`.
    name: a label for side-by-side reports.
    mesh: the devices every evaluation is split over (default: all of them).

  Returns:
    A JSON-able dict with keys ``name``, ``model``, ``accuracy``,
    ``spike_rates``, ``energy``, ``early_exit``, ``robustness``, ``settings``,
    ``timing_s``.
  """
  images, labels = np.asarray(images), np.asarray(labels)
  space = space or robustness.InputSpace.model_units()
  timing = {}
  start = time.perf_counter()
  t0 = time.perf_counter()
  mesh = mesh or sharding.create_mesh()
  res = evaluation.evaluation_pass(model, variables, images, labels, key=key,
                                   batch_size=batch_size, mean=mean, std=std, mesh=mesh)
  timing['evaluation_pass'] = time.perf_counter() - t0
  is_snn = model.neuron != 'relu'
  steps = model.num_steps
  spiking_input = model.encoding == 'poisson'

  rates, num_spikes = None, 0.0
  if is_snn:
    rates = spikes_lib.spike_report(res.spikes, res.neurons, res.layer_names, res.input_spikes,
                                    res.input_elements, spiking_input=spiking_input)
    num_spikes = float(spikes_lib.spikes_per_example(
        res.spikes, res.input_spikes if settings.truenorth_include_input else None).mean())
  costs = energy.layer_costs(model, model.step_shape(images.shape[1:]))
  energy_section = energy.energy_report(
      costs, hidden_rates=rates['rate'] if is_snn else None,
      input_rate=rates['input_rate'] if is_snn else 0.0, spiking_input=spiking_input,
      steps=steps, num_spikes=num_spikes,
      includes_input_spikes=settings.truenorth_include_input, e_mac_pj=settings.e_mac_pj,
      e_ac_pj=settings.e_ac_pj, e_dyn=settings.truenorth_e_dyn, e_sta=settings.truenorth_e_sta,
      truenorth_reference=tuple(settings.truenorth_reference))

  t0 = time.perf_counter()
  exit_section = _early_exit_section(model, variables, res, settings, is_snn)
  timing['early_exit'] = time.perf_counter() - t0

  t0 = time.perf_counter()
  n = settings.robustness_examples or len(labels)
  robust = robustness.robustness_report(
      model, variables, images[:n], labels[:n], key=key, batch_size=batch_size, space=space,
      noise_sigmas=settings.noise_sigmas, fgsm_epsilons=settings.fgsm_epsilons,
      pgd_epsilons=settings.pgd_epsilons, pgd_steps=settings.pgd_steps,
      pgd_step_ratio=settings.pgd_step_ratio, pgd_random_start=settings.pgd_random_start,
      clean_correct=res.predictions[-1][:n] == labels[:n], mean=mean, std=std, mesh=mesh)
  timing['robustness'] = time.perf_counter() - t0
  timing['total'] = time.perf_counter() - start

  return {
      'name': name,
      'model': describe_model(model),
      'accuracy': {'clean': res.accuracy, 'num_examples': int(len(labels)),
                   'note': f'all {steps} steps, evaluation mode, one Poisson key'},
      'spike_rates': rates,
      'energy': energy_section,
      'early_exit': exit_section,
      'robustness': robust,
      'settings': _jsonable(dataclasses.asdict(settings)),
      'timing_s': timing,
  }


def _early_exit_section(model, variables, res: evaluation.PassResult, settings: Settings,
                        is_snn: bool) -> dict:
  steps = res.predictions.shape[0]
  acc_k = early_exit.accuracy_after_k(res.predictions, res.labels)
  # [k, N] spikes of all hidden layers (an ANN's "counts" are activation sums: left out).
  hidden = res.spikes.sum(axis=0) if is_snn else None
  # [k] mean spikes of the first k steps.
  cum_spikes = np.cumsum(hidden, axis=0).mean(axis=1) if is_snn else None
  gammas = early_exit.model_gammas(model, variables)
  section = {
      'rule': early_exit.EXIT_RULE,
      'threshold': settings.exit_threshold,
      'gamma': None,
      'mean_gamma': None,
      'exit_step': None,
      'accuracy_after_k': acc_k.tolist(),
      'spikes_after_k': cum_spikes.tolist() if is_snn else None,
      'accuracy_at_exit': None,
      'spikes_at_exit': None,
  }
  if gammas:
    per_layer, mean = early_exit.mean_gamma(gammas)
    k = early_exit.exit_step(mean, settings.exit_threshold)
    section.update(gamma={'layers': list(gammas), 'mean_per_step': per_layer.tolist()},
                   mean_gamma=mean.tolist(), exit_step=k, accuracy_at_exit=float(acc_k[k - 1]),
                   spikes_at_exit=float(cum_spikes[k - 1]) if is_snn else None)
  conf = res.confidence(settings.dynamic_rule)
  curve = early_exit.dynamic_curve(conf, res.predictions, res.labels,
                                   settings.dynamic_thresholds, spikes=hidden)
  steps_used, pred = early_exit.dynamic_exit(conf, res.predictions, settings.dynamic_threshold)
  section['dynamic'] = {
      'rule': settings.dynamic_rule,
      'description': ('each sample stops at the first step k at which its running prediction '
                      '(accumulated readout / k) has ' +
                      ('max softmax probability' if settings.dynamic_rule == 'max_prob'
                       else 'top-1 minus top-2 logit') + ' >= threshold; else it runs all T'),
      'threshold': settings.dynamic_threshold,
      'mean_steps': float(steps_used.mean()),
      'accuracy': float((pred == res.labels).mean()),
      'steps_histogram': np.bincount(steps_used, minlength=steps + 1)[1:].tolist(),
      'curve': curve,
  }
  return section


def _jsonable(d):
  return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
