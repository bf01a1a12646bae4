"""Training-step throughput of VGG9 (CIFAR-10 shape), ours beside PyTorch peers'.

    python experiments/benchmark.py --batch=16,32 --timesteps=25 \
        --spike-rate=untrained,0.1,0.05,0.02 \
        --peer=snntorch,multistep-eager,multistep-compile,spikingjelly \
        --peer-python=/tmp/peer/bin/python

Each configuration runs in a fresh process (so peak memory is its own) and
prints one JSON line: ``impl``, ``batch``, ``timesteps``, ``schedule``,
``precision``, ``remat``, ``step_s`` (mean of ``--steps`` timed steps after
one warm-up, as the peers measure), ``img_per_s``, ``peak_mem_mb`` (the process's peak resident set
on CPU, the device's peak bytes in use on GPU/TPU), ``model_gflop_per_img``
(S7-style count: 2 FLOP per MAC, forward x 3 for a training step),
``achieved_gflops``, ``matmul_peak_gflops`` (a 4096^2 f32 matmul measured on
the same device) and its fraction, and the spike rates measured in the timed
steps (``spike_rate_per_layer``: each hidden layer's fraction of neurons firing
per step, the mean over the timed steps; ``spike_rate_timed_range``: the least
and most of any layer in any timed step).

Peers (``--peer=``, :data:`PEERS`; ``--peer`` alone is snntorch), each in its own
process with ``--peer-python`` (torch, snntorch, spikingjelly installed):
``snntorch`` (``peer_snntorch.py``: the whole network once per time step),
``multistep-eager``, ``multistep-eager-nhwc`` (channels-last) and
``multistep-compile`` (``peer_multistep.py``: every synaptic op once over all
``T * B`` samples, eager or under ``torch.compile``),
``spikingjelly`` (SpikingJelly's multi-step modules). ``--repeats=N`` runs all
peers, then ours, N times in alternation; one ratio line per peer compares the
medians (:func:`ratio_record`), and a last line the strongest peer's
(:func:`strongest_record`), so that a slow spell of a shared machine does not
decide the comparison. The peers run in float32 (TF32 off on GPU) beside our
float32 rows and under ``torch.autocast(bfloat16)`` beside our bfloat16 rows
(``peer_precision``). All run with glibc's huge-page tunable, as ``python -m
bntt_jax.main`` does (:mod:`bntt_jax.platform`).

Spike rates (``--spike-rate``): an untrained VGG9 fires at 20-26 % per step;
a trained BNTT network at a few percent, where the event-driven convolutions
have less to do and the dense peers the same. For each rate R, one child
process finds per hidden layer the BNTT scale (every step's gamma) at which
that layer fires at R (:func:`bntt_jax.analysis.calibration.calibrate_gammas`, printed as a
``calibration`` line); ours and every peer then start from those gammas (peers: argument
``gamma=...``, ``peer_rates.py``), each with its own weights from the same
distributions. Ours reports the rates of its timed steps, each peer those of
one untimed pass after its timed steps.

``--kernel-isa=avx512,avx2`` runs ours once per variant of the CPU kernels
(``$BNTT_KERNEL_ISA``, :mod:`bntt_jax.kernels.build`), each in the alternation and with its
own ratio lines (``kernel_isa``): on an AVX-512 host the AVX2 build, which holds no AVX-512
instruction, times what an AVX2-only CPU runs (the peers' libraries still use AVX-512 there).
``--cpu-isa=avx2`` limits both sides to AVX2 (:func:`cpu_isa_env`: our avx2 kernels and XLA's
AVX2 code, the peers' PyTorch, oneDNN and MKL), as on a CPU without AVX-512; its lines carry
``cpu_isa``. ``experiments/benchmark_table.py`` turns a run's lines into the README's table.

A training step here is what ``bntt_jax.train`` does: forward, backward,
SGD-momentum update, running-statistics update, on random inputs uniform in
[-1, 1] (the peers' input), random labels.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from bntt_jax import timing
from bntt_jax.analysis.calibration import calibrate_gammas, layer_rates, with_gammas
from bntt_jax.kernels import build

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def vgg9_forward_macs_per_step(num_classes: int = 10) -> int:
  """Multiply-accumulates of one VGG9 time step for one 32x32x3 image (S7, as
  :func:`bntt_jax.analysis.energy.layer_costs` counts them)."""
  from bntt_jax import models  # pylint: disable=g-import-not-at-top
  from bntt_jax.analysis import energy  # pylint: disable=g-import-not-at-top
  model = models.vgg9(num_steps=1, num_classes=num_classes)
  return sum(c.flops for c in energy.layer_costs(model, (32, 32, 3)))


def _peak_mem_mb() -> float:
  import jax  # pylint: disable=g-import-not-at-top
  dev = jax.devices()[0]
  if dev.platform != 'cpu':
    stats = dev.memory_stats() or {}
    return round(stats.get('peak_bytes_in_use', 0) / 2**20, 1)
  import resource  # pylint: disable=g-import-not-at-top
  return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def build_train_step(batch: int, timesteps: int, schedule: str, precision: str, remat: bool,
                     sparse_conv: str = 'auto', lif_kernel: str = 'auto', gammas=None):
  """The benchmark's jitted training step, its first state and the model: ``(step, state,
  model)``, ``step(state, key) -> (state, {'loss', 'rates' [L]})`` (state donated; ``rates``
  as :func:`layer_rates`, of this step's forward pass). ``gammas``: per hidden layer, the
  BNTT scale of every step (:func:`calibrate_gammas`); default the initial 1. Call after
  ``platform.configure_xla()``."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from bntt_jax import models, network, optim, platform  # pylint: disable=g-import-not-at-top
  platform.set_matmul_precision('highest' if precision == 'float32' else 'default')

  dtype = {'float32': None, 'bfloat16': jnp.bfloat16}[precision]
  model = models.vgg9(num_steps=timesteps, schedule=schedule, dtype=dtype, remat=remat,
                      sparse_conv=sparse_conv, lif_kernel=lif_kernel)
  x, y = benchmark_batch(batch)
  variables = jax.jit(lambda k: model.init({'params': k, 'poisson': k}, x, train=False))(
      jax.random.PRNGKey(0))
  params = variables['params']
  if gammas is not None:
    names = network.default_names(model.layers)
    if len(gammas) != len(names):
      raise ValueError(f'gammas: {len(gammas)} values for {len(names)} hidden layers')
    params = with_gammas(params, names, gammas)
  tx = optim.create_optimizer('sgd', 0.1, momentum=0.9, weight_decay=1e-4)   # as train uses it
  state = (params, variables['batch_stats'], tx.init(params))

  def train_step(state, key):
    params, stats, opt = state

    def loss_fn(p):
      out, upd = model.apply({'params': p, 'batch_stats': stats}, x, train=True,
                             rngs={'poisson': key}, mutable=['batch_stats'])
      loss = optax.softmax_cross_entropy_with_integer_labels(out.logits, y).mean()
      return loss, (upd['batch_stats'], layer_rates(out))

    (loss, (stats, rates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(grads, opt, params)
    return (optax.apply_updates(params, updates), stats, opt), {'loss': loss, 'rates': rates}

  return jax.jit(train_step, donate_argnums=0), state, model


def benchmark_batch(batch: int):
  """The fixed batch every step trains on: inputs uniform in [-1, 1] (the peers'), labels."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(0)
  return (jnp.asarray(rng.uniform(-1, 1, (batch, 32, 32, 3)).astype(np.float32)),
          jnp.asarray(rng.randint(0, 10, batch)))


def run_calibration(batch: int, timesteps: int, target: float) -> dict:
  """The gammas at which VGG9 fires at about ``target`` per step (:func:`calibrate_gammas`),
  in this process: ``{'gamma': [L], 'calibrated_rates': [L], ...}``."""
  from bntt_jax import platform  # pylint: disable=g-import-not-at-top
  platform.configure_xla()
  import jax  # pylint: disable=g-import-not-at-top
  from bntt_jax import network  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  # The float32 layer-schedule run's model and first state (its step is never compiled here).
  _, (params, stats, _), model = build_train_step(batch, timesteps, 'layer', 'float32', False)
  x, _ = benchmark_batch(batch)
  gammas, rates = calibrate_gammas(model, {'params': params, 'batch_stats': stats}, x,
                                   jax.random.PRNGKey(1), target)
  return {'calibration': True, 'batch': batch, 'timesteps': timesteps, 'target_rate': target,
          'layers': list(network.default_names(model.layers)),
          'gamma': [float(f'{g:.6g}') for g in gammas],
          'calibrated_rates': [round(float(r), 4) for r in rates],
          'calibrate_s': round(time.perf_counter() - t0, 1)}


def run_ours(batch: int, timesteps: int, schedule: str, precision: str, remat: bool,
             steps: int, matmul_peak: bool, sparse_conv: str = 'auto',
             lif_kernel: str = 'auto', gammas=None) -> dict:
  """One configuration, in this process. Returns the JSON record."""
  from bntt_jax import platform  # pylint: disable=g-import-not-at-top
  platform.configure_xla()
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from bntt_jax import config_lib  # pylint: disable=g-import-not-at-top
  step, state, model = build_train_step(batch, timesteps, schedule, precision, remat,
                                        sparse_conv, lif_kernel, gammas)
  t0 = time.perf_counter()
  state, aux = step(state, jax.random.PRNGKey(1))
  aux['loss'].block_until_ready()
  compile_s = time.perf_counter() - t0
  times, rates = [], []
  for i in range(steps):
    t = time.perf_counter()
    state, aux = step(state, jax.random.PRNGKey(2 + i))
    aux['loss'].block_until_ready()
    times.append(time.perf_counter() - t)
    rates.append(np.asarray(aux['rates']))
  step_s = float(np.mean(times))   # the peer reports the mean too
  rates = np.stack(rates)          # [steps, L]: each timed step's per-layer rate
  gflop = 3 * 2 * vgg9_forward_macs_per_step() * timesteps / 1e9
  rec = {
      'impl': 'bntt_jax', 'backend': jax.devices()[0].platform,
      'device': jax.devices()[0].device_kind, 'batch': batch, 'timesteps': timesteps,
      'schedule': schedule, 'precision': precision, 'remat': remat,
      # What ran the event-driven convolutions and the LIF recurrences: 'kernel (<variant>)'
      # (avx512, avx2, generic: $BNTT_KERNEL_ISA, bntt_jax.kernels.build) or 'xla (why)'.
      **config_lib.kernels_in_use(model),
      'step_s': round(step_s, 4), 'step_s_min': round(min(times), 4),
      'img_per_s': round(batch / step_s, 2), 'peak_mem_mb': _peak_mem_mb(),
      'compile_s': round(compile_s, 1), 'loss': round(float(aux['loss']), 4),
      'model_gflop_per_img': round(gflop, 2),
      'achieved_gflops': round(gflop * batch / step_s, 1),
      # Measured in the timed steps: per layer, the mean over them, and the least and most
      # that any layer fired in any of them.
      'spike_rate_per_layer': [round(float(r), 4) for r in rates.mean(0)],
      'spike_rate_timed_range': [round(float(rates.min()), 4), round(float(rates.max()), 4)],
  }
  if gammas is not None:
    rec['gamma'] = [float(g) for g in gammas]
  if matmul_peak:
    peak = timing.matmul_peak_gflops(jnp.float32 if precision == 'float32' else jnp.bfloat16)
    rec['matmul_peak_gflops'] = round(peak, 1)
    rec['fraction_of_matmul_peak'] = round(rec['achieved_gflops'] / peak, 3)
  return rec


def _subprocess_json(cmd: list[str], env=None) -> dict | None:
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
  for line in reversed(proc.stdout.strip().splitlines()):
    if line.startswith('{'):
      return json.loads(line)
  sys.stderr.write(f'benchmark: {" ".join(cmd)} failed (exit {proc.returncode}):\n'
                   f'{proc.stderr[-2000:]}\n')
  return None


# The peers: name -> (script in experiments/, its mode arguments). Each prints one JSON line
# whose "peer" names the implementation that ran.
PEERS = {
    'snntorch': ('peer_snntorch.py', ()),                      # the whole network once per step
    'multistep-eager': ('peer_multistep.py', ('eager',)),      # time-batched PyTorch, eager
    'multistep-eager-nhwc': ('peer_multistep.py', ('eager', 'nhwc')),   # channels-last
    'multistep-compile': ('peer_multistep.py', ('compile',)),  # the same under torch.compile
    'spikingjelly': ('peer_multistep.py', ('sj',)),            # SpikingJelly's multi-step modules
}


def peer_command(python: str, peer: str, batch, timesteps, steps, precision: str,
                 gammas=None) -> list:
  """The command line that runs ``peer`` (a :data:`PEERS` name) once."""
  script, mode = PEERS[peer]
  cmd = [python, os.path.join(HERE, script), str(batch), str(timesteps), str(steps), precision,
         *mode]
  if gammas is not None:
    cmd.append('gamma=' + ','.join(f'{g:.6g}' for g in gammas))
  return cmd


def ratio_record(ours: list, peers: list, **labels) -> dict:
  """The line comparing our runs of one configuration with one peer's.

  ``ours[i]`` and ``peers[i]`` are repeat ``i``'s records (None where that run failed).
  Throughput: the ratio of the two medians, and each repeat's own ratio (ours / the peer run
  just before it). Memory: the ratio of the two maxima (each run's peak is its process's).
  """
  import statistics  # pylint: disable=g-import-not-at-top
  pairs = list(zip(ours, peers))
  ours, peers = [o for o in ours if o], [p for p in peers if p]
  med = lambda recs: statistics.median(r['img_per_s'] for r in recs)
  peak = lambda recs: max(r['peak_mem_mb'] for r in recs)
  return {
      'ratio': f'bntt_jax/{peers[0]["peer"]}', **labels,
      'peer_precision': peers[0]['precision'], 'runs': len(ours), 'peer_runs': len(peers),
      'img_per_s': round(med(ours), 2), 'peer_img_per_s': round(med(peers), 2),
      'img_per_s_ratio': round(med(ours) / med(peers), 3),
      'img_per_s_ratio_per_repeat': [round(o['img_per_s'] / p['img_per_s'], 3)
                                     for o, p in pairs if o and p],
      'peak_mem_ratio': round(peak(ours) / max(peak(peers), 1), 3),
  }


def strongest_record(ratios: list) -> dict | None:
  """Of the ratio lines of one configuration (one per peer), the one against the peer with
  the highest median throughput, marked ``strongest``."""
  ratios = [r for r in ratios if r]
  if not ratios:
    return None
  best = max(ratios, key=lambda r: r['peer_img_per_s'])
  return dict(best, ratio=best['ratio'] + ' (strongest)', strongest=best['ratio'].split('/')[1],
              peers_compared=[r['ratio'].split('/')[1] for r in ratios])


def kernel_isa_env(env: dict, isa: str) -> dict:
  """``env`` for one of our runs with ``--kernel-isa=isa``: ``$BNTT_KERNEL_ISA`` set to it, or
  left as it is for 'auto'."""
  return env if isa == 'auto' else dict(env, **{build.ENV: isa})


# --cpu-isa=avx2: what each side's libraries read to stay within AVX2 on an AVX-512 CPU.
AVX2_OURS = {build.ENV: 'avx2'}                  # our kernels' avx2 variant
AVX2_XLA_FLAG = '--xla_cpu_max_isa=AVX2'         # XLA:CPU's own code generation
AVX2_PEERS = {'ATEN_CPU_CAPABILITY': 'avx2',     # PyTorch's kernels and torch.compile's code
              'ONEDNN_MAX_CPU_ISA': 'AVX2',      # its convolutions (oneDNN)
              'MKL_ENABLE_INSTRUCTIONS': 'AVX2'}  # its matrix products (MKL)


def cpu_isa_env(env: dict, cpu_isa: str) -> tuple:
  """``(ours, peers')`` environments for ``--cpu-isa``: ``env`` for both where 'native';
  for 'avx2' each side limited to AVX2 and FMA as its libraries allow (:data:`AVX2_OURS`,
  :data:`AVX2_XLA_FLAG`, :data:`AVX2_PEERS`), so that an AVX-512 host times what an AVX2-only
  CPU of its clock and caches would. Not limited: the matrix-product and convolution
  libraries XLA calls (YNNPACK: conv1's and the dense layers' work) choose their own."""
  if cpu_isa == 'native':
    return env, env
  flags = ' '.join([env.get('XLA_FLAGS', ''), AVX2_XLA_FLAG]).strip()
  return dict(env, **AVX2_OURS, XLA_FLAGS=flags), dict(env, **AVX2_PEERS)


def emit(rec) -> None:
  """Print a record as one JSON line (nothing for a failed run's None)."""
  if rec is not None:
    print(json.dumps(rec), flush=True)


def _rates(text: str) -> list:
  """``--spike-rate`` -> [None (untrained), or a target in (0, 0.5)]."""
  out = []
  for v in (v for v in text.split(',') if v):
    if v == 'untrained':
      out.append(None)
      continue
    try:
      r = float(v)
    except ValueError:
      r = float('nan')
    if not 0 < r < 0.5:
      raise ValueError(f'spike rate {v!r} is not accepted: give "untrained" or a fraction of '
                       'neurons firing per step in (0, 0.5), e.g. 0.05')
    out.append(r)
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--batch', default='16', help='comma-separated batch sizes')
  p.add_argument('--timesteps', default='25', help='comma-separated T values')
  p.add_argument('--schedule', default='layer', help='comma-separated: layer, step')
  p.add_argument('--precision', default='float32', help='comma-separated: float32, bfloat16')
  p.add_argument('--remat', default='false', help='comma-separated: false, true')
  p.add_argument('--sparse-conv', default='auto',
                 help='comma-separated: auto (event-driven convolutions where possible), off')
  p.add_argument('--kernel-isa', default='auto',
                 help='comma-separated: the CPU kernels\' variant for our runs (auto, avx512, '
                 'avx2, generic: $BNTT_KERNEL_ISA); e.g. avx512,avx2 on an AVX-512 host times '
                 'the AVX2 build beside it, alternating with the peers')
  p.add_argument('--cpu-isa', default='native', choices=('native', 'avx2'),
                 help='avx2: time as on a CPU without AVX-512, ours and the peers alike '
                 '(cpu_isa_env)')
  p.add_argument('--lif-kernel', default='auto',
                 help='comma-separated: auto (the layer schedule\'s LIF in one CPU kernel), off')
  p.add_argument('--spike-rate', default='untrained',
                 help='comma-separated: untrained (every gamma 1), or a fraction of neurons '
                 'firing per step in every hidden layer (e.g. 0.1,0.05,0.02; calibrate_gammas)')
  p.add_argument('--steps', type=int, default=3, help='timed steps after one warm-up')
  p.add_argument('--repeats', type=int, default=1,
                 help='runs of each configuration, alternating with the peers\'')
  p.add_argument('--peer', nargs='?', const='snntorch', default='',
                 help=f'comma-separated peers to run too: {", ".join(PEERS)} '
                 '(--peer alone: snntorch)')
  p.add_argument('--peer-python', default=sys.executable,
                 help='python with torch (and snntorch, spikingjelly) for the peers')
  p.add_argument('--no-matmul-peak', action='store_true')
  p.add_argument('--one', action='store_true', help=argparse.SUPPRESS)        # child mode
  p.add_argument('--calibrate', type=float, help=argparse.SUPPRESS)           # child mode
  p.add_argument('--gamma', default='', help=argparse.SUPPRESS)               # child mode
  args = p.parse_args(argv)
  if args.repeats < 1:
    p.error(f'--repeats={args.repeats}: must be at least 1')

  if args.calibrate is not None:   # the gammas of one rate, in this process
    print(json.dumps(run_calibration(int(args.batch), int(args.timesteps), args.calibrate)),
          flush=True)
    return 0
  if args.one:   # one configuration in this process
    gammas = [float(g) for g in args.gamma.split(',')] if args.gamma else None
    rec = run_ours(int(args.batch), int(args.timesteps), args.schedule, args.precision,
                   args.remat == 'true', args.steps, not args.no_matmul_peak, args.sparse_conv,
                   args.lif_kernel, gammas)
    print(json.dumps(rec), flush=True)
    return 0

  split = lambda s: [v for v in s.split(',') if v]
  for name, values, accepted in (('schedule', args.schedule, ('layer', 'step')),
                                 ('precision', args.precision, ('float32', 'bfloat16')),
                                 ('sparse-conv', args.sparse_conv, ('auto', 'off')),
                                 ('lif-kernel', args.lif_kernel, ('auto', 'off')),
                                 ('kernel-isa', args.kernel_isa, ('auto',) + build.VARIANTS),
                                 ('peer', args.peer, tuple(PEERS))):
    for v in split(values):
      if v not in accepted:
        p.error(f'{name} {v!r} is not one of {", ".join(accepted)}')
  if args.cpu_isa == 'avx2':
    if set(split(args.kernel_isa)) - {'auto', 'avx2'}:
      p.error(f'--cpu-isa=avx2 runs our avx2 kernels: --kernel-isa={args.kernel_isa} is not '
              'accepted with it')
    args.kernel_isa = 'avx2'
  for v in split(args.kernel_isa):
    if v != 'auto' and build.missing(v):
      p.error(f'kernel-isa {v!r}: this CPU has no {", ".join(build.missing(v))}')
  try:
    rates = _rates(args.spike_rate)
  except ValueError as e:
    p.error(str(e))
  peers = split(args.peer)
  from bntt_jax import platform  # pylint: disable=g-import-not-at-top
  # Our runs get the huge-page tunable that `python -m bntt_jax.main` uses (bntt_jax.platform).
  env = platform.cpu_tunables_env(
      dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', '')))
  env, peer_env = cpu_isa_env(env, args.cpu_isa)
  labels_isa = {} if args.cpu_isa == 'native' else {'cpu_isa': args.cpu_isa}
  me = [sys.executable, os.path.abspath(__file__)]
  configs = [(s, r, c, k, i) for s in split(args.schedule) for r in split(args.remat)
             for c in split(args.sparse_conv) for k in split(args.lif_kernel)
             for i in split(args.kernel_isa)]
  for b in split(args.batch):
    for t in split(args.timesteps):
      for rate in rates:
        gammas = None
        if rate is not None:   # one set of gammas for ours and every peer at this rate
          cal = _subprocess_json(me + [f'--calibrate={rate}', f'--batch={b}',
                                       f'--timesteps={t}'], env)
          if cal is None:
            continue
          emit(cal)
          gammas = cal['gamma']
        gamma_arg = ['--gamma=' + ','.join(map(str, gammas))] if gammas else []
        labels = {'spike_rate': 'untrained' if rate is None else rate, **labels_isa}
        for prec in split(args.precision):
          # The peers and ours alternate, repeat after repeat, so that a slow spell of the
          # machine falls on all; the ratio lines compare their medians.
          peer_recs, ours = {q: [] for q in peers}, {c: [] for c in configs}
          for _ in range(args.repeats):
            for q in peers:
              # Same environment (huge-page tunable included); float32 (TF32 off) for our
              # float32 rows, torch.autocast for our bfloat16 rows; the same gammas.
              rec = _subprocess_json(peer_command(args.peer_python, q, b, t, args.steps, prec,
                                                  gammas), peer_env)
              peer_recs[q].append(rec and dict(rec, **labels))
              emit(peer_recs[q][-1])
            for sched, remat, sparse, lif, isa in configs:
              cmd = me + ['--one', f'--batch={b}', f'--timesteps={t}', f'--schedule={sched}',
                          f'--precision={prec}', f'--remat={remat}', f'--sparse-conv={sparse}',
                          f'--lif-kernel={lif}', f'--steps={args.steps}'] + gamma_arg
              if args.no_matmul_peak:
                cmd.append('--no-matmul-peak')
              rec = _subprocess_json(cmd, kernel_isa_env(env, isa))
              ours[sched, remat, sparse, lif, isa].append(rec and dict(rec, **labels))
              emit(ours[sched, remat, sparse, lif, isa][-1])
          for (sched, remat, sparse, lif, isa), recs in ours.items():
            if not any(recs):
              continue
            lines = [ratio_record(recs, peer_recs[q], batch=int(b), timesteps=int(t),
                                  **labels, schedule=sched, precision=prec,
                                  remat=remat == 'true', sparse_conv=sparse, lif_kernel=lif,
                                  kernel_isa=isa)
                     for q in peers if any(peer_recs[q])]
            for line in lines:
              emit(line)
            if len(lines) > 1:
              emit(strongest_record(lines))
  return 0


if __name__ == '__main__':
  sys.exit(main())
