"""``python -m bntt_jax.kernels``: build the CPU kernels now and say which this machine can use.

Exit status 0 when every kernel is available, 1 otherwise (the library then uses XLA's
operations for that kind: nothing fails, it is slower), 2 for an argument (it takes none).
"""
import sys

from bntt_jax import kernels


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if argv:
    print(f'error: argument {argv[0]!r} is not accepted: python -m bntt_jax.kernels takes none',
          file=sys.stderr)
    return 2
  status = kernels.prepare()
  for name, why in status.items():
    print(f'{name}: ' + ('available' if not why else f'not available ({why})'))
  return 0 if not any(status.values()) else 1


if __name__ == '__main__':
  sys.exit(main())
