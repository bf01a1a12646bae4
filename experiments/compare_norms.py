"""BNTT against its successors on equal terms: train each norm, analyse, tabulate.

    python experiments/compare_norms.py --config=configs/digits.py \
        --norms=bntt,tebn,tdbn,bn,none --seeds=3 --workdir=runs/compare_digits

For every norm and seed (``config.seed = 0..seeds-1``; everything else is the
config's, identical for all norms) this trains a run with
``bntt_jax.train.train_and_evaluate`` into ``WORKDIR/<norm>/seed<s>`` (a
finished run is reused: rerunning the command resumes), analyses it with
``bntt_jax.analyze`` (one evaluation pass of all T steps + FGSM at
``--fgsm_epsilon``), then writes

* ``WORKDIR/compare.json``: per norm, every seed's numbers and their mean/std;
* ``WORKDIR/compare.md``: one table, mean +- std over seeds;
* ``WORKDIR/accuracy_vs_steps.png``: test accuracy after running k steps.

Columns: test accuracy (``final_test_accuracy``: last epoch, full test split,
3 Poisson draws); hidden-layer spikes per image (all T steps); SNN / ANN
compute energy (spec section 8: AC energy of the SNN over MAC energy of the
same architecture as an ANN); the gamma early-exit step and the accuracy
there (BNTT only: the other norms have no per-step gamma); the steps after
which accuracy is within 1 point of the all-step accuracy (any norm); FGSM
accuracy at one epsilon ([0, 1] pixel units).

Every norm runs the ``layer`` schedule (bn, tdbn and tebn pool statistics over
time and cannot be trained step by step).

Run from the repository root with the package importable (``pip install -e .``). Bad input
(a flag, a config key or value, a norm, a damaged ``summary.json`` of a reused run) stops the
command with one ``error:`` line and exit code 2 (:mod:`bntt_jax.cli`).
"""
from __future__ import annotations

import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from bntt_jax import cli
from bntt_jax import config_lib
from bntt_jax import platform
from bntt_jax import records
from bntt_jax.errors import ConfigError, DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
DEFAULT_CONFIG = os.path.join(ROOT, 'configs', 'digits.py')


def define_flags():
  """The command line (defined when run as a script, so importing defines nothing)."""
  config_flags.DEFINE_config_file('config', DEFAULT_CONFIG,
                                  'Training config shared by every norm.', lock_config=True)
  flags.DEFINE_list('norms', ['bntt', 'tebn', 'tdbn', 'bn', 'none'], 'Norms to compare.')
  flags.DEFINE_integer('seeds', 3, 'Seeds 0..seeds-1 per norm.')
  flags.DEFINE_string('workdir', None, 'Output directory (default runs/compare_<config>).')
  flags.DEFINE_float('fgsm_epsilon', 0.1, 'FGSM epsilon, L_inf in [0, 1] pixel units.')
  flags.DEFINE_float('within', 0.01, 'Accuracy gap defining "steps to within" (fraction).')


def steps_within(acc_after_k, within: float) -> int:
  """The fewest steps k whose accuracy is at least the all-step accuracy - ``within``."""
  final = acc_after_k[-1]
  return next(k + 1 for k, a in enumerate(acc_after_k) if a >= final - within)


def run_one(config, workdir: str, fgsm_epsilon: float, within: float) -> dict:
  """Train (or reuse) one run, analyse it; the numbers of one table cell."""
  # pylint: disable=g-import-not-at-top
  from bntt_jax.analysis import runs as analysis_runs
  from bntt_jax import train
  # pylint: enable=g-import-not-at-top
  t0 = time.time()
  summary = records.read_summary(workdir)
  if summary is None:
    for note in records.check_workdir(workdir):   # its config.json and metrics.jsonl intact
      logging.warning('%s', note)
    summary = train.train_and_evaluate(config, workdir)
  train_s = time.time() - t0
  t0 = time.time()
  # The analysis settings of this table, also for a run reused from an earlier command.
  overrides = [f'analysis.fgsm_epsilons=({fgsm_epsilon},)', 'analysis.pgd_epsilons=()',
               'analysis.noise_sigmas=()']
  report = analysis_runs.analyze_run(analysis_runs.restore(workdir, overrides))
  analyse_s = time.time() - t0
  ex, en = report['early_exit'], report['energy']
  acc_k = ex['accuracy_after_k']
  return {
      'test_accuracy': summary['final_test_accuracy'],
      'spikes_per_image': report['spike_rates']['total_spikes'],
      'snn_over_ann_energy': en['snn_total_pj'] / en['ann_total_pj'],
      'exit_step': ex['exit_step'],
      'accuracy_at_exit': ex['accuracy_at_exit'],
      'steps_within': steps_within(acc_k, within),
      'fgsm_accuracy': report['robustness']['fgsm']['accuracy'][0],
      'accuracy_after_k': acc_k,
      'train_seconds': train_s,
      'analyse_seconds': analyse_s,
  }


def aggregate(rows):
  """Mean and std over seeds of every number (``None`` where a norm has none)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  out = {}
  for key in rows[0]:
    vals = [r[key] for r in rows]
    if any(v is None for v in vals):
      out[key] = None
    elif isinstance(vals[0], list):
      out[key] = np.mean(np.asarray(vals, np.float64), axis=0).tolist()
    else:
      out[key] = {'mean': float(np.mean(vals)), 'std': float(np.std(vals))}
  return out


def markdown(results: dict, config, seeds: int, fgsm_epsilon: float, within: float) -> str:
  def cell(v, fmt='{:.4f}', scale=1.0):
    if v is None:
      return '-'
    return (fmt + ' ± ' + fmt).format(v['mean'] * scale, v['std'] * scale)
  head = (f'Config `{config.model.arch}` on `{config.data.name}`, T {config.model.timesteps}, '
          f'{config.train.epochs} epochs, {seeds} seeds (mean ± std).\n\n'
          '| norm | test accuracy (%) | spikes / image | SNN / ANN energy | gamma exit step | '
          f'accuracy at exit (%) | steps to within {within * 100:g} pt | '
          f'FGSM eps {fgsm_epsilon:g} (%) |\n|---|---|---|---|---|---|---|---|\n')
  lines = []
  for norm, r in results.items():
    a = r['mean_std']
    lines.append('| ' + ' | '.join([
        norm, cell(a['test_accuracy'], '{:.2f}', 100), cell(a['spikes_per_image'], '{:.0f}'),
        cell(a['snn_over_ann_energy'], '{:.3f}'), cell(a['exit_step'], '{:.1f}'),
        cell(a['accuracy_at_exit'], '{:.2f}', 100), cell(a['steps_within'], '{:.1f}'),
        cell(a['fgsm_accuracy'], '{:.2f}', 100)]) + ' |')
  return head + '\n'.join(lines) + '\n'


def plot(results: dict, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(6, 4))
  ax = fig.add_subplot()
  for norm, r in results.items():
    acc = r['mean_std']['accuracy_after_k']
    ax.plot(range(1, len(acc) + 1), [100 * a for a in acc], marker='o', ms=3, label=norm)
  ax.set_xlabel('time steps run (k)')
  ax.set_ylabel('test accuracy after k steps (%)')
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def main(argv):
  if len(argv) > 1:
    cli.fail(f'argument {argv[1]!r} is not accepted: flags only')
  platform.configure_xla()
  import ml_collections  # pylint: disable=g-import-not-at-top
  from bntt_jax import norms as norms_lib  # pylint: disable=g-import-not-at-top
  base = FLAGS.config
  for norm in FLAGS.norms:
    if norm not in norms_lib.NORMS:
      print(f'error: norm {norm!r} is not accepted: one of {", ".join(sorted(norms_lib.NORMS))}',
            file=sys.stderr)
      sys.exit(2)
  if FLAGS.seeds < 1:
    print(f'error: seeds {FLAGS.seeds} is not accepted: an integer >= 1', file=sys.stderr)
    sys.exit(2)
  name = os.path.splitext(os.path.basename(config_flags.get_config_filename(FLAGS['config'])))[0]
  out = FLAGS.workdir or os.path.join('runs', f'compare_{name}')
  os.makedirs(out, exist_ok=True)
  platform.set_matmul_precision(base.matmul_precision)
  results = {}
  start = time.time()
  for norm in FLAGS.norms:
    rows = []
    for seed in range(FLAGS.seeds):
      config = ml_collections.ConfigDict(base.to_dict())
      config.model.norm = norm
      config.model.schedule = 'layer'
      config.seed = seed
      config.analysis.fgsm_epsilons = (FLAGS.fgsm_epsilon,)
      config.analysis.pgd_epsilons = ()
      config.analysis.noise_sigmas = ()
      try:
        row = run_one(config, os.path.join(out, norm, f'seed{seed}'), FLAGS.fgsm_epsilon,
                      FLAGS.within)
      except (ConfigError, DataError) as e:
        cli.fail(str(e))
      logging.info('%s seed %d: accuracy %.4f, %.0f spikes/image, FGSM %.4f (%.0f s + %.0f s)',
                   norm, seed, row['test_accuracy'], row['spikes_per_image'],
                   row['fgsm_accuracy'], row['train_seconds'], row['analyse_seconds'])
      rows.append(row)
    results[norm] = {'seeds': rows, 'mean_std': aggregate(rows)}
  wall = time.time() - start
  config_desc = {k: base[k].to_dict() if hasattr(base[k], 'to_dict') else base[k]
                 for k in ('model', 'train', 'data')}
  with open(os.path.join(out, 'compare.json'), 'w') as f:
    json.dump({'config': config_desc, 'seeds': FLAGS.seeds, 'fgsm_epsilon': FLAGS.fgsm_epsilon,
               'within': FLAGS.within, 'wall_seconds': wall, 'results': results}, f, indent=1)
  table = markdown(results, base, FLAGS.seeds, FLAGS.fgsm_epsilon, FLAGS.within)
  with open(os.path.join(out, 'compare.md'), 'w') as f:
    f.write(table + f'\nWall time: {wall:.0f} s.\n')
  plot(results, os.path.join(out, 'accuracy_vs_steps.png'))
  print(table)
  print(f'wall seconds: {wall:.0f}; written to {os.path.abspath(out)}')


if __name__ == '__main__':
  platform.reexec_with_cpu_tunables()
  try:   # the config file and each --config.KEY, before ml_collections reads them
    config_lib.check_command_line(sys.argv, DEFAULT_CONFIG)
  except ConfigError as e:
    cli.fail(str(e))
  define_flags()
  app.run(main, flags_parser=cli.parse_flags)
