"""The paper's claims as rows computed from runs: what ``experiments/reproduce.py`` writes.

A reproduction is a set of runs of one recipe (:data:`RUNS`: each run's change to the
config), each an ordinary workdir with ``summary.json``, ``metrics.jsonl``, ``steps.jsonl``
and, once analysed, ``report.json``. :func:`build` reads those files and nothing else, and
returns one row per claim of the paper (its statement and figure, what was measured, whether
it holds) with the numbers each verdict used; :func:`write` writes the Markdown table, the JSON
and the plots.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from bntt_jax import files
from bntt_jax import metrics as metrics_lib
from bntt_jax import records
from bntt_jax.analysis import plots
from bntt_jax.errors import ConfigError, DataError

# A run's changes to the recipe (paths into the config). BNTT at the config's T is the
# claims' subject and keeps the config's Poisson draws; the others evaluate once.
RUNS: Dict[str, Dict[str, object]] = {
    'bntt': {},
    'none': {'model.norm': 'none', 'eval.num_keys': 1},
    'ann': {'model.neuron': 'relu', 'model.timesteps': 1, 'model.encoding': 'direct',
            'model.norm': 'bn', 'model.norm_kwargs': {'use_bias': True}, 'eval.num_keys': 1},
    'bntt_t10': {'model.timesteps': 10, 'eval.num_keys': 1},
    'bntt_t5': {'model.timesteps': 5, 'eval.num_keys': 1},
    'bn': {'model.norm': 'bn', 'eval.num_keys': 1},
    'tdbn': {'model.norm': 'tdbn', 'eval.num_keys': 1},
    'tebn': {'model.norm': 'tebn', 'eval.num_keys': 1},
    # What drives the late-step gamma decay (not in the default set): BNTT without weight
    # decay, and with 100x the weight decay (lr x weight decay x steps of a 5-epoch run at
    # 1e-2 is about the CIFAR-10 recipe's at 1e-4: 0.24 against 0.31).
    'bntt_wd0': {'train.weight_decay': 0.0, 'eval.num_keys': 1},
    'bntt_wd1e-2': {'train.weight_decay': 1e-2, 'eval.num_keys': 1},
}
ABLATIONS = ('bntt_wd0', 'bntt_wd1e-2')
# The default set, in the order they train (the claims' subject first).
RUN_NAMES = ('bntt', 'none', 'ann', 'bntt_t10', 'bntt_t5', 'bn', 'tdbn', 'tebn')
FAILED_FILE = records.FAILED_FILE
# Runs whose robustness is measured (the claim: BNTT against the ANN twin and the baseline).
ROBUST_RUNS = ('bntt', 'none', 'ann')
ROBUSTNESS = {'noise_sigmas': '(0.0,0.1,0.2)', 'fgsm_epsilons': '(0.0,0.02,0.05)',
              'pgd_epsilons': '(0.0,0.02)', 'pgd_steps': 5, 'robustness_examples': 1000}
NO_ROBUSTNESS = {'noise_sigmas': '()', 'fgsm_epsilons': '()', 'pgd_epsilons': '()'}

# The verdicts' margins, fixed before any run (fractions of accuracy).
CLOSE_TO_ANN = 0.03      # "close to its ANN twin": within 3 points
BEHIND = 0.01            # "falls behind": at least 1 point lower (beyond one draw's noise)
EXIT_WITHIN = 0.01       # an early exit "at no cost": within 1 point of all T steps
GAMMA_DECAY = 0.5        # late gamma "decays": the last fifth of the steps at most half the first
HOLDS, PARTLY, FAILS, MISSING = 'holds', 'partly', 'does not hold', 'not measured'


def check_runs(names: Sequence[str]) -> tuple:
  for n in names:
    if n not in RUNS:
      raise ConfigError('run', n, f'one of {", ".join(RUNS)}')
  if not names:
    raise ConfigError('runs', '(none)', f'some of {", ".join(RUNS)}')
  return tuple(names)


def analysis_overrides(name: str, subset: int) -> list:
  """``path=value`` analysis settings of run ``name``: robustness for :data:`ROBUST_RUNS`,
  and for every run but BNTT at the config's T, a class-balanced test subset of ``subset``
  examples (0: all)."""
  grid = ROBUSTNESS if name in ROBUST_RUNS else NO_ROBUSTNESS
  over = [f'analysis.{k}={v}' for k, v in grid.items()]
  if name != 'bntt' and subset:
    over.append(f'data.test_examples={subset}')
  return over


def read_run(workdir: str) -> dict:
  """What a run's workdir holds: ``summary``, ``failed``, ``report`` (``None`` where absent),
  ``epochs`` (``metrics.jsonl``) and ``steps`` (``steps.jsonl``) rows, ``config``."""
  def load(name):
    path = os.path.join(workdir, name)
    if not os.path.exists(path):
      return None
    try:
      return metrics_lib.read_json(path)
    except ValueError as e:
      raise DataError(f'run record {path!r} cannot be read ({type(e).__name__}): rerun '
                      'experiments/reproduce.py, which rebuilds a report.json or summary.json '
                      'from the run\'s checkpoint once the damaged file is removed') from None
  return {'summary': load('summary.json'), 'failed': load(FAILED_FILE),
          'report': load('report.json'), 'config': load('config.json'),
          'epochs': metrics_lib.read_jsonl(os.path.join(workdir, 'metrics.jsonl')),
          'steps': metrics_lib.read_jsonl(os.path.join(workdir, 'steps.jsonl'))}


def _acc(run: Optional[dict]) -> Optional[float]:
  if run is None or run['summary'] is None:
    return None
  return run['summary']['final_test_accuracy']


def _pct(x: Optional[float], std: Optional[float] = None) -> str:
  if x is None:
    return 'n/a'
  return f'{100 * x:.2f} %' + (f' ± {100 * std:.2f}' if std else '')


def _state(run: Optional[dict]) -> str:
  if run is None:
    return 'not run'
  if run['failed'] is not None:
    return 'failed: ' + run['failed']['failed'].split(';')[0]
  if run['summary'] is None:
    return 'not finished'
  return _pct(_acc(run))


def _row(claim: str, paper: str, measured: str, verdict: str, values: dict) -> dict:
  return {'claim': claim, 'paper': paper, 'measured': measured, 'verdict': verdict,
          'values': values}


def _claim_ann_and_baseline(r: dict) -> List[dict]:
  b, ann, none = r.get('bntt'), r.get('ann'), r.get('none')
  acc_b, acc_ann, acc_none = _acc(b), _acc(ann), _acc(none)
  s = b['summary'] if b and b['summary'] else {}
  rows = []
  if acc_b is None or acc_ann is None:
    verdict = MISSING
  else:
    verdict = HOLDS if acc_b >= acc_ann - CLOSE_TO_ANN else FAILS
  rows.append(_row(
      '1a. BNTT trains a deep SNN from scratch at low latency to close to its ANN twin',
      'CIFAR-10 VGG9 at T 25: 90.5 % (Fig. 1 caption); the ANN twin is not in the material',
      f'BNTT T {s.get("timesteps", "?")}: {_pct(acc_b, s.get("final_test_accuracy_std"))} '
      f'({len(s.get("final_test_accuracies", []))} Poisson draws, {s.get("test_examples", "?")} '
      f'test images); ANN twin: {_state(ann)}'
      + (f'; gap {100 * (acc_ann - acc_b):.2f} points' if None not in (acc_b, acc_ann) else ''),
      verdict, {'bntt': acc_b, 'ann': acc_ann, 'margin': CLOSE_TO_ANN}))
  if acc_b is None or none is None or (none['summary'] is None and none['failed'] is None):
    verdict = MISSING
  elif none['failed'] is not None:
    verdict = HOLDS
  else:
    verdict = HOLDS if acc_none <= acc_b - BEHIND else FAILS
  rows.append(_row(
      '1b. Without normalisation the same network falls behind, or fails, at the same latency',
      'CIFAR-10 VGG9: surrogate gradient without BNTT 88.7 % needs T 100 (Fig. 1 caption)',
      f'norm=none at the same T: {_state(none)}; BNTT {_pct(acc_b)}',
      verdict, {'bntt': acc_b, 'none': acc_none,
                'none_failed': none is not None and none['failed'] is not None,
                'margin': BEHIND}))
  others = {n: _state(r.get(n)) for n in ('bn', 'tdbn', 'tebn')}
  rows.append(_row(
      '1c. The other norms, side by side (not a claim of the paper: bn is the paper\'s '
      'motivation, tdbn and tebn came later)',
      'BNTT 90.5 % (CIFAR-10); tdbn and tebn report their own figures on their own recipes',
      '; '.join(f'{n}: {v}' for n, v in others.items()), '-',
      {n: _acc(r.get(n)) for n in ('bn', 'tdbn', 'tebn')}))
  return rows


def _claim_latency(r: dict) -> dict:
  accs = {n: _acc(r.get(n)) for n in ('bntt', 'bntt_t10', 'bntt_t5')}
  t = {n: (r[n]['summary']['timesteps'] if r.get(n) and r[n]['summary'] else None)
       for n in accs}
  acc_none = _acc(r.get('none'))
  none_failed = r.get('none') is not None and r['none']['failed'] is not None
  low = [accs[n] for n in ('bntt_t10', 'bntt_t5') if accs[n] is not None]
  if not low or (acc_none is None and not none_failed):
    verdict = MISSING
  else:
    beats = [none_failed or a > acc_none for a in low]
    verdict = HOLDS if all(beats) else PARTLY if any(beats) else FAILS
  return _row(
      '2. BNTT keeps its accuracy at low latency: trained at 2.5-5x fewer steps it still beats '
      'the un-normalised baseline at the full T',
      'CIFAR-10: BNTT at T 25 (90.5 %) beats the baseline at T 100 (88.7 %): 4x fewer steps',
      '; '.join(f'T {t[n]}: {_pct(accs[n])}' for n in accs if t[n] is not None)
      + f'; norm=none at the full T: {_state(r.get("none"))}',
      verdict, {'accuracy_at_T': {str(t[n]): accs[n] for n in accs if t[n] is not None},
                'none': acc_none})


PAPER_GAMMA = ('the learnt gamma of late steps shrinks, so late steps contribute little (spec '
               'section 7; a public CIFAR-10 reproduction shows mean gamma below ~0.1 after '
               'step ~15; the paper\'s own figure is not in our material)')
PAPER_EXIT = ('exit 5-20 steps early; CIFAR-10: 25 -> 20 steps at 90.3 % against 90.5 % '
              '(secondary source, spec section 6); the exit rule is not in the material')


def _claim_gamma(r: dict) -> List[dict]:
  b = r.get('bntt')
  rep = b['report'] if b else None
  if rep is None or rep['early_exit']['gamma'] is None:
    return [_row('3a. The learnt gamma of late time steps decays', PAPER_GAMMA,
                 'no analysed BNTT run', MISSING, {}),
            _row('3b. Temporal early exit: the gamma rule cuts steps at (almost) no cost',
                 PAPER_EXIT, 'no analysed BNTT run', MISSING, {})]
  ee = rep['early_exit']
  g = np.asarray(ee['mean_gamma'])
  fifth = max(1, len(g) // 5)
  first, last = float(g[:fifth].mean()), float(g[-fifth:].mean())
  ratio = last / first if first else float('nan')
  ablations = {}
  for n in ABLATIONS:
    a = r.get(n)
    if a and a['report'] is not None and a['report']['early_exit']['gamma'] is not None:
      ga = np.asarray(a['report']['early_exit']['mean_gamma'])
      wd = a['config']['train']['weight_decay'] if a['config'] else '?'
      e = a['report']['energy']
      ablations[n] = {'weight_decay': wd, 'first': float(ga[:fifth].mean()),
                      'last': float(ga[-fifth:].mean()), 'accuracy': _acc(a),
                      'spikes': _spikes(a), 'snn_over_ann': e['snn_total_pj'] / e['ann_total_pj']}
  extra = ''.join(f'; with weight decay {v["weight_decay"]:g}: first {v["first"]:.3f}, last '
                  f'{v["last"]:.3f} (ratio {v["last"] / v["first"]:.3f}), accuracy '
                  f'{_pct(v["accuracy"])}, {v["spikes"]:.0f} spikes per image, SNN / ANN '
                  f'energy {v["snn_over_ann"]:.3f}' for v in ablations.values())
  decay = _row(
      '3a. The learnt gamma of late time steps decays (late steps contribute little)',
      PAPER_GAMMA,
      f'mean gamma over layers: first {fifth} steps {first:.3f}, last {fifth} steps {last:.3f} '
      f'(ratio {ratio:.3f}); minimum {g.min():.3f} at step {int(g.argmin()) + 1}' + extra,
      HOLDS if ratio <= GAMMA_DECAY else FAILS,
      {'first': first, 'last': last, 'ratio': ratio, 'threshold': GAMMA_DECAY,
       'mean_gamma': g.tolist(), 'ablations': ablations})
  acc_k = ee['accuracy_after_k']
  full = acc_k[-1]
  within = next(k + 1 for k, a in enumerate(acc_k) if a >= full - EXIT_WITHIN)
  steps = len(acc_k)
  exit_step, at_exit = ee['exit_step'], ee['accuracy_at_exit']
  verdict = HOLDS if exit_step < steps and at_exit >= full - EXIT_WITHIN else FAILS
  early = _row(
      '3b. Temporal early exit: the gamma rule cuts steps at (almost) no cost',
      PAPER_EXIT,
      f'gamma rule (threshold {ee["threshold"]}): exit at step {exit_step} of {steps}, '
      f'{_pct(at_exit)} (all steps {_pct(full)}); the fewest steps within '
      f'{100 * EXIT_WITHIN:g} point of all steps: {within}',
      verdict, {'exit_step': exit_step, 'accuracy_at_exit': at_exit, 'accuracy_all': full,
                'steps_within': within, 'accuracy_after_k': acc_k})
  return [decay, early]


def _spikes(run: Optional[dict]) -> Optional[float]:
  if run is None or run['report'] is None or run['report']['spike_rates'] is None:
    return None
  return run['report']['spike_rates']['total_spikes']


def _claim_spikes(r: dict) -> dict:
  sb, sn = _spikes(r.get('bntt')), _spikes(r.get('none'))
  b = r.get('bntt')
  trend = ''
  if b and b['steps']:
    first, last = b['steps'][0]['spikes_per_image'], b['steps'][-1]['spikes_per_image']
    trend = f'; during training BNTT went from {first:.0f} to {last:.0f} spikes per image'
  if sb is None or sn is None:
    verdict = MISSING
  else:
    verdict = HOLDS if sb < sn else FAILS
  return _row(
      '4. BNTT infers with few spikes: fewer than the un-normalised baseline',
      'Table S1 (CIFAR-10 VGG9): BNTT 13.1e4 spikes at T 25, the surrogate baseline 142e4 at '
      'T 100 (its lower T explains part of the gap; here both run at the same T)',
      f'hidden-layer spikes per test image over all steps: BNTT {sb or float("nan"):.0f}, '
      f'norm=none {sn or float("nan"):.0f} (same T)' + trend,
      verdict, {'bntt': sb, 'none': sn})


def _claim_energy(r: dict) -> dict:
  b = r.get('bntt')
  if b is None or b['report'] is None:
    return _row('5a. BNTT\'s compute energy is a fraction of its ANN twin\'s',
                'Supplementary D, E (45 nm: E_MAC 4.6 pJ, E_AC 0.9 pJ)', 'no analysed BNTT run',
                MISSING, {})
  e = b['report']['energy']
  ratio = e['snn_total_pj'] / e['ann_total_pj']
  tn = e['truenorth']
  return _row(
      '5a. BNTT\'s compute energy is a fraction of its ANN twin\'s',
      'Supplementary D, E: SNN energy = FLOPs x input spike rate x E_AC against FLOPs x E_MAC '
      '(45 nm CMOS)',
      f'SNN / ANN compute energy {ratio:.3f} ({e["snn_total_pj"] / 1e6:.2f} vs '
      f'{e["ann_total_pj"] / 1e6:.2f} uJ per image); TrueNorth energy {tn["energy"]:.0f} units',
      HOLDS if ratio < 1 else FAILS, {'snn_over_ann': ratio, 'snn_pj': e['snn_total_pj'],
                                      'ann_pj': e['ann_total_pj']})


def _attacks(run: Optional[dict]) -> Optional[Dict[str, float]]:
  if run is None or run['report'] is None:
    return None
  rob = run['report']['robustness']
  out = {}
  for kind, key, label in (('gaussian', 'sigmas', 'noise'), ('fgsm', 'epsilons', 'FGSM'),
                           ('pgd', 'epsilons', 'PGD')):
    for x, a in zip(rob[kind][key], rob[kind]['accuracy']):
      if x > 0:
        out[f'{label} {x:g}'] = a
  return out


def _claim_robustness(r: dict) -> dict:
  att = {n: _attacks(r.get(n)) for n in ROBUST_RUNS}
  if att['bntt'] is None or not att['bntt']:
    return _row('5b. BNTT is more robust than the baselines to noise and adversarial attacks',
                'Abstract; settings not in the material', 'no analysed BNTT run', MISSING, {})
  others = [n for n in ('ann', 'none') if att[n]]
  wins = [all(att['bntt'][k] >= att[n][k] for n in others) for k in att['bntt']]
  verdict = (MISSING if not others else HOLDS if all(wins) else PARTLY if any(wins)
             else FAILS)
  measured = '; '.join(
      f'{k}: ' + ', '.join(f'{n} {_pct(att[n][k]) if att[n] else "n/a"}' for n in ROBUST_RUNS)
      for k in att['bntt'])
  return _row(
      '5b. BNTT is more robust than the ANN twin and the baseline to noise and adversarial '
      'attacks',
      'Abstract (random noise, adversarial attacks); sigmas, epsilons and attacks are not in '
      'the material',
      f'accuracy on {r["bntt"]["report"]["robustness"]["num_examples"]} test images (pixel '
      f'units): {measured}', verdict, {'accuracy': att})


def bntt_runs(runs: dict) -> Dict[str, dict]:
  """Per analysed BNTT run (the subject, its T variants and the ablations): weight decay, T,
  accuracy, the mean gamma of the first and last fifth of the steps, the gamma rule's exit step
  and the accuracy there, the fewest steps within ``EXIT_WITHIN`` of all steps, spikes per
  image and SNN / ANN energy: what moves gamma, and what follows from it."""
  out = {}
  for n, run in runs.items():
    rep = run['report']
    if rep is None or rep['early_exit'].get('gamma') is None or run['config'] is None:
      continue
    ee, e = rep['early_exit'], rep['energy']
    g = np.asarray(ee['mean_gamma'])
    fifth = max(1, len(g) // 5)
    acc_k = ee['accuracy_after_k']
    out[n] = {'weight_decay': run['config']['train']['weight_decay'], 'timesteps': len(g),
              'accuracy': _acc(run), 'gamma_first': float(g[:fifth].mean()),
              'gamma_last': float(g[-fifth:].mean()), 'exit_step': ee['exit_step'],
              'accuracy_at_exit': ee['accuracy_at_exit'], 'accuracy_all_steps': acc_k[-1],
              'steps_within': next(k + 1 for k, a in enumerate(acc_k)
                                   if a >= acc_k[-1] - EXIT_WITHIN),
              'spikes_per_image': _spikes(run),
              'snn_over_ann': e['snn_total_pj'] / e['ann_total_pj'],
              'analysed_examples': rep['accuracy']['num_examples']}
  return out


def build(workdir: str, names: Sequence[str], config: dict, provenance: dict) -> dict:
  """The claims table of the runs ``names`` in ``workdir`` (their files only)."""
  runs = {n: read_run(os.path.join(workdir, n)) for n in names
          if os.path.isdir(os.path.join(workdir, n))}
  rows = (_claim_ann_and_baseline(runs) + [_claim_latency(runs)] + _claim_gamma(runs)
          + [_claim_spikes(runs), _claim_energy(runs), _claim_robustness(runs)])
  table = {}
  for n in names:
    run = runs.get(n)
    s = run['summary'] if run else None
    table[n] = {
        'state': _state(run),
        'accuracy': s['final_test_accuracy'] if s else None,
        'accuracy_std': s['final_test_accuracy_std'] if s else None,
        'draws': len(s['final_test_accuracies']) if s else None,
        'timesteps': s['timesteps'] if s else None,
        'norm': s['norm'] if s else None,
        'best_test_accuracy': s['best_test_accuracy'] if s else None,
        'spikes_per_image': _spikes(run),
        'wall_seconds': s['wall_seconds'] if s else None,
        'epochs': [{'epoch': e['epoch'], 'test_accuracy': e['test_accuracy'],
                    'train_loss': e['train_loss']} for e in run['epochs']] if run else [],
    }
  return {'provenance': provenance, 'config': config, 'rows': rows, 'runs': table,
          'bntt_runs': bntt_runs(runs), 'workdir': os.path.abspath(workdir), '_runs': runs}


def _scale(config: dict) -> str:
  d, m, t = config['data'], config['model'], config['train']
  size = f'{d["image_size"]}x{d["image_size"]}' if d.get('image_size') else 'full-size'
  n = f'{d["train_examples"]:,} class-balanced' if d.get('train_examples') else 'all'
  kwargs = dict(m.get('arch_kwargs') or {})
  return (f'{d["name"]}: {size} images, {n} training images, {t["epochs"]} epochs at batch '
          f'{t["batch_size"]}; `{m["arch"]}`{" " + str(kwargs) if kwargs else ""}, '
          f'T {m["timesteps"]}; {t["optimizer"]} lr {t["learning_rate"]} ({t["lr_schedule"]}), '
          f'momentum {t["momentum"]}, weight decay {t["weight_decay"]}')


def markdown(result: dict, plot_dir: str) -> str:
  p, rows, runs = result['provenance'], result['rows'], result['runs']
  rel = os.path.basename(plot_dir)
  lines = [f'# The paper\'s claims on {result["config"]["data"]["name"]}', '',
           'Generated by `experiments/reproduce.py` from the runs\' own files; do not edit by '
           'hand.', '',
           f'- Command: `{p["command"]}`',
           f'- Machine: {p["machine"]}',
           f'- Commit: {p["commit"]}{" (with uncommitted changes)" if p.get("dirty") else ""}; '
           f'{p["date"]}',
           f'- Scale: {_scale(result["config"])}', '',
           '## Claims', '', '| claim | the paper | measured here | verdict |',
           '|---|---|---|---|']
  for r in rows:
    lines.append(f'| {r["claim"]} | {r["paper"]} | {r["measured"]} | **{r["verdict"]}** |')
  lines += ['', f'Verdict margins, fixed before the runs: close to the ANN twin = within '
            f'{100 * CLOSE_TO_ANN:g} points; falls behind = at least {100 * BEHIND:g} point '
            f'lower; early exit at no cost = within {100 * EXIT_WITHIN:g} point; gamma decays = '
            f'the last fifth of the steps at most {GAMMA_DECAY:g} of the first fifth.', '',
            '## Runs', '', '| run | T | norm | final test accuracy | draws | best epoch '
            'accuracy | spikes / image | wall (s) |', '|---|---|---|---|---|---|---|---|']
  for n, t in runs.items():
    sp = f'{t["spikes_per_image"]:.0f}' if t['spikes_per_image'] is not None else '-'
    wall = f'{t["wall_seconds"]:.0f}' if t['wall_seconds'] is not None else '-'
    lines.append(f'| {n} | {t["timesteps"] or "-"} | {t["norm"] or "-"} | {t["state"]} | '
                 f'{t["draws"] or "-"} | {_pct(t["best_test_accuracy"])} | {sp} | {wall} |')
  lines += ['', 'Final test accuracy: the last epoch\'s parameters on the whole test split '
            '(mean ± std over the Poisson draws); best epoch accuracy: per-epoch evaluation '
            '(one draw, on the config\'s `eval.epoch_examples` subset where set). The '
            'comparators\' analyses (spikes, accuracy after k steps) use a class-balanced '
            'test subset (`--comparator_test_examples`); BNTT\'s use the whole test split.', '',
            '']
  if result.get('bntt_runs'):
    lines += ['## The BNTT runs: what moves gamma, and what follows', '',
              '| run | weight decay | T | accuracy | gamma, first / last fifth of the steps | '
              'gamma exit step (accuracy there / all steps) | steps within '
              f'{100 * EXIT_WITHIN:g} pt | spikes / image | SNN / ANN energy |',
              '|---|---|---|---|---|---|---|---|---|']
    for n, b in result['bntt_runs'].items():
      lines.append(
          f'| {n} | {b["weight_decay"]:g} | {b["timesteps"]} | {_pct(b["accuracy"])} | '
          f'{b["gamma_first"]:.3f} / {b["gamma_last"]:.3f} | {b["exit_step"]} '
          f'({_pct(b["accuracy_at_exit"])} / {_pct(b["accuracy_all_steps"])}) | '
          f'{b["steps_within"]} | {b["spikes_per_image"]:.0f} | {b["snn_over_ann"]:.3f} |')
    lines += ['', 'Exit, steps and spikes from each run\'s analysis pass (one Poisson draw; '
              'BNTT at the config\'s T on the whole test split, the others on the comparator '
              'subset).', '']
  lines += ['## Plots', '']
  for f, what in PLOTS:
    if os.path.exists(os.path.join(plot_dir, f)):
      lines += [f'![{what}]({rel}/{f})', '', f'*{what}*', '']
  return '\n'.join(lines) + '\n'


PLOTS = (('training.png', 'Training loss, accuracy and spikes per image at every logging step'),
         ('gamma_over_training.png', 'BNTT: mean gamma per time step during training'),
         ('gamma_heatmap.png', 'BNTT: learnt gamma per layer and time step, and the exit step'),
         ('gamma_per_step.png', 'Learnt mean gamma per time step, BNTT runs and ablations'),
         ('accuracy_vs_steps.png', 'Accuracy after k steps (early exit), per run'),
         ('accuracy_vs_latency.png', 'Accuracy against latency'),
         ('spike_heatmap.png', 'BNTT: spikes per neuron per layer and time step'),
         ('spike_rates.png', 'Spike rate per layer, per run'),
         ('energy.png', 'Compute energy, SNN against ANN'),
         ('robustness.png', 'Robustness: Gaussian noise, FGSM and PGD'))


def write(result: dict, out: str) -> List[str]:
  """``out`` (Markdown), its JSON beside it and the plots in ``out`` without ``.md``."""
  runs = result.pop('_runs')
  plot_dir = os.path.splitext(out)[0]
  os.makedirs(plot_dir, exist_ok=True)
  reports = [dict(run['report'], name=n) for n, run in runs.items() if run['report']]
  plots.training_curves({n: run['steps'] for n, run in runs.items()},
                        os.path.join(plot_dir, 'training.png'),
                        not_spiking=[n for n, run in runs.items() if run['config'] and
                                     run['config']['model']['neuron'] != 'lif'])
  b = runs.get('bntt')
  if b and b['steps']:
    plots.gamma_over_training(b['steps'], os.path.join(plot_dir, 'gamma_over_training.png'))
  if b and b['report']:
    plots.gamma_heatmap(b['report']['early_exit'], os.path.join(plot_dir, 'gamma_heatmap.png'))
    plots.spike_heatmap(b['report']['spike_rates'], os.path.join(plot_dir, 'spike_heatmap.png'))
  curves = {n: run['report']['early_exit']['mean_gamma'] for n, run in runs.items()
            if run['report'] and run['report']['early_exit'].get('gamma') is not None}
  if curves:
    plots.gamma_per_step(curves, os.path.join(plot_dir, 'gamma_per_step.png'))
  snn = [r for r in reports if r['spike_rates'] is not None]
  if snn:
    plots.accuracy_vs_steps(snn, os.path.join(plot_dir, 'accuracy_vs_steps.png'))
    plots.spike_rate_bars(snn, os.path.join(plot_dir, 'spike_rates.png'))
  if reports:
    plots.energy_bars(reports, os.path.join(plot_dir, 'energy.png'))
    robust = [r for r in reports if r['robustness']['fgsm']['epsilons']]
    if robust:
      plots.robustness_curves(robust, os.path.join(plot_dir, 'robustness.png'))
  trained = [(t['timesteps'], t['accuracy']) for n, t in result['runs'].items()
             if n.startswith('bntt') and n not in ABLATIONS and t['accuracy'] is not None]
  if trained:
    after_k = b['report']['early_exit']['accuracy_after_k'] if b and b['report'] else []
    base = {f'{n} (T {t["timesteps"]})': t['accuracy'] for n, t in result['runs'].items()
            if n in ('none', 'ann') and t['accuracy'] is not None}
    plots.accuracy_vs_latency(trained, after_k, base,
                              os.path.join(plot_dir, 'accuracy_vs_latency.png'))
  md = markdown(result, plot_dir)
  files.atomic_write(out, lambda f: f.write(md))
  json_path = os.path.splitext(out)[0] + '.json'
  files.atomic_write(json_path, lambda f: json.dump(result, f, indent=1, default=float))
  return [out, json_path, plot_dir]
