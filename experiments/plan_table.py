"""The README's TPU tables: ``python -m bntt_jax.plan`` for the paper's configs on TPU slices.

    python experiments/plan_table.py --out=runs/plan_table            # every row below
    python experiments/plan_table.py --out=runs/plan_table --only=weak  # one table

Each row is one ``python -m bntt_jax.plan`` command in its own process (printed, with its JSON
report kept in ``--out``, and reused when it is there); the largest per-chip batch is searched
(``--search``) on one v5e chip, since it depends only on the per-chip program (a slice's
size changes only the all-reduce), with the largest T at batch 64. Writes ``--out/tables.md`` and prints each table. Deviceless
compiles of VGG9 at T 25 take 1-3 minutes each on a 2-core machine; the whole script takes
hours.
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

# (name, config, topology, overrides, variants to search). The first rows are one v5e chip at
# the paper's batch 64: the largest per-chip batch and the largest T there (float32), and the
# float32-exact bf16 synapses; then slices of the same run, the other chips, the other configs.
B64 = ['--config.train.batch_size=64', '--config.eval.batch_size=64']
X3 = ['--config.model.synapse_precision=exact_bf16x3']
SLICES = [
    ('cifar10', 'configs/cifar10.py', 'v5e:1x1', B64, 'configured,timesteps'),
    ('cifar10 exact_bf16x3', 'configs/cifar10.py', 'v5e:1x1', B64 + X3, ''),
    ('cifar10 remat', 'configs/cifar10.py', 'v5e:1x1', B64 + ['--config.model.remat=True'],
     'configured'),
    ('cifar10 LIF scan', 'configs/cifar10.py', 'v5e:1x1', B64 + ['--config.model.lif_kernel=off'],
     ''),
    ('cifar10_surrogate', 'configs/cifar10_surrogate.py', 'v5e:1x1', B64, ''),
    ('cifar10', 'configs/cifar10.py', 'v5e:2x2', B64, ''),
    ('cifar10', 'configs/cifar10.py', 'v5e:4x4', ['--config.train.batch_size=256',
                                                  '--config.eval.batch_size=256'], ''),
    ('cifar10', 'configs/cifar10.py', 'v4:2x2x2', B64, ''),
    ('cifar10', 'configs/cifar10.py', 'v5p:2x2x1', B64, ''),
    ('cifar100', 'configs/cifar100.py', 'v5e:2x2', ['--config.eval.batch_size=128'], ''),
    ('cifar10_surrogate', 'configs/cifar10_surrogate.py', 'v5e:2x2', B64, ''),
]
# Weak scaling: the same per-chip batch on v5e slices of 1 to 256 chips.
WEAK_PER_CHIP = 16
WEAK = [('v5e:1x1', 1), ('v5e:2x2', 4), ('v5e:4x4', 16), ('v5e:8x8', 64), ('v5e:16x16', 256)]


def command(config, topology, overrides, search, json_path):
  cmd = [sys.executable, '-m', 'bntt_jax.plan', f'--config={config}', f'--topology={topology}',
         f'--json={json_path}', *overrides]
  if search:
    cmd.append(f'--search={search}')
  return cmd


def run(cmd, json_path):
  if os.path.exists(json_path):
    with open(json_path) as f:
      return json.load(f)
  shown = ' '.join(c if i else 'python' for i, c in enumerate(cmd))
  print('$', shown.replace(ROOT + '/', ''), flush=True)
  t0 = time.time()
  r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
  if not os.path.exists(json_path):
    raise SystemExit(f'plan failed ({r.returncode}): {r.stderr[-3000:]}')
  print(f'  ({time.time() - t0:.0f} s)', flush=True)
  with open(json_path) as f:
    return json.load(f)


def _gb(x):
  return f'{x / 2**30:.2f}'


def slices_table(out):
  rows = ['| config | slice | global batch (per chip) | peak / HBM per chip (GiB) | temporaries '
          '(GiB) | GFLOP per chip (LIF loops) | GB accessed per chip (LIF loops) | all-reduce MB '
          'per chip | roofline ms per step (limit) | img/s per chip / per slice | largest per-chip batch | largest T at the per-chip batch | command |',
          '|---|---|---|---|---|---|---|---|---|---|---|---|---|']
  searched = {}
  for name, config, topo, overrides, search in SLICES:
    path = os.path.join(out, f'{name.replace(" ", "_")}_{topo.replace(":", "_")}.json')
    cmd = command(config, topo, overrides, search, path)
    r = run(cmd, path)
    t, rf = r['train'], r['train_roofline']
    key = (name, r['device_kind'])
    if r['largest_per_chip_batch']:
      searched[key] = r['largest_per_chip_batch']
    lb = searched.get(key, {})
    largest = lb.get('configured', '-')
    ar = t['collectives'].get('all-reduce', {}).get('bytes', 0) / 1e6
    shown = ' '.join(['python -m bntt_jax.plan'] + cmd[3:]).replace(f' --json={path}', '')
    rows.append(
        f"| {name} (T {r['timesteps']}) | {topo} ({r['devices']} device"
        f"{'s' if r['devices'] > 1 else ''}) | {r['global_batch']} "
        f"({t['per_chip_batch']}) | {_gb(t['peak_bytes'])} / {_gb(r['hbm_limit'])} | "
        f"{_gb(t['temp_bytes'])} | {t['flops'] / 1e9:,.0f} ({t['loop_flops'] / 1e9:.1f}) | "
        f"{t['bytes_accessed'] / 1e9:.1f} ({t['loop_bytes'] / 1e9:.1f}) | "
        f"{ar:.1f} | {rf['step_s'] * 1e3:.1f} ({rf['limited_by']}: compute "
        f"{rf['compute_s'] * 1e3:.1f}, memory {rf['memory_s'] * 1e3:.1f}) | "
        f"{rf['img_per_s_per_chip']:.0f} / {rf['img_per_s_per_slice']:.0f} | {largest} | "
        f"{r.get('largest_timesteps', '-')} | `{shown}` |")
  return '\n'.join(rows)


def weak_table(out):
  rows = ['| chips | global batch | GFLOP per chip | HBM traffic per chip (GB) | peak per chip '
          '(GiB) | all-reduce MB per chip | compute / memory / collective bound (ms) | img/s '
          'per chip (bound) | vs 1 chip | collectives / compute |',
          '|---|---|---|---|---|---|---|---|---|---|']
  base = None
  for topo, chips in WEAK:
    b = WEAK_PER_CHIP * chips
    path = os.path.join(out, f'weak_{topo.replace(":", "_")}.json')
    r = run(command('configs/cifar10.py', topo, [f'--config.train.batch_size={b}',
                                                 f'--config.eval.batch_size={b}'], False, path),
            path)
    t, rf = r['train'], r['train_roofline']
    base = base or rf['img_per_s_per_chip']
    ar = t['collectives'].get('all-reduce', {}).get('bytes', 0) / 1e6
    rows.append(
        f"| {chips} ({topo}) | {b} | {t['flops'] / 1e9:,.0f} | {t['bytes_accessed'] / 1e9:.1f} | "
        f"{_gb(t['peak_bytes'])} | {ar:.1f} | {rf['compute_s'] * 1e3:.1f} / "
        f"{rf['memory_s'] * 1e3:.1f} / {rf['collectives_s'] * 1e3:.2f} | "
        f"{rf['img_per_s_per_chip']:.0f} | {rf['img_per_s_per_chip'] / base:.3f} | "
        f"{rf['collectives_s'] / rf['compute_s']:.3f} |")
  cmd = ('python -m bntt_jax.plan --config=configs/cifar10.py --topology=<slice> '
         f'--config.train.batch_size=<{WEAK_PER_CHIP} x chips> --config.eval.batch_size=<same>')
  return '\n'.join(rows) + f'\n\nEach row: `{cmd}`.'


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--out', default='runs/plan_table')
  p.add_argument('--only', choices=('slices', 'weak'), default=None)
  args = p.parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  tables = []
  if args.only in (None, 'slices'):
    tables.append(('Slices', slices_table(args.out)))
  if args.only in (None, 'weak'):
    tables.append(('Weak scaling, VGG9 T 25', weak_table(args.out)))
  text = '\n\n'.join(f'### {title}\n\n{table}' for title, table in tables) + '\n'
  with open(os.path.join(args.out, 'tables.md'), 'w') as f:
    f.write(text)
  print(text)


if __name__ == '__main__':
  main()
