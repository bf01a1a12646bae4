"""Poisson rate coder (spec section 3)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bntt_jax import coding


def test_poisson_rate_sign_and_values():
  x = jnp.asarray(np.linspace(-3.0, 3.0, 25).reshape(1, 25))
  T = 4000
  s = np.asarray(coding.poisson_encode(jax.random.PRNGKey(0), x, T, rescale=2.0))
  assert set(np.unique(s)) <= {-1.0, 0.0, 1.0}
  p = np.minimum(np.abs(np.asarray(x)) / 2.0, 1.0)[0]
  rate = np.abs(s).mean(0)[0]
  sigma = np.sqrt(p * (1 - p) / T)
  assert np.all(np.abs(rate - p) <= 4 * sigma + 1e-12), (rate, p)
  # Spikes carry the sign of the pixel; a zero pixel never spikes.
  nz = np.abs(s).sum(0)[0] > 0
  np.testing.assert_array_equal(np.sign(s.sum(0)[0])[nz], np.sign(np.asarray(x)[0])[nz])
  assert not nz[12]   # x == 0


def test_rescale_is_configurable():
  x = jnp.full((1, 1000), 0.5)
  s1 = np.abs(np.asarray(coding.poisson_encode(jax.random.PRNGKey(1), x, 400, rescale=1.0)))
  s4 = np.abs(np.asarray(coding.poisson_encode(jax.random.PRNGKey(1), x, 400, rescale=4.0)))
  # p = 0.5 and 0.125; 4 sigma bounds over 400k draws are ~0.003.
  assert abs(s1.mean() - 0.5) < 0.004 and abs(s4.mean() - 0.125) < 0.003


def test_draws_fresh_each_step_and_reproducible():
  x = jnp.full((3, 8, 8, 3), 0.8)
  key = jax.random.PRNGKey(7)
  s = np.asarray(coding.poisson_encode(key, x, 5))
  assert not np.array_equal(s[0], s[1])
  np.testing.assert_array_equal(s, coding.poisson_encode(key, x, 5))
  assert not np.array_equal(s, coding.poisson_encode(jax.random.PRNGKey(8), x, 5))
  # The one-step form gives the same draws as the all-steps form.
  for t in range(5):
    np.testing.assert_array_equal(coding.poisson_step(key, x, t), s[t])
  # Fewer steps are a prefix of more steps (early exit sees the same input).
  np.testing.assert_array_equal(coding.poisson_encode(key, x, 3), s[:3])


def test_draws_depend_on_example_id_not_batch_position():
  x = jnp.asarray(np.random.RandomState(0).uniform(-2, 2, (6, 4, 4, 1)).astype(np.float32))
  key = jax.random.PRNGKey(3)
  ids = jnp.arange(100, 106)
  full = np.asarray(coding.poisson_encode(key, x, 4, example_ids=ids))
  # The same examples in another batch (split in two, reversed) get the same spikes.
  a = np.asarray(coding.poisson_encode(key, x[3:][::-1], 4, example_ids=ids[3:][::-1]))
  np.testing.assert_array_equal(a, full[:, 3:][:, ::-1])
  # Default ids are batch positions: different examples differ.
  d = np.asarray(coding.poisson_encode(key, jnp.broadcast_to(x[:1], x.shape), 4))
  assert not np.array_equal(d[:, 0], d[:, 1])


def test_straight_through_gradient_is_one_over_rescale_inside():
  x = jnp.asarray([[-3.0, -1.0, 0.3, 1.9, 2.5]])
  g = jax.grad(lambda x: coding.poisson_encode(jax.random.PRNGKey(0), x, 6, 2.0).sum())(x)
  np.testing.assert_allclose(g, [[0.0, 3.0, 3.0, 3.0, 0.0]])   # 6 steps * 1/2 inside |x| < 2


def test_direct_encoding_repeats_or_slices_frames():
  x = jnp.arange(6.0).reshape(2, 3)
  np.testing.assert_array_equal(coding.direct_encode(x, 4), np.broadcast_to(x, (4, 2, 3)))
  frames = jnp.arange(2 * 5 * 3.0).reshape(2, 5, 3)
  out = coding.direct_encode(frames, 3, frames=True)
  np.testing.assert_array_equal(out, np.moveaxis(np.asarray(frames)[:, :3], 1, 0))
  np.testing.assert_array_equal(coding.direct_step(frames, 2, frames=True), frames[:, 2])
  with pytest.raises(ValueError, match='6 steps asked of input with 5 frames'):
    coding.direct_encode(frames, 6, frames=True)



def test_the_encoder_module_is_poisson_encode_with_the_poisson_stream_key():
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  class StreamKey(nn.Module):   # the key a root module's first make_rng('poisson') returns
    def __call__(self):
      return self.make_rng('poisson')

  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 5, 3), minval=-1, maxval=1)
  ids = jnp.array([7, 3])
  key = jax.random.PRNGKey(4)
  enc = coding.PoissonEncoder(rescale=1.5)
  got = enc.apply({}, x, 4, ids, rngs={'poisson': key})
  want = coding.poisson_encode(StreamKey().apply({}, rngs={'poisson': key}), x, 4, 1.5, ids)
  assert got.shape == (4, 2, 5, 3)
  np.testing.assert_array_equal(got, want)
  other = enc.apply({}, x, 4, ids, rngs={'poisson': jax.random.PRNGKey(5)})
  assert not np.array_equal(got, other)
