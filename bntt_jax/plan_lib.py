"""Plan a run for hardware you may not have: compile its real sharded steps, report per chip.

The library; its command line is :mod:`bntt_jax.plan`:

    python -m bntt_jax.plan --config=configs/cifar10.py --topology=v5e:4x4
    python -m bntt_jax.plan --config=configs/cifar10.py --topology=v5e:2x2 --config.train.batch_size=512
    python -m bntt_jax.plan --config=configs/cifar10.py --topology=cpu:8 --json=plan.json
    python -m bntt_jax.main --config=configs/cifar10.py --plan     # this machine's devices, then train

The training and evaluation steps of :mod:`bntt_jax.train` (``parallel_train_step``,
``parallel_eval_step``: the very functions a run jits) are lowered with abstract arguments
sharded over the slice's devices and compiled by XLA for that target, without the hardware
(TPU: libtpu's deviceless compile, ``pip install 'jax[tpu]'``; ``jax.experimental.topologies``
names the slices, e.g. ``v5e:2x2``, ``v4:2x2x2``, ``v5p:2x2x1``, ``v6e:4x4``). ``cpu:N`` uses N
host CPU devices. Reported per chip (one device; a v4 slice's devices are its TensorCores):

* memory: arguments, temporaries and the peak (arguments + outputs - donated + temporaries)
  against the chip's HBM (:data:`CHIPS`);
* FLOPs and bytes accessed per step, with every ``lax.scan`` body counted per trip
  (:mod:`bntt_jax.xla_cost`; ``Compiled.cost_analysis()`` counts a loop body once), and the
  recurrences' (the LIF loops') share apart;
* every collective with its bytes, and their time at the chip's all-reduce bandwidth;
* a roofline lower bound of the step time, ``max(compute, memory, collectives)``, with compute
  = FLOPs x MXU passes / peak bf16 FLOP/s (XLA counts a float32 matmul's FLOPs once; on a TPU
  it runs as 6 bf16 passes at ``matmul_precision='highest'``, 3 at ``'high'``, 1 for bf16
  operands), memory = bytes / HBM bandwidth; and images/s per chip and per slice.

A run whose step does not fit its chip's HBM stops with one line giving the largest per-chip
batch that fits (a search over compiles, seeded by a linear fit of the peak) and what
``--config.model.remat=True`` and bfloat16 synapses would allow. What only real hardware can
show: the step's measured time (the roofline is a bound), the input pipeline's speed and
host-to-device transfers, and multi-host start-up.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import os
import re
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from absl import logging
import jax
from jax.experimental import topologies
import jax.numpy as jnp
import ml_collections

from bntt_jax import config_lib
from bntt_jax import data as data_lib
from bntt_jax import platform
from bntt_jax import sharding
from bntt_jax import train as train_lib
from bntt_jax import xla_cost

try:   # JAX's probe for this host's TPU chips (private: quiet_deviceless_libtpu does without)
  from jax._src import hardware_utils  # pylint: disable=g-import-not-at-top
except ImportError:
  hardware_utils = None

GiB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
  """One chip's figures: Cloud TPU documentation (docs.cloud.google.com/tpu/docs/<version>),
  NVIDIA's H100 datasheet (dense, without sparsity).

  Attributes:
    label: the short name (``v5e``).
    hbm: bytes the compiler may use per chip.
    peak_flops: bf16 matrix FLOP/s per chip.
    hbm_bandwidth: bytes/s per chip.
    allreduce_bandwidth: bytes/s per chip for an all-reduce: the pod's all-reduce bandwidth
      over its chips where the documentation gives it (v4, v5e, v6e), else the per-chip
      interconnect bandwidth (v5p's ICI; one direction of an H100's NVLink).
    cores: TensorCores per chip that the deviceless topology lists as separate devices.
    f32_flops, tf32_flops: a GPU's float32 rates on its CUDA cores and on its tensor cores
      (TF32); None on TPUs, which run float32 matmuls as bf16 passes (:data:`MXU_PASSES`).
  """
  label: str
  hbm: float
  peak_flops: float
  hbm_bandwidth: float
  allreduce_bandwidth: float
  cores: int = 1
  f32_flops: Optional[float] = None
  tf32_flops: Optional[float] = None


# device_kind -> chip. v5e's HBM is what XLA:TPU reports as available of its 16 GiB
# ("exceeds available HBM (15.75G)"); the others are the nominal capacity.
CHIPS: Dict[str, Chip] = {
    'TPU v4': Chip('v4', 32 * GiB, 275e12, 1200e9, 1.1e15 / 4096, cores=2),
    'TPU v5 lite': Chip('v5e', 15.75 * GiB, 197e12, 819e9, 51.2e12 / 256),
    'TPU v5': Chip('v5p', 95e9, 459e12, 2765e9, 4800e9 / 8),
    'TPU v6 lite': Chip('v6e', 32e9, 918e12, 1638e9, 102.4e12 / 256),
    'NVIDIA H100 80GB HBM3': Chip('h100', 80e9, 989.4e12, 3.35e12, 450e9, f32_flops=66.9e12,
                                  tf32_flops=494.7e12),
}

# GPUs have no named topologies: XLA:GPU compiles for a target description (a
# stream_executor GpuTargetConfigProto) and a shape of slices x hosts x GPUs. Figures of an
# H100 SXM5 (NVIDIA's datasheet and CUDA's device properties for compute capability 9.0).
GPU_TARGETS = {'h100': """
gpu_device_info {
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_core: 233472
  threads_per_core_limit: 2048
  core_count: 132
  fpus_per_core: 128
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: 3352320000000
  l2_cache_size: 52428800
  clock_rate_ghz: 1.98
  device_memory_size: 84929347584
  shared_memory_per_block_optin: 232448
  cuda_compute_capability { major: 9 minor: 0 }
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 8 }
runtime_version { major: 12 minor: 9 }
device_description_str: "NVIDIA H100 80GB HBM3"
"""}

# bf16 MXU passes per matmul FLOP of float32 operands on a TPU, by the op's precision.
MXU_PASSES = {'highest': 6, 'float32': 6, 'high': 3, 'tensorfloat32': 3, 'default': 1,
              'bfloat16': 1}


def parse_topology(name: str) -> Tuple[str, Tuple[int, ...]]:
  """``'v5e:2x2'`` -> ``('v5e', (2, 2))``; ``'cpu:8'`` -> ``('cpu', (8,))``."""
  m = re.fullmatch(r'([a-z0-9]+):([1-9]\d*(?:x[1-9]\d*)*)', name or '')
  if not m:
    raise ValueError(f"topology {name!r} is not accepted: a JAX TPU topology name such as "
                     f"'v5e:2x2', 'v4:2x2x2', 'v5p:2x2x1', 'h100:8' (GPUs; 'h100:2x8': 2 "
                     f"hosts of 8) or 'cpu:N', every size >= 1")
  return m.group(1), tuple(int(d) for d in m.group(2).split('x'))


def topology_devices(name: str) -> list:
  """The devices of slice ``name`` (deviceless for TPUs; ``cpu:N`` needs N host devices,
  which ``python -m bntt_jax.plan`` sets up). A name that is not accepted is a one-line
  ``ValueError``: not a topology, an unknown TPU, libtpu (or JAX's CUDA plugin) missing."""
  kind, dims = parse_topology(name)
  if kind == 'cpu':
    n = dims[0]
    devices = jax.devices('cpu')
    if len(devices) < n:
      raise ValueError(f'topology {name!r} is not accepted here: this process has '
                       f'{len(devices)} CPU devices (python -m bntt_jax.plan sets them up)')
    return devices[:n]
  if kind in GPU_TARGETS:
    if len(dims) > 2:
      raise ValueError(f"topology {name!r} is not accepted: {kind}:GPUS or {kind}:HOSTSxGPUS")
    hosts, gpus = (1,) + dims if len(dims) == 1 else dims
    try:
      return list(topologies.get_topology_desc(
          platform='cuda', topology=f'1x{hosts}x{gpus}', target_config=GPU_TARGETS[kind]).devices)
    except Exception as e:  # pylint: disable=broad-except
      first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise ValueError(f"topology {name!r} is not accepted here: compiling for GPUs needs "
                       f"JAX's CUDA plugin (pip install 'jax[cuda12]'): {first}") from None
  if importlib.util.find_spec('libtpu') is None:
    raise ValueError(f"topology {name!r} is not accepted here: compiling for TPUs needs "
                     f"libtpu (pip install 'jax[tpu]')")
  quiet_deviceless_libtpu()
  kw = {'chips_per_host_bounds': [1, 1, 1]} if math.prod(dims) == 1 else {}
  try:
    return list(topologies.get_topology_desc(topology_name=name, platform='tpu', **kw).devices)
  except Exception as e:  # pylint: disable=broad-except
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if 'invalid tpu external name' in first.lower():
      raise ValueError(f'topology {name!r} is not accepted: {kind!r} is not a TPU libtpu '
                       f'knows ({first}); TPUs with figures here: '
                       f'{", ".join(c.label for c in CHIPS.values() if c.f32_flops is None)}'
                       ) from None
    raise ValueError(f'topology {name!r} is not accepted: {first}') from None


# libtpu, loaded as a compiler on a host without TPUs, looks for the host's accelerator type and
# workers, and prints five lines of warnings and a source-location trace when it finds none.
# Any valid values stop that: a deviceless compile takes its target from the topology's name
# (measured with libtpu 0.0.42.1: the same devices and kinds for v4:2x2x2, v5p:2x2x1, v6e:2x2
# with and without them).
_DEVICELESS_ENV = {'TPU_ACCELERATOR_TYPE': 'v5litepod-4', 'TPU_WORKER_HOSTNAMES': 'localhost'}


def quiet_deviceless_libtpu() -> None:
  """On a host without TPU chips, set :data:`_DEVICELESS_ENV` where the user has not (before
  libtpu is first loaded: it reads them then), and let several processes load libtpu as a
  compiler (its lock file is for processes that hold TPU chips)."""
  os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')
  if any(v in os.environ for v in _DEVICELESS_ENV):
    return
  try:
    chips, _ = hardware_utils.num_available_tpu_chips_and_device_id()
  except Exception:  # pylint: disable=broad-except
    return   # JAX's private probe moved or failed: leave libtpu as it is
  if not chips:
    os.environ.update(_DEVICELESS_ENV)


def chip_of(devices) -> Optional[Chip]:
  """The figures of one of ``devices``: a chip's, or a TensorCore's share of it where the
  topology lists a chip's cores as separate devices (v4's deviceless topologies do)."""
  chip = CHIPS.get(devices[0].device_kind) if devices[0].platform != 'cpu' else None
  if chip and chip.cores > 1 and any(getattr(d, 'core_on_chip', 0) for d in devices):
    n = chip.cores
    chip = dataclasses.replace(chip, label=f'{chip.label} core', hbm=chip.hbm / n,
                               peak_flops=chip.peak_flops / n,
                               hbm_bandwidth=chip.hbm_bandwidth / n,
                               allreduce_bandwidth=chip.allreduce_bandwidth / n, cores=1)
  return chip


def memory_limit(devices, chip: Optional[Chip]) -> Optional[float]:
  """Bytes one device may use: the chip's HBM (:data:`CHIPS`), else what a live device
  reports (a GPU's ``bytes_limit``), else None (a CPU: no fixed limit)."""
  if chip:
    return chip.hbm
  try:
    stats = devices[0].memory_stats() or {}
  except Exception:  # pylint: disable=broad-except
    stats = {}   # deviceless devices and CPUs have none
  return float(stats['bytes_limit']) if 'bytes_limit' in stats else None


# ---------------------------------------------------------------------------------------------
# Compiling the steps.


@dataclasses.dataclass
class Setup:
  """What a plan compiles: the model, mesh and abstract arguments of the two steps."""
  config: Any
  devices: list
  model: Any
  mesh: Any
  example_shape: Tuple[int, ...]


def setup(config, devices) -> Setup:
  """The run's model for ``devices`` (the CPU kernels only for one CPU device) and mesh."""
  shape, classes = data_lib.example_spec(config.data.name, config.data.options.to_dict())
  if config.data.get('image_size'):    # the reduced scale's images (bntt_jax.data.scale)
    shape = (config.data.image_size, config.data.image_size) + tuple(shape[2:])
  model = config_lib.create_model(config, classes, devices=devices,
                                  axis_name=sharding.DATA_AXIS)
  return Setup(config, list(devices), model, sharding.create_mesh(devices), shape)


def _abstract(tree, placement):
  return jax.tree_util.tree_map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=placement), tree)


def _abstract_arguments(s: Setup, global_batch: int, *, mask: bool):
  """The steps' arguments as sharded abstract values: ``(lr_fn, state, batch, key)``; the
  batch has the evaluation's ``mask`` where asked."""
  lr = train_lib.create_learning_rate_fn(s.config, 1)
  state = jax.eval_shape(functools.partial(
      train_lib.create_train_state, config=s.config, model=s.model, input_shape=s.example_shape,
      learning_rate_fn=lr), jax.random.PRNGKey(0))
  repl, data_sh = sharding.replicated(s.mesh), sharding.data_sharding(s.mesh)
  per_example = lambda dtype, tail=(): jax.ShapeDtypeStruct((global_batch,) + tail, dtype,
                                                            sharding=data_sh)
  batch = {'image': per_example(jnp.float32, s.example_shape),
           'label': per_example(jnp.int32), 'index': per_example(jnp.int32)}
  if mask:
    batch['mask'] = per_example(jnp.float32)
  key = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=repl)
  return lr, _abstract(state, repl), batch, key


def compile_train_step(s: Setup, global_batch: int):
  """The compiled ``train.parallel_train_step`` for a global batch of ``global_batch``."""
  lr, state, batch, key = _abstract_arguments(s, global_batch, mask=False)
  return train_lib.parallel_train_step(s.mesh, lr).lower(state, batch, key).compile()


def compile_eval_step(s: Setup, global_batch: int):
  """The compiled ``train.parallel_eval_step`` for evaluation batches of ``global_batch``."""
  _, state, batch, key = _abstract_arguments(s, global_batch, mask=True)
  return train_lib.parallel_eval_step(s.mesh, s.config.eval.timesteps).lower(
      state, batch, key).compile()


# ---------------------------------------------------------------------------------------------
# Reading a compiled step.


@dataclasses.dataclass(frozen=True)
class StepReport:
  """One compiled step on one device (bytes, FLOPs; see the module doc)."""
  per_chip_batch: int
  argument_bytes: int
  output_bytes: int
  alias_bytes: int
  temp_bytes: int
  peak_bytes: int
  flops: float
  bytes_accessed: float
  matmul_flops: Dict[str, float]        # convolutions and dots by operand dtype and precision
  loop_flops: float
  loop_bytes: float
  xla_flops_loops_once: float           # Compiled.cost_analysis(), the target's own count
  xla_bytes_loops_once: float
  loops: int
  collectives: Dict[str, Dict[str, float]]   # kind -> {'count', 'bytes', 'seconds'}
  largest_gathered_bytes: int           # the largest all-gather / all-to-all result


def _group_size(groups: str, default: int) -> int:
  m = re.match(r'\{\{([^}]*)\}', groups)
  if m:
    return len(m.group(1).split(','))
  m = re.match(r'\[(\d+),(\d+)\]', groups)
  return int(m.group(2)) if m else default


def read_step(compiled, per_chip_batch: int, devices: int,
              chip: Optional[Chip]) -> StepReport:
  """The :class:`StepReport` of a compiled step."""
  text = compiled.as_text()
  mem = compiled.memory_analysis()
  raw = compiled.cost_analysis() or {}
  if isinstance(raw, (list, tuple)):   # older JAX: one dict per program
    raw = raw[0] if raw else {}
  cost = xla_cost.program_cost(text)
  # The target's own byte count includes its layouts' padding (TPU tiles); scale the
  # loop-corrected logical count by the same factor.
  pad = (raw.get('bytes accessed', 0.0) / cost.bytes_loops_once
         if cost.bytes_loops_once and raw.get('bytes accessed') else 1.0)
  colls: Dict[str, Dict[str, float]] = {}
  gathered = 0
  for c in xla_cost.collectives(text):
    g = _group_size(c.groups, devices)
    moved = (2.0 * (g - 1) / g if c.kind == 'all-reduce' else (g - 1) / g) * c.bytes
    entry = colls.setdefault(c.kind, {'count': 0, 'bytes': 0, 'seconds': 0.0})
    entry['count'] += 1
    entry['bytes'] += c.bytes
    entry['seconds'] += moved / chip.allreduce_bandwidth if chip else 0.0
    if c.kind in ('all-gather', 'all-to-all'):
      gathered = max(gathered, c.bytes)
  peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
          + mem.temp_size_in_bytes)
  return StepReport(
      per_chip_batch=per_chip_batch, argument_bytes=mem.argument_size_in_bytes,
      output_bytes=mem.output_size_in_bytes, alias_bytes=mem.alias_size_in_bytes,
      temp_bytes=mem.temp_size_in_bytes, peak_bytes=peak, flops=cost.flops,
      bytes_accessed=cost.bytes * pad, matmul_flops=dict(cost.matmul_flops), loop_flops=cost.loop_flops, loop_bytes=cost.loop_bytes * pad,
      xla_flops_loops_once=float(raw.get('flops', 0.0)),
      xla_bytes_loops_once=float(raw.get('bytes accessed', 0.0)), loops=len(cost.loops),
      collectives=colls, largest_gathered_bytes=gathered)


def matmul_rates(chip: Chip) -> Dict[str, float]:
  """FLOP/s of a matmul or convolution on ``chip`` by its operands' dtype and precision
  (the keys of ``xla_cost.matmuls``): a TPU runs bf16 operands in one MXU pass, float32 ones in
  6 passes at ``highest`` precision, 3 at ``high``, 1 at ``default``; a GPU runs bf16 on its
  tensor cores, float32 at ``highest`` on its CUDA cores, else as TF32."""
  if chip.f32_flops is None:
    return {'bf16': chip.peak_flops,
            **{f'f32/{p}': chip.peak_flops / n for p, n in MXU_PASSES.items()}}
  return {'bf16': chip.peak_flops, 'f32/highest': chip.f32_flops, 'f32/float32': chip.f32_flops,
          'f32/high': chip.tf32_flops, 'f32/tensorfloat32': chip.tf32_flops,
          'f32/default': chip.tf32_flops, 'f32/bfloat16': chip.peak_flops}


def roofline(step: StepReport, chip: Chip) -> Dict[str, float]:
  """Lower bounds of one step's time on ``chip`` (seconds) and the images/s they allow: the
  matmuls at their rates (:func:`matmul_rates`), the other FLOPs at the chip's peak (bf16
  on a TPU, its float32 rate on a GPU: a bound, since vector units are slower)."""
  rates = matmul_rates(chip)
  other = max(0.0, step.flops - sum(step.matmul_flops.values()))
  compute = (sum(f / rates.get(k, rates['f32/highest']) for k, f in step.matmul_flops.items())
             + other / (chip.f32_flops or chip.peak_flops))
  memory = step.bytes_accessed / chip.hbm_bandwidth
  collectives = sum(c['seconds'] for c in step.collectives.values())
  bound = max(compute, memory, collectives)
  limit = ('compute' if bound == compute else 'memory' if bound == memory else 'collectives')
  return {'compute_s': compute, 'memory_s': memory, 'collectives_s': collectives,
          'step_s': bound, 'limited_by': limit, 'img_per_s_per_chip': step.per_chip_batch / bound}


# ---------------------------------------------------------------------------------------------
# The largest batch that fits.


def largest_fitting(peak: Callable[[int], Optional[float]], limit: float, start: int,
                    step: int = 8, cap: int = 1 << 16) -> Tuple[int, Dict[int, Optional[float]]]:
  """The largest per-chip batch ``b`` (a multiple of ``step``, or below ``step``: any
  integer) with ``peak(b) <= limit``; ``peak`` returns bytes or None (did not compile).

  Each guess is the linear fit of the compiled points nearest the limit (the peak grows about
  linearly with the batch), at most 4x the largest batch known to fit (a compile's own time
  and memory grow with its batch); once a batch on each side is known, the fit's guess and
  its neighbour ``+ step`` usually close the gap, and bisection finishes it (XLA may
  rematerialise under memory pressure, so the peak is not linear near the limit). Returns
  ``(b, peaks seen)``; ``b = 0`` when not even one example fits.
  """
  seen: Dict[int, Optional[float]] = {}

  def fits(b: int) -> bool:
    if b not in seen:
      seen[b] = peak(b)
    return seen[b] is not None and seen[b] <= limit

  def snap(b: float) -> int:
    b = int(max(1, min(cap, b)))
    return b if b < step else b // step * step

  def bounds() -> Tuple[int, int]:
    return (max((b for b in seen if fits(b)), default=0),
            min((b for b in seen if not fits(b)), default=cap + 1))

  def linear_guess() -> Optional[float]:
    pts = sorted(((b, p) for b, p in seen.items() if p is not None),
                 key=lambda bp: abs(bp[1] - limit))[:2]
    if len(pts) < 2 or pts[0][1] == pts[1][1] or pts[0][0] == pts[1][0]:
      return None
    (x0, p0), (x1, p1) = pts
    return x0 + (limit - p0) * (x1 - x0) / (p1 - p0)

  b0 = snap(start)
  fits(snap(b0 * 2) if fits(b0) else snap(b0 / 2))
  lo, hi = bounds()
  while hi > cap and lo < cap:            # everything so far fits: grow
    g = linear_guess()
    g = snap(min(max(g or 0, lo + step), 4 * lo))
    if g <= lo:
      break
    fits(g)
    lo, hi = bounds()
  while lo == 0 and hi > 1:               # nothing fits yet: shrink
    g = linear_guess()
    g = snap(g if g is not None and 1 <= g < hi else hi / 2)
    g = min(g, hi - 1)
    fits(g)
    lo, hi = bounds()
  if lo == 0:
    return 0, seen
  g = linear_guess()
  if g is not None and lo < snap(g) < hi:
    fits(snap(g))
    lo, hi = bounds()
  nxt = snap(lo + (1 if lo < step else step))   # the batch just above the largest that fits
  if lo < nxt < hi:
    fits(nxt)
  lo, hi = bounds()
  while hi - lo > 1:
    mid = snap((lo + hi) // 2)
    if mid in (lo, hi):
      break
    fits(mid)
    lo, hi = bounds()
  return lo, seen


def train_peak_fn(config, devices, label: str = '') -> Callable[[int], Optional[float]]:
  """``per-chip batch -> peak bytes`` of the run's train step (None: did not compile);
  each compile is logged (they take seconds to minutes)."""
  s = setup(config, devices)

  def peak(b: int) -> Optional[float]:
    t0 = time.perf_counter()
    try:
      compiled = compile_train_step(s, b * len(devices))
    except Exception as e:  # pylint: disable=broad-except
      if not _out_of_memory(e):
        raise
      result = None
    else:
      mem = compiled.memory_analysis()
      result = float(mem.argument_size_in_bytes + mem.output_size_in_bytes
                     - mem.alias_size_in_bytes + mem.temp_size_in_bytes)
    logging.info('search%s: per-chip batch %d: %s (%.0f s)', f' ({label})' if label else '', b,
                 'out of memory' if result is None else f'{result / GiB:.3f} GiB',
                 time.perf_counter() - t0)
    return result
  return peak


def _out_of_memory(e: Exception) -> bool:
  text = str(e)
  return 'RESOURCE_EXHAUSTED' in text or 'exceeds available' in text or 'out of memory' in text


def variant(config, **changes):
  """A copy of ``config`` with ``model`` fields changed (e.g. ``remat=True``)."""
  c = ml_collections.ConfigDict(config.to_dict())
  for k, v in changes.items():
    c.model[k] = v
  return c


# The run as configured, and with each of the two settings that trade speed or precision for
# memory.
VARIANTS = {'configured': {}, 'bfloat16': {'dtype': 'bfloat16'}, 'remat': {'remat': True}}


# ---------------------------------------------------------------------------------------------
# The plan.


def plan(config, devices, *, search: Sequence[str] = (), topology: str = '',
         hbm: Optional[float] = None) -> Dict[str, Any]:
  """Compile the run's steps for ``devices`` and report (module doc).

  Args:
    config: the run's config (validated by the caller).
    devices: the target devices (:func:`topology_devices`, or ``jax.devices()``).
    search: names of :data:`VARIANTS` whose largest per-chip batch to search for even when
      the run fits (every variant is searched when it does not); ``timesteps``: also the
      largest T at the run's per-chip batch.
    topology: the slice's name, for the report.
    hbm: bytes a device may use (default: :func:`memory_limit`).
  """
  platform.set_matmul_precision(config.matmul_precision)
  n = len(devices)
  chip = chip_of(devices)
  limit = hbm if hbm is not None else memory_limit(devices, chip)
  s = setup(config, devices)
  tb, eb = config.train.batch_size, config.eval.batch_size
  train = _read_or_none(compile_train_step, s, tb, chip)
  report: Dict[str, Any] = {
      'topology': topology or f'{devices[0].platform}:{n}', 'devices': n,
      'device_kind': devices[0].device_kind, 'chip': dataclasses.asdict(chip) if chip else None,
      'global_batch': tb, 'eval_batch': eb, 'timesteps': config.model.timesteps,
      'model': config.model.arch,
      'dtype': config.model.dtype, 'remat': config.model.remat,
      'matmul_precision': config.matmul_precision,
      'synapse_precision': s.model.synapse_precision,
      'kernels': {'sparse_conv': s.model.sparse_conv, 'lif_kernel': s.model.lif_kernel},
      'hbm_limit': limit, 'train': train and dataclasses.asdict(train),
  }
  ev = _read_or_none(compile_eval_step, s, eb, chip)
  report['eval'] = ev and dataclasses.asdict(ev)
  if chip and train:
    report['train_roofline'] = roofline(train, chip)
    report['train_roofline']['img_per_s_per_slice'] = (
        report['train_roofline']['img_per_s_per_chip'] * n)
  report['fits'] = None
  report['largest_per_chip_batch'] = {}
  if limit is not None:
    # A step XLA refused to compile for want of memory does not fit either.
    report['train_fits'] = train is not None and train.peak_bytes <= limit
    report['eval_fits'] = ev is not None and ev.peak_bytes <= limit
    report['fits'] = report['train_fits'] and report['eval_fits']
    wanted = set(search) | (set(VARIANTS) if not report['train_fits'] else set())
    report['searched_peaks'] = {}   # what each search compiled: {value: peak bytes or None}
    for name in VARIANTS:
      if name in wanted:
        b, seen = largest_fitting(train_peak_fn(variant(config, **VARIANTS[name]), devices,
                                                name), limit, start=max(1, tb // n))
        report['largest_per_chip_batch'][name] = b
        report['searched_peaks'][name] = seen
    if 'timesteps' in search:
      t, seen = largest_fitting(timesteps_peak_fn(config, devices, tb // n), limit,
                                start=config.model.timesteps, step=1)
      report['largest_timesteps'] = t
      report['searched_peaks']['timesteps'] = seen
  return report


def timesteps_peak_fn(config, devices, per_chip: int) -> Callable[[int], Optional[float]]:
  """``T -> peak bytes`` of the run's train step at ``per_chip`` examples per chip."""
  def peak(t: int) -> Optional[float]:
    c = variant(config, timesteps=t)
    if c.eval.timesteps is not None and c.eval.timesteps > t:
      c.eval.timesteps = t
    return train_peak_fn(c, devices, f'T {t}')(per_chip)
  return peak


def _read_or_none(compile_fn, s: Setup, global_batch: int, chip) -> Optional[StepReport]:
  """The step's report, or None where XLA refuses to compile it for want of memory."""
  n = len(s.devices)
  try:
    compiled = compile_fn(s, global_batch)
  except Exception as e:  # pylint: disable=broad-except
    if _out_of_memory(e):
      return None
    raise
  return read_step(compiled, global_batch // n, n, chip)


def _gib(x: float) -> str:
  return f'{x / GiB:.3g} GiB'


def summary_lines(r: Dict[str, Any]) -> List[str]:
  """The report as a few human lines."""
  gb = _gib
  t = r['train']
  if t is None:
    return [f"plan: {r['model']} T {r['timesteps']}, global batch {r['global_batch']} on "
            f"{r['topology']}: XLA refused to compile the train step (out of memory)"]
  lines = [f"plan: {r['model']} T {r['timesteps']}, global batch {r['global_batch']} on "
           f"{r['topology']} ({r['devices']} x {r['device_kind']}), per-chip batch "
           f"{t['per_chip_batch']}, synapses {r['dtype']} ({r['synapse_precision']}), remat "
           f"{r['remat']}",
           f"train step per chip: peak {gb(t['peak_bytes'])} (arguments "
           f"{gb(t['argument_bytes'])}, temporaries {gb(t['temp_bytes'])})"
           + (f" of {gb(r['hbm_limit'])}" if r['hbm_limit'] else ''),
           f"  {t['flops'] / 1e9:.1f} GFLOP, {gb(t['bytes_accessed'])} accessed (LIF loops: "
           f"{t['loop_flops'] / 1e9:.2f} GFLOP, {gb(t['loop_bytes'])}"
           + (f"; the target's own count, loop bodies once: {t['xla_flops_loops_once'] / 1e9:.1f}"
              " GFLOP)" if t['xla_flops_loops_once'] else ')')]
  colls = ', '.join(f"{k} x{int(v['count'])} {v['bytes'] / 1e6:.1f} MB"
                    for k, v in sorted(t['collectives'].items())) or 'none'
  lines.append(f'  collectives: {colls}')
  if r.get('train_roofline'):
    rf = r['train_roofline']
    mm = ', '.join(f'{k} {v / 1e9:.0f}' for k, v in sorted(t['matmul_flops'].items()))
    lines.append(f"  roofline: compute {rf['compute_s'] * 1e3:.1f} ms (matmul GFLOP: {mm}), "
                 f"memory {rf['memory_s'] * 1e3:.1f} ms, collectives {rf['collectives_s'] * 1e3:.2f} ms -> >= {rf['step_s'] * 1e3:.1f} ms per step "
                 f"({rf['limited_by']}), <= {rf['img_per_s_per_chip']:.0f} img/s per chip, "
                 f"{rf['img_per_s_per_slice']:.0f} per slice")
  if r['eval']:
    e = r['eval']
    lines.append(f"eval step per chip (batch {e['per_chip_batch']}): peak {gb(e['peak_bytes'])}, "
                 f"{e['flops'] / 1e9:.1f} GFLOP")
  if r['fits'] is not None:
    lines.append('fits: ' + ('yes' if r['fits'] else 'NO'))
  for name, b in r.get('largest_per_chip_batch', {}).items():
    lines.append(f'largest per-chip batch ({name}): {b}')
  if 'largest_timesteps' in r:
    lines.append(f"largest T at per-chip batch {t['per_chip_batch']}: {r['largest_timesteps']}")
  return lines


def does_not_fit_message(r: Dict[str, Any]) -> str:
  """The one line a run that does not fit stops with."""
  largest = r['largest_per_chip_batch']
  t = r['train']
  if r['train_fits']:
    e = r['eval']
    need = _gib(e['peak_bytes']) if e else 'more than XLA could allocate'
    return (f"eval batch size {r['eval_batch']} is not accepted on {r['device_kind']}: the "
            f"eval step needs {need} of {_gib(r['hbm_limit'])} per device; lower "
            f"--config.eval.batch_size (the train step fits)")
  need = (_gib(t['peak_bytes']) if t else 'more than XLA could allocate')
  return (f"per-chip batch {r['global_batch'] // r['devices']} (global {r['global_batch']} over "
          f"{r['devices']} devices) is not accepted on {r['device_kind']}: its train step needs "
          f"{need} of {_gib(r['hbm_limit'])}; the largest "
          f"per-chip batch that fits is {largest['configured']} as configured, {largest['remat']} "
          f"with --config.model.remat=True, {largest['bfloat16']} with "
          f"--config.model.dtype=bfloat16")
