"""The Winograd kernel (bntt_jax.kernels.winograd): equal to a float64 convolution to a few float32
roundings, at every border and channel case, deterministic, and what the event-driven
convolutions' backward uses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bntt_jax.kernels import sparse_conv
from bntt_jax.kernels import winograd
import kernel_fixtures
from kernel_fixtures import isa  # pylint: disable=unused-import  (the fixture)


def _needs_kernel():
  kernel_fixtures.needs(winograd)


def _conv64(x, w):
  """The reference, in float64: y[i, j] = sum over taps (a, b) of x[i + a - 1, j + b - 1] @ w[a, b]."""
  x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
  h, wd = x.shape[1:3]
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return sum(xp[:, a:a + h, b:b + wd] @ w[a, b] for a in range(3) for b in range(3))


def _input_grad64(g, w):
  """Its transpose: dx[i, j] = sum over taps of g[i - a + 1, j - b + 1] @ w[a, b]^T."""
  g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
  h, wd = g.shape[1:3]
  gp = np.pad(g, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return sum(gp[:, 2 - a:2 - a + h, 2 - b:2 - b + wd] @ w[a, b].T for a in range(3) for b in range(3))


def _max_rel_error(got, want):
  return float(np.max(np.abs(np.asarray(got, np.float64) - want)) / np.max(np.abs(want)))


# (N, H, W, C_in, C_out): tiles cut by every border (H, W not multiples of 4, smaller than a
# tile), channel counts on the 64-wide and the 16-wide paths and both, more tiles than a block.
TOLERANCE = 2e-5
SHAPES = [(2, 5, 7, 16, 64), (1, 1, 1, 16, 16), (3, 3, 9, 32, 48), (2, 8, 8, 80, 144),
          (4, 16, 16, 64, 128), (40, 8, 8, 64, 64)]


@pytest.mark.parametrize('shape', SHAPES)
def test_forward_equals_float64_convolution(shape, isa):
  """Spike-like and Gaussian inputs: max error within 2e-5 of max|y|, in each variant. Measured
  here: 0.2-8e-6 on these shapes (1.3e-5 at 256 channels in and out), XLA's float32 convolution
  0.3-9e-7: the transforms' large, cancelling terms cost F(4x4, 3x3) about ten float32
  roundings more."""
  _needs_kernel()
  n, h, w, c, d = shape
  rng = np.random.default_rng(0)
  k = jnp.asarray(rng.standard_normal((3, 3, c, d)), jnp.float32)
  x0 = jnp.zeros((n, h, w, c), jnp.float32)
  assert f'bntt_winograd_conv_{isa}' in jax.jit(winograd.conv3x3).lower(x0, k).as_text()
  for x in ((rng.random((n, h, w, c)) < 0.2).astype(np.float32),
            rng.standard_normal((n, h, w, c)).astype(np.float32)):
    y = jax.jit(winograd.conv3x3)(jnp.asarray(x), k)
    assert y.shape == (n, h, w, d) and y.dtype == jnp.float32
    assert _max_rel_error(y, _conv64(x, k)) < TOLERANCE


@pytest.mark.parametrize('shape', SHAPES)
def test_input_gradient_equals_float64_transposed_convolution(shape, isa):
  del isa
  _needs_kernel()
  n, h, w, c, d = shape
  rng = np.random.default_rng(1)
  k = jnp.asarray(rng.standard_normal((3, 3, c, d)), jnp.float32)
  g = jnp.asarray(rng.standard_normal((n, h, w, d)), jnp.float32)
  dx = jax.jit(winograd.input_grad)(g, k)
  assert dx.shape == (n, h, w, c)
  assert _max_rel_error(dx, _input_grad64(g, k)) < TOLERANCE


def test_an_impulse_gives_the_filter_back(isa):
  """One nonzero input in the middle: the output around it is the filter itself (correlation,
  not convolution: not flipped), and zero elsewhere; a wrong transform matrix or tap order
  moves or mixes the taps."""
  del isa
  _needs_kernel()
  x = np.zeros((1, 9, 9, 16), np.float32)
  x[0, 4, 4, 3] = 1.0
  k = np.random.default_rng(2).standard_normal((3, 3, 16, 16)).astype(np.float32)
  y = np.array(jax.jit(winograd.conv3x3)(jnp.asarray(x), jnp.asarray(k)))
  # y[i, j] = sum_taps x[i + a - 1, j + b - 1] k[a, b]: the impulse at (4, 4) reaches y[5 - a, 5 - b].
  for a in range(3):
    for b in range(3):
      np.testing.assert_allclose(y[0, 5 - a, 5 - b], k[a, b, 3], rtol=0, atol=1e-6)
  y[0, 3:6, 3:6] = 0
  assert np.max(np.abs(y)) < TOLERANCE


def test_is_deterministic(isa):
  del isa
  _needs_kernel()
  rng = np.random.default_rng(3)
  g = jnp.asarray(rng.standard_normal((64, 8, 8, 64)), jnp.float32)
  k = jnp.asarray(rng.standard_normal((3, 3, 32, 64)), jnp.float32)
  f = jax.jit(winograd.input_grad)
  first = np.asarray(f(g, k))
  for _ in range(3):
    np.testing.assert_array_equal(f(g, k), first)


def test_bad_operands_are_one_line_errors():
  _needs_kernel()
  with pytest.raises(Exception, match='channels must be multiples of 16'):
    winograd.conv3x3(jnp.zeros((1, 4, 4, 8)), jnp.zeros((3, 3, 8, 16))).block_until_ready()
  assert winograd.supports((3, 3, 16, 32), jnp.float32)
  assert not winograd.supports((3, 3, 8, 32), jnp.float32)
  assert not winograd.supports((3, 3, 16, 32), jnp.bfloat16)
  assert not winograd.supports((5, 5, 16, 32), jnp.float32)


def test_event_driven_backward_runs_it_for_the_input_gradient():
  """The event-driven convolution's input gradient is the Winograd kernel's: the compiled
  backward holds its call and no XLA convolution (before this kernel it held one convolution,
  the input gradient, measured), and it equals the float64 one."""
  _needs_kernel()
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.random((4, 8, 8, 16)) < 0.1, jnp.float32)
  k = jnp.asarray(rng.standard_normal((3, 3, 16, 64)), jnp.float32)
  g = jnp.asarray(rng.standard_normal((4, 8, 8, 64)), jnp.float32)
  for conv in (sparse_conv.conv3x3, sparse_conv.conv3x3_where_sparse):
    bwd = jax.jit(lambda x, k, g, conv=conv: jax.vjp(conv, x, k)[1](g))
    hlo = bwd.lower(x, k, g).compile().as_text()
    assert 'bntt_winograd_conv' in hlo and ' convolution(' not in hlo
    assert _max_rel_error(bwd(x, k, g)[0], _input_grad64(g, k)) < TOLERANCE


def test_without_the_kernel_the_input_gradient_is_xlas(monkeypatch):
  _needs_kernel()
  rng = np.random.default_rng(5)
  k = jnp.asarray(rng.standard_normal((3, 3, 16, 64)), jnp.float32)
  g = jnp.asarray(rng.standard_normal((2, 4, 4, 64)), jnp.float32)
  monkeypatch.setattr(winograd, 'available', lambda: False)
  hlo = jax.jit(sparse_conv.input_grad).lower(g, k).as_text()
  assert 'bntt_winograd_conv' not in hlo and 'convolution' in hlo
  assert _max_rel_error(sparse_conv.input_grad(g, k), _input_grad64(g, k)) < TOLERANCE
  assert sparse_conv.max_density(k.shape) == sparse_conv.MAX_DENSITY_XLA
