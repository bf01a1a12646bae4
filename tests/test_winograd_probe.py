"""experiments/winograd_probe.py's F(4x4, 3x3) convolution equals the direct one."""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'experiments'))

import winograd_probe as wp  # pylint: disable=g-import-not-at-top


def test_winograd_f43_equals_same_padded_convolution():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((3, 8, 12, 5)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((3, 3, 5, 7)), jnp.float32)
  with jax.default_matmul_precision('highest'):
    m = jax.lax.dot_general(wp.input_transform(x), wp.kernel_transform(w),
                            (((2,), (1,)), ((0,), (0,))))
    got = wp.output_transform(m, 3, 2, 3)
  want = jax.lax.conv_general_dilated(np.asarray(x, np.float64), np.asarray(w, np.float64),
                                      (1, 1), 'SAME',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  assert got.shape == (3, 8, 12, 7)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * float(jnp.max(jnp.abs(want))))
