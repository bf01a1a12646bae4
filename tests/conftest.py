"""Test settings: the CPU backend, our XLA flags (as main uses them) and full-float32 matmuls;
the two tiers.

The suite runs on CPU devices. Where libtpu is installed (for the deviceless TPU compiles of
``bntt_jax.plan``), JAX would otherwise try to start a TPU backend in every test process and
subprocess, and libtpu's lock file lets only one process at a time hold it.

Tiers: ``python -m pytest -q tests`` runs the fast tier (every equation, every error message,
the equivalence tests at small sizes: what a contributor runs before a commit);
``python -m pytest -q tests --full`` adds the tests marked ``full`` (trainings to an accuracy,
several processes, the command lines end to end, compiles for TPU slices), which CI runs.
"""
import os

import pytest

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

from bntt_jax import platform  # pylint: disable=wrong-import-position

platform.configure_xla()
platform.set_matmul_precision('highest')


def pytest_addoption(parser):
  parser.addoption('--full', action='store_true',
                   help='also run the full tier (tests marked full; CI runs it)')


def pytest_configure(config):
  config.addinivalue_line('markers', 'full: the full tier (trainings to an accuracy, several '
                          'processes, command lines end to end, TPU compiles): --full runs it')


def pytest_collection_modifyitems(config, items):
  if config.getoption('--full'):
    return
  fast = [item for item in items if 'full' not in item.keywords]
  if len(fast) < len(items):
    config.hook.pytest_deselected(items=[item for item in items if 'full' in item.keywords])
    items[:] = fast
