"""Train a BNTT spiking network: flags -> config -> ``train.train_and_evaluate``.

    python -m bntt_jax.main --config=configs/cifar10.py [--workdir=DIR] [--config.train.epochs=5]

Without ``--config`` the embedded default (digits, no download) runs; without
``--workdir`` a fresh ``runs/<config>-<time>`` is used. Rerunning a command
with the same ``--workdir`` resumes from its last checkpoint. A value that is
not accepted ends the run with one ``error:`` line and exit code 2.

``--plan`` first compiles the run's train and eval steps for this machine's devices
(:mod:`bntt_jax.plan`, before any data is read) and prints what they need per device; a
step that does not fit a device's memory stops the run there, with the largest per-device
batch that fits.

Exit codes (the table for every command: :mod:`bntt_jax.cli`): 0 done; 1 a non-finite
loss, a checkpoint that could not be written (a full disk), a failed cross-process
operation; 2 a bad flag, config key or value, a damaged run record in the workdir
(``config.json``, a ``metrics.jsonl`` line before the last: nothing is replaced, the line
names the file and what to do), data that do not match the config (shapes, counts, labels
outside the classes, dtypes), a workdir that cannot be a run's, a plan that does not fit;
3 preempted (SIGTERM or SIGINT, or a preemption notice to any host): the step reached is
saved, ``preempted: ...`` says which, and the same command resumes.
"""
import datetime
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from bntt_jax import cli
from bntt_jax import config_lib
from bntt_jax import platform
from bntt_jax import records
from bntt_jax.errors import (CheckpointError, ConfigError, DataError, NonFiniteLossError,
                             PREEMPTED_EXIT_CODE, Preempted)

FLAGS = flags.FLAGS


def _default_workdir(config_path: str) -> str:
  """``runs/<config>-<date>-<time>`` (the embedded default is ``digits``)."""
  name = 'digits' if os.path.abspath(config_path) == cli.DEFAULT_CONFIG else (
      os.path.splitext(os.path.basename(config_path))[0])
  return os.path.join('runs', f'{name}-{datetime.datetime.now():%Y%m%d-%H%M%S}')


def main(argv):
  if len(argv) > 1:
    cli.fail(f'argument {argv[1]!r} is not accepted: flags only (--config=..., --workdir=...)')
  config = FLAGS.config
  workdir = FLAGS.workdir or _default_workdir(config_flags.get_config_filename(FLAGS['config']))
  existed = os.path.exists(workdir)
  try:
    notes = records.check_workdir(workdir)   # before anything reads or writes it
  except (ConfigError, DataError) as e:
    cli.fail(str(e))
  # Imported after run()'s re-exec: it loads JAX.
  from bntt_jax import checkpoint  # pylint: disable=g-import-not-at-top
  checkpoint.quiet_logs()
  platform.configure_xla()     # before the first JAX computation starts the backend
  try:
    platform.set_matmul_precision(config.matmul_precision)
    config_lib.validate(config)   # device-count checks follow in train_and_evaluate
  except (ConfigError, ValueError) as e:
    cli.fail(str(e))
  for note in notes:
    logging.warning('%s', note)
  # pylint: disable=g-import-not-at-top
  import jax
  from bntt_jax import plan_lib
  from bntt_jax import sharding
  from bntt_jax import train
  # pylint: enable=g-import-not-at-top
  sharding.initialize_distributed()   # multi-process runs only (JAX_COORDINATOR_ADDRESS)
  try:
    devices = jax.devices()
  except RuntimeError as e:   # e.g. JAX_PLATFORMS names a backend this machine does not have
    cli.fail(f'JAX platforms {os.environ.get("JAX_PLATFORMS", "(default)")!r} are not accepted '
             f'here: {config_lib.describe_flag_error(e)} (JAX_PLATFORMS=cpu runs on the CPU)')
  logging.info('JAX process %d/%d, devices: %s', jax.process_index(), jax.process_count(),
               devices)
  logging.info('Workdir: %s', os.path.abspath(workdir))
  if FLAGS.plan:
    report = plan_lib.plan(config, devices)
    if sharding.is_main_process():
      for line in plan_lib.summary_lines(report):
        print(line, flush=True)
    if report['fits'] is False:
      cli.fail(plan_lib.does_not_fit_message(report))
  try:
    train.train_and_evaluate(config, workdir)
  except (ConfigError, DataError) as e:
    if not existed and sharding.is_main_process():   # made by a run stopped before it began
      records.remove_unused(workdir)
    cli.fail(str(e))
  except (NonFiniteLossError, CheckpointError) as e:
    cli.fail(str(e), code=1)
  except Preempted as e:
    print(f'preempted: {e}', file=sys.stderr, flush=True)
    sys.exit(PREEMPTED_EXIT_CODE)
  except jax.errors.JaxRuntimeError as e:
    if jax.process_count() == 1:
      raise
    # A collective failed: another process most likely died. Exit now rather
    # than wait in jax.distributed's shutdown barrier for the dead process.
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    print(f'error: process {jax.process_index()} of {jax.process_count()}: a cross-process '
          f'operation failed (did another process die?): {first}', file=sys.stderr, flush=True)
    os._exit(1)


def run():
  platform.reexec_with_cpu_tunables()   # huge pages for XLA:CPU's buffers (bntt_jax.platform)
  # ml_collections reads the --config.KEY overrides from sys.argv when the flag
  # is defined, and fails there with a traceback: check the config file and
  # the keys first.
  try:
    config_lib.check_command_line(sys.argv, cli.DEFAULT_CONFIG)
  except ConfigError as e:
    cli.fail(str(e))
  flags.DEFINE_string('workdir', None, 'Run directory (checkpoints, metrics); default: a new '
                      'directory under runs/.')
  flags.DEFINE_bool('plan', False, "Compile the run's steps for this machine's devices first and "
                    'stop if they do not fit its memory (bntt_jax.plan).')
  config_flags.DEFINE_config_file('config', cli.DEFAULT_CONFIG, 'Training config file.',
                                  lock_config=True)
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == '__main__':
  run()
