"""tdBN and TEBN (spec section 10) against hand computations and finite differences."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bntt_jax import norms

EPS = 1e-4
SHAPE = (3, 4, 2, 2, 3)   # [T, B, H, W, C]


def _x(seed=0):
  rng = np.random.RandomState(seed)
  return rng.randn(*SHAPE) * np.array([0.5, 2.0, 3.0]) + np.linspace(-1, 2, 3)[:, None, None,
                                                                                  None, None]


def _f64(v):
  return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), v)


def _pooled(x):
  flat = x.reshape(-1, x.shape[-1])
  return flat.mean(0), flat.var(0), flat.shape[0]


def _fd_check(f, x, h=1e-6, n=12, seed=0):
  """Central differences of scalar f at n random coordinates of x vs jax.grad."""
  g = np.asarray(jax.grad(f)(x))
  rng = np.random.RandomState(seed)
  for idx in zip(*[rng.randint(0, s, n) for s in x.shape]):
    e = np.zeros(x.shape)
    e[idx] = h
    fd = (f(x + e) - f(x - e)) / (2 * h)
    np.testing.assert_allclose(g[idx], fd, rtol=1e-6, atol=1e-8)


def test_tdbn_forward_running_stats_and_grad():
  with jax.enable_x64(True):
    x = jnp.asarray(_x())
    mod = norms.TDBN(num_steps=3, alpha=0.5, threshold=2.0)
    v = _f64(mod.init(jax.random.PRNGKey(0), x, train=True))
    gamma, beta = np.array([1.5, 0.5, -1.0]), np.array([0.1, -0.2, 0.3])
    v['params'] = {'scale': jnp.asarray(gamma), 'bias': jnp.asarray(beta)}
    y, upd = mod.apply(v, x, train=True, mutable=['batch_stats'])
    mu, var, m = _pooled(np.asarray(x))
    want = gamma * 0.5 * 2.0 * (np.asarray(x) - mu) / np.sqrt(var + EPS) + beta
    np.testing.assert_allclose(y, want, rtol=1e-12)
    np.testing.assert_allclose(upd['batch_stats']['mean'], 0.1 * mu, rtol=1e-12)
    np.testing.assert_allclose(upd['batch_stats']['var'], 0.9 + 0.1 * var * m / (m - 1),
                               rtol=1e-12)
    # Evaluation with running statistics, and with fewer steps.
    ev = {'params': v['params'], 'batch_stats': upd['batch_stats']}
    rm, rv = np.asarray(upd['batch_stats']['mean']), np.asarray(upd['batch_stats']['var'])
    y_eval = mod.apply(ev, x[:2], train=False)
    np.testing.assert_allclose(y_eval, gamma * (np.asarray(x[:2]) - rm) / np.sqrt(rv + EPS) +
                               beta, rtol=1e-12)
    w = np.random.RandomState(1).randn(*SHAPE)
    _fd_check(lambda x: jnp.sum(mod.apply(v, x, train=True, mutable=['batch_stats'])[0] * w), x)


def test_tebn_forward_running_stats_and_grad():
  with jax.enable_x64(True):
    x = jnp.asarray(_x(2))
    mod = norms.TEBN(num_steps=3)
    v = _f64(mod.init(jax.random.PRNGKey(0), x, train=True))
    assert np.array_equal(v['params']['step_scale'], np.ones(3))
    gamma, beta, p = np.array([1.5, 0.5, -1.0]), np.array([0.1, -0.2, 0.3]), np.array(
        [1.0, 0.5, 2.0])
    v['params'] = {'scale': jnp.asarray(gamma), 'bias': jnp.asarray(beta),
                   'step_scale': jnp.asarray(p)}
    y, upd = mod.apply(v, x, train=True, mutable=['batch_stats'])
    mu, var, m = _pooled(np.asarray(x))
    want = p[:, None, None, None, None] * (gamma * (np.asarray(x) - mu) / np.sqrt(var + EPS) +
                                           beta)
    np.testing.assert_allclose(y, want, rtol=1e-12)
    np.testing.assert_allclose(upd['batch_stats']['var'], 0.9 + 0.1 * var * m / (m - 1),
                               rtol=1e-12)
    # One-step evaluation form (step schedule) at t = 2 uses p[2] and the running stats.
    ev = {'params': v['params'], 'batch_stats': upd['batch_stats']}
    rm, rv = np.asarray(upd['batch_stats']['mean']), np.asarray(upd['batch_stats']['var'])
    y2 = mod.apply(ev, x[2], train=False, t=jnp.asarray(2))
    np.testing.assert_allclose(y2, 2.0 * (gamma * (np.asarray(x[2]) - rm) / np.sqrt(rv + EPS) +
                                          beta), rtol=1e-12)
    w = np.random.RandomState(3).randn(*SHAPE)
    _fd_check(lambda x: jnp.sum(mod.apply(v, x, train=True, mutable=['batch_stats'])[0] * w), x)

    def by_params(params):
      return jnp.sum(mod.apply({'params': params, 'batch_stats': v['batch_stats']}, x,
                               train=True, mutable=['batch_stats'])[0] * w)
    g = jax.grad(by_params)(v['params'])
    xhat = (np.asarray(x) - mu) / np.sqrt(var + EPS)
    np.testing.assert_allclose(g['step_scale'],
                               (w * (gamma * xhat + beta)).sum(axis=(1, 2, 3, 4)), rtol=1e-10)


@pytest.mark.parametrize('name', ['tdbn', 'tebn', 'bn'])
def test_pooled_norms_train_only_in_layer_schedule(name):
  mod = norms.make_norm(name, 3)
  x = jnp.asarray(_x().astype(np.float32))
  v = mod.init(jax.random.PRNGKey(0), x, train=True)
  with pytest.raises(ValueError, match='pools statistics over all time steps'):
    mod.apply(v, x[0], train=True, t=0, mutable=['batch_stats'])
  # Evaluation per step equals evaluation of all steps.
  y_all = mod.apply(v, x, train=False)
  for t in range(3):
    np.testing.assert_allclose(mod.apply(v, x[t], train=False, t=jnp.asarray(t)), y_all[t],
                               rtol=1e-6)
