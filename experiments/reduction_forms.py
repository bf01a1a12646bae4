"""How fast XLA:CPU sums one array in different forms, and what that makes of a BNTT pass.

    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python experiments/reduction_forms.py --batch=16

XLA:CPU compiles a sum over one axis with kept axes on both sides (``[A, R, C]`` over ``R``)
to a fast loop, and the same elements summed over several adjacent axes, or over a leading
axis, to a much slower one. ``bntt_jax.norms`` therefore sums its statistics on CPU in the
first form (``norms.merge_for_cpu``). For conv2's output in VGG9's time-batched schedule
(``[T * B, 32, 32, 64]``, float32) this prints one JSON line per form of the per-step,
per-channel sum (``ms``, the mean of ``--reps`` calls after one untimed call), then one line for a BNTT training pass
(statistics, affine map, and their VJP) on that array as the library runs it.
"""
from __future__ import annotations

import argparse
import json
import sys

from bntt_jax import platform
from bntt_jax import timing


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--batch', type=int, default=16)
  p.add_argument('--timesteps', type=int, default=25)
  p.add_argument('--reps', type=int, default=7)
  args = p.parse_args(argv)
  for name in ('batch', 'timesteps', 'reps'):
    if getattr(args, name) < 1:
      p.error(f'--{name} {getattr(args, name)} is not accepted: it must be >= 1')
  platform.configure_xla()
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from bntt_jax import norms  # pylint: disable=g-import-not-at-top

  t, b, hw, c = args.timesteps, args.batch, 32, 64
  x = jnp.asarray(np.random.RandomState(0).randn(t * b, hw, hw, c).astype(np.float32))
  r = b * hw * hw
  forms = [('[T, 1, B, H, W, C] over (2, 3, 4)', (t, 1, b, hw, hw, c), (2, 3, 4)),
           ('[T, 1, B*H*W, C] over 2', (t, 1, r, c), (2,)),
           ('[T*B*H*W, C] over 0', (t * r, c), (0,)),
           ('[1, T*B*H*W, C] over 1', (1, t * r, c), (1,))]
  for label, shape, axes in forms:
    f = jax.jit(lambda x, shape=shape, axes=axes: jnp.sum(x.reshape(shape), axis=axes))
    print(json.dumps({'sum': label, 'ms': round(timing.seconds_per_call(f, x, reps=args.reps) * 1e3, 1)}))

  xs = x.reshape(t, b, hw, hw, c)
  mod = norms.BNTT(num_steps=t)
  v = mod.init(jax.random.PRNGKey(0), xs, train=True)

  def train_pass(x, dy):
    y, pull = jax.vjp(lambda x: mod.apply(v, x, train=True, mutable=['batch_stats'])[0], x)
    return y, pull(dy)

  print(json.dumps({'bntt_training_pass': list(xs.shape),
                    'ms': round(
                        timing.seconds_per_call(jax.jit(train_pass), xs, xs, reps=args.reps) * 1e3, 1)}))
  return 0


if __name__ == '__main__':
  sys.exit(main())
