"""The one evaluator: training's evaluation and every analysis pass run through it.

A data set ``x [N, ...]``, ``y [N]`` is cut into global batches of one size (one compiled
function); the last is padded (rows of example 0, ``index`` ``N..``, ``mask`` 0) and
normalised as it is built (:func:`bntt_jax.data.pipeline.eval_batches`, the one place
evaluation data are normalised: ``uint8`` pixels with the run's ``mean``/``std``, or
model inputs as they are with ``None``). Each batch is sharded over the mesh's ``data``
axis and a per-batch function runs under ``shard_map`` (:func:`bntt_jax.sharding.data_parallel`):
each device computes its own examples, on one device or many.

A per-batch function is ``fn(first, batch, *rest, **static)``: ``batch`` is this device's
share of ``{'image', 'label', 'index', 'mask'}``, ``first`` and ``rest`` are replicated
(the variables, Poisson keys, epsilons), ``static`` are hashable (the model, settings) and
fixed at compilation. Two kinds:

* :func:`sums`: ``fn`` returns sums over its examples weighted by ``batch['mask']`` and
  reduced over the axis (``jax.lax.psum``): a padded row never counts.
* :func:`per_example`: ``fn`` returns arrays whose leading axis is its examples; the
  batches are put together in order and cut to ``N`` (padded rows dropped).

The Poisson draws of an example are keyed by its index in the split (``batch['index']``,
the network's ``example_ids``), so an example gets the same draws whatever batch and
device it falls on.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterator, Optional, Sequence

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import numpy as np

from bntt_jax import sharding
from bntt_jax.data import pipeline

Mesh = jax.sharding.Mesh


@functools.lru_cache(maxsize=None)
def _compiled(fn: Callable, mesh: Mesh, per_example_out: bool, static: tuple) -> Callable:
  step = functools.partial(fn, **dict(static)) if static else fn
  return jax.jit(sharding.data_parallel(step, mesh, sharded_args=(1,),
                                        sharded_out=per_example_out))


def compile_step(fn: Callable, mesh: Mesh, *, per_example_out: bool = False,
                 **static) -> Callable:
  """``fn`` (module docstring) data-parallel over ``mesh``, jitted: ``(first, global batch,
  *rest) -> outputs``. Equal ``(fn, mesh, static)`` share one compiled function."""
  return _compiled(fn, mesh, per_example_out, tuple(sorted(static.items())))


def batch_size_for(batch_size: int, n: int, mesh: Mesh) -> int:
  """The global batch: ``batch_size`` (at most ``n``) rounded up to a multiple of the mesh's
  devices."""
  devices = mesh.devices.size
  b = max(1, min(int(batch_size), n))
  return -(-b // devices) * devices


def global_batches(x: np.ndarray, y: np.ndarray, *, global_batch: int, mesh: Mesh,
                   mean: Optional[Sequence[float]] = None,
                   std: Optional[Sequence[float]] = None) -> Iterator[dict]:
  """Every example once, in order, in padded global batches sharded on ``mesh``."""
  for local in pipeline.eval_batches(x, y, global_batch=global_batch, mean=mean, std=std,
                                     process_index=jax.process_index(),
                                     process_count=jax.process_count()):
    yield sharding.global_batch(local, mesh)


def _host(tree):
  if jax.process_count() > 1:
    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)


def sums(step: Callable, first: Any, x: np.ndarray, y: np.ndarray, *rest, global_batch: int,
         mesh: Mesh, mean=None, std=None) -> Any:
  """The totals over every example of ``step``'s masked sums (a compiled step,
  :func:`compile_step` or one built the same way), as numpy."""
  totals = None
  for batch in global_batches(x, y, global_batch=global_batch, mesh=mesh, mean=mean, std=std):
    out = step(first, batch, *rest)
    totals = out if totals is None else jax.tree_util.tree_map(jnp.add, totals, out)
  return jax.device_get(totals)


def per_example(step: Callable, first: Any, x: np.ndarray, y: np.ndarray, *rest,
                batch_size: int, mesh: Mesh, mean=None, std=None) -> Any:
  """``step``'s per-example outputs (compiled with ``per_example_out``) for the ``N`` examples,
  leading axis ``N``, as numpy; ``batch_size`` as :func:`batch_size_for` makes it."""
  n = len(y)
  if n == 0:
    raise ValueError('no examples to evaluate')
  b = batch_size_for(batch_size, n, mesh)
  outs = [_host(step(first, batch, *rest))
          for batch in global_batches(x, y, global_batch=b, mesh=mesh, mean=mean, std=std)]
  return jax.tree_util.tree_map(lambda *a: np.concatenate(a)[:n], *outs)
