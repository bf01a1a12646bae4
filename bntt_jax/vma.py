"""How values are typed inside ``jax.shard_map``: varying over mesh axes, or replicated.

With ``check_vma`` (the default) every value inside ``shard_map`` carries the set
of mesh axes along which its value differs between devices. Three places in the
library must set that type themselves: an FFI call's results (JAX types them as
replicated whatever their inputs), the cotangents a ``custom_vjp`` backward rule
returns (they must have their primal's type), and the parameters a training step
marks per-device so that their gradient is reduced once, in float32
(:func:`bntt_jax.train.gradients`).
"""
from __future__ import annotations

from typing import Any, FrozenSet, Iterable

import jax


def varying_axes(x: Any) -> FrozenSet[str]:
  """The mesh axes ``x`` varies over (empty outside ``shard_map``)."""
  return frozenset(jax.typeof(x).mat.varying)


def mark_varying(tree: Any, axes: Iterable[str]) -> Any:
  """``tree``'s arrays typed as varying over ``axes`` as well (same values)."""
  axes = frozenset(axes)
  if not axes:
    return tree

  def one(x):
    extra = tuple(sorted(axes - varying_axes(x)))
    return jax.lax.pcast(x, extra, to='varying') if extra else x

  return jax.tree_util.tree_map(one, tree)


def like_inputs(out: Any, *inputs: Any) -> Any:
  """``out`` typed as varying over every axis that any of ``inputs`` varies over."""
  axes = frozenset().union(*(varying_axes(a) for a in jax.tree_util.tree_leaves(inputs)))
  return mark_varying(out, axes)


def cotangent_for(ct: jax.Array, primal: jax.Array) -> jax.Array:
  """A backward rule's cotangent ``ct`` given the type of its ``primal``: summed over
  the axes ``ct`` varies over and the primal does not (the primal is one value
  shared by the devices, so its gradient is the sum of theirs), typed as varying
  where the primal is."""
  extra = tuple(sorted(varying_axes(ct) - varying_axes(primal)))
  if extra:
    ct = jax.lax.psum(ct, extra)
  return mark_varying(ct, varying_axes(primal) - varying_axes(ct))
