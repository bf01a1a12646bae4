"""PNG plots of analysis reports (matplotlib, Agg; no pyplot global state).

Every function takes report sections (the dicts :func:`pipeline.analyze`
returns) and a path, draws one figure, saves it and returns the path. The
functions that take ``reports`` draw one run or several side by side.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _figure(width=6.4, height=4.2, ncols=1):
  fig = Figure(figsize=(width, height), layout='constrained')
  FigureCanvasAgg(fig)
  return fig, fig.subplots(1, ncols)


def _save(fig, path):
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig.savefig(path, dpi=110)
  return path


def _label(report, i):
  return report.get('name') or f'run {i}'


def spike_rates_over_time(spike_rates: dict, path: str) -> str:
  """Spikes per neuron at each step, one line per layer (the paper's Figure 1 style)."""
  fig, ax = _figure()
  if spike_rates is None:
    ax.text(0.5, 0.5, 'ANN: no spikes', ha='center', va='center')
    return _save(fig, path)
  steps = np.arange(1, spike_rates['steps'] + 1)
  for name, r in zip(spike_rates['layers'], spike_rates['rate_per_step']):
    ax.plot(steps, r, marker='.', label=name)
  if spike_rates['input_is_spikes']:
    ax.plot(steps, spike_rates['input_rate_per_step'], 'k--', label='input')
  ax.set_xlabel('time step')
  ax.set_ylabel('spikes per neuron')
  ax.set_title('Spike rate per layer over time')
  ax.legend(fontsize='small', ncols=2)
  return _save(fig, path)


def gamma_heatmap(early_exit: dict, path: str) -> str:
  """Mean gamma per BNTT layer per step, the exit step marked."""
  fig, (ax, bx) = _figure(7.4, 4.2, ncols=2)
  if early_exit['gamma'] is None:
    ax.text(0.5, 0.5, 'no per-step gamma (not BNTT)', ha='center', va='center')
    bx.set_axis_off()
    return _save(fig, path)
  g = np.asarray(early_exit['gamma']['mean_per_step'])
  steps = g.shape[1]
  im = ax.imshow(g, aspect='auto', cmap='viridis', extent=(0.5, steps + 0.5, len(g) - 0.5, -0.5))
  ax.set_yticks(range(len(g)), early_exit['gamma']['layers'])
  ax.set_xlabel('time step')
  ax.set_title('mean gamma per layer')
  fig.colorbar(im, ax=ax)
  k = early_exit['exit_step']
  ax.axvline(k + 0.5, color='w', ls='--')
  bx.plot(np.arange(1, steps + 1), early_exit['mean_gamma'], marker='.')
  th = early_exit['threshold']
  bx.axhline(th, color='r', ls=':', label=f'threshold {th}')
  bx.axvline(k + 0.5, color='k', ls='--', label=f'exit after step {k}')
  bx.set_xlabel('time step')
  bx.set_title('mean over BNTT layers')
  bx.legend(fontsize='small')
  return _save(fig, path)


def accuracy_vs_steps(reports: Sequence[dict], path: str) -> str:
  """Accuracy after k steps (static exit) and the dynamic-exit curve, per run."""
  fig, ax = _figure()
  for i, rep in enumerate(reports):
    ee = rep['early_exit']
    acc = np.asarray(ee['accuracy_after_k']) * 100
    line, = ax.plot(np.arange(1, len(acc) + 1), acc, marker='.',
                    label=f'{_label(rep, i)}: first k steps')
    dyn = ee['dynamic']['curve']
    ax.plot(dyn['mean_steps'], np.asarray(dyn['accuracy']) * 100, ls='--', marker='x',
            color=line.get_color(), label=f"{_label(rep, i)}: dynamic ({ee['dynamic']['rule']})")
    if ee['exit_step'] is not None:
      ax.plot([ee['exit_step']], [ee['accuracy_at_exit'] * 100], marker='*', ms=14,
              color=line.get_color(), ls='none', label=f"{_label(rep, i)}: gamma exit")
  ax.set_xlabel('time steps run (mean per sample for dynamic exit)')
  ax.set_ylabel('test accuracy (%)')
  ax.set_title('Accuracy vs steps run')
  ax.legend(fontsize='small')
  return _save(fig, path)


def energy_bars(reports: Sequence[dict], path: str) -> str:
  """Compute energy per layer (first run) and in total (every run), ANN vs SNN, in pJ."""
  fig, (ax, bx) = _figure(9.0, 4.2, ncols=2)
  first = reports[0]['energy']
  x = np.arange(len(first['layers']))
  ax.bar(x - 0.2, first['ann_pj'], 0.4, label='ANN (S7 FLOPs x E_MAC)')
  if first['snn_pj'] is not None:
    ax.bar(x + 0.2, first['snn_pj'], 0.4, label='SNN (FLOPs x R_in x E_AC)')
  ax.set_xticks(x, first['layers'], rotation=45, ha='right')
  ax.set_yscale('log')
  ax.set_ylabel('pJ per example')
  ax.set_title(f"per layer: {_label(reports[0], 0)}")
  ax.legend(fontsize='small')
  names, totals, colors = ['ANN'], [first['ann_total_pj']], ['C0']
  for i, rep in enumerate(reports):
    e = rep['energy']
    if e['snn_total_pj'] is not None:
      names.append(_label(rep, i))
      totals.append(e['snn_total_pj'])
      colors.append('C1')
    elif i > 0:
      names.append(_label(rep, i) + ' (ANN)')
      totals.append(e['ann_total_pj'])
      colors.append('C0')
  uj = np.asarray(totals) / 1e6
  bars = bx.bar(np.arange(len(uj)), uj, color=colors)
  bx.bar_label(bars, [f'{u:.3g}' for u in uj], fontsize='small')
  bx.set_xticks(np.arange(len(uj)), names, rotation=30, ha='right')
  bx.set_ylabel('uJ per example')
  bx.set_title('total')
  return _save(fig, path)


def robustness_curves(reports: Sequence[dict], path: str) -> str:
  """Accuracy vs Gaussian sigma and vs FGSM/PGD epsilon (pixel units), per run."""
  fig, (ax, bx) = _figure(9.0, 4.0, ncols=2)
  for i, rep in enumerate(reports):
    r = rep['robustness']
    name = _label(rep, i)
    if r['gaussian']['sigmas']:
      ax.plot(r['gaussian']['sigmas'], np.asarray(r['gaussian']['accuracy']) * 100, marker='.',
              label=name)
    if r['fgsm']['epsilons']:
      line, = bx.plot(r['fgsm']['epsilons'], np.asarray(r['fgsm']['accuracy']) * 100,
                      marker='.', label=f'{name}: FGSM')
      color = line.get_color()
    else:
      color = None
    if r['pgd']['epsilons']:
      bx.plot(r['pgd']['epsilons'], np.asarray(r['pgd']['accuracy']) * 100, marker='x', ls='--',
              color=color, label=f"{name}: PGD-{r['pgd']['steps']}")
  ax.set_xlabel('noise sigma (pixel units)')
  ax.set_ylabel('accuracy (%)')
  ax.set_title('Gaussian noise')
  bx.set_xlabel('epsilon, L_inf (pixel units)')
  bx.set_title('Adversarial')
  for a in (ax, bx):
    if a.get_legend_handles_labels()[0]:
      a.legend(fontsize='small')
  return _save(fig, path)


def spike_rate_bars(reports: Sequence[dict], path: str) -> str:
  """S8 rate per layer (spikes per neuron over all steps), one bar group per run."""
  fig, ax = _figure(7.4, 4.2)
  snn = [(i, r) for i, r in enumerate(reports) if r['spike_rates'] is not None]
  width = 0.8 / max(len(snn), 1)
  for j, (i, rep) in enumerate(snn):
    s = rep['spike_rates']
    x = np.arange(len(s['layers']))
    ax.bar(x + (j - (len(snn) - 1) / 2) * width, s['rate'], width,
           label=f"{_label(rep, i)} (T={s['steps']})")
    ax.set_xticks(x, s['layers'], rotation=45, ha='right')
  ax.set_ylabel('spikes per neuron over the inference (S8)')
  ax.set_title('Spike rate per layer')
  if snn:
    ax.legend(fontsize='small')
  return _save(fig, path)


def training_curves(runs: dict, path: str, not_spiking: Sequence[str] = ()) -> str:
  """Per logging step (``steps.jsonl`` rows), one line per run: training loss, training
  accuracy and hidden-layer spikes per image (not for the runs ``not_spiking``: ANNs)."""
  fig, axes = _figure(12.0, 3.8, ncols=3)
  for i, (name, rows) in enumerate(runs.items()):
    if not rows:
      continue
    step = [r['step'] for r in rows]
    axes[0].plot(step, [r['train_loss'] for r in rows], color=f'C{i}', label=name)
    axes[1].plot(step, [100 * r['train_accuracy'] for r in rows], color=f'C{i}', label=name)
    if name not in not_spiking:
      axes[2].plot(step, [r['spikes_per_image'] for r in rows], color=f'C{i}', label=name)
  for ax, what in zip(axes, ('training loss', 'training accuracy (%)', 'spikes per image')):
    ax.set_xlabel('training step')
    ax.set_ylabel(what)
    ax.grid(alpha=0.3)
  axes[2].set_yscale('symlog')
  axes[0].legend(fontsize='small')
  return _save(fig, path)


def gamma_over_training(rows: Sequence[dict], path: str) -> str:
  """BNTT's mean gamma (over layers and channels) at each time step, as training goes: a heat
  map, logging step by time step."""
  fig, ax = _figure(7.0, 4.0)
  g = np.asarray([r['mean_gamma'] for r in rows if 'mean_gamma' in r])
  if not g.size:
    ax.text(0.5, 0.5, 'no per-step gamma', ha='center', va='center')
    return _save(fig, path)
  steps = [r['step'] for r in rows if 'mean_gamma' in r]
  im = ax.imshow(g.T, aspect='auto', origin='lower', cmap='viridis',
                 extent=(steps[0], steps[-1], 0.5, g.shape[1] + 0.5))
  fig.colorbar(im, ax=ax, label='mean gamma')
  ax.set_xlabel('training step')
  ax.set_ylabel('time step t')
  ax.set_title('Mean BNTT gamma per time step during training')
  return _save(fig, path)


def spike_heatmap(spike_rates: dict, path: str) -> str:
  """Spikes per neuron per layer and time step (a heat map of ``rate_per_step``)."""
  fig, ax = _figure(7.0, 4.0)
  r = np.asarray(spike_rates['rate_per_step'])
  im = ax.imshow(r, aspect='auto', cmap='magma', extent=(0.5, r.shape[1] + 0.5,
                                                          len(r) - 0.5, -0.5))
  ax.set_yticks(np.arange(len(r)), spike_rates['layers'])
  fig.colorbar(im, ax=ax, label='spikes per neuron')
  ax.set_xlabel('time step t')
  ax.set_title('Spike rate per layer and time step')
  return _save(fig, path)


def accuracy_vs_latency(trained: Sequence[tuple], after_k: Sequence[float], baselines: dict,
                        path: str) -> str:
  """Test accuracy of networks trained at each T (``trained``: ``(T, accuracy)``), the
  accuracy after k steps of the one trained at the largest T (``after_k``), and horizontal
  lines for ``baselines`` (name -> accuracy)."""
  fig, ax = _figure()
  if after_k:
    ax.plot(np.arange(1, len(after_k) + 1), np.asarray(after_k) * 100, marker='.',
            label=f'BNTT T={len(after_k)}: first k steps')
  if trained:
    t, a = zip(*sorted(trained))
    ax.plot(t, np.asarray(a) * 100, marker='o', ms=8, ls='-', label='BNTT trained at T')
  for i, (name, acc) in enumerate(baselines.items()):
    ax.axhline(acc * 100, ls='--', color=f'C{i + 2}', label=name)
  ax.set_xlabel('time steps (T, or k steps run)')
  ax.set_ylabel('test accuracy (%)')
  ax.set_title('Accuracy against latency')
  ax.grid(alpha=0.3)
  ax.legend(fontsize='small')
  return _save(fig, path)


def gamma_per_step(curves: dict, path: str) -> str:
  """The learnt mean gamma (over layers and channels) at each time step, one line per run
  (``curves``: name -> ``[T]``)."""
  fig, ax = _figure()
  for name, g in curves.items():
    ax.plot(np.arange(1, len(g) + 1), g, marker='.', label=name)
  ax.set_xlabel('time step t')
  ax.set_ylabel('mean gamma')
  ax.set_title('Learnt gamma per time step')
  ax.grid(alpha=0.3)
  ax.legend(fontsize='small')
  return _save(fig, path)
