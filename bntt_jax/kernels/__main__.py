"""``python -m bntt_jax.kernels``: build the CPU kernels now and say which this machine can use.

One line per kernel: ``<name>: available (<variant>)``, the instruction-set variant it was
built as (``avx512``, ``avx2``, ``generic``: :mod:`bntt_jax.kernels.build`; ``$BNTT_KERNEL_ISA``
picks one), or ``<name>: not available (<why>)``. Exit status 0 when every kernel is available,
1 otherwise (the library then uses XLA's operations for that kind: nothing fails, it is
slower), 2 for an argument (it takes none) or a ``$BNTT_KERNEL_ISA`` that is not a variant
(one line on stderr).
"""
import sys

from bntt_jax import errors
from bntt_jax import kernels


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if argv:
    print(f'error: argument {argv[0]!r} is not accepted: python -m bntt_jax.kernels takes none',
          file=sys.stderr)
    return 2
  try:
    status = kernels.prepare()
  except errors.ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  for name, why in status.items():
    print(f'{name}: ' + (f'available ({kernels.KINDS[name].variant()})' if not why
                         else f'not available ({why})'))
  return 0 if not any(status.values()) else 1


if __name__ == '__main__':
  sys.exit(main())
