"""Backend settings that must be made before JAX starts its backend.

Routing XLA:CPU's dots and convolutions through YNNPACK
(``--xla_cpu_experimental_ynn_fusion_type=dot``) runs the VGG9 shapes several times faster
than its default (Eigen) convolution, with float32-accurate results (the figures: README,
Performance). The flag only affects the CPU backend; GPU and TPU runs ignore it.

XLA:CPU also allocates its multi-GB temporaries afresh at every execution;
glibc serves them with ``mmap`` in 4 KiB pages and returns them with
``munmap``, so every training step page-faults its working set back in. With
glibc's ``glibc.malloc.hugetlb=1`` tunable those mappings use transparent huge
pages (2 MiB): far fewer faults and a faster step (the figures: README,
Performance). Tunables are read when a process starts, so
:func:`reexec_with_cpu_tunables` restarts the command line's process once
with the setting (``BNTT_CPU_RUNTIME=default`` turns this off).
"""
from __future__ import annotations

import os
import sys

from bntt_jax import errors

MATMUL_PRECISIONS = ('default', 'high', 'highest', 'bfloat16', 'tensorfloat32', 'float32')
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


HUGEPAGE_TUNABLE = 'glibc.malloc.hugetlb=1'


def cpu_tunables_env(env=None) -> dict:
  """``env`` (default: this process's) with glibc's huge-page tunable added (module doc)."""
  env = dict(os.environ if env is None else env)
  current = env.get('GLIBC_TUNABLES', '')
  if 'glibc.malloc.hugetlb' not in current:
    env['GLIBC_TUNABLES'] = ':'.join(t for t in (current, HUGEPAGE_TUNABLE) if t)
  return env


def reexec_with_cpu_tunables() -> None:
  """Restart this process (same pid, same command line) with the huge-page tunable.

  Does nothing off Linux, when the tunable is already set, or when
  ``BNTT_CPU_RUNTIME=default``. Call first thing in a command-line entry
  point: nothing before it survives.
  """
  if (not sys.platform.startswith('linux') or os.environ.get('BNTT_CPU_RUNTIME') == 'default'
      or 'glibc.malloc.hugetlb' in os.environ.get('GLIBC_TUNABLES', '')):
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, sys.orig_argv, cpu_tunables_env())


def set_matmul_precision(precision: str = 'highest') -> None:
  """Pin ``jax_default_matmul_precision`` (spikes flip on tiny differences near
  threshold, so the default configs use full float32: 'highest')."""
  import jax  # pylint: disable=g-import-not-at-top
  errors.check_one_of('matmul precision', precision, MATMUL_PRECISIONS)
  jax.config.update('jax_default_matmul_precision', precision)


def describe_machine() -> str:
  """One line naming the machine a figure came from: CPU model, cores, vector ISA, JAX and
  its devices (e.g. ``AMD EPYC 9B14, 2 cores, avx512; jax 0.10.2 cpu``)."""
  import jax  # pylint: disable=g-import-not-at-top
  model, isa = 'unknown CPU', 'unknown ISA'
  try:
    with open('/proc/cpuinfo') as f:
      lines = f.read().splitlines()
    model = next((l.split(':', 1)[1].strip() for l in lines if l.startswith('model name')),
                 model)
    cpu_flags = set(next((l.split(':', 1)[1] for l in lines if l.startswith('flags')),
                         '').split())
    isa = ('avx512' if 'avx512f' in cpu_flags else 'avx2' if 'avx2' in cpu_flags
           else 'no avx2')
  except OSError:
    pass
  devices = jax.devices()
  kinds = sorted({d.device_kind for d in devices})
  return (f'{model}, {os.cpu_count()} cores, {isa}; jax {jax.__version__} '
          f'{jax.default_backend()} ({len(devices)} x {", ".join(kinds)})')
