"""Input coding: Poisson rate coding of static images, direct input of frames.

Rate coding (spec section 3), as the reference code does it: a fresh draw per
time step, in training and in evaluation::

    spike = (rescale * U[0, 1) <= |x|) * sign(x)

on the mean/std-normalised pixel ``x``. So ``P(spike) = min(|x| / rescale, 1)``
and spikes are -1, 0 or +1. The reference uses ``rescale = 2``. The
supplementary's wording ("if the random number is greater than the pixel
intensity ... outputs a spike") is the opposite of this; we follow the code,
where the spike probability grows with intensity.

Draws are a function of ``(key, time step, example id)`` only: each example
has its own key ``fold_in(key, example_id)`` and each step
``fold_in(example_key, t)``. The trainer derives ``key`` from (seed, training
step) and example ids default to the position in the *global* batch, so the
spikes do not depend on how the batch is split over devices or hosts, on the
schedule (all steps at once or one at a time), and a resumed run sees the same
draws.

The coder's gradient with respect to the pixels is zero almost everywhere; for
attacks it is differentiated through its expectation (straight-through):
``d spike / d x = d E[spike] / d x = 1 / rescale`` where ``|x| < rescale``.
"""
from __future__ import annotations

import functools
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from bntt_jax import errors

Array = jax.Array


def _check_batch(x: Array) -> None:
  if jnp.ndim(x) < 1:
    raise ValueError(f'input x of shape {jnp.shape(x)} is not accepted: [B, ...] (a batch axis '
                     'first)')


def _check_rescale(rescale) -> float:
  """``rescale`` as a float, > 0 (a step's spike probability is ``|x| / rescale``)."""
  try:
    r = float(rescale)
  except (TypeError, ValueError):
    r = float('nan')
  if not 0 < r < float('inf'):
    raise errors.ConfigError('rescale', rescale, 'a number > 0')
  return r


def example_keys(key: Array, num_examples: int, example_ids: Optional[Array] = None) -> Array:
  """One key per example: ``fold_in(key, id)``; ids default to ``arange(B)``."""
  if example_ids is None:
    example_ids = jnp.arange(num_examples, dtype=jnp.uint32)
  elif jnp.shape(example_ids) != (num_examples,):
    raise ValueError(f'example_ids of shape {jnp.shape(example_ids)} is not accepted: '
                     f'[{num_examples}], one id per example')
  return jax.vmap(jax.random.fold_in, (None, 0))(key, example_ids.astype(jnp.uint32))


def _uniform_at(keys: Array, t, shape, dtype) -> Array:
  """``U[0,1)`` of ``[B, *shape]`` for step ``t`` from per-example ``keys``."""
  return jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, t), shape, dtype))(keys)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _rate_spikes(x: Array, u: Array, rescale: float) -> Array:
  return ((rescale * u <= jnp.abs(x)) * jnp.sign(x)).astype(x.dtype)


@_rate_spikes.defjvp
def _rate_spikes_jvp(rescale, primals, tangents):
  x, u = primals
  dx, _ = tangents
  # Straight-through: the derivative of the expectation sign(x) min(|x|/rescale, 1).
  slope = jnp.where(jnp.abs(x) < rescale, 1.0 / rescale, 0.0).astype(x.dtype)
  out = _rate_spikes(x, u, rescale)
  return out, jnp.broadcast_to(slope * dx, out.shape)


def poisson_step(key: Array, x: Array, t, rescale: float = 2.0,
                 example_ids: Optional[Array] = None) -> Array:
  """Spikes of one step ``t``. ``x``: ``[B, ...]`` normalised pixels -> ``[B, ...]``."""
  _check_batch(x)
  rescale = _check_rescale(rescale)
  keys = example_keys(key, x.shape[0], example_ids)
  u = _uniform_at(keys, t, x.shape[1:], x.dtype)
  return _rate_spikes(x, u, float(rescale))


def poisson_encode(key: Array, x: Array, num_steps: int, rescale: float = 2.0,
                   example_ids: Optional[Array] = None) -> Array:
  """Spikes of every step: ``x [B, ...]`` -> ``[num_steps, B, ...]``.

  Equal, step for step, to ``poisson_step(key, x, t)`` for ``t < num_steps``.
  """
  _check_batch(x)
  errors.check_int_at_least('num_steps', num_steps, 1)
  rescale = _check_rescale(rescale)
  keys = example_keys(key, x.shape[0], example_ids)
  u = jax.vmap(lambda t: _uniform_at(keys, t, x.shape[1:], x.dtype))(jnp.arange(num_steps))
  return _rate_spikes(x[None], u, float(rescale))


class PoissonEncoder(nn.Module):
  """Rate coder as a Flax module; draws from the ``'poisson'`` rng stream.

  ``__call__(x [B, ...], num_steps) -> [num_steps, B, ...]``.
  """
  rescale: float = 2.0

  def __call__(self, x: Array, num_steps: int, example_ids: Optional[Array] = None) -> Array:
    return poisson_encode(self.make_rng('poisson'), x, num_steps, self.rescale, example_ids)


def direct_encode(x: Array, num_steps: int, frames: bool = False) -> Array:
  """Direct (non-spiking) input currents ``[num_steps, B, ...]``.

  ``frames=False``: a static ``[B, ...]`` input repeated at every step.
  ``frames=True``: per-step frames ``[B, T_in, ...]`` (e.g. DVS event counts),
  of which the first ``num_steps`` are used.
  """
  errors.check_int_at_least('num_steps', num_steps, 1)
  if jnp.ndim(x) < (2 if frames else 1):
    raise ValueError(f'input x of shape {jnp.shape(x)} is not accepted: '
                     + ('[B, T_in, ...] frames' if frames else '[B, ...] (a batch axis first)'))
  if not frames:
    return jnp.broadcast_to(x[None], (num_steps,) + x.shape)
  if x.shape[1] < num_steps:
    raise ValueError(f'{num_steps} steps asked of input with {x.shape[1]} frames')
  return jnp.moveaxis(x[:, :num_steps], 1, 0)


def direct_step(x: Array, t, frames: bool = False) -> Array:
  """Step ``t`` of :func:`direct_encode`: ``[B, ...]``."""
  if not frames:
    return x
  return jax.lax.dynamic_index_in_dim(x, t, 1, keepdims=False)
