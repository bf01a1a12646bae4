"""The README's CPU table from the JSON lines of one ``experiments/benchmark.py --peer`` run.

    python experiments/benchmark.py ... --peer=snntorch,multistep-eager > run.jsonl
    python experiments/benchmark_table.py run.jsonl

One row per batch, firing rate and variant of our kernels (``avx512``, ``avx2``, ``generic``,
or ``xla`` where they did not run: the ``winograd`` field of our records): the median images/s
of ours and of each peer over the run's repeats, the ratio of ours to the strongest peer
(the peer with the highest median) with each repeat's own ratio, the firing that our timed
steps measured (least and most over layers, steps and repeats), and the peak memory of ours and
of the strongest (the most of any repeat). Every figure comes from the file, nothing else.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

from bntt_jax import errors

# Column order of the peers (benchmark.py's "peer" names), then any other in order of appearance.
PEER_ORDER = ('snntorch', 'torch-multistep-eager', 'torch-multistep-eager-nhwc',
              'torch-multistep-compile', 'spikingjelly')


def variant_of(rec: dict) -> str:
  """The kernels' variant one of our records ran: 'kernel (avx2)' -> 'avx2', 'xla (...)' -> 'xla'."""
  text = rec.get('winograd') or rec.get('sparse_conv') or 'xla'
  return text[text.find('(') + 1:text.find(')')] if text.startswith('kernel (') else 'xla'


def _rate_key(rate) -> tuple:
  return (0, 0.0) if rate == 'untrained' else (1, -float(rate))


def rows(records: list) -> list:
  """The table's rows (dicts, in the order batch, then untrained before the highest rate)."""
  cells: dict = {}
  for rec in records:
    if 'spike_rate' not in rec or 'batch' not in rec or 'img_per_s' not in rec:
      continue   # calibration and ratio lines: the table recomputes what it shows
    if 'peer' in rec:
      key, who = (rec['batch'], rec['spike_rate']), rec['peer']
      cells.setdefault(key, {'ours': {}, 'peers': {}})['peers'].setdefault(who, []).append(rec)
    elif rec.get('impl') == 'bntt_jax':
      key = (rec['batch'], rec['spike_rate'])
      cells.setdefault(key, {'ours': {}, 'peers': {}})['ours'].setdefault(
          variant_of(rec), []).append(rec)
  out = []
  for (batch, rate), cell in sorted(cells.items(), key=lambda kv: (kv[0][0], _rate_key(kv[0][1]))):
    peers = {p: statistics.median(r['img_per_s'] for r in recs)
             for p, recs in cell['peers'].items()}
    strongest = max(peers, key=peers.get) if peers else None
    for variant, recs in cell['ours'].items():
      ours = statistics.median(r['img_per_s'] for r in recs)
      ranges = [r['spike_rate_timed_range'] for r in recs if 'spike_rate_timed_range' in r]
      row = {'batch': batch, 'spike_rate': rate, 'variant': variant, 'img_per_s': ours,
             'repeats': len(recs), 'peers': peers, 'strongest': strongest,
             'peak_mem_mb': max(r['peak_mem_mb'] for r in recs),
             'timed_range': ([min(r[0] for r in ranges), max(r[1] for r in ranges)]
                             if ranges else None)}
      if strongest:
        srecs = cell['peers'][strongest]
        row['ratio'] = ours / peers[strongest]
        # Repeat i of ours beside repeat i of the strongest peer (the run alternates them).
        row['ratio_per_repeat'] = [o['img_per_s'] / p['img_per_s'] for o, p in zip(recs, srecs)]
        row['strongest_peak_mem_mb'] = max(r['peak_mem_mb'] for r in srecs)
      out.append(row)
  return out


def markdown(table: list) -> str:
  """``rows(...)`` as a markdown table."""
  seen = [p for r in table for p in r['peers']]
  names = list(dict.fromkeys([p for p in PEER_ORDER if p in seen] + seen))
  head = (['batch', 'firing per step (ours: least-most)', 'kernels', 'bntt_jax'] + names +
          ['ratio to the strongest (each repeat)', 'bntt_jax peak MB', "strongest's peak MB"])
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for r in table:
    rate = 'untrained' if r['spike_rate'] == 'untrained' else f'{100 * float(r["spike_rate"]):g} %'
    if r['timed_range']:
      rate += f' ({100 * r["timed_range"][0]:.1f}-{100 * r["timed_range"][1]:.1f} %)'
    cells = [str(r['batch']), rate, r['variant'], f'{r["img_per_s"]:.2f}']
    cells += [f'{r["peers"][p]:.2f}' if p in r['peers'] else '-' for p in names]
    if r['strongest']:
      each = ', '.join(f'{x:.2f}' for x in r['ratio_per_repeat'])
      cells += [f'**{r["ratio"]:.2f}x** ({each}; {r["strongest"]})', f'{r["peak_mem_mb"]:.0f}',
                f'{r["strongest_peak_mem_mb"]:.0f}']
    else:
      cells += ['-', f'{r["peak_mem_mb"]:.0f}', '-']
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def read(path: str) -> list:
  """The JSON lines of a benchmark run (other lines, e.g. logs, are skipped); ConfigError naming
  the file when it cannot be read or holds no record."""
  try:
    with open(path) as f:
      text = f.read()
  except OSError as e:
    raise errors.DataError(f'{path}: cannot be read ({e.strerror})') from e
  records = []
  for number, line in enumerate(text.splitlines(), 1):
    if line.startswith('{'):
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError as e:
        raise errors.DataError(f'{path}:{number}: not a JSON record ({e.msg})') from e
  if not records:
    raise errors.DataError(f'{path}: no benchmark record (JSON lines of experiments/'
                             'benchmark.py) in it')
  return records


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('jsonl', help="the output of one experiments/benchmark.py run")
  args = p.parse_args(argv)
  try:
    table = rows(read(args.jsonl))
  except errors.DataError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  sys.stdout.write(markdown(table))
  return 0


if __name__ == '__main__':
  sys.exit(main())
