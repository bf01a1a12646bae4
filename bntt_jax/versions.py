"""The JAX releases this library is tested with, and the check of the features that need them.

Two features read APIs that change between JAX releases: :mod:`bntt_jax.xla_cost` reads
private ``jax._src`` / ``jaxlib`` functions (XLA's cost analysis of an HLO module), and
:mod:`bntt_jax.kernels.lif_tpu` uses Pallas. The package's dependencies bound jax and jaxlib to
:data:`TESTED_JAX` (pyproject.toml, requirements.txt; constraints.txt gives the exact versions
the suite runs with); a JAX installed outside the range anyway (``--no-deps``, another
project's pin) gets one line from :func:`require_tested_jax` where such a feature starts,
instead of a traceback from inside JAX.
"""
from __future__ import annotations

import functools
import importlib.metadata
import re
from typing import Optional, Tuple

from bntt_jax.errors import ConfigError

# [lowest, first untested): the same range as pyproject.toml's and requirements.txt's.
TESTED_JAX = ((0, 7), (0, 11))


def parse(version: str) -> Tuple[int, ...]:
  """``'0.10.2'`` -> ``(0, 10, 2)``; a suffix (``'0.11.0.dev20260101'``, ``'0.9.0rc1'``)
  ends the numbers."""
  numbers = []
  for part in version.split('.'):
    m = re.match(r'\d+', part)
    if not m:
      break
    numbers.append(int(m.group()))
    if m.end() != len(part):
      break
  return tuple(numbers)


def tested_range() -> str:
  """The range as pip writes it: ``>=0.7,<0.11``."""
  low, high = TESTED_JAX
  return f'>={".".join(map(str, low))},<{".".join(map(str, high))}'


def is_tested(version: str) -> bool:
  low, high = TESTED_JAX
  return low <= parse(version) < high


def _distribution(name: str) -> Optional[str]:
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:   # a source tree on sys.path: not checked
    return None


@functools.lru_cache(maxsize=None)
def installed() -> Tuple[Optional[str], Optional[str]]:
  """``(jax, jaxlib)``: the installed distributions' versions (None where not found), read
  from their metadata without importing them."""
  return _distribution('jax'), _distribution('jaxlib')


def require_tested_jax(feature: str, versions: Optional[Tuple[str, Optional[str]]] = None):
  """Raise :class:`ConfigError` (one line) when jax or jaxlib is outside :data:`TESTED_JAX`.

  Args:
    feature: what needs the tested JAX, as the message names it (``'the Pallas TPU LIF
      kernels'``), with a way around it if there is one.
    versions: ``(jax, jaxlib)``; default: the installed ones (:func:`installed`).
  """
  jax_version, lib_version = installed() if versions is None else versions
  for name, version in (('jax', jax_version), ('jaxlib', lib_version)):
    if version is not None and not is_tested(version):
      raise ConfigError(
          f'installed {name}', version,
          f'jax{tested_range()} is the tested range for {feature} (JAX APIs that change between '
          f'releases): pip install -c constraints.txt -e . (or "jax{tested_range()}")')
