"""The ways a run stops on purpose, each reported as one line by ``main``.

* :class:`ConfigError`: a value the run cannot accept (unknown model, missing
  data directory, T < 1, ...). ``main`` prints
  ``error: <what> <value> is not accepted: <accepted>`` and exits with code 2,
  before anything is compiled. The library's own checks of the values it takes
  (:func:`check_one_of` and its kin) raise it too, and ``config_lib.validate`` calls those
  checks: each value is checked in one place.
* :class:`DataError`: a dataset that cannot be read as configured (e.g. a
  corrupt DVS recording with ``on_error='stop'``); one line naming the file,
  exit code 2.
* :class:`NonFiniteLossError`: training produced a non-finite loss; the last
  good checkpoint is kept and named in the message (exit code 1).
* :class:`CheckpointError`: a checkpoint could not be written (a full disk);
  the previous checkpoint is intact and named in the message (exit code 1).
* :class:`Preempted`: SIGTERM or SIGINT (or, on a multi-host run, a preemption
  notice on any host); the state after the last finished step is saved and
  ``main`` prints ``preempted: ...`` and exits with :data:`PREEMPTED_EXIT_CODE`.
  Rerunning the same command resumes.
"""
from __future__ import annotations

import math
import numbers
from typing import Optional


class ConfigError(ValueError):
  """A value that is not accepted; ``str(e)`` is the one-line explanation."""

  def __init__(self, what: str, value, accepted: str):
    self.what, self.value, self.accepted = what, value, accepted
    shown = repr(value) if isinstance(value, str) else value
    super().__init__(f'{what} {shown} is not accepted: {accepted}')


def check_one_of(what: str, value, accepted) -> None:
  """The one check of a name among ``accepted``: ``ConfigError`` listing them."""
  if value not in accepted:
    raise ConfigError(what, value, f'one of {", ".join(str(a) for a in accepted)}')


def check_int_at_least(what: str, value, low: int, extra: str = '') -> None:
  """An integer (Python's or NumPy's, not a bool) ``>= low``, else ``ConfigError``."""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
    raise ConfigError(what, value, f'an integer >= {low}{extra}')


def is_number(value) -> bool:
  """A finite int or float, not a bool."""
  return (not isinstance(value, bool) and isinstance(value, (int, float))
          and math.isfinite(value))


def check_positive(what: str, value) -> None:
  if not is_number(value) or not value > 0:
    raise ConfigError(what, value, 'a number > 0')


class DataError(ValueError):
  """Data that cannot be read as configured; ``str(e)`` is one line naming it."""


class NonFiniteLossError(RuntimeError):
  """Training stopped on a non-finite loss."""


class CheckpointError(RuntimeError):
  """A checkpoint could not be written; ``str(e)`` is one line naming the directory."""


# Not 143 (128 + SIGTERM): a shell reports that for a process the signal killed before it
# saved anything. 3 says "stopped on request, resumable", for a scheduler's requeue rule.
PREEMPTED_EXIT_CODE = 3


class Preempted(Exception):
  """Training stopped on a preemption notice; ``str(e)`` is the one line to print.

  Attributes:
    step: the step of the newest checkpoint, the one a rerun resumes from.
  """

  def __init__(self, message: str, step: Optional[int]):
    self.step = step
    super().__init__(message)
