"""Shared by the CPU kernels' tests: skip where a kernel cannot exist, else it must build; each
instruction-set variant the CPU runs in turn."""
import os
import shutil

import jax
import pytest

from bntt_jax.kernels import build


def needs(kernel) -> None:
  """Skip where ``kernel`` (a module of bntt_jax.kernels) cannot exist (no C++ compiler);
  elsewhere assert that it built, as the variant in force (``$BNTT_KERNEL_ISA``)."""
  if not shutil.which(os.environ.get('CXX', 'g++')):
    pytest.skip('no C++ compiler')
  assert kernel.available(), kernel.unavailable_reason()


@pytest.fixture(params=build.VARIANTS)
def isa(request, monkeypatch):
  """Each kernel variant (avx512, avx2, generic) as ``$BNTT_KERNEL_ISA``, skipped where this CPU
  cannot run it (an AVX-512 host runs all three). jit's caches are cleared around it: a trace
  holds the variant's custom-call targets."""
  if build.missing(request.param):
    pytest.skip(f'the CPU has no {", ".join(build.missing(request.param))}')
  monkeypatch.setenv(build.ENV, request.param)
  jax.clear_caches()
  yield request.param
  jax.clear_caches()
