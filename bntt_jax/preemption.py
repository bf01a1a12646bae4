"""Preemption: stop at a step boundary, save that step, exit; the same command resumes.

Clusters announce a preemption with SIGTERM some seconds before they kill (TPU VMs, spot
GPUs, SLURM's ``--signal``, Kubernetes). A :class:`Monitor` turns the signal into a flag
that the training loop reads at *boundaries*: after every training step, and at a few
points every process passes in the same order (while starting, after an epoch's
checkpoint, between final evaluations). Each boundary names the training step the state
is at.

* One process: SIGTERM and SIGINT set the flag; a second one of either has its default
  effect at once (the way out of a save that hangs). The handler only records the signal.
* Several processes (``jax.distributed``): ``jax.distributed.initialize`` has installed
  JAX's preemption service, whose C++ handler owns SIGTERM. A notice on any host reaches
  all of them, and they agree on the boundary to stop at (the furthest boundary any of them
  had passed, plus one: ``multihost_utils.reached_preemption_sync_point``), so every host
  saves the same step. Until a notice comes a check costs a mutex, no communication: we
  chose it over an all-reduce of a flag per step, which would make every step wait for
  the host. SIGINT is passed on to the service as a SIGTERM to this process. The service
  keeps one counter per process, and orbax's ``CheckpointManager.save`` reports the step
  it saves to it too, so the boundaries report the training step (a count of our own
  would be overwritten by orbax's and the agreed step be one already passed). A notice
  during an evaluation or a save is therefore met after the next training step.
* Several processes with that service turned off (``jax_enable_preemption_service``
  False): each boundary all-gathers the flags, a small collective per step.
"""
from __future__ import annotations

import os
import signal
from typing import Optional

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Monitor:
  """Installs the handlers on entry (``with Monitor() as m``), restores them on exit.

  Attributes:
    signal_name: ``'SIGTERM'``/``'SIGINT'`` once this process received one, else None.
  """

  def __init__(self):
    self.signal_name: Optional[str] = None
    self._forwarded = False
    self._previous = {}
    self._mode = 'local'
    if jax.process_count() > 1:
      try:
        multihost_utils.reached_preemption_sync_point(0)
        self._mode = 'jax'
      except RuntimeError:      # the service is off: agree by all-gathering the flags
        self._mode = 'gather'

  def __enter__(self) -> 'Monitor':
    # Under JAX's service SIGTERM stays with it (a Python handler would replace its C++ one).
    owned = (signal.SIGINT,) if self._mode == 'jax' else SIGNALS
    for sig in owned:
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:        # not the main thread: signals keep their default effect
        logging.warning('not in the main thread: %s will stop the run without a checkpoint',
                        signal.Signals(sig).name)
    return self

  def __exit__(self, *exc) -> None:
    for sig, previous in self._previous.items():
      signal.signal(sig, previous)
    self._previous = {}

  def _handle(self, signum, frame) -> None:
    del frame
    if self.signal_name is not None:
      signal.signal(signum, signal.SIG_DFL)
      os.kill(os.getpid(), signum)
      return
    self.signal_name = signal.Signals(signum).name

  @property
  def reason(self) -> str:
    """What stopped the run, for its last line."""
    if self.signal_name:
      return self.signal_name
    return f'a preemption notice to one of the {jax.process_count()} processes'

  def reached(self, step: int) -> bool:
    """Whether to stop here, where the state is that after ``step`` training steps.

    Call at every boundary, on every process, in the same order; after every step
    (the service needs each step reported to agree on one).
    """
    if self._mode == 'jax':
      if self.signal_name == 'SIGINT' and not self._forwarded:
        self._forwarded = True
        os.kill(os.getpid(), signal.SIGTERM)
      hit = multihost_utils.reached_preemption_sync_point(step)
    elif self._mode == 'gather':
      flags = multihost_utils.process_allgather(np.int32(self.signal_name is not None))
      hit = bool(np.any(flags))
    else:
      hit = self.signal_name is not None
    if hit:
      logging.warning('%s: stopping at this step boundary', self.reason)
    return hit
