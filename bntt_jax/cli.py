"""What the command lines share: the embedded default config, one-line errors, exit codes.

``python -m bntt_jax.main``, ``python -m bntt_jax.analyze`` and ``python -m bntt_jax.plan``
answer anything a user can get wrong (a flag, a config key or value, a file, a directory, the
data) with one line on stderr, ``error: <what> <value> is not accepted: <accepted>`` (or a
line naming the file and what to do), and no traceback: a traceback is our defect.

Exit codes, the same in every command:

====  ==========================================================================================
0     done
1     a non-finite loss, a checkpoint that could not be written (a full disk), a failed
      cross-process operation (``main``); a CPU kernel that cannot be built (``kernels``)
2     a bad flag, config key or value, a missing or damaged file or directory (a run's
      ``config.json``, ``summary.json``, ``metrics.jsonl``), data that do not match the
      config (shapes, counts, labels outside the classes, dtypes), an unknown topology or
      device, a plan that does not fit; nothing is written or overwritten
3     preempted (``main``: SIGTERM, SIGINT, or a preemption notice to any host); the step
      reached is saved and the same command resumes (:data:`bntt_jax.errors.PREEMPTED_EXIT_CODE`)
====  ==========================================================================================
"""
from __future__ import annotations

import os
import sys
from typing import NoReturn

from absl import flags

from bntt_jax import config_lib
from bntt_jax import default_config

# The config a command runs without --config: digits, nothing to download.
DEFAULT_CONFIG = os.path.abspath(default_config.__file__)

USAGE_EXIT_CODE = 2     # exit code 2 of the module docstring


def fail(message: str, code: int = USAGE_EXIT_CODE) -> NoReturn:
  """Print ``error: <message>`` (one line) and exit with ``code``."""
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(code)


def parse_flags(argv):
  """absl's parsing of ``argv`` into ``flags.FLAGS``, with every bad flag reported in one line
  (absl's own message may span several, ml_collections' a traceback)."""
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except
    fail(config_lib.describe_flag_error(e))
