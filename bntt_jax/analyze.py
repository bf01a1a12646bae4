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

``--config.<path>=<value>`` overrides a field of every run's saved config, with
``main``'s syntax and meaning (e.g. ``--config.eval.batch_size=500``): each value is parsed
by ml_collections' config flags, by the field's type in the config schema
(:func:`bntt_jax.config_lib.parse_overrides`, which both use). The
analysis settings live under ``config.analysis`` (fields of
:class:`bntt_jax.analysis.Settings`); a run whose config has no ``analysis``
section gets the defaults (:mod:`bntt_jax.analysis.runs`). Noise and attack units are
[0, 1] pixels (see :mod:`bntt_jax.analysis.robustness`).

Exit codes (:mod:`bntt_jax.cli`): 0 done; 2 a bad flag or override, a ``--workdir`` that holds
no run (no such directory, no ``config.json``, no checkpoint), a damaged ``config.json`` or
unreadable checkpoints (one line naming the file; nothing is written), data that do not match
the run's config. Every workdir is checked before the first is analysed.

The Poisson key is the training run's first evaluation key (``fold_in`` of
the third split of ``PRNGKey(config.seed)``, see :mod:`bntt_jax.run_lib`), so the
clean accuracy here equals the run's last per-epoch test accuracy.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

from absl import app
from absl import flags

from bntt_jax import cli
from bntt_jax import config_lib
from bntt_jax import default_config
from bntt_jax import platform
from bntt_jax import records
from bntt_jax.errors import ConfigError, DataError

FLAGS = flags.FLAGS
flags.DEFINE_multi_string('workdir', None, 'A finished run directory (config.json and '
                          'checkpoints/); repeat for a side-by-side report.')
flags.DEFINE_string('outdir', None, 'Where the side-by-side report goes (several workdirs); '
                    'default: <first workdir>/comparison.')
flags.DEFINE_integer('reference', 0, 'Index of the run whose TrueNorth energy normalises the '
                     'others in the side-by-side report.')

OVERRIDE_PREFIX = '--config.'
NEGATED_PREFIX = '--noconfig.'
_overrides: List[str] = []   # the --config.* arguments, set by parse_flags


def split_overrides(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
  """``argv`` without the ``--config.<path>[=<value>]`` (and ``--noconfig.<path>``)
  arguments, and those as ``path=value``: ``--config.<path>`` and ``--noconfig.<path>``
  are a bool's ``true`` and ``false``, as ``main``'s config flags read them. Each is parsed
  as ``main`` parses it (:func:`bntt_jax.config_lib.parse_overrides`), the keys checked here."""
  rest, overrides = [], []
  for a in argv:
    if a.startswith(OVERRIDE_PREFIX):
      path, eq, value = a[len(OVERRIDE_PREFIX):].partition('=')
      overrides.append(f'{path}={value}' if eq else f'{path}=true')
    elif a.startswith(NEGATED_PREFIX) and '=' not in a:
      overrides.append(f'{a[len(NEGATED_PREFIX):]}=false')
    else:
      rest.append(a)
  # An unknown key or a value its field does not take stops here, before any run loads.
  config_lib.parse_overrides([f'{OVERRIDE_PREFIX}{o}' for o in overrides],
                             default_config.get_config())
  return rest, overrides


def parse_flags(argv):
  try:
    rest, overrides = split_overrides(argv)
  except ConfigError as e:
    cli.fail(str(e))
  _overrides[:] = overrides
  return cli.parse_flags(rest)


def main(argv):
  if len(argv) > 1:
    cli.fail(f'argument {argv[1]!r} is not accepted: flags only')
  if not FLAGS.workdir:
    cli.fail('--workdir is required (repeat it for a side-by-side report)')
  n = len(FLAGS.workdir)
  try:
    if not 0 <= FLAGS.reference < n:
      raise ConfigError('--reference', FLAGS.reference,
                        f'the index of one of the {n} --workdir runs (0..{n - 1})')
    for w in FLAGS.workdir:   # every run, before the first is analysed
      records.check_run(w)
  except (ConfigError, DataError) as e:
    cli.fail(str(e))
  # Here: JAX, flax and orbax take seconds to load, and a bad command line is answered first.
  # pylint: disable=g-import-not-at-top
  from bntt_jax import checkpoint
  from bntt_jax.analysis import runs
  # pylint: enable=g-import-not-at-top
  checkpoint.quiet_logs()
  platform.configure_xla()   # before the first JAX computation
  try:
    runs.run_all(FLAGS.workdir, _overrides, FLAGS.outdir, FLAGS.reference)
  except (ConfigError, DataError) as e:
    cli.fail(str(e))


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
