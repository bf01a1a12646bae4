"""Training-step throughput of VGG9 (CIFAR-10 shape), ours beside snnTorch's.

    python experiments/benchmark.py --batch=16,32 --timesteps=25 --peer \
        --peer-python=/tmp/peer/bin/python

Each configuration runs in a fresh process (so peak memory is its own) and
prints one JSON line: ``impl``, ``batch``, ``timesteps``, ``schedule``,
``precision``, ``remat``, ``step_s`` (mean of ``--steps`` timed steps after
one warm-up, as the peer measures), ``img_per_s``, ``peak_mem_mb`` (the process's peak resident set
on CPU, the device's peak bytes in use on GPU/TPU), ``model_gflop_per_img``
(S7-style count: 2 FLOP per MAC, forward x 3 for a training step),
``achieved_gflops``, ``matmul_peak_gflops`` (a 4096^2 f32 matmul measured on
the same device) and its fraction. With ``--peer`` the snnTorch model of
``experiments/peer_snntorch.py`` is run the same way in its own process
(``--peer-python`` must have torch and snntorch), before ours, and a ratio line
follows (:func:`ratio_record`); ``--repeats=N`` alternates peer and ours N
times and the ratio line compares medians, so that a slow spell of a shared
machine does not decide the comparison. The peer
runs in float32 (TF32 off on GPU) beside our float32 rows and under
``torch.autocast(bfloat16)`` beside our bfloat16 rows (``peer_precision``).
Both run with glibc's huge-page tunable, as ``python -m bntt_jax.main`` does
(:mod:`bntt_jax.platform`).

A training step here is what ``bntt_jax.train`` does: forward, backward,
SGD-momentum update, running-statistics update, on random inputs uniform in
[-1, 1] (the peer's input), random labels.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

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


def _matmul_peak_gflops(dtype) -> float:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  n = 4096
  a = jnp.ones((n, n), dtype)
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  best = float('inf')
  for _ in range(3):
    t = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * n**3 / best / 1e9


def build_train_step(batch: int, timesteps: int, schedule: str, precision: str, remat: bool,
                     sparse_conv: str = 'auto', lif_kernel: str = 'auto'):
  """The benchmark's jitted training step, its first state and the model: ``(step, state,
  model)``, ``step(state, key) -> (state, loss)`` (state donated). Call after
  ``platform.configure_xla()``."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from bntt_jax import models, optim, platform  # pylint: disable=g-import-not-at-top
  platform.set_matmul_precision('highest' if precision == 'float32' else 'default')

  dtype = {'float32': None, 'bfloat16': jnp.bfloat16}[precision]
  model = models.vgg9(num_steps=timesteps, schedule=schedule, dtype=dtype, remat=remat,
                      sparse_conv=sparse_conv, lif_kernel=lif_kernel)
  rng = np.random.RandomState(0)
  x = jnp.asarray(rng.uniform(-1, 1, (batch, 32, 32, 3)).astype(np.float32))
  y = jnp.asarray(rng.randint(0, 10, batch))
  variables = jax.jit(lambda k: model.init({'params': k, 'poisson': k}, x, train=False))(
      jax.random.PRNGKey(0))
  tx = optim.create_optimizer('sgd', 0.1, momentum=0.9, weight_decay=1e-4)   # as train uses it
  state = (variables['params'], variables['batch_stats'], tx.init(variables['params']))

  def train_step(state, key):
    params, stats, opt = state

    def loss_fn(p):
      out, upd = model.apply({'params': p, 'batch_stats': stats}, x, train=True,
                             rngs={'poisson': key}, mutable=['batch_stats'])
      loss = optax.softmax_cross_entropy_with_integer_labels(out.logits, y).mean()
      return loss, upd['batch_stats']

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(grads, opt, params)
    return (optax.apply_updates(params, updates), stats, opt), loss

  return jax.jit(train_step, donate_argnums=0), state, model


def run_ours(batch: int, timesteps: int, schedule: str, precision: str, remat: bool,
             steps: int, matmul_peak: bool, sparse_conv: str = 'auto',
             lif_kernel: str = 'auto') -> dict:
  """One configuration, in this process. Returns the JSON record."""
  from bntt_jax import platform  # pylint: disable=g-import-not-at-top
  platform.configure_xla()
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from bntt_jax import config_lib  # pylint: disable=g-import-not-at-top
  step, state, model = build_train_step(batch, timesteps, schedule, precision, remat,
                                        sparse_conv, lif_kernel)
  t0 = time.perf_counter()
  state, loss = step(state, jax.random.PRNGKey(1))
  loss.block_until_ready()
  compile_s = time.perf_counter() - t0
  times = []
  for i in range(steps):
    t = time.perf_counter()
    state, loss = step(state, jax.random.PRNGKey(2 + i))
    loss.block_until_ready()
    times.append(time.perf_counter() - t)
  step_s = float(np.mean(times))   # the peer reports the mean too
  gflop = 3 * 2 * vgg9_forward_macs_per_step() * timesteps / 1e9
  rec = {
      'impl': 'bntt_jax', 'backend': jax.devices()[0].platform,
      'device': jax.devices()[0].device_kind, 'batch': batch, 'timesteps': timesteps,
      'schedule': schedule, 'precision': precision, 'remat': remat,
      # What ran the event-driven convolutions and the LIF recurrences: 'kernel' or 'xla (why)'.
      **config_lib.kernels_in_use(model),
      'step_s': round(step_s, 4), 'step_s_min': round(min(times), 4),
      'img_per_s': round(batch / step_s, 2), 'peak_mem_mb': _peak_mem_mb(),
      'compile_s': round(compile_s, 1), 'loss': round(float(loss), 4),
      'model_gflop_per_img': round(gflop, 2),
      'achieved_gflops': round(gflop * batch / step_s, 1),
  }
  if matmul_peak:
    peak = _matmul_peak_gflops(jnp.float32 if precision == 'float32' else jnp.bfloat16)
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


def ratio_record(ours: list, peers: list, **labels) -> dict:
  """The line comparing our runs of one configuration with the peer's.

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


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--batch', default='16', help='comma-separated batch sizes')
  p.add_argument('--timesteps', default='25', help='comma-separated T values')
  p.add_argument('--schedule', default='layer', help='comma-separated: layer, step')
  p.add_argument('--precision', default='float32', help='comma-separated: float32, bfloat16')
  p.add_argument('--remat', default='false', help='comma-separated: false, true')
  p.add_argument('--sparse-conv', default='auto',
                 help='comma-separated: auto (event-driven convolutions where possible), off')
  p.add_argument('--lif-kernel', default='auto',
                 help='comma-separated: auto (the layer schedule\'s LIF in one CPU kernel), off')
  p.add_argument('--steps', type=int, default=3, help='timed steps after one warm-up')
  p.add_argument('--repeats', type=int, default=1,
                 help='runs of each configuration, alternating with the peer\'s')
  p.add_argument('--peer', action='store_true', help='also run the snnTorch peer')
  p.add_argument('--peer-python', default=sys.executable,
                 help='python with torch and snntorch for the peer')
  p.add_argument('--no-matmul-peak', action='store_true')
  p.add_argument('--one', action='store_true', help=argparse.SUPPRESS)   # child mode
  args = p.parse_args(argv)
  if args.repeats < 1:
    p.error(f'--repeats={args.repeats}: must be at least 1')

  if args.one:   # one configuration in this process
    rec = run_ours(int(args.batch), int(args.timesteps), args.schedule, args.precision,
                   args.remat == 'true', args.steps, not args.no_matmul_peak, args.sparse_conv,
                   args.lif_kernel)
    print(json.dumps(rec), flush=True)
    return 0

  split = lambda s: [v for v in s.split(',') if v]
  for name, values, accepted in (('schedule', args.schedule, ('layer', 'step')),
                                 ('precision', args.precision, ('float32', 'bfloat16')),
                                 ('sparse-conv', args.sparse_conv, ('auto', 'off')),
                                 ('lif-kernel', args.lif_kernel, ('auto', 'off'))):
    for v in split(values):
      if v not in accepted:
        p.error(f'{name} {v!r} is not one of {", ".join(accepted)}')
  sys.path.insert(0, ROOT)
  from bntt_jax import platform  # pylint: disable=g-import-not-at-top
  # Our runs get the huge-page tunable that `python -m bntt_jax.main` uses (bntt_jax.platform).
  env = platform.cpu_tunables_env(
      dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', '')))
  configs = [(s, r, c, k) for s in split(args.schedule) for r in split(args.remat)
             for c in split(args.sparse_conv) for k in split(args.lif_kernel)]
  for b in split(args.batch):
    for t in split(args.timesteps):
      for prec in split(args.precision):
        # Ours and the peer alternate, repeat after repeat, so that a slow spell of the
        # machine falls on both; the ratio line compares their medians.
        peers, ours = [], {c: [] for c in configs}
        for _ in range(args.repeats):
          if args.peer:
            # The peer runs with the same environment (huge-page tunable included), in float32
            # (TF32 off) for our float32 rows and under torch.autocast for our bfloat16 rows.
            peer = _subprocess_json([args.peer_python, os.path.join(HERE, 'peer_snntorch.py'),
                                     b, t, str(args.steps), prec], env)
            peers.append(peer)
            if peer:
              print(json.dumps(peer), flush=True)
          for sched, remat, sparse, lif in configs:
            cmd = [sys.executable, os.path.abspath(__file__), '--one', f'--batch={b}',
                   f'--timesteps={t}', f'--schedule={sched}', f'--precision={prec}',
                   f'--remat={remat}', f'--sparse-conv={sparse}', f'--lif-kernel={lif}',
                   f'--steps={args.steps}']
            if args.no_matmul_peak:
              cmd.append('--no-matmul-peak')
            rec = _subprocess_json(cmd, env)
            ours[sched, remat, sparse, lif].append(rec)
            if rec is not None:
              print(json.dumps(rec), flush=True)
        for (sched, remat, sparse, lif), recs in ours.items():
          if any(recs) and any(peers):
            print(json.dumps(ratio_record(recs, peers, batch=int(b), timesteps=int(t),
                                          schedule=sched, precision=prec,
                                          remat=remat == 'true', sparse_conv=sparse,
                                          lif_kernel=lif)),
                  flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
