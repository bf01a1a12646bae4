"""Optimisers and learning-rate schedules (spec section 5).

The paper's recipe, as the reference runs it: SGD with momentum 0.9, weight
decay 1e-4 *added to the gradient* before momentum (PyTorch's coupled decay,
on every parameter, BNTT's gamma included), lr 0.3 divided by 10 after the
0-indexed epochs ``floor(0.5 E)``, ``floor(0.7 E)`` and ``floor(0.9 E)``.

PyTorch's SGD (dampening 0, no Nesterov) per step::

    g   = grad + wd * p
    buf = g                    (first step)      buf = momentum * buf + g  (later)
    p   = p - lr * buf

which is ``add_decayed_weights(wd)`` then ``optax.sgd(lr, momentum)`` (its
trace starts at zero, so the first buffer is ``g`` too).
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import jax.numpy as jnp
import optax

from bntt_jax import errors

OPTIMIZERS = ('sgd', 'adam', 'adamw')
LR_SCHEDULES = ('step', 'cosine', 'constant')


def milestone_steps(epochs: int, steps_per_epoch: int,
                    fractions: Sequence[float] = (0.5, 0.7, 0.9)) -> Tuple[int, ...]:
  """Steps at which the step schedule divides the learning rate.

  The reference divides after 0-indexed epoch ``e == floor(f * E)``, so the
  new rate takes effect at the first step of epoch ``floor(f * E) + 1``.
  Fractions that land on the same epoch (small E) divide once there, like the
  reference's membership test. Epoch ``E = 100``: steps of epochs 51, 71, 91.
  """
  # The small epsilon keeps f * E = 56.99999999 (0.57 * 100) on 57.
  epochs_after = sorted({math.floor(f * epochs + 1e-9) for f in fractions})
  return tuple((e + 1) * steps_per_epoch for e in epochs_after)


def create_learning_rate_fn(*, base_lr: float, schedule: str, epochs: int, steps_per_epoch: int,
                            boundaries: Sequence[float] = (0.5, 0.7, 0.9), decay: float = 0.1,
                            warmup_epochs: float = 0.0) -> optax.Schedule:
  """``step -> lr`` for ``schedule`` in ``step | cosine | constant``.

  ``warmup_epochs > 0`` prepends a linear warmup from 0 (the reference has none).
  """
  errors.check_one_of('lr schedule', schedule, LR_SCHEDULES)
  total = epochs * steps_per_epoch
  warmup = int(round(warmup_epochs * steps_per_epoch))
  if schedule == 'step':
    milestones = jnp.asarray(milestone_steps(epochs, steps_per_epoch, boundaries))

    def main(count):
      passed = jnp.sum(count >= milestones) if milestones.size else 0
      return base_lr * jnp.power(decay, passed)
  elif schedule == 'cosine':
    main = optax.cosine_decay_schedule(base_lr, max(total - warmup, 1))
  else:
    main = optax.constant_schedule(base_lr)
  if warmup <= 0:
    return main
  ramp = optax.linear_schedule(0.0, base_lr, warmup)
  if schedule == 'step':
    return lambda count: jnp.where(count < warmup, ramp(count), main(count))
  return optax.join_schedules([ramp, main], [warmup])


def create_optimizer(name: str, learning_rate: optax.ScalarOrSchedule, *, momentum: float = 0.9,
                     nesterov: bool = False, weight_decay: float = 0.0, b1: float = 0.9,
                     b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
  """``sgd`` and ``adam``: decay added to the gradient (PyTorch's ``weight_decay``);
  ``adamw``: decoupled decay (PyTorch's ``AdamW``)."""
  errors.check_one_of('optimizer', name, OPTIMIZERS)
  coupled = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
  if name == 'sgd':
    return optax.chain(*coupled, optax.sgd(learning_rate, momentum=momentum or None,
                                           nesterov=nesterov))
  if name == 'adam':
    return optax.chain(*coupled, optax.adam(learning_rate, b1=b1, b2=b2, eps=eps))
  return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
