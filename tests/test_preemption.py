"""The preemption monitor of one process: a signal sets a flag, read at step boundaries."""
import os
import signal

from bntt_jax import preemption


def test_sigterm_and_sigint_are_seen_at_the_next_boundary_and_handlers_come_back():
  before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
  for sig in (signal.SIGTERM, signal.SIGINT):
    with preemption.Monitor() as monitor:
      assert not monitor.reached(0)
      os.kill(os.getpid(), sig)          # handled in the main thread before kill returns
      assert monitor.reached(1) and monitor.reached(1)   # stays reached
      assert monitor.signal_name == signal.Signals(sig).name
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_without_a_signal_nothing_is_reached():
  with preemption.Monitor() as monitor:
    assert not any(monitor.reached(step) for step in range(100))
    assert monitor.signal_name is None
