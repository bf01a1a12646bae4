"""Backend settings that must be made before JAX starts its backend.

XLA:CPU's default convolution (Eigen) reaches ~45 GFLOP/s on the VGG9 shapes
on our 2-core test machines; routing dots and convolutions through YNNPACK
(``--xla_cpu_experimental_ynn_fusion_type=dot``) reaches ~120-180 GFLOP/s
with float32-accurate results (see README, Performance). The flag only
affects the CPU backend; GPU and TPU runs ignore it.
"""
from __future__ import annotations

import os

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


def set_matmul_precision(precision: str = 'highest') -> None:
  """Pin ``jax_default_matmul_precision`` (spikes flip on tiny differences near
  threshold, so the default configs use full float32: 'highest')."""
  import jax  # pylint: disable=g-import-not-at-top
  accepted = ('default', 'high', 'highest', 'bfloat16', 'tensorfloat32', 'float32')
  if precision not in accepted:
    raise ValueError(f'matmul precision {precision!r} is not one of {accepted}')
  jax.config.update('jax_default_matmul_precision', precision)
