"""Backend settings that must be made before JAX starts its backend.

XLA:CPU's default convolution (Eigen) reaches ~45 GFLOP/s on the VGG9 shapes
on our 2-core test machines; routing dots and convolutions through YNNPACK
(``--xla_cpu_experimental_ynn_fusion_type=dot``) reaches ~120-180 GFLOP/s
with float32-accurate results (see README, Performance). The flag only
affects the CPU backend; GPU and TPU runs ignore it.

XLA:CPU also allocates its multi-GB temporaries afresh at every execution;
glibc serves them with ``mmap`` and returns them with ``munmap``, so every
training step page-faults its whole working set back in (measured: 1.8 GiB
and 0.9 s of system time per VGG9 step at batch 16). :func:`configure_xla`
therefore (CPU, one device per process) runs computations on the calling
thread (``jax_cpu_enable_async_dispatch=False``) and keeps glibc's main heap
from handing memory back (``mallopt``: no ``mmap``, no trimming),
so freed buffers are reused: 3.95 -> 3.39 s per step. ``BNTT_CPU_RUNTIME=default``
turns this off.
"""
from __future__ import annotations

import ctypes
import os
import sys

CPU_FAST_FLAGS = ('--xla_cpu_experimental_ynn_fusion_type=dot',)


def configure_xla(cpu_fast: bool = True, num_cpu_devices: int | None = None) -> None:
  """Add our XLA flags to ``XLA_FLAGS`` (flags the user set win).

  Call before the first JAX computation; later calls cannot change a backend
  that is already running and do nothing harmful.

  Args:
    cpu_fast: route CPU dots/convolutions through YNNPACK.
    num_cpu_devices: split the host CPU into this many XLA devices (for
      testing multi-device code on one machine).
  """
  flags = os.environ.get('XLA_FLAGS', '').split()
  names = {f.split('=')[0] for f in flags}
  wanted = list(CPU_FAST_FLAGS) if cpu_fast else []
  if num_cpu_devices:
    wanted.append(f'--xla_force_host_platform_device_count={int(num_cpu_devices)}')
  for f in wanted:
    if f.split('=')[0] not in names:
      flags.append(f)
  os.environ['XLA_FLAGS'] = ' '.join(flags)
  if cpu_fast and os.environ.get('BNTT_CPU_RUNTIME', 'fast') != 'default':
    forced = [f for f in flags if f.startswith('--xla_force_host_platform_device_count=')]
    if not forced or forced[-1].split('=')[1] == '1':
      _keep_host_memory()


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def _keep_host_memory() -> None:
  """Synchronous CPU dispatch and a glibc heap that keeps freed memory (module doc)."""
  import jax  # pylint: disable=g-import-not-at-top
  # Executions run on the calling thread, so their buffers come from glibc's
  # main arena, which the two settings below keep mapped between steps.
  jax.config.update('jax_cpu_enable_async_dispatch', False)
  if sys.platform.startswith('linux'):
    try:
      libc = ctypes.CDLL('libc.so.6')
      libc.mallopt(_M_MMAP_MAX, 0)
      libc.mallopt(_M_TRIM_THRESHOLD, -1)   # mallopt(3): -1 disables trimming
    except (OSError, AttributeError):   # not glibc (e.g. musl): nothing to tune
      pass


def set_matmul_precision(precision: str = 'highest') -> None:
  """Pin ``jax_default_matmul_precision`` (spikes flip on tiny differences near
  threshold, so the default configs use full float32: 'highest')."""
  import jax  # pylint: disable=g-import-not-at-top
  accepted = ('default', 'high', 'highest', 'bfloat16', 'tensorfloat32', 'float32')
  if precision not in accepted:
    raise ValueError(f'matmul precision {precision!r} is not one of {accepted}')
  jax.config.update('jax_default_matmul_precision', precision)
