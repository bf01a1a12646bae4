"""Robustness (spec section 9): Gaussian input noise, FGSM and PGD.

Units. The model takes normalised inputs ``x = (p - mean) / std`` of pixels
``p`` in ``bounds`` (``[0, 1]``), per channel (last axis); see
:class:`InputSpace`. Noise ``sigma`` and attack ``epsilon`` are in PIXEL
units of that ``[0, 1]`` scale (``epsilon = 8/255`` means 8 grey levels):
an L_inf ball ``|p' - p| <= epsilon``, i.e. ``|x' - x| <= epsilon / std``
on the model's input, and perturbed pixels are clipped to ``bounds`` (a
clean input is never moved by the clipping). ``InputSpace.model_units()``
(``mean 0, std 1, bounds None``; e.g. DVS counts) makes the units the model
input's and clips nothing. The report states which convention was used.

Gradients. The attack differentiates the cross-entropy of the logits after
all ``T`` steps with respect to the input: through the surrogate spike
derivative at every step, and through the Poisson coder by its expectation
(straight-through, ``d spike / d x = 1 / rescale`` inside ``|x| < rescale``,
:mod:`bntt_jax.coding`) -- without it the gradient is zero and the attack a
silent no-op. Evaluation mode (running statistics). The attacker's gradient
and every evaluation (clean, noisy, attacked) use the SAME Poisson key and
example ids, so epsilon 0 gives the clean accuracy exactly.

FGSM: ``x' = x + epsilon / std * sign(grad)``. PGD: ``steps`` steps of
``step_ratio * epsilon`` each, projected back onto the ball and bounds after
every step, from ``x`` (or a uniform random start in the ball); an example
counts as broken if ANY iterate (they are all evaluated by the forward pass
that computes the gradient) or the final point is misclassified.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bntt_jax import evaluator
from bntt_jax import network as network_lib
from bntt_jax import sharding
from bntt_jax import vma
from bntt_jax.analysis import evaluation

Array = jax.Array

GRADIENT_CONVENTION = (
    'Gradient of the cross-entropy of the T-step logits w.r.t. the input, through the '
    'surrogate spikes and the straight-through Poisson coder (d spike/dx = 1/rescale inside '
    '|x| < rescale); evaluation mode (running statistics); the same Poisson key for the '
    'gradient and for the clean, noisy and attacked evaluations. PGD: an example is broken if '
    'any iterate is misclassified.')


@dataclasses.dataclass(frozen=True)
class InputSpace:
  """How model inputs relate to pixels: ``x = (p - mean) / std``, ``p`` in ``bounds``.

  ``mean`` and ``std`` broadcast against the input's last (channel) axis;
  ``bounds = None`` means unbounded (nothing clipped).
  """
  mean: Tuple[float, ...] = (0.0,)
  std: Tuple[float, ...] = (1.0,)
  bounds: Optional[Tuple[float, float]] = (0.0, 1.0)

  def __post_init__(self):
    if min(self.std) <= 0:
      raise ValueError(f'pixel std {self.std} is not accepted: it must be > 0')

  @classmethod
  def model_units(cls) -> 'InputSpace':
    """Sigma and epsilon in the model input's own units, nothing clipped."""
    return cls((0.0,), (1.0,), None)

  def convention(self) -> str:
    """The units of sigma and epsilon, in words (for the report)."""
    if self == InputSpace.model_units():
      return 'L_inf radius (and noise sigma) in the model input\'s own units, unclipped. '
    return (f'L_inf radius (and noise sigma) in pixel units of the range {list(self.bounds or ())} '
            f'(x_model = (p - mean)/std, mean {list(self.mean)}, std {list(self.std)}: a pixel '
            'moves by at most epsilon, the model input by epsilon/std)'
            + (', perturbed pixels clipped to that range. ' if self.bounds else '. '))

  def per_pixel(self) -> Array:
    """Model-input units per pixel unit, ``1 / std`` ``[C]`` (or ``[1]``)."""
    return 1.0 / jnp.asarray(self.std, jnp.float32)

  def limits(self, x: Array) -> Tuple[Array, Array]:
    """Model-input bounds, widened to contain the clean ``x`` (never move a clean input)."""
    if self.bounds is None:
      return jnp.full_like(x, -jnp.inf), jnp.full_like(x, jnp.inf)
    mean, std = jnp.asarray(self.mean, x.dtype), jnp.asarray(self.std, x.dtype)
    lo, hi = (self.bounds[0] - mean) / std, (self.bounds[1] - mean) / std
    return jnp.minimum(lo, x), jnp.maximum(hi, x)


def loss_and_logits(model: network_lib.SpikingNetwork, variables: Mapping, x: Array,
                    labels: Array, ids: Array, key: Array) -> Tuple[Array, Array]:
  """Summed cross-entropy of the ``T``-step logits, and the logits ``[B, C]``."""
  logits = evaluation.forward(model, variables, x, ids, key).logits
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum(), logits


def input_gradient(model: network_lib.SpikingNetwork, variables: Mapping, x: Array,
                   labels: Array, ids: Array, key: Array) -> Array:
  """``d loss / d x`` ``[B, ...]`` in evaluation mode (see the module docstring)."""
  return jax.grad(lambda v: loss_and_logits(model, variables, v, labels, ids, key)[0])(x)


def _project(v, x, radius, lo, hi):
  return jnp.clip(jnp.clip(v, lo, hi), x - radius, x + radius)


def fgsm_step(x: Array, grad: Array, epsilon, space: InputSpace) -> Array:
  """``x + epsilon / std * sign(grad)``, clipped to the bounds and the ball."""
  radius = epsilon * space.per_pixel()
  lo, hi = space.limits(x)
  return _project(x + radius * jnp.sign(grad), x, radius, lo, hi)


def fgsm(model, variables, x, labels, ids, key, epsilon, space: InputSpace) -> Array:
  """One signed-gradient step of ``epsilon`` pixel units: ``x [B, ...]`` -> ``x' [B, ...]``."""
  return fgsm_step(x, input_gradient(model, variables, x, labels, ids, key), epsilon, space)


def pgd(model, variables, x, labels, ids, key, epsilon, space: InputSpace, *, steps: int,
        step_ratio: float, start_key: Optional[Array] = None) -> Tuple[Array, Array]:
  """Projected gradient descent in the L_inf ball.

  Args:
    epsilon: radius in pixel units; each step moves ``step_ratio * epsilon``.
    start_key: a uniform random start in the ball (per example from its id), or None.

  Returns:
    ``(x' [B, ...], broken [B])``: the last iterate, and whether any iterate
    or the last point is misclassified.
  """
  radius = epsilon * space.per_pixel()
  lo, hi = space.limits(x)
  v = x
  if start_key is not None:
    noise = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(start_key, i), x.shape[1:],
                                                  x.dtype, -1.0, 1.0))(ids)
    v = _project(x + radius * noise, x, radius, lo, hi)
  grad_fn = jax.grad(lambda v: loss_and_logits(model, variables, v, labels, ids, key),
                     has_aux=True)

  def body(_, carry):
    v, broken = carry
    g, logits = grad_fn(v)
    broken = broken | (jnp.argmax(logits, -1) != labels)
    return _project(v + step_ratio * radius * jnp.sign(g), x, radius, lo, hi), broken

  # Typed like the labels: per device inside the evaluator's shard_map.
  none_broken = vma.like_inputs(jnp.zeros(labels.shape, bool), labels)
  v, broken = jax.lax.fori_loop(0, steps, body, (v, none_broken))
  final = evaluation.forward(model, variables, v, ids, key).logits
  return v, broken | (jnp.argmax(final, -1) != labels)


def gaussian_noise(x: Array, ids: Array, key: Array, sigma, space: InputSpace) -> Array:
  """``x`` plus ``sigma`` pixel units of Gaussian noise (per example from its id), clipped.

  The noise direction depends on the key and the example only, so a list of
  sigmas scales one draw.
  """
  n = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), x.shape[1:], x.dtype))(ids)
  lo, hi = space.limits(x)
  return jnp.clip(x + sigma * space.per_pixel() * n, lo, hi)


def _correct(model, variables, x, y, ids, key):
  return jnp.argmax(evaluation.forward(model, variables, x, ids, key).logits, -1) == y


# The per-batch functions of the report (:mod:`bntt_jax.evaluator`): ``(variables, batch,
# key, ...)`` -> per-example results, ``batch`` a share of {image, label, index, mask}.

def correct_clean(variables, batch, key, *, model, space: InputSpace) -> Array:
  """``[B]`` correct on the clean input (``space`` unused; one signature for all four)."""
  del space
  return _correct(model, variables, batch['image'], batch['label'], batch['index'], key)


def correct_noisy(variables, batch, key, sigma, noise_key, *, model,
                  space: InputSpace) -> Array:
  """``[B]`` correct under Gaussian noise of ``sigma`` pixel units."""
  x, ids = batch['image'], batch['index']
  return _correct(model, variables, gaussian_noise(x, ids, noise_key, sigma, space),
                  batch['label'], ids, key)


def correct_fgsm(variables, batch, key, epsilons, *, model,
                 space: InputSpace) -> Tuple[Array, Array]:
  """``([B, E]`` correct under FGSM of each of ``epsilons [E]``, ``[B]`` input
  gradient non-zero); the gradient, which no epsilon changes, is taken once."""
  x, y, ids = batch['image'], batch['label'], batch['index']
  g = input_gradient(model, variables, x, y, ids, key)
  nonzero = jnp.any(g.reshape(g.shape[0], -1) != 0, axis=1)
  ok = jax.lax.map(
      lambda e: _correct(model, variables, fgsm_step(x, g, e, space), y, ids, key), epsilons)
  return ok.T, nonzero


def correct_pgd(variables, batch, key, epsilon, start_key, *, model, space: InputSpace,
                steps: int, step_ratio: float) -> Array:
  """``[B]`` not broken by PGD of ``epsilon`` (see :func:`pgd`)."""
  _, broken = pgd(model, variables, batch['image'], batch['label'], batch['index'], key,
                  epsilon, space, steps=steps, step_ratio=step_ratio, start_key=start_key)
  return ~broken


def robustness_report(model: network_lib.SpikingNetwork, variables: Mapping,
                      images: np.ndarray, labels: np.ndarray, *, key: Array, batch_size: int,
                      space: InputSpace, noise_sigmas: Sequence[float] = (),
                      fgsm_epsilons: Sequence[float] = (), pgd_epsilons: Sequence[float] = (),
                      pgd_steps: int = 10, pgd_step_ratio: float = 0.25,
                      pgd_random_start: bool = False,
                      clean_correct: Optional[np.ndarray] = None,
                      mean: Optional[Sequence[float]] = None,
                      std: Optional[Sequence[float]] = None,
                      mesh: Optional[jax.sharding.Mesh] = None) -> dict:
  """The report's ``robustness`` section: accuracy under noise and attacks.

  Args:
    images, labels: ``[N, ...]`` images and ``[N]`` labels; the images are normalised
      with ``mean``/``std`` as the batches are built (``None``: model inputs as they are).
    key: the Poisson key of every evaluation and gradient.
    space: pixel units (see :class:`InputSpace`).
    noise_sigmas / fgsm_epsilons / pgd_epsilons: pixel units.
    pgd_steps, pgd_step_ratio: PGD iterations and step (fraction of epsilon).
    pgd_random_start: start PGD at a uniform point in the ball.
    clean_correct: ``[N]`` clean correctness under ``key`` if already known
      (an evaluation pass with the same key and example ids), else evaluated here.
    mesh: the devices the batches are split over (default: all of them).
  """
  mesh = mesh or sharding.create_mesh()

  def run(fn, *args, **static):
    # Per-example outputs over every batch (bntt_jax.evaluator); ``args`` follow the key.
    step = evaluator.compile_step(fn, mesh, per_example_out=True, model=model, space=space,
                                  **static)
    return evaluator.per_example(step, variables, images, labels, key, *args,
                                 batch_size=batch_size, mesh=mesh, mean=mean, std=std)

  # The noise and the PGD starts draw from keys of their own, derived from ``key``.
  noise_key = jax.random.fold_in(key, 1)
  start_key = jax.random.fold_in(key, 2) if pgd_random_start else None
  if clean_correct is None:
    clean_correct = run(correct_clean)
  clean = float(np.mean(clean_correct))
  section = {
      'epsilon_convention': space.convention() + GRADIENT_CONVENTION,
      'pixel_mean': list(space.mean), 'pixel_std': list(space.std),
      'pixel_bounds': None if space.bounds is None else list(space.bounds),
      'num_examples': int(len(labels)),
      'clean_accuracy': clean,
      'gaussian': {'sigmas': [float(s) for s in noise_sigmas], 'accuracy': []},
      'fgsm': {'epsilons': [float(e) for e in fgsm_epsilons], 'accuracy': []},
      'pgd': {'epsilons': [float(e) for e in pgd_epsilons], 'accuracy': [],
              'steps': int(pgd_steps), 'step_ratio': float(pgd_step_ratio),
              'random_start': bool(pgd_random_start)},
      'gradient_nonzero_fraction': None,
  }
  for s in noise_sigmas:
    section['gaussian']['accuracy'].append(
        float(np.mean(run(correct_noisy, jnp.float32(s), noise_key))))
  if len(fgsm_epsilons):
    ok, nonzero = run(correct_fgsm, jnp.asarray(fgsm_epsilons, jnp.float32))   # [N, E], [N]
    section['fgsm']['accuracy'] = [float(a) for a in np.mean(ok, axis=0)]
    section['gradient_nonzero_fraction'] = float(np.mean(nonzero))
  for e in pgd_epsilons:
    ok = run(correct_pgd, jnp.float32(e), start_key, steps=pgd_steps, step_ratio=pgd_step_ratio)
    section['pgd']['accuracy'].append(float(np.mean(ok)))
  return section
