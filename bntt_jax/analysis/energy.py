"""Compute and energy: S7 FLOPs, ANN vs SNN compute energy, TrueNorth energy.

Conventions (spec section 8, supplementary D and E):

* FLOPs of a layer (S7) for one example of the ANN: conv
  ``k^2 * H_out * W_out * C_in * C_out`` (the paper's ``k^2 O^2 C_in C_out``,
  ``O`` the conv's output map before pooling), linear ``C_in * C_out``. The
  readout ``fc_out`` is a layer too.
* ``E_ANN = sum_l FLOPs(l) * E_MAC``.
* ``E_SNN = sum_l FLOPs(l) * R_in(l) * E_AC``: a spike entering layer ``l``
  costs one accumulate per synapse it reaches, and ``R_in(l)`` is the S8 rate
  (spikes per input neuron over the whole inference, in ``[0, T]``) of what
  enters layer ``l``. Average pooling keeps the mean rate, so ``R_in(l)`` is
  the rate of layer ``l - 1`` measured before its pooling (exact when the
  window divides the map). The first layer on Poisson input sees the input
  spike rate (``|+-1|`` spikes count one each); on real-valued input
  (``direct``, ``frames``) it multiplies: ``FLOPs * k * E_MAC`` for ``k``
  steps run.
* 45 nm CMOS: ``E_MAC = 4.6 pJ``, ``E_AC = 0.9 pJ`` (defaults, arguments).
* TrueNorth (Table S1): ``E = #spikes * E_dyn + T * E_sta`` with
  ``(E_dyn, E_sta) = (0.4, 0.6)``, divided by the same quantity of a reference
  method. ``#spikes`` is a plain count per inference of one example.

Every energy here is in pJ per example (one inference of all steps run).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence, Tuple

from bntt_jax import default_config
from bntt_jax import network as network_lib

# The docstring's constants, kept with the run's config (``config.analysis``) so that a config
# carries them without importing the analyses.
E_MAC_PJ = default_config.ANALYSIS['e_mac_pj']
E_AC_PJ = default_config.ANALYSIS['e_ac_pj']
TRUENORTH_E_DYN = default_config.ANALYSIS['truenorth_e_dyn']
TRUENORTH_E_STA = default_config.ANALYSIS['truenorth_e_sta']

CONVENTION = (
    'Per example, in pJ. FLOPs per layer as S7 (conv k^2*H_out*W_out*C_in*C_out, linear '
    'C_in*C_out, readout included). E_ANN = sum_l FLOPs(l)*E_MAC. E_SNN = sum_l '
    'FLOPs(l)*R_in(l)*E_AC with R_in(l) the S8 rate (spikes per neuron over all steps) '
    'of the spikes entering layer l: the previous layer\'s rate (average pooling keeps '
    'it), the input spike rate for the first layer on Poisson input (|+-1| spikes count '
    'one each); on real-valued input (direct/frames) the first layer does FLOPs*k MACs '
    'for k steps. E_MAC = {e_mac} pJ, E_AC = {e_ac} pJ (45 nm CMOS).')


@dataclasses.dataclass(frozen=True)
class LayerCost:
  """One synaptic layer of a network, for one example.

  Attributes:
    name: the layer's name in the parameter tree (``fc_out`` for the readout).
    kind: ``conv`` or ``dense``.
    in_shape: the input one example feeds the layer (after the previous pooling).
    out_shape: the layer's output (neurons, before pooling).
    flops: S7 FLOPs (multiply-accumulates of the ANN), per example.
  """
  name: str
  kind: str
  in_shape: Tuple[int, ...]
  out_shape: Tuple[int, ...]
  flops: int


def conv_flops(kernel_size: int, out_hw: Tuple[int, int], c_in: int, c_out: int) -> int:
  """S7 for a conv: ``k^2 * H_out * W_out * C_in * C_out`` FLOPs."""
  return kernel_size * kernel_size * out_hw[0] * out_hw[1] * c_in * c_out


def dense_flops(c_in: int, c_out: int) -> int:
  """S7 for a linear layer: ``C_in * C_out`` FLOPs."""
  return c_in * c_out


def layer_costs(model: network_lib.SpikingNetwork,
                step_input_shape: Sequence[int]) -> Tuple[LayerCost, ...]:
  """S7 FLOPs of every synaptic layer of ``model``, the readout last.

  Args:
    model: the network (only its static layer list and class count are read).
    step_input_shape: one example's input at one step, e.g. ``(32, 32, 3)``.
  """
  names = network_lib.default_names(model.layers)
  out, shape = [], tuple(step_input_shape)
  for spec, name in zip(model.layers, names):
    neurons = spec.output_shape(shape)
    if spec.kind == 'conv':
      flops = conv_flops(spec.kernel_size, neurons[:2], shape[-1], spec.features)
    else:
      flops = dense_flops(math.prod(shape), spec.features)
    out.append(LayerCost(name, spec.kind, shape, neurons, flops))
    shape = spec.pooled_shape(neurons)
  out.append(LayerCost('fc_out', 'dense', shape, (model.num_classes,),
                       dense_flops(math.prod(shape), model.num_classes)))
  return tuple(out)


def ann_energy(flops: Sequence[int], e_mac_pj: float = E_MAC_PJ) -> Tuple[float, ...]:
  """Per layer ``FLOPs(l) * E_MAC`` in pJ (one ANN inference of one example)."""
  return tuple(float(f) * e_mac_pj for f in flops)


def snn_energy(flops: Sequence[int], input_rates: Sequence[float], *, spiking_input: bool,
               steps: int, e_mac_pj: float = E_MAC_PJ,
               e_ac_pj: float = E_AC_PJ) -> Tuple[float, ...]:
  """Per layer SNN compute energy in pJ (one inference of ``steps`` steps, one example).

  Args:
    flops: S7 FLOPs per layer, input layer first, readout last.
    input_rates: ``R_in(l)`` per layer, spikes per input neuron over the whole
      inference (S8, in ``[0, steps]``). ``input_rates[0]`` is ignored when
      ``spiking_input`` is False.
    spiking_input: the first layer receives spikes (Poisson coding) and
      accumulates; otherwise it does ``FLOPs * steps`` MACs on real values.
    steps: time steps run.
  """
  if len(flops) != len(input_rates):
    raise ValueError(f'{len(flops)} layers but {len(input_rates)} input rates')
  out = []
  for i, (f, r) in enumerate(zip(flops, input_rates)):
    if i == 0 and not spiking_input:
      out.append(float(f) * steps * e_mac_pj)
    else:
      out.append(float(f) * float(r) * e_ac_pj)
  return tuple(out)


def truenorth_energy(num_spikes: float, num_steps: int, e_dyn: float = TRUENORTH_E_DYN,
                     e_sta: float = TRUENORTH_E_STA) -> float:
  """Supplementary E: ``#spikes * E_dyn + T * E_sta`` (arbitrary units)."""
  return float(num_spikes) * e_dyn + float(num_steps) * e_sta


def normalised_truenorth(num_spikes: float, num_steps: int, reference_spikes: float,
                         reference_steps: int, e_dyn: float = TRUENORTH_E_DYN,
                         e_sta: float = TRUENORTH_E_STA) -> float:
  """TrueNorth energy relative to a reference method's (Table S1's last column)."""
  return (truenorth_energy(num_spikes, num_steps, e_dyn, e_sta)
          / truenorth_energy(reference_spikes, reference_steps, e_dyn, e_sta))


def energy_report(costs: Sequence[LayerCost], *, hidden_rates: Optional[Sequence[float]],
                  input_rate: float, spiking_input: bool, steps: int, num_spikes: float,
                  includes_input_spikes: bool,
                  e_mac_pj: float = E_MAC_PJ, e_ac_pj: float = E_AC_PJ,
                  e_dyn: float = TRUENORTH_E_DYN, e_sta: float = TRUENORTH_E_STA,
                  truenorth_reference: Tuple[float, ...] = ()) -> dict:
  """The report's ``energy`` section.

  Args:
    costs: :func:`layer_costs`.
    hidden_rates: S8 rate of every hidden layer (``None`` for an ANN: then
      only the ANN column is filled).
    input_rate: S8 rate of the input spikes (Poisson coding).
    spiking_input: the first layer receives spikes.
    steps: time steps run.
    num_spikes: ``#spikes`` per example for TrueNorth (the caller decides
      whether input spikes are in it), and ``includes_input_spikes`` says which.
    truenorth_reference: ``(reference #spikes, reference T)`` or ``()``.
  """
  flops = [c.flops for c in costs]
  ann = ann_energy(flops, e_mac_pj)
  section = {
      'convention': CONVENTION.format(e_mac=e_mac_pj, e_ac=e_ac_pj),
      'unit': 'pJ per example',
      'e_mac_pj': e_mac_pj,
      'e_ac_pj': e_ac_pj,
      'layers': [c.name for c in costs],
      'flops': flops,
      'total_flops': int(sum(flops)),
      'ann_pj': list(ann),
      'ann_total_pj': float(sum(ann)),
      'snn_pj': None,
      'snn_total_pj': None,
      'ann_over_snn': None,
      'input_rates': None,
      'truenorth': None,
  }
  if hidden_rates is None:
    return section
  rates = [input_rate] + list(hidden_rates)
  snn = snn_energy(flops, rates, spiking_input=spiking_input, steps=steps, e_mac_pj=e_mac_pj,
                   e_ac_pj=e_ac_pj)
  tn = {'e_dyn': e_dyn, 'e_sta': e_sta, 'num_spikes': float(num_spikes), 'steps': steps,
        'energy': truenorth_energy(num_spikes, steps, e_dyn, e_sta),
        'reference': list(truenorth_reference) or None, 'normalised': None,
        'includes_input_spikes': bool(includes_input_spikes)}
  if truenorth_reference:
    tn['normalised'] = normalised_truenorth(num_spikes, steps, *truenorth_reference,
                                            e_dyn=e_dyn, e_sta=e_sta)
  section.update(snn_pj=list(snn), snn_total_pj=float(sum(snn)),
                 ann_over_snn=float(sum(ann)) / sum(snn) if sum(snn) > 0 else None,
                 input_rates=[float(r) for r in rates], truenorth=tn)
  return section
