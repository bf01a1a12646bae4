"""``python -m bntt_jax.plan``: compile a run's steps for a slice you may not have; the library
is :mod:`bntt_jax.plan_lib` (what is compiled and reported, and how).

    python -m bntt_jax.plan --config=configs/cifar10.py --topology=v5e:4x4
    python -m bntt_jax.plan --config=configs/cifar10.py --topology=v5e:2x2 --config.train.batch_size=512
    python -m bntt_jax.plan --config=configs/cifar10.py --topology=cpu:8 --json=plan.json

``--topology``: a JAX TPU topology name (``v5e:2x2``, ``v4:2x2x2``, ``v5p:2x2x1``, ``v6e:4x4``;
libtpu, ``pip install 'jax[tpu]'``), ``h100:N`` / ``h100:HOSTSxN`` (JAX's CUDA plugin) or
``cpu:N`` (N host CPU devices). ``--config`` and ``--config.KEY=VALUE`` as for
``python -m bntt_jax.main``. Exit codes (:mod:`bntt_jax.cli`): 0 the run fits (or there is no
memory limit to check: CPUs); 2 a bad flag, config, topology (one line naming it: not a
topology, a TPU libtpu does not know, libtpu missing), or a run that does not fit, with the
largest per-chip batch that does.
"""
from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from bntt_jax import cli
from bntt_jax import config_lib
from bntt_jax import metrics
from bntt_jax import plan_lib
from bntt_jax import platform
from bntt_jax.errors import ConfigError


def _define_flags() -> None:
  flags.DEFINE_string('topology', None, 'The slice: a JAX TPU topology name, h100:N or cpu:N.')
  flags.DEFINE_string('json', None, 'Also write the report to this JSON file.')
  flags.DEFINE_list('search', [], 'Variants (configured, bfloat16, remat) whose largest per-chip '
                    'batch to search for even when the run fits; timesteps: the largest T at '
                    "the run's batch.")
  flags.DEFINE_float('hbm_gib', None, 'Plan against this much memory per chip (GiB) instead '
                     "of the chip's HBM (e.g. to keep headroom).")
  config_flags.DEFINE_config_file('config', cli.DEFAULT_CONFIG, 'Config file.',
                                  lock_config=True)


def _plan(unused_argv) -> None:
  """The plan of ``--config`` on ``--topology`` (flags parsed); exits 2 where it does not fit."""
  f = flags.FLAGS
  config = f.config
  try:
    kind, dims = plan_lib.parse_topology(f.topology or '')
    # Before the backend starts (the first jax.devices()). Deviceless compiles load libtpu (or
    # the CUDA plugin) only as a compiler: this process's backend is the CPU's, and libtpu's
    # lock file is not taken.
    platform.configure_xla(num_cpu_devices=dims[0] if kind == 'cpu' else None)
    if not os.environ.get('JAX_PLATFORMS'):
      jax.config.update('jax_platforms', 'cpu')
    devices = plan_lib.topology_devices(f.topology)
    config_lib.validate(config, len(devices), check_data=False)
    bad = [v for v in f.search if v not in plan_lib.VARIANTS and v != 'timesteps']
    if bad:
      raise ConfigError('--search', bad[0], f'a list of {", ".join(plan_lib.VARIANTS)}, timesteps')
    if f.hbm_gib is not None and not f.hbm_gib > 0:
      raise ConfigError('--hbm_gib', f.hbm_gib, 'a number of GiB > 0')
    report = plan_lib.plan(config, devices, search=f.search, topology=f.topology,
                           hbm=None if f.hbm_gib is None else f.hbm_gib * plan_lib.GiB)
  except ValueError as e:   # ConfigError, and the topology's own one-line errors
    cli.fail(str(e))
  for line in plan_lib.summary_lines(report):
    print(line)
  if f.json:
    metrics.write_json(f.json, report)
  if report['fits'] is False:
    cli.fail(plan_lib.does_not_fit_message(report))


def main(argv=None) -> int:
  """The command line (module doc); returns the exit code."""
  argv = list(sys.argv if argv is None else argv)
  try:
    # ml_collections reads --config.KEY from argv when the flag is defined, with a traceback
    # for a key that is not there: checked first, in one line.
    config_lib.check_command_line(argv, cli.DEFAULT_CONFIG)
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    return cli.USAGE_EXIT_CODE
  _define_flags()
  try:
    app.run(_plan, argv=argv, flags_parser=cli.parse_flags)
  except SystemExit as e:
    return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
  return 0


if __name__ == '__main__':
  sys.exit(main())
