"""Where a training step's time goes: an XLA profile of the benchmark's step.

    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python experiments/profile_step.py --batch=16

Builds the step of ``experiments/benchmark.py`` (VGG9, random inputs), runs it
once to compile and ``--warmup`` more times, then traces ``--steps`` steps with
``jax.profiler`` and sums the traced XLA operations' self durations per step, by
kind. Prints one JSON line per kind (seconds per step, calls per step) and a
total line: ``step_s`` (wall time per traced step), ``traced_s`` (the traced
operations' summed durations) and ``untraced_s = step_s - traced_s``.

Read it with two facts of XLA:CPU in mind: its convolutions emit no trace
events, so they are in ``untraced_s`` (``conv_roofline.py`` times them alone);
and its runtime runs independent operations concurrently on the cores, so a
traced operation's duration may include time it waited for a core that a
convolution held, and ``traced_s`` overstates its own cost. A change that
makes a traced kind faster in isolation is worth keeping only if ``step_s``
(or the benchmark) moves too.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time


# Events that are not XLA operations: the runtime's own spans and Python frames.
_NOT_OPS = re.compile(r'^(ThunkExecutor|\$|PjitFunction|end: )')


def op_kind(name: str) -> str:
  """``transpose_copy_fusion.11`` -> ``transpose_copy_fusion``."""
  return re.sub(r'\.\d+$', '', name)


def summarize(events, steps: int) -> dict:
  """Per op kind: self seconds and calls per step, from Chrome-trace ``X`` events.

  Self time: an event's duration less that of the events nested in it on the
  same thread (a ``while`` loop's span holds some of its body's operations).
  """
  ops = sorted((e for e in events if e.get('ph') == 'X' and not _NOT_OPS.match(e.get('name', ''))),
               key=lambda e: (e.get('pid'), e.get('tid'), e['ts'], -e['dur']))
  secs, calls = collections.Counter(), collections.Counter()
  stack = []   # open events on the current thread: [thread, end, kind]
  for e in ops:
    thread, end, kind = (e.get('pid'), e.get('tid')), e['ts'] + e['dur'], op_kind(e['name'])
    while stack and (stack[-1][0] != thread or stack[-1][1] <= e['ts']):
      stack.pop()
    if stack:   # nested: the parent's self time excludes it
      secs[stack[-1][2]] -= e['dur'] / 1e6 / steps
    secs[kind] += e['dur'] / 1e6 / steps
    calls[kind] += 1 / steps
    stack.append([thread, end, kind])
  return {k: (secs[k], calls[k]) for k, _ in secs.most_common()}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--batch', type=int, default=16)
  p.add_argument('--timesteps', type=int, default=25)
  p.add_argument('--schedule', default='layer', choices=('layer', 'step'))
  p.add_argument('--precision', default='float32', choices=('float32', 'bfloat16'))
  p.add_argument('--spike-rate', type=float, default=None,
                 help='fire at about this fraction per step in every hidden layer '
                 '(bntt_jax.analysis.calibration; default: the untrained network\'s rate)')
  p.add_argument('--sparse-conv', default='auto', choices=('auto', 'off'))
  p.add_argument('--warmup', type=int, default=1, help='untraced steps after compiling')
  p.add_argument('--steps', type=int, default=1, help='traced steps')
  p.add_argument('--top', type=int, default=15, help='op kinds to print')
  args = p.parse_args(argv)
  if args.steps < 1:
    p.error(f'--steps {args.steps} is not accepted: it must be >= 1')

  from bntt_jax import platform  # pylint: disable=g-import-not-at-top
  platform.configure_xla()
  import jax  # pylint: disable=g-import-not-at-top
  import benchmark  # pylint: disable=g-import-not-at-top

  gammas = None
  if args.spike_rate is not None:
    gammas = benchmark.run_calibration(args.batch, args.timesteps, args.spike_rate)['gamma']
  step, state, _ = benchmark.build_train_step(args.batch, args.timesteps, args.schedule,
                                              args.precision, remat=False,
                                              sparse_conv=args.sparse_conv, gammas=gammas)
  for i in range(1 + args.warmup):
    state, aux = step(state, jax.random.PRNGKey(i))
    aux['loss'].block_until_ready()
  with tempfile.TemporaryDirectory() as logdir:
    jax.profiler.start_trace(logdir, create_perfetto_trace=True)
    t = time.perf_counter()
    rates = []
    for i in range(args.steps):
      state, aux = step(state, jax.random.PRNGKey(100 + i))
      aux['loss'].block_until_ready()
      rates.append(aux['rates'])
    step_s = (time.perf_counter() - t) / args.steps
    jax.profiler.stop_trace()
    trace = glob.glob(os.path.join(logdir, '**', '*.trace.json.gz'), recursive=True)
    if not trace:
      sys.exit(f'profile_step: jax.profiler wrote no trace under {logdir}')
    with gzip.open(trace[0]) as f:
      data = json.load(f)
  events = data['traceEvents'] if isinstance(data, dict) else data
  kinds = summarize(events, args.steps)
  for kind, (s, n) in list(kinds.items())[:args.top]:
    print(json.dumps({'op_kind': kind, 's_per_step': round(s, 4), 'calls_per_step': round(n, 1)}))
  traced = sum(s for s, _ in kinds.values())
  print(json.dumps({
      'batch': args.batch, 'timesteps': args.timesteps, 'schedule': args.schedule,
      'precision': args.precision, 'sparse_conv': args.sparse_conv,
      'spike_rate_per_layer': [round(float(r), 4) for r in sum(rates) / len(rates)],
      'device': jax.devices()[0].device_kind,
      'step_s': round(step_s, 4), 'traced_s': round(traced, 4),
      'untraced_s': round(step_s - traced, 4), 'op_kinds': len(kinds)}))
  return 0


if __name__ == '__main__':
  sys.exit(main())
