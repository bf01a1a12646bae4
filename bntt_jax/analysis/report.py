"""Write analysis reports: ``report.json``, ``report.md`` and ``plots/*.png`` for
one run, ``comparison.json``, ``comparison.md`` and ``plots/compare_*.png``
for several side by side.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from bntt_jax.analysis import energy
from bntt_jax.analysis import plots

PLOTS = {
    'spike_rates': 'spike_rates.png',
    'gamma': 'gamma_heatmap.png',
    'accuracy_vs_steps': 'accuracy_vs_steps.png',
    'energy': 'energy.png',
    'robustness': 'robustness.png',
}


def _default(o):
  if isinstance(o, np.generic):
    return o.item()
  if isinstance(o, np.ndarray):
    return o.tolist()
  raise TypeError(f'{type(o).__name__} is not JSON serialisable')


def _dump(obj, path):
  with open(path, 'w') as f:
    json.dump(obj, f, indent=1, default=_default)
    f.write('\n')


def _pct(x: Optional[float]) -> str:
  return 'n/a' if x is None else f'{100 * x:.2f} %'


def _num(x: Optional[float], fmt: str = '.4g') -> str:
  return 'n/a' if x is None else format(x, fmt)


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> List[str]:
  out = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  out += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
  return out


def markdown(report: dict) -> str:
  """A short human-readable summary of one report."""
  m, acc = report['model'], report['accuracy']
  lines = [f"# Analysis{': ' + report['name'] if report.get('name') else ''}", '',
           f"{len(m['layers'])} hidden layers "
           f"({', '.join(l['kind'] + str(l['features']) for l in m['layers'])}), "
           f"{m['num_classes']} classes, T = {m['num_steps']}, norm = {m['norm']}, "
           f"neuron = {m['neuron']}, encoding = {m['encoding']}.", '',
           f"Test accuracy: **{_pct(acc['clean'])}** on {acc['num_examples']} examples "
           f"({acc['note']}).", '']

  s = report['spike_rates']
  lines += ['## Spike rates (S8)', '']
  if s is None:
    lines += ['ANN (ReLU): no spikes.', '']
  else:
    lines += [s['definition'], '']
    lines += _table(['layer', 'neurons', 'R_s (spikes/neuron, in [0, T])', 'spikes/example'],
                    [(n, k, f'{r:.4f}', f'{c:.1f}') for n, k, r, c in
                     zip(s['layers'], s['neurons'], s['rate'], s['spikes_per_layer'])])
    lines += ['', f"Input rate: {s['input_rate']:.4f} "
              f"({'spikes' if s['input_is_spikes'] else 'mean |input|'} per input element over "
              f"{s['steps']} steps). Total hidden spikes per example: {s['total_spikes']:.1f}; "
              f"input spikes: {s['total_input_spikes']:.1f}.", '']

  e = report['energy']
  lines += ['## Compute and energy', '', e['convention'], '']
  rates = e['input_rates'] or [None] * len(e['layers'])
  snn = e['snn_pj'] or [None] * len(e['layers'])
  lines += _table(['layer', 'FLOPs (S7)', 'R_in', 'E_ANN (pJ)', 'E_SNN (pJ)'],
                  [(n, f, _num(r), _num(a), _num(b)) for n, f, r, a, b in
                   zip(e['layers'], e['flops'], rates, e['ann_pj'], snn)])
  lines += ['', f"Total: {e['total_flops']} FLOPs; E_ANN = {e['ann_total_pj'] / 1e6:.4g} uJ, "
            f"E_SNN = {_num(e['snn_total_pj'] and e['snn_total_pj'] / 1e6)} uJ, "
            f"E_ANN / E_SNN = {_num(e['ann_over_snn'])}.", '']
  tn = e['truenorth']
  if tn is not None:
    lines += [f"TrueNorth (#spikes x {tn['e_dyn']} + T x {tn['e_sta']}): #spikes = "
              f"{tn['num_spikes']:.1f} per example (input spikes "
              f"{'included' if tn['includes_input_spikes'] else 'excluded'}), T = {tn['steps']}, "
              f"E = {tn['energy']:.6g}; normalised to reference {tn['reference']}: "
              f"{_num(tn['normalised'], '.6g')}.", '']

  ee = report['early_exit']
  lines += ['## Temporal early exit', '', f"Rule: {ee['rule']}.", '']
  if ee['exit_step'] is None:
    lines += ['No per-step gamma (not BNTT): no gamma exit step.', '']
  else:
    lines += [f"Threshold {ee['threshold']}: exit after **{ee['exit_step']}** of "
              f"{len(ee['accuracy_after_k'])} steps, accuracy {_pct(ee['accuracy_at_exit'])}, "
              f"{_num(ee['spikes_at_exit'], '.1f')} hidden spikes per example.", '']
  spikes_k = ee['spikes_after_k'] or [None] * len(ee['accuracy_after_k'])
  lines += _table(['k', 'accuracy after k steps', 'hidden spikes'],
                  [(k + 1, _pct(a), _num(c, '.1f')) for k, (a, c) in
                   enumerate(zip(ee['accuracy_after_k'], spikes_k))])
  d = ee['dynamic']
  lines += ['', f"Dynamic exit: {d['description']}. Threshold {d['threshold']}: "
            f"{d['mean_steps']:.2f} steps on average, accuracy {_pct(d['accuracy'])}.", '']
  c = d['curve']
  lines += _table(['threshold', 'mean steps', 'accuracy', 'hidden spikes'],
                  [(t, f'{s:.2f}', _pct(a), _num(sp, '.1f')) for t, s, a, sp in
                   zip(c['thresholds'], c['mean_steps'], c['accuracy'],
                       c['mean_spikes'] or [None] * len(c['thresholds']))])

  r = report['robustness']
  lines += ['', '## Robustness', '', r['epsilon_convention'], '',
            f"{r['num_examples']} examples, clean accuracy {_pct(r['clean_accuracy'])}; "
            f"examples with a non-zero input gradient: "
            f"{_pct(r['gradient_nonzero_fraction'])}.", '']
  if r['gaussian']['sigmas']:
    lines += _table(['Gaussian sigma', 'accuracy'],
                    [(s, _pct(a)) for s, a in zip(r['gaussian']['sigmas'],
                                                  r['gaussian']['accuracy'])]) + ['']
  eps = sorted(set(r['fgsm']['epsilons']) | set(r['pgd']['epsilons']))
  if eps:
    fg = dict(zip(r['fgsm']['epsilons'], r['fgsm']['accuracy']))
    pg = dict(zip(r['pgd']['epsilons'], r['pgd']['accuracy']))
    lines += _table(['epsilon', 'FGSM', f"PGD-{r['pgd']['steps']} (step "
                     f"{r['pgd']['step_ratio']} eps)"],
                    [(x, _pct(fg.get(x)), _pct(pg.get(x))) for x in eps]) + ['']
  lines += ['## Plots', ''] + [f'![{k}](plots/{v})' for k, v in PLOTS.items()] + ['']
  return '\n'.join(lines)


def write_report(report: dict, outdir: str) -> Dict[str, str]:
  """Write ``report.json``, ``report.md`` and the plots; returns ``{what: path}``."""
  os.makedirs(os.path.join(outdir, 'plots'), exist_ok=True)
  paths = {'json': os.path.join(outdir, 'report.json'), 'md': os.path.join(outdir, 'report.md')}
  _dump(report, paths['json'])
  with open(paths['md'], 'w') as f:
    f.write(markdown(report))
  p = lambda k: os.path.join(outdir, 'plots', PLOTS[k])
  paths['spike_rates'] = plots.spike_rates_over_time(report['spike_rates'], p('spike_rates'))
  paths['gamma'] = plots.gamma_heatmap(report['early_exit'], p('gamma'))
  paths['accuracy_vs_steps'] = plots.accuracy_vs_steps([report], p('accuracy_vs_steps'))
  paths['energy'] = plots.energy_bars([report], p('energy'))
  paths['robustness'] = plots.robustness_curves([report], p('robustness'))
  return paths


def comparison(reports: Sequence[dict], reference: int = 0) -> dict:
  """Side-by-side numbers of several reports.

  TrueNorth energies are normalised by run ``reference`` (Table S1 style);
  if it has no spikes (ANN), by the first run that has.
  """
  names = [r.get('name') or f'run {i}' for i, r in enumerate(reports)]
  tn_runs = [i for i, r in enumerate(reports) if r['energy']['truenorth'] is not None]
  ref = reference if reference in tn_runs else (tn_runs[0] if tn_runs else None)
  ref_tn = reports[ref]['energy']['truenorth'] if ref is not None else None
  rows = []
  for name, r in zip(names, reports):
    e, ee, rb = r['energy'], r['early_exit'], r['robustness']
    tn = e['truenorth']
    rows.append({
        'name': name,
        'num_steps': r['model']['num_steps'],
        'norm': r['model']['norm'],
        'neuron': r['model']['neuron'],
        'accuracy': r['accuracy']['clean'],
        'exit_step': ee['exit_step'],
        'accuracy_at_exit': ee['accuracy_at_exit'],
        'dynamic_mean_steps': ee['dynamic']['mean_steps'],
        'dynamic_accuracy': ee['dynamic']['accuracy'],
        'total_spikes': None if r['spike_rates'] is None else r['spike_rates']['total_spikes'],
        'ann_total_pj': e['ann_total_pj'],
        'snn_total_pj': e['snn_total_pj'],
        'truenorth_spikes': None if tn is None else tn['num_spikes'],
        'truenorth_normalised': None if tn is None else energy.normalised_truenorth(
            tn['num_spikes'], tn['steps'], ref_tn['num_spikes'], ref_tn['steps'],
            tn['e_dyn'], tn['e_sta']),
        'gaussian': dict(zip(rb['gaussian']['sigmas'], rb['gaussian']['accuracy'])),
        'fgsm': dict(zip(rb['fgsm']['epsilons'], rb['fgsm']['accuracy'])),
        'pgd': dict(zip(rb['pgd']['epsilons'], rb['pgd']['accuracy'])),
    })
  return {'runs': rows, 'truenorth_reference': None if ref is None else names[ref]}


def comparison_markdown(comp: dict) -> str:
  rows = comp['runs']
  lines = ['# Side-by-side', '']
  lines += _table(
      ['run', 'T', 'norm', 'neuron', 'accuracy', 'exit step', 'acc. at exit', 'dynamic steps',
       'dynamic acc.', 'spikes/example', 'E_ANN (uJ)', 'E_SNN (uJ)',
       f"TrueNorth (ref. {comp['truenorth_reference']})"],
      [(r['name'], r['num_steps'], r['norm'], r['neuron'], _pct(r['accuracy']),
        _num(r['exit_step']), _pct(r['accuracy_at_exit']), f"{r['dynamic_mean_steps']:.2f}",
        _pct(r['dynamic_accuracy']), _num(r['total_spikes'], '.1f'),
        f"{r['ann_total_pj'] / 1e6:.4g}",
        _num(r['snn_total_pj'] and r['snn_total_pj'] / 1e6), _num(r['truenorth_normalised']))
       for r in rows])
  for kind, unit in (('gaussian', 'sigma'), ('fgsm', 'epsilon'), ('pgd', 'epsilon')):
    keys = sorted({k for r in rows for k in r[kind]})
    if keys:
      lines += ['', f'{kind} accuracy by {unit} (pixel units):', '']
      lines += _table(['run'] + [str(k) for k in keys],
                      [[r['name']] + [_pct(r[kind].get(k)) for k in keys] for r in rows])
  lines += ['', '![accuracy](plots/compare_accuracy_vs_steps.png)',
            '![energy](plots/compare_energy.png)', '![spikes](plots/compare_spike_rates.png)',
            '![robustness](plots/compare_robustness.png)', '']
  return '\n'.join(lines)


def write_comparison(reports: Sequence[dict], outdir: str, reference: int = 0) -> Dict[str, str]:
  """Write ``comparison.json``, ``comparison.md`` and ``plots/compare_*.png``."""
  os.makedirs(os.path.join(outdir, 'plots'), exist_ok=True)
  comp = comparison(reports, reference)
  paths = {'json': os.path.join(outdir, 'comparison.json'),
           'md': os.path.join(outdir, 'comparison.md')}
  # JSON object keys must be strings: the sigma/epsilon dicts become lists of pairs.
  _dump({**comp, 'runs': [{k: sorted(v.items()) if isinstance(v, dict) else v
                           for k, v in r.items()} for r in comp['runs']]}, paths['json'])
  with open(paths['md'], 'w') as f:
    f.write(comparison_markdown(comp))
  p = lambda n: os.path.join(outdir, 'plots', f'compare_{n}.png')
  paths['accuracy_vs_steps'] = plots.accuracy_vs_steps(reports, p('accuracy_vs_steps'))
  paths['energy'] = plots.energy_bars(reports, p('energy'))
  paths['spike_rates'] = plots.spike_rate_bars(reports, p('spike_rates'))
  paths['robustness'] = plots.robustness_curves(reports, p('robustness'))
  return paths
