"""Restoring finished runs and analysing them (the library behind ``bntt_jax.analyze``).

``restore(workdir, overrides)`` rebuilds a run's model from its saved config
(with ``path=value`` overrides, parsed as ``main`` parses ``--config.path=value``),
loads its newest checkpoint and its test split with the normalisation training used; ``analyze_run`` runs
:func:`bntt_jax.analysis.analyze` on it with the config's ``analysis``
settings and the run's own first evaluation key, so the clean accuracy
equals the run's last per-epoch test accuracy; ``run_all`` writes the reports.
"""
from __future__ import annotations

import dataclasses
import os
from typing import List, Sequence

from absl import logging
import ml_collections

from bntt_jax import config_lib
from bntt_jax import default_config
from bntt_jax import platform
from bntt_jax import run_lib
from bntt_jax.analysis import pipeline
from bntt_jax.analysis import report as report_lib
from bntt_jax.analysis import robustness
from bntt_jax.errors import ConfigError


def analysis_config() -> ml_collections.ConfigDict:
  """``config.analysis``: the fields and defaults of :class:`bntt_jax.analysis.Settings`."""
  return default_config.get_config().analysis


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Sequence[str]) -> ml_collections.ConfigDict:
  """Set ``path=value`` fields, each value parsed as ``main`` parses ``--config.path=value``
  (:func:`bntt_jax.config_lib.parse_overrides`: ml_collections' config_flags, by the type
  of the field in the config schema, ``default_config``).

  The path must exist in the run's config; the value must fit the field's type.
  """
  values = config_lib.parse_overrides([f'--config.{o}' for o in overrides],
                                      default_config.get_config())
  for path, value in values.items():
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
      node[leaf] = value
    except TypeError as e:
      raise ConfigError('config value', f'{path}={value}',
                        f'a value of the field\'s type ({e})') from e
  return config


@dataclasses.dataclass
class Run:
  """A restored run, ready to analyse."""
  name: str
  config: ml_collections.ConfigDict
  model: object
  variables: dict
  images: object     # [N, ...] the test split as stored (uint8 pixels, or frames)
  labels: object     # [N]
  space: object      # analysis.InputSpace
  mean: object = None   # the normalisation training used (None: frames, as they are)
  std: object = None


def restore(workdir: str, overrides: Sequence[str]) -> Run:
  """A finished run's config (with ``overrides``), model, last checkpoint and test split.

  ``run_lib.load_run(workdir) -> (config, {'params', 'batch_stats'})`` restores
  the saved config and the newest checkpoint; the model is rebuilt from the
  overridden config; the test split is kept as stored, with the normalisation training
  used, which the evaluator applies as it builds each batch (as training's evaluation).
  """
  config, variables = run_lib.load_run(workdir)
  config = ml_collections.ConfigDict(config.to_dict())   # unlocked copy
  if 'analysis' not in config:
    logging.info('%s: no config.analysis; using the defaults of analysis.Settings', workdir)
    config.analysis = analysis_config()
  apply_overrides(config, overrides)
  ds, mean, std = run_lib.load_data(config)   # the normalisation training used
  model = config_lib.create_model(config, ds.info.num_classes)
  if ds.info.kind == 'frames':   # event frames: unbounded model units
    space = robustness.InputSpace.model_units()
  else:
    space = robustness.InputSpace(tuple(mean), tuple(std))
  return Run(os.path.basename(os.path.normpath(workdir)), config, model, variables, ds.test.x,
             ds.test.y, space, mean, std)


def analyze_run(run: Run) -> dict:
  """``analysis.analyze`` of a restored run with its config's settings."""
  platform.set_matmul_precision(run.config.matmul_precision)
  try:
    settings = pipeline.Settings.from_dict(run.config.analysis.to_dict())
  except (TypeError, ValueError) as e:
    raise ConfigError('analysis settings', run.name, str(e)) from e
  return pipeline.analyze(run.model, run.variables, run.images, run.labels,
                          key=run_lib.eval_keys(run.config.seed, 1)[0],
                          batch_size=run.config.eval.batch_size,
                          space=run.space, settings=settings, name=run.name,
                          mean=run.mean, std=run.std)


def run_all(workdirs: Sequence[str], overrides: Sequence[str], outdir: str | None = None,
            reference: int = 0) -> List[dict]:
  """Analyse every workdir (report into each) and, for several, write the side by side."""
  reports = []
  for w in workdirs:
    report = analyze_run(restore(w, overrides))
    paths = report_lib.write_report(report, w)
    logging.info('%s: accuracy %.4f, report %s', w, report['accuracy']['clean'], paths['md'])
    reports.append(report)
  if len(reports) > 1:
    out = outdir or os.path.join(workdirs[0], 'comparison')
    paths = report_lib.write_comparison(reports, out, reference=reference)
    logging.info('side by side: %s', paths['md'])
  return reports
