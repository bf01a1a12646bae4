"""How fast can a float32 VGG9 training step be here? The convolutions alone.

    python experiments/conv_roofline.py --batch=16 --timesteps=25 [--dtype=bfloat16]

Times each VGG9 convolution of the time-batched schedule (``T * B`` samples,
32x32x3 input) the way a training step runs it: forward, input gradient
(``dx``, skipped for the first layer, whose input is data) and weight gradient
(``dw``), each jitted alone on spike-like inputs (``--density`` ones, default 25 %, as in
an untrained VGG9). For the layers whose input is spikes (``SpikingNetwork.spike_inputs``),
``fwd_sparse_ms`` and ``dw_sparse_ms`` time the event-driven kernels of
:mod:`bntt_jax.kernels.sparse_conv` that the library uses there on CPU (when available),
``fwd_winograd_ms`` and ``dx_winograd_ms`` the Winograd kernel of :mod:`bntt_jax.kernels.winograd`
(the input gradient there, and the forward where the input is denser than
``sparse_conv.max_density``), and the total line adds ``conv_s_sparse``: the step's
convolutions as the library runs them at this density. Prints one JSON
line per layer (milliseconds and GFLOP/s of each) and a total line with the
convolutions' summed time, the images/s that time alone would allow, and a
4096^2 matmul's GFLOP/s on the same device, all in ``--dtype`` (bfloat16
operands accumulate in float32, as the library's bfloat16 synapses do). On CPU, run it as the
benchmark runs (``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``); the XLA flags of
:func:`bntt_jax.platform.configure_xla` are set here.
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
  p.add_argument('--reps', type=int, default=5)
  p.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  p.add_argument('--density', type=float, default=0.25, help='fraction of ones in the inputs')
  a = p.parse_args(argv)
  platform.configure_xla()
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  platform.set_matmul_precision('highest')
  from bntt_jax import models  # pylint: disable=g-import-not-at-top
  from bntt_jax.kernels import sparse_conv  # pylint: disable=g-import-not-at-top
  from bntt_jax.kernels import winograd  # pylint: disable=g-import-not-at-top
  from bntt_jax.analysis import energy  # pylint: disable=g-import-not-at-top

  dtype = jnp.dtype(a.dtype)

  def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                        preferred_element_type=jnp.float32)

  ops = {
      'fwd': jax.jit(lambda x, w, g: conv(x, w)),
      'dx': jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w).astype(dtype), x)[1](g)[0]),
      'dw': jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w).astype(dtype), w)[1](g)[0]),
  }
  sparse_ops = {
      'fwd_sparse': jax.jit(lambda x, w, g: sparse_conv.conv3x3(x, w)),
      'dw_sparse': jax.jit(
          lambda x, w, g: jax.vjp(lambda w: sparse_conv.conv3x3(x, w), w)[1](g)[0]),
      'fwd_winograd': jax.jit(lambda x, w, g: winograd.conv3x3(x, w)),
      'dx_winograd': jax.jit(lambda x, w, g: winograd.input_grad(g, w)),
  }
  n = a.batch * a.timesteps
  rng = np.random.default_rng(0)
  total_s = 0.0
  total_gflop = 0.0
  sparse_saved_s = 0.0
  model = models.vgg9(num_steps=1)
  convs = [(c, spikes) for c, spikes in zip(energy.layer_costs(model, (32, 32, 3)),
                                            model.spike_inputs()) if c.kind == 'conv']
  for i, (c, spikes_in) in enumerate(convs):
    size, cin, cout = c.in_shape[0], c.in_shape[-1], c.out_shape[-1]
    x = jnp.asarray((rng.random((n, size, size, cin)) < a.density).astype(np.float32), dtype)
    w = jnp.asarray(rng.standard_normal((3, 3, cin, cout)) * 0.05, dtype)
    g = jnp.asarray(rng.standard_normal((n, size, size, cout)), dtype)
    gflop = 2 * n * c.flops / 1e9
    row = {'layer': f'conv{i + 1}', 'shape': [n, size, size, cin, cout]}
    for name, f in ops.items():
      if name == 'dx' and i == 0:
        continue
      s = timing.seconds_per_call(f, x, w, g, reps=a.reps)
      row[f'{name}_ms'] = round(s * 1e3, 1)
      row[f'{name}_gflops'] = round(gflop / s, 1)
      total_s += s
      total_gflop += gflop
    if (spikes_in and dtype == jnp.float32 and sparse_conv.supports(x.shape, w.shape, dtype)
        and sparse_conv.available()):
      for name, f in sparse_ops.items():
        if 'winograd' in name and not (winograd.supports(w.shape, dtype) and winograd.available()):
          continue
        row[f'{name}_ms'] = round(timing.seconds_per_call(f, x, w, g, reps=a.reps) * 1e3, 1)
      # What the library runs (sparse_conv.conv3x3_where_sparse at this density).
      event = a.density <= sparse_conv.max_density(w.shape, dtype)
      library = (row['fwd_sparse_ms'] if event else row.get('fwd_winograd_ms', row['fwd_ms'])
                 ) + row['dw_sparse_ms'] + row.get('dx_winograd_ms', row['dx_ms'])
      sparse_saved_s += (row['fwd_ms'] + row['dw_ms'] + row['dx_ms'] - library) / 1e3
    print(json.dumps(row), flush=True)
  print(json.dumps({
      'total': 'convolutions', 'batch': a.batch, 'timesteps': a.timesteps, 'dtype': a.dtype,
      'conv_s': round(total_s, 3), 'conv_gflops': round(total_gflop / total_s, 1),
      'img_per_s_bound': round(a.batch / total_s, 2),
      'conv_s_sparse': round(total_s - sparse_saved_s, 3),
      'img_per_s_bound_sparse': round(a.batch / (total_s - sparse_saved_s), 2),
      'matmul_peak_gflops': round(timing.matmul_peak_gflops(dtype), 1),
      'backend': jax.default_backend()}), flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
