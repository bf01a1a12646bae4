"""One code path from one CPU to many hosts: a data-parallel mesh.

* a ``Mesh`` over all devices with one axis, ``data``;
* batches sharded along ``data`` (``NamedSharding(mesh, P('data'))``), built
  by each host from its own rows (``make_array_from_process_local_data``);
* parameters, BN statistics and optimizer state replicated (``P()``);
* the steps run under ``jax.shard_map`` (:func:`data_parallel`): each device
  computes its own examples, and the only collectives are the ones written in
  the code: the norms' per-step moments (``[k, C]`` per layer,
  :mod:`bntt_jax.norms`), the gradient and the metrics' sums.

Why not let GSPMD partition a plain ``jax.jit``: the ``layer`` schedule merges
``[T, B, ...]`` into ``[T * B, ...]`` for each synaptic op, and a merged axis
whose minor part is sharded has no tiled sharding, so the partitioner
all-gathers the batch and every device computes the whole global batch (the
numbers stay right, the work does not split; ``python -m bntt_jax.plan``
shows it per device).
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


def initialize_distributed() -> bool:
  """``jax.distributed.initialize()`` for a multi-process run, before any computation.

  Runs when ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0) is set, with
  ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` giving the process count and
  this process's id; or when ``BNTT_DISTRIBUTED=auto``, where JAX detects all
  three itself (TPU pods, SLURM, ...).
  ``BNTT_HEARTBEAT_TIMEOUT_S`` (default 60) is how long the others wait for a
  process that stopped answering before they stop too.
  Returns whether it initialised.
  """
  if (not os.environ.get('JAX_COORDINATOR_ADDRESS')
      and os.environ.get('BNTT_DISTRIBUTED', '').lower() not in ('auto', '1', 'true')):
    return False
  kw = {'heartbeat_timeout_seconds': int(os.environ.get('BNTT_HEARTBEAT_TIMEOUT_S', '60'))}
  if os.environ.get('JAX_NUM_PROCESSES'):
    kw['num_processes'] = int(os.environ['JAX_NUM_PROCESSES'])
  if os.environ.get('JAX_PROCESS_ID'):
    kw['process_id'] = int(os.environ['JAX_PROCESS_ID'])
  jax.distributed.initialize(**kw)
  return True


def create_mesh(devices=None) -> Mesh:
  """A 1-D ``data`` mesh over ``devices`` (default: all, every process's)."""
  devices = jax.devices() if devices is None else list(devices)
  try:
    return jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices,
                         axis_types=(jax.sharding.AxisType.Auto,))
  except AssertionError:
    # jax.make_mesh orders TPU v4/v5p devices by chip and wants one per chip ("megacore"); a
    # deviceless topology lists their TensorCores. A 1-D data axis needs no physical order.
    return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over ``data``."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_parallel(fn: Callable, mesh: Mesh, sharded_args: Sequence[int] = (1,),
                  sharded_out: bool = False) -> Callable:
  """``fn`` run per device under ``shard_map`` over ``mesh``'s ``data`` axis.

  The positional arguments in ``sharded_args`` are split along their leading
  (batch) axis, the others are replicated. The outputs are replicated (``fn``
  must reduce what it returns over ``DATA_AXIS`` itself, ``jax.lax.psum``), or
  with ``sharded_out`` every output's leading axis is this device's examples
  (per-example results, put together along the axis).
  """
  def wrapped(*args):
    specs = tuple(P(DATA_AXIS) if i in sharded_args else P() for i in range(len(args)))
    out = P(DATA_AXIS) if sharded_out else P()
    return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=out)(*args)
  return wrapped


def global_batch(local: Dict[str, np.ndarray], mesh: Mesh) -> Dict[str, jax.Array]:
  """This host's rows ``[B / processes, ...]`` -> global arrays ``[B, ...]`` sharded on ``data``."""
  sharding = data_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def is_main_process() -> bool:
  """Only process 0 writes files other than checkpoints (orbax coordinates those)."""
  return jax.process_index() == 0
