"""Would Winograd F(4x4, 3x3) convolutions, written in JAX, speed up the VGG9 step here? No.

    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python experiments/archive/winograd_probe.py --batch=16

Archived (not run by CI): a negative result. Measured on a 2-core AMD EPYC (AVX-512), batch 16,
``--reps=5``: the 36 batched matmuls take a third of the direct convolution's time, but with the
memory-bound input and output transforms the six forward convolutions went only from 786 to
641 ms, the backward by autodiff through the transforms from 1.85 to 5.6 s, and swapped into the
8x8 layers alone the whole training step went from 3.38 to 3.8-4.0 s, with ~250 MB more memory.

Winograd's F(4x4, 3x3) (Lavin & Gray, CVPR 2016) computes a 4x4 output tile
from a 6x6 input tile with 36 multiplies per channel pair instead of 144, so
its batched matmul has 4x fewer FLOPs than the direct convolution; the price
is an input transform (2.25x the input's size), an output transform and
their memory traffic. For each VGG9 convolution of the time-batched schedule
(``T * B`` spike-like inputs, 20 % ones) this prints one JSON line with the
forward times in ms: ``direct`` (XLA's convolution, as a training step runs
it), and the three Winograd stages ``input_transform``, ``matmul`` (36
batched matmuls) and ``output_transform``, their ``winograd`` sum, the backward
(input and weight gradients) of each by autodiff (``direct_backward``,
``winograd_backward``), and the Winograd result's max error relative to the
direct one.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from bntt_jax import platform  # pylint: disable=g-import-not-at-top

# The F(4x4, 3x3) matrices with interpolation points 0, +-1, +-2 (Lavin & Gray 2016).
B_T = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))
G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
     (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
A_T = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))


def _combine(coefs, arrays):
  """sum(c * a) over the nonzero coefficients (one XLA fusion of adds)."""
  terms = [a if c == 1 else -a if c == -1 else a * c for c, a in zip(coefs, arrays) if c]
  out = terms[0]
  for t in terms[1:]:
    out = out + t
  return out


def input_transform(x):
  """``[N, H, W, C]`` (H, W multiples of 4) -> ``V [36, N * H/4 * W/4, C]``, 'SAME' padding."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  n, h, w, c = x.shape
  th, tw = h // 4, w // 4
  # Pad to whole 4x4 blocks: a 6x6 tile is its block plus 2 rows/columns of the next.
  xb = jnp.pad(x, ((0, 0), (1, 3), (1, 3), (0, 0))).reshape(n, th + 1, 4, tw + 1, 4, c)
  rows = [xb[:, :th, r] if r < 4 else xb[:, 1:, r - 4] for r in range(6)]
  r6 = jnp.stack([_combine(B_T[k], rows) for k in range(6)])   # [6, n, th, tw + 1, 4, c]
  cols = [r6[:, :, :, :tw, s] if s < 4 else r6[:, :, :, 1:, s - 4] for s in range(6)]
  return jnp.stack([_combine(B_T[k], cols) for k in range(6)], 1).reshape(36, -1, c)


def kernel_transform(w):
  """``[3, 3, C, D]`` -> ``U [36, C, D]``."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  g = jnp.asarray(G, w.dtype)
  return jnp.einsum('ar,rsio,bs->abio', g, w, g).reshape(36, w.shape[2], w.shape[3])


def output_transform(m, n, th, tw):
  """``M [36, N * th * tw, D]`` -> ``[N, 4 th, 4 tw, D]``."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  d = m.shape[-1]
  m = m.reshape(6, 6, n, th, tw, d)
  out = []
  for a in range(4):
    ta = [_combine(A_T[a], [m[k, l] for k in range(6)]) for l in range(6)]
    out.append(jnp.stack([_combine(A_T[b], ta) for b in range(4)], axis=3))
  return jnp.stack(out, axis=2).reshape(n, 4 * th, 4 * tw, d)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--batch', type=int, default=16)
  p.add_argument('--timesteps', type=int, default=25)
  p.add_argument('--reps', type=int, default=3)
  a = p.parse_args(argv)
  platform.configure_xla()
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  platform.set_matmul_precision('highest')
  from bntt_jax import models  # pylint: disable=g-import-not-at-top
  from bntt_jax.analysis import energy  # pylint: disable=g-import-not-at-top
  from experiments.conv_roofline import _time  # pylint: disable=g-import-not-at-top

  direct = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
  bmm = jax.jit(lambda v, u: jax.lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,)))))
  n = a.batch * a.timesteps
  rng = np.random.default_rng(0)
  convs = [c for c in energy.layer_costs(models.vgg9(num_steps=1), (32, 32, 3))
           if c.kind == 'conv' and c.in_shape[-1] > 3]   # conv1 (3 channels) has no use for it
  for c in convs:
    size, cin, cout = c.in_shape[0], c.in_shape[-1], c.out_shape[-1]
    x = jnp.asarray((rng.random((n, size, size, cin)) < 0.2).astype(np.float32))
    w = jnp.asarray(rng.standard_normal((3, 3, cin, cout)).astype(np.float32) * 0.05)
    tf_in = jax.jit(input_transform)
    tf_out = jax.jit(lambda m, s=size: output_transform(m, n, s // 4, s // 4))
    v, u = tf_in(x), jax.jit(kernel_transform)(w)
    m = bmm(v, u)
    y, y_ref = tf_out(m), direct(x, w)
    row = {'shape': [n, size, size, cin, cout],
           'direct': _time(direct, x, w, reps=a.reps),
           'input_transform': _time(tf_in, x, reps=a.reps),
           'matmul': _time(bmm, v, u, reps=a.reps),
           'output_transform': _time(tf_out, m, reps=a.reps)}
    row['winograd'] = row['input_transform'] + row['matmul'] + row['output_transform']
    # g is an argument, not a constant: XLA would fold part of the backward into the constant.
    g = jnp.asarray(rng.standard_normal(y_ref.shape).astype(np.float32))
    for name, f in (('direct', direct), ('winograd', lambda x, w, s=size: output_transform(
        bmm(input_transform(x), kernel_transform(w)), n, s // 4, s // 4))):
      vjp = jax.jit(lambda x, w, g, f=f: jax.vjp(f, x, w)[1](g))
      row[f'{name}_backward'] = _time(vjp, x, w, g, reps=a.reps)
    row = {k: round(v * 1e3, 1) if isinstance(v, float) else v for k, v in row.items()}
    row['max_rel_error'] = float(jnp.max(jnp.abs(y - y_ref)) / jnp.max(jnp.abs(y_ref)))
    print(json.dumps(row), flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
