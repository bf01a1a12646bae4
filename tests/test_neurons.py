"""LIF neuron and surrogate gradients against closed forms (spec section 1)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bntt_jax import neurons
import hlo_fixtures


def _vjp_of_spike(u, threshold, sur):
  return np.asarray(jax.grad(lambda u: jnp.sum(neurons.spike(u, threshold, sur)))(u))


@pytest.mark.parametrize('threshold', [1.0, 0.5, 2.0])
def test_triangle_surrogate_closed_form_with_1_over_theta(threshold):
  with jax.enable_x64(True):
    sur = neurons.make_surrogate('triangle')
    assert sur.alpha == 0.3
    # x = u/theta - 1 at -1.5, -1 (edge), -0.5, 0 (peak), 0.25, 1 (edge), 2.
    xs = np.array([-1.5, -1.0, -0.5, 0.0, 0.25, 1.0, 2.0])
    u = jnp.asarray((xs + 1.0) * threshold)
    got = _vjp_of_spike(u, threshold, sur)
    want = np.array([0.0, 0.0, 0.15, 0.3, 0.225, 0.0, 0.0]) / threshold
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


def test_fast_sigmoid_and_arctan_closed_forms():
  with jax.enable_x64(True):
    xs = np.array([-2.0, -0.5, 0.0, 0.1, 1.0])
    theta = 0.8
    u = jnp.asarray((xs + 1.0) * theta)
    fs = neurons.make_surrogate('fast_sigmoid', 10.0)
    np.testing.assert_allclose(_vjp_of_spike(u, theta, fs),
                               1.0 / (1.0 + 10.0 * np.abs(xs)) ** 2 / theta, rtol=1e-13)
    at = neurons.make_surrogate('arctan', 2.0)
    np.testing.assert_allclose(_vjp_of_spike(u, theta, at),
                               1.0 / (1.0 + (math.pi * xs) ** 2) / theta, rtol=1e-13)
    with pytest.raises(ValueError, match="surrogate 'nope'"):
      neurons.make_surrogate('nope')


def test_spike_is_strictly_greater_than_threshold():
  u = jnp.asarray([0.999, 1.0, 1.0001, -3.0, 5.0])
  np.testing.assert_array_equal(neurons.spike(u, 1.0, neurons.Surrogate()), [0, 0, 1, 0, 1])


def test_soft_reset_carries_no_gradient():
  """d u_next / d u = leak + surrogate only through the spike's own use; the
  reset term theta * s contributes nothing."""
  with jax.enable_x64(True):
    p = neurons.LIFParams(leak=0.9, threshold=1.0)
    u_prev = jnp.asarray([0.5, 1.05, 2.0])   # the 2nd and 3rd fire after integration
    cur = jnp.asarray([0.6, 0.2, 0.0])
    du = jax.jacrev(lambda u: neurons.lif_step(u, cur, p)[0])(u_prev)
    np.testing.assert_allclose(np.diag(du), [0.9, 0.9, 0.9], rtol=1e-15)
    # The forward value does subtract theta where it fired.
    u_next, s = neurons.lif_step(u_prev, cur, p)
    np.testing.assert_allclose(u_next, [0.45 + 0.6 - 1.0, 0.945 + 0.2 - 1.0, 1.8 - 1.0])
    np.testing.assert_array_equal(s, [1.0, 1.0, 1.0])


def test_lif_sequence_matches_hand_loop_and_gradient():
  with jax.enable_x64(True):
    p = neurons.LIFParams(leak=0.8, threshold=1.0)
    cur = np.random.RandomState(0).uniform(-0.5, 1.5, (6, 5))
    u = np.zeros(5)
    want = []
    for t in range(6):
      u = 0.8 * u + cur[t]
      s = (u > 1.0).astype(float)
      u = u - s
      want.append(s)
    s_all = neurons.lif_sequence(jnp.asarray(cur), p)
    np.testing.assert_array_equal(s_all, np.array(want))
    # Gradient of sum(w * s) by the recurrence delta_t = g_t sigma'(u_t) + leak delta_{t+1}.
    w = np.random.RandomState(1).randn(6, 5)
    g = np.asarray(jax.grad(lambda c: jnp.sum(neurons.lif_sequence(c, p) * w))(jnp.asarray(cur)))
    u, upre = np.zeros(5), []
    for t in range(6):
      u = 0.8 * u + cur[t]
      upre.append(u.copy())
      u = u - (u > 1.0)
    delta, want_g = np.zeros(5), np.zeros((6, 5))
    for t in reversed(range(6)):
      delta = w[t] * 0.3 * np.maximum(0.0, 1.0 - np.abs(upre[t] - 1.0)) + 0.8 * delta
      want_g[t] = delta
    np.testing.assert_allclose(g, want_g, rtol=1e-13, atol=1e-15)


def test_lif_params_reject_bad_values():
  with pytest.raises(ValueError, match='leak 1.5'):
    neurons.LIFParams(leak=1.5)
  with pytest.raises(ValueError, match='threshold 0'):
    neurons.LIFParams(threshold=0.0)


@pytest.mark.parametrize('groups', [1, 2])
def test_fused_affine_lif_equals_unfused_values_and_gradients(groups):
  """lif_affine_sequence (what the layer schedule runs) == lif_sequence(x * mul + add)."""
  with jax.enable_x64(True):
    p = neurons.LIFParams(leak=0.9, threshold=1.0)
    rng = np.random.RandomState(0)
    x = jnp.asarray(rng.randn(5, 6, 3, 3, 4))
    mul = jnp.asarray(rng.uniform(0.5, 2.0, (5, groups, 4)))
    add = jnp.asarray(rng.randn(5, groups, 4) * 0.3)
    w = rng.randn(*x.shape)

    def unfused(x, mul, add):
      xg = x.reshape((5, groups, 6 // groups) + x.shape[2:])
      z = xg * mul[:, :, None, None, None] + add[:, :, None, None, None]
      return jnp.sum(neurons.lif_sequence(z.reshape(x.shape), p) * w)

    def fused(x, mul, add):
      return jnp.sum(neurons.lif_affine_sequence(x, mul, add, p) * w)

    assert float(jnp.sum(jnp.abs(neurons.lif_affine_sequence(x, mul, add, p)))) > 10
    np.testing.assert_allclose(fused(x, mul, add), unfused(x, mul, add), rtol=1e-14)
    for a, b in zip(jax.grad(fused, (0, 1, 2))(x, mul, add),
                    jax.grad(unfused, (0, 1, 2))(x, mul, add)):
      assert np.abs(np.asarray(a)).max() > 0
      np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def _autodiff_lif(x, mul, add, p):
  """The recurrence as defined, differentiated by JAX (the spike's surrogate VJP, the reset a
  constant): the reference for the fused op's custom VJP."""
  dt = jnp.promote_types(x.dtype, jnp.float32)
  g = mul.shape[1]
  xg = x.reshape(x.shape[:1] + (g, x.shape[1] // g) + x.shape[2:])
  bshape = mul.shape[1:2] + (1,) * (xg.ndim - 3) + mul.shape[-1:]

  def body(u, inp):
    xt, mt, at = inp
    u = p.leak * u + (xt.astype(dt) * mt.reshape(bshape) + at.reshape(bshape))
    s = neurons.spike(u, p.threshold, p.surrogate)
    return u - p.threshold * jax.lax.stop_gradient(s), s

  _, s = jax.lax.scan(body, jnp.zeros(xg.shape[1:], dt), (xg, mul, add))
  return s.reshape(x.shape)


@pytest.mark.parametrize('surrogate', sorted(neurons.SURROGATES))
@pytest.mark.parametrize('shape,groups,dtype', [
    ((6, 4, 5, 3, 24), 1, jnp.float32), ((5, 6, 7, 2), 2, jnp.float32),
    ((25, 3, 130), 1, jnp.float32), ((1, 5, 40), 1, jnp.float32),
    ((6, 4, 5, 3, 24), 1, jnp.bfloat16), ((25, 3, 130), 1, jnp.bfloat16),
    # C < 128: run on a 128-lane view (fold 2 and 4), one and two groups
    ((5, 4, 4, 4, 64), 2, jnp.float32), ((3, 8, 2, 2, 32), 1, jnp.bfloat16),
    ((4, 2, 64), 1, jnp.float32)])
def test_fused_lif_custom_vjp_equals_autodiff_of_the_recurrence(surrogate, shape, groups, dtype):
  """Spikes equal; gradients within 1e-5 of their scale (float32 and bfloat16 synapse outputs,
  every surrogate, one step too); a bfloat16 input's gradient is rounded to bfloat16, so it
  may be one bf16 ulp off where the float32 values straddle a rounding boundary."""
  p = neurons.LIFParams(0.9, 1.1, neurons.make_surrogate(surrogate))
  k = jax.random.split(jax.random.PRNGKey(0), 4)
  t, c = shape[0], shape[-1]
  x = (jax.random.normal(k[0], shape) * 0.8 + 0.35).astype(dtype)
  mul = 1.0 + 0.3 * jax.random.normal(k[1], (t, groups, c))
  add = 0.1 * jax.random.normal(k[2], (t, groups, c))
  g = jax.random.normal(k[3], shape)
  s_f, vjp_f = jax.vjp(lambda *a: neurons.lif_affine_sequence(*a, p), x, mul, add)
  s_r, vjp_r = jax.vjp(lambda *a: _autodiff_lif(*a, p), x, mul, add)
  assert 0.05 < float(jnp.mean(s_r)) < 0.95
  np.testing.assert_array_equal(s_f, s_r)
  for a, b in zip(vjp_f(g), vjp_r(g)):
    assert a.dtype == b.dtype
    b32 = np.asarray(b, np.float32)
    ulp = 2.0**-7 if a.dtype == jnp.bfloat16 else 0.0     # relative spacing of bf16 values
    np.testing.assert_allclose(np.asarray(a, np.float32), b32, rtol=ulp,
                               atol=1e-5 * max(1.0, float(np.abs(b32).max())))


def test_fused_lif_keeps_spikes_as_int8_and_no_float_membrane():
  """The backward pass recomputes the membranes. Before: a float32 [k, G, n, ...] membrane
  (the scan's pre-spike values) was kept from the forward for every layer."""
  from jax._src.ad_checkpoint import saved_residuals  # pylint: disable=g-import-not-at-top
  p = neurons.LIFParams()
  x = jnp.ones((4, 6, 5, 5, 8))
  mul, add = jnp.ones((4, 2, 8)), jnp.zeros((4, 2, 8))
  res = saved_residuals(lambda *a: neurons.lif_affine_sequence(*a, p).sum(), x, mul, add)
  big = [(a.shape, a.dtype) for a, _ in res if a.size == x.size]
  assert sorted(big, key=str) == sorted([(x.shape, jnp.float32), ((4, 2, 3, 5, 5, 8), jnp.int8)],
                                        key=str), res


@pytest.mark.parametrize('shape,groups,fold', [
    ((4, 6, 4, 4, 64), 2, 2), ((4, 2, 4, 4, 32), 1, 4), ((4, 2, 3, 3, 64), 2, 1),
    ((4, 2, 3, 3, 48), 1, 1), ((4, 2, 256), 1, 1)])
def test_fused_lif_runs_narrow_layers_on_128_lanes(shape, groups, fold):
  """A layer of fewer than 128 channels runs its recurrence, and keeps its residuals, with
  128 values in the last axis (where each group's slice holds whole rows of 128); others as
  they are. Before: the scan's arrays and residuals ended in the layer's channels (64), half a
  TPU tile."""
  from jax._src.ad_checkpoint import saved_residuals  # pylint: disable=g-import-not-at-top
  p = neurons.LIFParams()
  x = jnp.ones(shape)
  mul, add = jnp.ones((shape[0], groups, shape[-1])), jnp.zeros((shape[0], groups, shape[-1]))
  res = saved_residuals(lambda *a: neurons.lif_affine_sequence(*a, p).sum(), x, mul, add)
  lasts = {a.shape[-1] for a, _ in res if a.size == x.size}
  assert lasts == {shape[-1] * fold}, res


def test_the_lif_module_is_lif_sequence_and_lif_step():
  layer = neurons.LIF(leak=0.9, threshold=0.7)
  p = neurons.LIFParams(0.9, 0.7, neurons.Surrogate())
  currents = jax.random.uniform(jax.random.PRNGKey(1), (6, 3, 4), minval=-0.5, maxval=1.5)
  spikes = layer.apply({}, currents)
  np.testing.assert_array_equal(spikes, neurons.lif_sequence(currents, p))
  assert 0 < float(spikes.mean()) < 1
  # The step method, looped by hand, gives the same spikes.
  u, steps = jnp.zeros_like(currents[0]), []
  for t in range(currents.shape[0]):
    u, s = layer.apply({}, u, currents[t], method=neurons.LIF.step)
    steps.append(s)
  np.testing.assert_array_equal(jnp.stack(steps), spikes)


@pytest.mark.parametrize('channels', [16, 128])
def test_the_scans_channel_sums_reduce_one_axis_on_cpu(channels):
  """The backward scan's per-step sums for ``mul`` and ``add`` reduce one axis, not the last.

  XLA:CPU sums one axis of a step's slice fast and several slowly: the pure-JAX LIF's training
  pass on ``[25, 16, 32, 32, 128]``, timed alone on the 2-core machine, took 1491 ms with each
  ``[16, 32, 32, 128]`` step summed over (0, 1, 2), 287 ms summed as ``[16384, 128]`` over 0
  (64 channels, folded into 128 lanes, were already so: 143 ms); VGG9's step at batch 16, 2 %
  firing (``experiments/benchmark.py --spike-rate=0.02 --lif-kernel=off``): 2.36 -> 1.93 s.
  On the code before the fix the unfolded case's ``[8, 3, 3, 128]`` was summed over (0, 1, 2):
  this test failed for it. (With several statistics groups XLA:CPU folds the merged axes back
  into several: not covered.)
  """
  rng = np.random.RandomState(3)
  x = jnp.asarray(rng.randn(4, 8, 3, 3, channels), jnp.float32)
  mul = jnp.asarray(rng.uniform(0.5, 2, (4, 1, channels)), jnp.float32)
  add = jnp.asarray(rng.randn(4, 1, channels), jnp.float32)
  p = neurons.LIFParams()

  def train_pass(x, mul, add, g):
    s, pull = jax.vjp(lambda *a: neurons.lif_affine_sequence(*a, p), x, mul, add)
    return s, pull(g)

  text = jax.jit(train_pass).lower(x, mul, add, x).compile().as_text()
  step = [(s, d) for s, d in hlo_fixtures.reductions(text) if int(np.prod(s)) == x.size // 4]
  assert step, 'no per-step reduction found: the parse of the HLO text is stale'
  for shape, dims in step:
    assert len(dims) == 1 and dims[0] < len(shape) - 1, (shape, dims)
