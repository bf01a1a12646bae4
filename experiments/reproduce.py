"""The paper's claims, measured: train BNTT and its comparators, analyse them, write the report.

    python experiments/reproduce.py --config=configs/fashion_mnist.py \
        --config.data.dir=/usr/share/datasets/fashion-mnist
    python experiments/reproduce.py --config=configs/cifar10.py      # a GPU with the data

Every run is the config's recipe with one change (``RUNS``): BNTT at the config's T (the
claims' subject; ``eval.num_keys`` Poisson draws on the full test split), the surrogate-gradient
baseline without normalisation (``norm=none``), the other norms (``bn``, ``tdbn``, ``tebn``),
the ANN twin (ReLU, one step, direct input, BN with a shift) and BNTT at lower latencies
(T 10 and T 5). Each run is an ordinary workdir, ``WORKDIR/<run>`` (``train.train_and_evaluate``:
rerunning the command resumes a run where it stopped and reuses a finished one; a run that
stops on a non-finite loss is recorded as failed, with its message, and the others go on).

Then each run is analysed once (``bntt_jax.analysis``: one pass of all T steps for accuracy
after every k and spikes per layer and step, energy, robustness; ``WORKDIR/<run>/report.json``,
reused while it is newer than the run's summary), and the claims table is written from the runs'
own files: ``--out`` (default ``docs/results/<config>.md``), its JSON beside it and its plots in
``docs/results/<config>/``. ``bntt_jax.analysis.claims`` computes the rows; nothing in the
table is typed in by hand.

``--runs`` picks a subset (e.g. ``--runs=bntt,none`` for a first look); ``--stages`` runs only
some of ``train``, ``analyze`` and ``report``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags

from bntt_jax import cli
from bntt_jax import config_lib
from bntt_jax import errors
from bntt_jax import metrics as metrics_lib
from bntt_jax import platform
from bntt_jax import records
from bntt_jax.analysis import claims
from bntt_jax.errors import ConfigError, DataError, NonFiniteLossError

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ('train', 'analyze', 'report')


DEFAULT_CONFIG = os.path.join(ROOT, 'configs', 'fashion_mnist.py')


def define_flags():
  """The command line (defined when run as a script, so importing defines nothing)."""
  config_flags.DEFINE_config_file('config', DEFAULT_CONFIG, 'The recipe every run shares.',
                                  lock_config=False)
  flags.DEFINE_string('workdir', None, 'Where the runs live (default runs/reproduce_<config>).')
  flags.DEFINE_list('runs', list(claims.RUN_NAMES), 'The runs to train and analyse, of '
                    + ', '.join(claims.RUNS) + '.')
  flags.DEFINE_list('stages', list(STAGES), f'Of {", ".join(STAGES)}.')
  flags.DEFINE_string('out', None, 'The report (default docs/results/<config>.md).')
  flags.DEFINE_integer('comparator_test_examples', 2000,
                       'Analyse the comparators (not BNTT at the config\'s T) on a class-'
                       'balanced subset of this many test examples (0: all).')


def run_config(base: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """The config of run ``name``: ``base`` with the run's changes (``claims.RUNS``)."""
  config = ml_collections.ConfigDict(base.to_dict())
  for path, value in claims.RUNS[name].items():
    *parents, leaf = path.split('.')
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def train_run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Train (or resume, or reuse) one run; its summary, or ``{'failed': message}``."""
  from bntt_jax import train  # pylint: disable=g-import-not-at-top  (loads JAX)
  summary = records.read_summary(workdir)
  if summary is not None:
    return summary
  failed_path = os.path.join(workdir, claims.FAILED_FILE)
  if os.path.exists(failed_path):
    return metrics_lib.read_json(failed_path)
  for note in records.check_workdir(workdir):   # its config.json and metrics.jsonl intact
    logging.warning('%s', note)
  try:
    return train.train_and_evaluate(config, workdir)
  except NonFiniteLossError as e:
    record = {'failed': str(e)}
    metrics_lib.write_json(failed_path, record)
    return record


def analyze(workdir: str, overrides: list) -> dict:
  """The run's analysis report (``report.json``), computed once per finished run."""
  from bntt_jax import analysis  # pylint: disable=g-import-not-at-top
  from bntt_jax.analysis import runs  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, 'report.json')
  summary = os.path.join(workdir, 'summary.json')
  if os.path.exists(path) and os.path.getmtime(path) >= os.path.getmtime(summary):
    try:
      return metrics_lib.read_json(path)
    except ValueError:   # damaged (a full disk, a kill): rebuilt from the run's checkpoint
      logging.warning('%s cannot be read: analysing the run again to rebuild it', path)
  report = runs.analyze_run(runs.restore(workdir, overrides))
  analysis.write_report(report, workdir)
  return report


def provenance(config_arg: str) -> dict:
  """The command, machine and commit that made the report."""
  def git(*args):
    try:
      return subprocess.run(['git', '-C', ROOT, *args], capture_output=True, text=True,
                            check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
      return ''
  return {'command': ' '.join(['python', 'experiments/reproduce.py'] + sys.argv[1:]),
          'config': config_arg, 'commit': git('rev-parse', '--short', 'HEAD'),
          'dirty': bool(git('status', '--porcelain', '--untracked-files=no')),
          'machine': platform.describe_machine(),
          'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'argument {argv[1]!r} is not accepted: flags only')
  base = FLAGS.config
  try:
    names = claims.check_runs(FLAGS.runs)
    stages = [s for s in FLAGS.stages if s]
    for s in stages:
      errors.check_one_of('stage', s, STAGES)
    config_lib.validate(base)
  except ConfigError as e:
    cli.fail(str(e))
  config_path = config_flags.get_config_filename(FLAGS['config'])
  stem = os.path.splitext(os.path.basename(config_path.split(':')[0]))[0]
  workdir = FLAGS.workdir or os.path.join('runs', f'reproduce_{stem}')
  out = FLAGS.out or os.path.join(ROOT, 'docs', 'results', f'{stem}.md')
  platform.configure_xla()
  platform.set_matmul_precision(base.matmul_precision)
  os.makedirs(workdir, exist_ok=True)
  try:
    run_stages(base, names, stages, workdir, out, config_path)
  except (ConfigError, DataError) as e:   # bad data, a damaged record: one line, exit 2
    cli.fail(str(e))


def run_stages(base, names, stages, workdir: str, out: str, config_path: str) -> None:
  if 'train' in stages:
    for name in names:
      t0 = time.time()
      result = train_run(run_config(base, name), os.path.join(workdir, name))
      logging.info('run %s: %s (%.0f s)', name, result.get('failed') or
                   f'final test accuracy {result["final_test_accuracy"]:.4f}', time.time() - t0)
  if 'analyze' in stages:
    for name in names:
      w = os.path.join(workdir, name)
      if records.read_summary(w) is not None:
        t0 = time.time()
        analyze(w, claims.analysis_overrides(name, FLAGS.comparator_test_examples))
        logging.info('analysed %s (%.0f s)', name, time.time() - t0)
  if 'report' in stages:
    result = claims.build(workdir, names, base.to_dict(), provenance(config_path))
    paths = claims.write(result, out)
    logging.info('report: %s', ', '.join(paths))


if __name__ == '__main__':
  platform.reexec_with_cpu_tunables()
  try:
    config_lib.check_command_line(sys.argv, DEFAULT_CONFIG)
  except ConfigError as e:
    cli.fail(str(e))
  define_flags()
  app.run(main, flags_parser=cli.parse_flags)
