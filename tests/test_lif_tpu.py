"""The Pallas TPU LIF kernels (bntt_jax.kernels.lif_tpu) against the scan, in Pallas's
interpreter on CPU; what they take; and the network running them."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import step_fixtures
from bntt_jax import models
from bntt_jax import network
from bntt_jax import neurons
from bntt_jax.kernels import lif_tpu


def _operands(shape, groups, dtype, seed=0):
  k = jax.random.split(jax.random.PRNGKey(seed), 4)
  t, c = shape[0], shape[-1]
  x = (jax.random.normal(k[0], shape) * 0.8 + 0.35).astype(dtype)
  mul = 1.0 + 0.3 * jax.random.normal(k[1], (t, groups, c))
  add = 0.1 * jax.random.normal(k[2], (t, groups, c))
  return x, mul, add, jax.random.normal(k[3], shape)


@pytest.mark.parametrize('surrogate', sorted(neurons.SURROGATES))
@pytest.mark.parametrize('shape,groups,dtype', [
    ((6, 4, 4, 4, 64), 2, jnp.float32),     # 64 channels on the 128-lane view, two groups
    ((5, 2, 256), 1, jnp.bfloat16),         # two lane tiles of channels, bfloat16 input
    ((1, 4, 8, 8, 32), 1, jnp.float32),     # one step, 32 channels (fold 4)
    ((25, 8, 4, 4, 128), 1, jnp.float32),   # T 25
    ((3, 4, 2, 3, 256), 1, jnp.bfloat16),   # a convolution's positions view, bfloat16 input
    ((3, 64, 1024), 4, jnp.float32)])       # a dense layer, four groups
def test_pallas_lif_equals_the_scan(surrogate, shape, groups, dtype):
  """Spikes equal to neurons.lif_affine_sequence's; gradients within 1e-5 of their scale
  (the scan's custom VJP is itself tested against autodiff in test_neurons)."""
  p = neurons.LIFParams(0.9, 1.1, neurons.make_surrogate(surrogate))
  x, mul, add, g = _operands(shape, groups, dtype)
  assert lif_tpu.supports(x, mul, add)
  s_k, vjp_k = jax.vjp(lambda *a: lif_tpu.lif_affine_sequence(*a, p, interpret=True),
                       x, mul, add)
  s_r, vjp_r = jax.vjp(lambda *a: neurons.lif_affine_sequence(*a, p), x, mul, add)
  assert 0.05 < float(jnp.mean(s_r)) < 0.95
  assert s_k.dtype == s_r.dtype == jnp.float32
  np.testing.assert_array_equal(s_k, s_r)
  for a, b in zip(vjp_k(g), vjp_r(g)):
    assert a.dtype == b.dtype and a.shape == b.shape
    b32 = np.asarray(b, np.float32)
    ulp = 2.0**-7 if a.dtype == jnp.bfloat16 else 0.0
    np.testing.assert_allclose(np.asarray(a, np.float32), b32, rtol=ulp,
                               atol=1e-5 * max(1.0, float(np.abs(b32).max())))


@pytest.mark.parametrize('shape,budget_rows,lanes,layout', [
    # steps: 128 rows of a dense layer's 128-lane view in 2 blocks; 2 lane blocks of a dense
    # layer; 3 lane tiles in one block, 2 row blocks
    ((4, 256, 64), 64, 128, lif_tpu.Layout('steps', 128, (64, 128))),
    ((3, 8, 1024), 8, 512, lif_tpu.Layout('steps', 1024, (8, 512))),
    ((3, 64, 384), 32, 384, lif_tpu.Layout('steps', 384, (32, 384))),
    # positions: 64 channels (on 128 lanes), 16 position blocks (8 examples take a VMEM tile
    # of 32 int8 rows); the batch in 2 blocks of 32, 4 position blocks; 2 position blocks, 2
    # channel blocks of 512
    ((4, 8, 8, 8, 64), 64, 128, lif_tpu.Layout('positions', 64, (4, 8, 64))),
    ((3, 64, 2, 2, 256), 32, 256, lif_tpu.Layout('positions', 256, (1, 32, 256))),
    ((2, 8, 2, 3, 1024), 32, 512, lif_tpu.Layout('positions', 1024, (3, 8, 512)))])
def test_pallas_lif_in_many_blocks_equals_the_scan(monkeypatch, shape, budget_rows, lanes,
                                                   layout):
  """Several grid steps along every axis of the grid (a smaller VMEM budget): the same
  numbers."""
  monkeypatch.setattr(lif_tpu, 'VMEM_BUDGET',
                      shape[0] * budget_rows * lif_tpu._bytes_per_row_step(lanes, 4))
  p = neurons.LIFParams(0.9, 1.1)
  x, mul, add, g = _operands(shape, 1, jnp.float32, seed=3)
  assert lif_tpu._layout(x, mul) == layout
  s_k, vjp_k = jax.vjp(lambda *a: lif_tpu.lif_affine_sequence(*a, p, interpret=True),
                       x, mul, add)
  s_r, vjp_r = jax.vjp(lambda *a: neurons.lif_affine_sequence(*a, p), x, mul, add)
  np.testing.assert_array_equal(s_k, s_r)
  for a, b in zip(vjp_k(g), vjp_r(g)):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * max(1.0, float(np.abs(b).max())))


@pytest.mark.parametrize('shape,view', [
    ((4, 2, 8, 8, 64), (64, 4, 2, 64)),    # a convolution's: positions, T, batch, channels
    ((4, 16, 64), (4, 1, 8, 128))])        # a dense layer's: steps on 128 lanes
def test_pallas_lif_keeps_only_the_input_and_int8_spikes(shape, view):
  from jax._src.ad_checkpoint import saved_residuals  # pylint: disable=g-import-not-at-top
  p = neurons.LIFParams()
  x, mul, add, _ = _operands(shape, 1, jnp.float32)
  res = saved_residuals(
      lambda *a: lif_tpu.lif_affine_sequence(*a, p, interpret=True).sum(), x, mul, add)
  big = sorted(((a.shape, a.dtype) for a, _ in res if a.size == x.size), key=str)
  assert big == sorted([(view, jnp.float32), (view, jnp.int8)], key=str), res


def test_block_rows_fit_the_vmem_budget_and_tile_int8():
  # VGG9's conv1 at batch 16, T 25: 8192 rows of 128 lanes.
  per_row = 128 * (2 * (4 + 1 + 4 + 4) + 4)
  rb = lif_tpu.block_rows(25, 8192, 128, 4)
  assert rb % 32 == 0 and 8192 % rb == 0 and 25 * rb * per_row <= lif_tpu.VMEM_BUDGET
  assert 25 * 2 * rb * per_row > lif_tpu.VMEM_BUDGET or 2 * rb > 8192 or 8192 % (2 * rb)
  assert lif_tpu.block_rows(25, 16, 128, 4) == 16          # few rows: all in one block
  # VGG9's fc1 at batch 64: 1024 lanes in blocks of 512, 32 rows of the 64
  assert lif_tpu.blocks(25, 64, 1024, 4) == (32, 512)
  assert lif_tpu.block_rows(25, 96 * 1024 + 1, 128, 4) is None   # no multiple of 32 divides
  # 10,000 steps do not fit 32 rows
  assert lif_tpu.block_rows(10_000, 4096, 128, 4) is None


def test_position_blocks_fit_the_vmem_budget_in_whole_tiles():
  """VGG9's convolutions in the positions view. At 2 examples a chip (what the slices tests
  compile) VMEM holds each position's examples in a tile of 8 rows (32-bit values) or 32
  (int8): counted as 2 rows, conv1's blocks at T 25 took 64 positions, 4.7x the budget."""
  # per position: 25 steps x 128 lanes x (8 rows x 28 bytes of the 32-bit operands + 32 rows x
  # 2 bytes of the double-buffered int8 spikes)
  per_position = 25 * 128 * (8 * 28 + 32 * 2)
  assert lif_tpu.position_blocks(25, 1024, 2, 64, 4) == (8, 2, 64)     # conv1, batch 2
  assert 8 * per_position <= lif_tpu.VMEM_BUDGET < 16 * per_position
  assert lif_tpu.position_blocks(25, 1024, 64, 64, 4) == (2, 64, 64)   # conv1, batch 64
  assert lif_tpu.position_blocks(25, 64, 16, 256, 4)[1:] == (16, 256)   # conv5, batch 16
  assert lif_tpu.position_blocks(25, 64, 384, 256, 4) == (1, 64, 256)   # 384: blocks of 64
  # no multiple of 32 divides 360, nothing fits 10,000 steps: the steps view, or the scan
  assert lif_tpu.position_blocks(25, 64, 360, 256, 4) is None
  assert lif_tpu.position_blocks(10_000, 64, 64, 256, 4) is None


@pytest.mark.parametrize('shape,groups,dtype', [
    ((4, 2, 3, 3, 48), 1, jnp.float32),    # 48 channels: neither a multiple nor a divisor of 128
    ((4, 3, 4, 4, 64), 2, jnp.float32),    # 3 examples in 2 groups
    ((4, 2, 256), 1, jnp.float16),
    ((4, 3, 64), 1, jnp.float32)])         # a dense layer, 192 values a step: not rows of 128
def test_pallas_lif_refuses_what_it_does_not_take(shape, groups, dtype):
  x, mul, add, _ = _operands(shape[:1] + (max(shape[1], groups),) + shape[2:], groups, dtype)
  x = x[:, :shape[1]]
  assert not lif_tpu.supports(x, mul, add)
  with pytest.raises(ValueError, match='the TPU LIF kernel does not take x'):
    lif_tpu.lif_affine_sequence(x, mul, add, neurons.LIFParams(), interpret=True)


@pytest.mark.parametrize('remat', [False, True])
def test_network_with_the_tpu_lif_kernel_equals_the_scan(monkeypatch, remat):
  """A small network with ``lif_kernel='tpu'`` (the kernels interpreted on CPU), with and
  without remat: loss, spike counts, running statistics and every gradient equal to the
  scan's (``off``)."""
  real = lif_tpu.lif_affine_sequence
  calls = []

  def interpreted(*a, **k):
    calls.append(a[0].shape)
    return real(*a, **k, interpret=True)

  monkeypatch.setattr(lif_tpu, 'lif_affine_sequence', interpreted)
  layers = (models.conv(64), models.conv(128, 2), models.dense(256))
  x = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, 8, 8, 3)), jnp.float32)
  y = jnp.arange(2)
  (_, l_k, s_k, sp_k, g_k), (_, l_o, s_o, sp_o, g_o) = (
      step_fixtures.init_and_step(
          network.SpikingNetwork(layers=layers, num_classes=10, num_steps=3, lif_kernel=lif,
                                 sparse_conv='off', remat=remat), x, y)
      for lif in ('tpu', 'off'))
  assert set(calls) == {(3, 2, 256), (3, 2, 8, 8, 64), (3, 2, 8, 8, 128)}
  assert all(float(jnp.sum(s)) > 0 for s in jax.tree.leaves(sp_k))
  np.testing.assert_allclose(l_k, l_o, rtol=1e-6)
  jax.tree.map(np.testing.assert_array_equal, sp_k, sp_o)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), s_k, s_o)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g_k, g_o)


def test_a_layer_the_kernels_do_not_take_runs_the_scan_and_says_so(caplog):
  """48 channels (neither a multiple nor a divisor of 128): the block warns and runs the scan,
  with the scan's numbers. Before the warning a layer fell back silently (checked: this test
  fails without the log line)."""
  layers = (models.conv(48),)
  x = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, 4, 4, 3)), jnp.float32)
  y = jnp.arange(2)
  with caplog.at_level('WARNING'):
    _, l_k, _, _, g_k = step_fixtures.init_and_step(
        network.SpikingNetwork(layers=layers, num_classes=10, num_steps=2, lif_kernel='tpu',
                               sparse_conv='off'), x, y)
  assert "layer conv1: the TPU LIF kernels do not take its input float32[2, 2, 4, 4, 48]" in (
      caplog.text)
  _, l_o, _, _, g_o = step_fixtures.init_and_step(
      network.SpikingNetwork(layers=layers, num_classes=10, num_steps=2, lif_kernel='off',
                             sparse_conv='off'), x, y)
  np.testing.assert_array_equal(l_k, l_o)
  jax.tree.map(np.testing.assert_array_equal, g_k, g_o)
