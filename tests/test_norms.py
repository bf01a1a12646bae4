"""BNTT and the baseline norms against hand computations (spec sections 1, 2, 10)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bntt_jax import norms
import hlo_fixtures

EPS = 1e-4


def _stepwise_input(shape, seed=0):
  """[T, ...] input whose mean and scale differ per step."""
  rng = np.random.RandomState(seed)
  T = shape[0]
  loc = np.linspace(-2.0, 3.0, T).reshape((T,) + (1,) * (len(shape) - 1))
  scale = np.linspace(0.5, 4.0, T).reshape(loc.shape)
  return rng.randn(*shape) * scale + loc


def _init_f64(module, x, seed=1):
  v = module.init(jax.random.PRNGKey(0), x, train=True)
  v = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), v)
  # Non-trivial per-step gammas, so that gamma[t] must be the one used at step t.
  g = np.random.RandomState(seed).uniform(0.5, 2.0, v['params']['scale'].shape)
  return {'params': {'scale': jnp.asarray(g)}, 'batch_stats': v['batch_stats']}


def _s6(x, dy, gamma, pooled=False):
  """S6 by hand. x, dy: [T, ..., C]; gamma [T, C]. Statistics per t (or pooled)."""
  T, C = x.shape[0], x.shape[-1]
  xs = x.reshape(T, -1, C)
  dys = dy.reshape(T, -1, C)
  out = np.zeros_like(xs)
  if pooled:
    flat = xs.reshape(-1, C)
    mu_all, var_all = flat.mean(0), flat.var(0)
  for t in range(T):
    mu, var = (mu_all, var_all) if pooled else (xs[t].mean(0), xs[t].var(0))
    m = xs[t].shape[0]
    xhat = (xs[t] - mu) / np.sqrt(var + EPS)
    dxhat = gamma[t] * dys[t]
    out[t] = (m * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0)) / (m * np.sqrt(var + EPS))
  return out.reshape(x.shape)


@pytest.mark.parametrize('shape', [(5, 4, 3, 3, 6), (6, 8, 5)])
def test_bntt_grad_matches_s6(shape):
  with jax.enable_x64(True):
    x = jnp.asarray(_stepwise_input(shape))
    mod = norms.BNTT(num_steps=shape[0])
    v = _init_f64(mod, x)
    dy = np.random.RandomState(2).randn(*shape)

    def loss(x):
      y, _ = mod.apply(v, x, train=True, mutable=['batch_stats'])
      return jnp.sum(y * dy)

    g = np.asarray(jax.grad(loss)(x))
    gamma = np.asarray(v['params']['scale'])
    want = _s6(np.asarray(x), dy, gamma)
    rel = np.abs(g - want).max() / np.abs(want).max()
    assert rel < 1e-10, rel
    # Negative control: statistics pooled over all T do not satisfy the same test.
    pooled = _s6(np.asarray(x), dy, gamma, pooled=True)
    assert np.abs(g - pooled).max() / np.abs(pooled).max() > 1e-2


@pytest.mark.parametrize('shape', [(5, 4, 3, 3, 6), (6, 8, 5)])
def test_bntt_step_form_matches_s6(shape):
  """The one-step form (used by the step schedule) has the same gradient, per t."""
  with jax.enable_x64(True):
    x = jnp.asarray(_stepwise_input(shape, seed=3))
    mod = norms.BNTT(num_steps=shape[0])
    v = _init_f64(mod, x)
    dy = np.random.RandomState(4).randn(*shape)

    def loss(x):
      total = 0.0
      for t in range(shape[0]):
        y, _ = mod.apply(v, x[t], train=True, t=jnp.asarray(t), mutable=['batch_stats'])
        total = total + jnp.sum(y * dy[t])
      return total

    g = np.asarray(jax.grad(loss)(x))
    want = _s6(np.asarray(x), dy, np.asarray(v['params']['scale']))
    assert np.abs(g - want).max() / np.abs(want).max() < 1e-10


def test_gamma_of_step_t_gets_gradient_only_from_step_t():
  with jax.enable_x64(True):
    shape = (4, 6, 2, 2, 3)
    x = jnp.asarray(_stepwise_input(shape, seed=5))
    mod = norms.BNTT(num_steps=4)
    v = _init_f64(mod, x)
    dy = np.random.RandomState(6).randn(*shape)
    for t0 in range(4):
      mask = np.zeros(shape)
      mask[t0] = 1.0

      def loss(params):
        y, _ = mod.apply({'params': params, 'batch_stats': v['batch_stats']}, x, train=True,
                         mutable=['batch_stats'])
        return jnp.sum(y * dy * mask)

      dgamma = np.asarray(jax.grad(loss)(v['params'])['scale'])
      xt = np.asarray(x[t0]).reshape(-1, 3)
      xhat = (xt - xt.mean(0)) / np.sqrt(xt.var(0) + EPS)
      want = np.zeros((4, 3))
      want[t0] = (dy[t0].reshape(-1, 3) * xhat).sum(0)
      np.testing.assert_allclose(dgamma, want, rtol=1e-12, atol=1e-12)
      assert np.all(dgamma[np.arange(4) != t0] == 0.0)


def test_bntt_running_stats_follow_pytorch_rule():
  shape = (3, 5, 4, 4, 2)
  x = _stepwise_input(shape, seed=7).astype(np.float32)
  mod = norms.BNTT(num_steps=3)
  v = mod.init(jax.random.PRNGKey(0), jnp.asarray(x), train=True)
  # Start from non-trivial running statistics.
  old_mean = np.random.RandomState(8).randn(3, 2).astype(np.float32)
  old_var = np.random.RandomState(9).uniform(0.5, 2, (3, 2)).astype(np.float32)
  v = {'params': v['params'], 'batch_stats': {'mean': jnp.asarray(old_mean),
                                               'var': jnp.asarray(old_var)}}
  _, upd = mod.apply(v, jnp.asarray(x), train=True, mutable=['batch_stats'])
  flat = x.astype(np.float64).reshape(3, -1, 2)
  m = flat.shape[1]
  want_mean = 0.9 * old_mean + 0.1 * flat.mean(1)
  want_var = 0.9 * old_var + 0.1 * flat.var(1) * m / (m - 1)   # unbiased
  np.testing.assert_allclose(upd['batch_stats']['mean'], want_mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(upd['batch_stats']['var'], want_var, rtol=1e-5, atol=1e-6)
  # The biased variance would not pass.
  assert np.abs(0.9 * old_var + 0.1 * flat.var(1) - upd['batch_stats']['var']).max() > 1e-3

  # Evaluation at step t uses the running statistics of step t.
  new = {'params': v['params'], 'batch_stats': upd['batch_stats']}
  y = np.asarray(mod.apply(new, jnp.asarray(x), train=False))
  want_y = (x - want_mean[:, None, None, None]) / np.sqrt(want_var[:, None, None, None] + EPS)
  np.testing.assert_allclose(y, want_y, rtol=1e-4, atol=1e-4)
  # Fewer steps (early exit) use the first k steps' statistics; more is an error.
  y2 = np.asarray(mod.apply(new, jnp.asarray(x[:2]), train=False))
  np.testing.assert_allclose(y2, want_y[:2], rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match='4 time steps'):
    mod.apply(new, jnp.asarray(np.concatenate([x, x[:1]])), train=False)


def test_bntt_step_form_updates_row_t_only():
  shape = (3, 5, 2)
  x = _stepwise_input(shape, seed=10).astype(np.float32)
  mod = norms.BNTT(num_steps=3)
  v = mod.init(jax.random.PRNGKey(0), jnp.asarray(x), train=True)
  y_all, upd_all = mod.apply(v, jnp.asarray(x), train=True, mutable=['batch_stats'])
  bs = v['batch_stats']
  for t in range(3):
    y_t, upd = mod.apply({'params': v['params'], 'batch_stats': bs}, jnp.asarray(x[t]),
                         train=True, t=jnp.asarray(t), mutable=['batch_stats'])
    np.testing.assert_allclose(y_t, y_all[t], rtol=1e-6, atol=1e-6)
    changed = np.any(np.asarray(upd['batch_stats']['mean']) != np.asarray(bs['mean']), axis=1)
    assert changed.tolist() == [i == t for i in range(3)]
    bs = upd['batch_stats']
  np.testing.assert_allclose(bs['var'], upd_all['batch_stats']['var'], rtol=1e-6)


def test_bn_pools_statistics_over_time():
  shape = (3, 4, 2, 2, 2)
  x = _stepwise_input(shape, seed=11)
  with jax.enable_x64(True):
    mod = norms.BN(num_steps=3, use_bias=True)
    v = mod.init(jax.random.PRNGKey(0), jnp.asarray(x), train=True)
    v = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), v)
    v['params']['scale'] = jnp.asarray([1.5, 0.5])
    v['params']['bias'] = jnp.asarray([0.25, -1.0])
    y, upd = mod.apply(v, jnp.asarray(x), train=True, mutable=['batch_stats'])
    flat = x.reshape(-1, 2)
    want = (x - flat.mean(0)) / np.sqrt(flat.var(0) + EPS) * np.array([1.5, 0.5]) + \
        np.array([0.25, -1.0])
    np.testing.assert_allclose(y, want, rtol=1e-12)
    m = flat.shape[0]
    np.testing.assert_allclose(upd['batch_stats']['var'], 0.9 + 0.1 * flat.var(0) * m / (m - 1))
    with pytest.raises(ValueError, match='step schedule'):
      mod.apply(v, jnp.asarray(x[0]), train=True, t=0, mutable=['batch_stats'])


def test_none_is_identity_and_bounds_steps():
  x = jnp.arange(24.0).reshape(2, 3, 4)
  mod = norms.Identity(num_steps=2)
  assert mod.init(jax.random.PRNGKey(0), x, train=True) == {}
  np.testing.assert_array_equal(mod.apply({}, x, train=True), x)
  with pytest.raises(ValueError, match='3 time steps'):
    mod.apply({}, jnp.concatenate([x, x[:1]]), train=False)


def test_stat_groups_compute_per_group_statistics():
  """stat_groups=G: statistics per consecutive slice of the batch (per device)."""
  shape = (2, 6, 3)
  x = _stepwise_input(shape, seed=12)
  with jax.enable_x64(True):
    mod = norms.BNTT(num_steps=2, stat_groups=2)
    v = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64),
                               mod.init(jax.random.PRNGKey(0), jnp.asarray(x), train=True))
    y, upd = mod.apply(v, jnp.asarray(x), train=True, mutable=['batch_stats'])
    want = np.zeros_like(x)
    var_ub = []
    for g in range(2):
      xs = x[:, 3 * g:3 * g + 3]
      want[:, 3 * g:3 * g + 3] = (xs - xs.mean(1, keepdims=True)) / np.sqrt(
          xs.var(1, keepdims=True) + EPS)
      var_ub.append(xs.var(1) * 3 / 2)
    np.testing.assert_allclose(y, want, rtol=1e-12)
    np.testing.assert_allclose(upd['batch_stats']['var'], 0.9 + 0.1 * np.mean(var_ub, 0))


def test_make_norm_rejects_unknown_name():
  with pytest.raises(ValueError,
                     match="norm 'foo' is not accepted: one of bn, bntt, none, tdbn, tebn"):
    norms.make_norm('foo', 3)


@pytest.mark.parametrize('name,groups', [('bntt', 1), ('bntt', 2), ('bn', 1), ('tebn', 2)])
def test_the_statistics_reduce_one_axis_between_kept_ones_on_cpu(name, groups):
  """Every full-size reduction of a norm's training pass reduces one axis of ``[A, R, C]``.

  XLA:CPU runs that form 10-20x faster than the same sum over several axes or over a leading
  axis (``experiments/reduction_forms.py --batch=16`` on the 2-core machine: conv2's ``[25, 1,
  16, 32, 32, 64]`` over (2, 3, 4) 89.8 ms, as ``[25, 1, 16384, 64]`` over axis 2 4.1 ms;
  ``[409600, 64]`` over axis 0 95.9 ms, ``[1, 409600, 64]`` over axis 1 3.7 ms). At 2 % firing these sums were ~0.5 s of a 1.9 s
  VGG9 step at batch 16. On the code before the fix the compiled BNTT reduced
  ``[4, 1, 8, 6, 6, 16]`` over (2, 3, 4), in its statistics and in the gradients of its
  affine map's scale and shift: this test failed for every case.
  """
  x = jnp.asarray(_stepwise_input((4, 8, 6, 6, 16)), jnp.float32)
  mod = norms.make_norm(name, 4, stat_groups=groups)
  v = mod.init(jax.random.PRNGKey(0), x, train=True)

  def train_pass(x, dy):   # the statistics, the affine map and their gradients
    y, pull = jax.vjp(lambda x: mod.apply(v, x, train=True, mutable=['batch_stats'])[0], x)
    return y, pull(dy)

  text = jax.jit(train_pass).lower(x, x).compile().as_text()
  assert 'conditional(' not in text
  full = [(s, d) for s, d in hlo_fixtures.reductions(text) if int(np.prod(s)) == x.size]
  assert full, 'no full-size reduction found: the parse of the HLO text is stale'
  for shape, dims in full:
    assert len(dims) == 1 and 0 < dims[0] < len(shape) - 1, (shape, dims)
