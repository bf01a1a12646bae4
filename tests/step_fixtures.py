"""One training step of a freshly initialised network, for tests that compare two variants."""
import jax
import jax.numpy as jnp


def init_and_step(model, x, y):
  """``(params, loss, batch_stats, spikes, grads)`` of the cross-entropy on ``(x, y)``, fixed keys."""
  v = model.init({'params': jax.random.PRNGKey(0), 'poisson': jax.random.PRNGKey(1)}, x,
                 train=False)

  def loss(p):
    out, upd = model.apply({'params': p, 'batch_stats': v['batch_stats']}, x, train=True,
                           rngs={'poisson': jax.random.PRNGKey(2)}, mutable=['batch_stats'])
    lp = jax.nn.log_softmax(out.logits)
    return -jnp.mean(lp[jnp.arange(x.shape[0]), y]), (upd['batch_stats'], out.spikes)

  (l, (stats, spikes)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(v['params'])
  return v['params'], l, stats, spikes, grads
