"""Shared by the CPU kernels' tests: skip where a kernel cannot exist, else it must build."""
import os
import shutil

import pytest


def needs(kernel, cpu_flag: str = '') -> None:
  """Skip where ``kernel`` (a module of bntt_jax.kernels) cannot exist (the CPU lacks
  ``cpu_flag``, or no C++ compiler); elsewhere assert that it built."""
  if cpu_flag:
    with open('/proc/cpuinfo') as f:
      if f' {cpu_flag}' not in f.read():
        pytest.skip(f'the CPU has no {cpu_flag}')
  if not shutil.which(os.environ.get('CXX', 'g++')):
    pytest.skip('no C++ compiler')
  assert kernel.available(), kernel.unavailable_reason()
