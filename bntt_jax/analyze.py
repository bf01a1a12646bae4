"""Analyse finished runs: spike rates, compute energy, early exit, robustness.

    python -m bntt_jax.analyze --workdir=runs/digits
    python -m bntt_jax.analyze --workdir=runs/digits --config.analysis.pgd_steps=20 \
        --config.analysis.fgsm_epsilons='(0.0, 0.1)'
    python -m bntt_jax.analyze --workdir=runs/bntt --workdir=runs/none --workdir=runs/ann \
        [--outdir=runs/compare] [--reference=1]

Each workdir gets ``W/report.json``, ``W/report.md`` and ``W/plots/*.png``
(:mod:`bntt_jax.analysis`). With several workdirs a side-by-side comparison
(``comparison.json``, ``comparison.md``, ``plots/compare_*.png``) goes to
``--outdir`` (default ``<first workdir>/comparison``); TrueNorth energies there
are normalised by run ``--reference``.

``--config.<path>=<value>`` overrides a field of every run's saved config,
as ``main`` does for training (e.g. ``--config.eval.batch_size=500``). The
analysis settings live under ``config.analysis`` (fields of
:class:`bntt_jax.analysis.Settings`); a run whose config has no ``analysis``
section gets :func:`analysis_config`'s defaults. Noise and attack units are
[0, 1] pixels (see :mod:`bntt_jax.analysis.robustness`).

The Poisson key is the training run's first evaluation key (``fold_in`` of
the third split of ``PRNGKey(config.seed)``, see :mod:`bntt_jax.train`), so the
clean accuracy here equals the run's last per-epoch test accuracy.
"""
from __future__ import annotations

import ast
import dataclasses
import os
import sys
from typing import List, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import ml_collections

from bntt_jax import default_config
from bntt_jax.errors import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_multi_string('workdir', None, 'A finished run directory (config.json and '
                          'checkpoints/); repeat for a side-by-side report.')
flags.DEFINE_string('outdir', None, 'Where the side-by-side report goes (several workdirs); '
                    'default: <first workdir>/comparison.')
flags.DEFINE_integer('reference', 0, 'Index of the run whose TrueNorth energy normalises the '
                     'others in the side-by-side report.')

OVERRIDE_PREFIX = '--config.'
_overrides: List[str] = []   # the --config.* arguments, set by parse_flags


def analysis_config() -> ml_collections.ConfigDict:
  """``config.analysis``: the fields and defaults of :class:`bntt_jax.analysis.Settings`."""
  return default_config.get_config().analysis


def split_overrides(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
  """``argv`` without the ``--config.<path>=<value>`` arguments, and those as ``path=value``."""
  rest, overrides = [], []
  for a in argv:
    if a.startswith(OVERRIDE_PREFIX):
      if '=' not in a:
        raise ConfigError('override', a, 'the form --config.<path>=<value>')
      overrides.append(a[len(OVERRIDE_PREFIX):])
    else:
      rest.append(a)
  return rest, overrides


def _parse_value(text: str, current):
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text   # a bare string
  if isinstance(current, bool):
    if isinstance(value, str) and value.lower() in ('true', 'false'):
      return value.lower() == 'true'
  if isinstance(current, (list, tuple)):
    value = value if isinstance(value, (list, tuple)) else (value,)
    return type(current)(value)
  if isinstance(current, str) and not isinstance(value, str):
    return text
  return value


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Sequence[str]) -> ml_collections.ConfigDict:
  """Set ``path=value`` fields (values as Python literals, bare strings allowed).

  The path must exist; the value must fit the field's type (ConfigDict checks).
  """
  for item in overrides:
    path, _, text = item.partition('=')
    *parents, leaf = path.split('.')
    node = config
    for p in parents:
      if not isinstance(node, ml_collections.ConfigDict) or p not in node:
        raise ConfigError('config key', path, f'a path into the run\'s config ({p!r} is not)')
      node = node[p]
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      raise ConfigError('config key', path, f'one of {", ".join(sorted(node.keys()))}'
                        if isinstance(node, ml_collections.ConfigDict) else 'a config field')
    try:
      node[leaf] = _parse_value(text, node[leaf])
    except TypeError as e:
      raise ConfigError('config value', item, f'a value of the field\'s type ({e})') from e
  return config


@dataclasses.dataclass
class Run:
  """A restored run, ready to analyse."""
  name: str
  config: ml_collections.ConfigDict
  model: object
  variables: dict
  images: object     # [N, ...] normalised model inputs
  labels: object     # [N]
  space: object      # analysis.InputSpace


def restore(workdir: str, overrides: Sequence[str]) -> Run:
  """A finished run's config (with ``overrides``), model, last checkpoint and test split.

  ``train.load_run(workdir) -> (config, {'params', 'batch_stats'})`` restores
  the saved config and the newest checkpoint; the model is rebuilt from the
  overridden config and the test split normalised as training evaluates it.
  """
  # pylint: disable=g-import-not-at-top
  from bntt_jax import config_lib
  from bntt_jax import data as data_lib
  from bntt_jax.analysis import robustness
  from bntt_jax.data import augment
  from bntt_jax.train import load_run
  # pylint: enable=g-import-not-at-top
  config, variables = load_run(workdir)
  config = ml_collections.ConfigDict(config.to_dict())   # unlocked copy
  if 'analysis' not in config:
    logging.info('%s: no config.analysis; using the defaults of analysis.Settings', workdir)
    config.analysis = analysis_config()
  apply_overrides(config, overrides)
  d = config.data
  ds = data_lib.load_dataset(d.name, source=d.source, data_dir=d.dir, download=d.download,
                             split_seed=d.split_seed, options=d.options.to_dict())
  info = ds.info
  model = config_lib.create_model(config, info.num_classes)
  if info.mean is None:   # frames: used as they are, unbounded
    mean, std, space = None, None, robustness.InputSpace.model_units()
  else:
    mean, std = tuple(d.mean) or info.mean, tuple(d.std) or info.std
    space = robustness.InputSpace(tuple(mean), tuple(std))
  images = augment.normalize(ds.test.x, mean, std)
  return Run(os.path.basename(os.path.normpath(workdir)), config, model, variables, images,
             ds.test.y, space)


def poisson_key(seed: int):
  """The training run's first evaluation key (see :mod:`bntt_jax.train`)."""
  import jax  # pylint: disable=g-import-not-at-top
  return jax.random.fold_in(jax.random.split(jax.random.PRNGKey(seed), 3)[2], 0)


def analyze_run(run: Run) -> dict:
  """``analysis.analyze`` of a restored run with its config's settings."""
  # pylint: disable=g-import-not-at-top
  from bntt_jax import analysis
  from bntt_jax import platform
  # pylint: enable=g-import-not-at-top
  platform.set_matmul_precision(run.config.matmul_precision)
  try:
    settings = analysis.Settings.from_dict(run.config.analysis.to_dict())
  except (TypeError, ValueError) as e:
    raise ConfigError('analysis settings', run.name, str(e)) from e
  return analysis.analyze(run.model, run.variables, run.images, run.labels,
                          key=poisson_key(run.config.seed), batch_size=run.config.eval.batch_size,
                          space=run.space, settings=settings, name=run.name)


def run_all(workdirs: Sequence[str], overrides: Sequence[str], outdir: str | None = None,
            reference: int = 0) -> List[dict]:
  """Analyse every workdir (report into each) and, for several, write the side by side."""
  from bntt_jax import analysis  # pylint: disable=g-import-not-at-top
  reports = []
  for w in workdirs:
    report = analyze_run(restore(w, overrides))
    paths = analysis.write_report(report, w)
    logging.info('%s: accuracy %.4f, report %s', w, report['accuracy']['clean'], paths['md'])
    reports.append(report)
  if len(reports) > 1:
    out = outdir or os.path.join(workdirs[0], 'comparison')
    paths = analysis.write_comparison(reports, out, reference=reference)
    logging.info('side by side: %s', paths['md'])
  return reports


def parse_flags(argv):
  try:
    rest, overrides = split_overrides(argv)
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  _overrides[:] = overrides
  try:
    return FLAGS(rest)
  except flags.Error as e:
    print(f'error: {str(e).strip().splitlines()[0]}', file=sys.stderr)
    sys.exit(2)


def main(argv):
  if len(argv) > 1:
    print(f'error: argument {argv[1]!r} is not accepted: flags only', file=sys.stderr)
    sys.exit(2)
  if not FLAGS.workdir:
    print('error: --workdir is required (repeat it for a side-by-side report)', file=sys.stderr)
    sys.exit(2)
  from bntt_jax import platform  # pylint: disable=g-import-not-at-top
  platform.configure_xla()   # before the first JAX computation
  try:
    run_all(FLAGS.workdir, _overrides, FLAGS.outdir, FLAGS.reference)
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
