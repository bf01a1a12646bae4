"""experiments/reproduce.py end to end on a tiny subset, and the claims table read from the runs.

The report's rows are computed from the runs' files: changing a run's summary or report changes
the table (and its verdict), with nothing typed in by hand.
"""
import json
import os
import subprocess
import sys

import pytest

from bntt_jax.analysis import claims

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def reproduced(tmp_path_factory):
  """BNTT, the un-normalised baseline and the ANN twin on 8 digits, T 3, analysed."""
  tmp = tmp_path_factory.mktemp('reproduce')
  out = tmp / 'report' / 'digits.md'
  cmd = [sys.executable, os.path.join(ROOT, 'experiments', 'reproduce.py'),
         '--config=' + os.path.join(ROOT, 'configs', 'digits.py') + ':smoke',
         '--config.model.timesteps=3',
         f'--workdir={tmp / "runs"}', '--runs=bntt,none,ann', f'--out={out}',
         '--comparator_test_examples=8']
  env = dict(os.environ, PYTHONPATH=ROOT, BNTT_CPU_RUNTIME='default')
  r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  return tmp, out


def test_the_command_trains_analyses_and_writes_the_report(reproduced):
  tmp, out = reproduced
  for name in ('bntt', 'none', 'ann'):
    for f in ('summary.json', 'metrics.jsonl', 'steps.jsonl', 'report.json'):
      assert os.path.exists(tmp / 'runs' / name / f), (name, f)
  text = out.read_text()
  result = json.loads(out.with_suffix('.json').read_text())
  assert [r['claim'][:2] for r in result['rows']] == ['1a', '1b', '1c', '2.', '3a', '3b', '4.',
                                                    '5a', '5b']
  bntt = json.loads((tmp / 'runs' / 'bntt' / 'summary.json').read_text())
  assert f'{100 * bntt["final_test_accuracy"]:.2f} %' in text
  assert result['runs']['bntt']['draws'] == 3 and result['runs']['none']['draws'] == 1
  # The comparators were analysed on their test subset, BNTT on the whole (smoke) split.
  none_report = json.loads((tmp / 'runs' / 'none' / 'report.json').read_text())
  assert none_report['accuracy']['num_examples'] == 8
  assert os.path.exists(out.with_suffix('') / 'training.png')
  assert os.path.exists(out.with_suffix('') / 'gamma_heatmap.png')
  assert 'experiments/reproduce.py' in result['provenance']['command']


def _rebuild(tmp):
  return claims.build(str(tmp / 'runs'), ('bntt', 'none', 'ann'), {}, {})


def _row(result, prefix):
  return next(r for r in result['rows'] if r['claim'].startswith(prefix))


def test_changing_a_runs_files_changes_the_table(reproduced):
  tmp, _ = reproduced
  summary = tmp / 'runs' / 'none' / 'summary.json'
  saved = summary.read_text()
  try:
    s = json.loads(saved)
    bntt = json.loads((tmp / 'runs' / 'bntt' / 'summary.json').read_text())
    s['final_test_accuracy'] = bntt['final_test_accuracy'] + 0.2
    summary.write_text(json.dumps(s))
    row = _row(_rebuild(tmp), '1b')
    assert row['verdict'] == claims.FAILS and row['values']['none'] == s['final_test_accuracy']
    s['final_test_accuracy'] = bntt['final_test_accuracy'] - 0.05
    summary.write_text(json.dumps(s))
    row = _row(_rebuild(tmp), '1b')
    assert row['verdict'] == claims.HOLDS and f'{100 * s["final_test_accuracy"]:.2f} %' in (
        row['measured'])
  finally:
    summary.write_text(saved)
  # A failed (diverged) baseline is the claim holding; a run not there is "not measured".
  os.rename(summary, summary.with_suffix('.bak'))
  try:
    (tmp / 'runs' / 'none' / claims.FAILED_FILE).write_text(
        json.dumps({'failed': 'non-finite training loss nan at step 3 (epoch 0); ...'}))
    assert _row(_rebuild(tmp), '1b')['verdict'] == claims.HOLDS
    os.remove(tmp / 'runs' / 'none' / claims.FAILED_FILE)
    assert _row(_rebuild(tmp), '1b')['verdict'] == claims.MISSING
  finally:
    os.rename(summary.with_suffix('.bak'), summary)


def test_the_gamma_rows_follow_the_report(reproduced):
  tmp, _ = reproduced
  path = tmp / 'runs' / 'bntt' / 'report.json'
  saved = path.read_text()
  try:
    rep = json.loads(saved)
    steps = len(rep['early_exit']['mean_gamma'])
    rep['early_exit']['mean_gamma'] = [1.0] * (steps - 1) + [0.2]
    path.write_text(json.dumps(rep))
    row = _row(_rebuild(tmp), '3a')
    assert row['values']['last'] == pytest.approx(0.2) and row['verdict'] == claims.HOLDS
    rep['early_exit']['mean_gamma'] = [1.0] * steps
    rep['early_exit']['exit_step'] = steps
    path.write_text(json.dumps(rep))
    assert _row(_rebuild(tmp), '3a')['verdict'] == claims.FAILS
    assert _row(_rebuild(tmp), '3b')['verdict'] == claims.FAILS
  finally:
    path.write_text(saved)


def test_an_unknown_run_is_one_line_and_exit_2(tmp_path):
  r = subprocess.run([sys.executable, os.path.join(ROOT, 'experiments', 'reproduce.py'),
                      '--config=' + os.path.join(ROOT, 'configs', 'digits.py'), '--runs=bntt,bnt',
                      f'--workdir={tmp_path}'], capture_output=True, text=True,
                     env=dict(os.environ, PYTHONPATH=ROOT))
  assert r.returncode == 2
  assert r.stderr.strip().splitlines()[-1] == (
      'error: run \'bnt\' is not accepted: one of ' + ', '.join(claims.RUNS))


def test_a_damaged_record_is_one_line_and_exit_2_and_a_damaged_report_is_rebuilt(reproduced):
  tmp, out = reproduced
  base = [sys.executable, os.path.join(ROOT, 'experiments', 'reproduce.py'),
          '--config=' + os.path.join(ROOT, 'configs', 'digits.py') + ':smoke',
          '--config.model.timesteps=3', f'--workdir={tmp / "runs"}', '--runs=bntt,none,ann',
          f'--out={out}', '--comparator_test_examples=8']
  env = dict(os.environ, PYTHONPATH=ROOT, BNTT_CPU_RUNTIME='default')
  summary = tmp / 'runs' / 'ann' / 'summary.json'
  saved = summary.read_text()
  summary.write_text(saved[:20])               # half written
  try:
    r = subprocess.run(base + ['--stages=report'], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: run record '{summary}' cannot")
    assert summary.read_text() == saved[:20]   # not replaced
  finally:
    summary.write_text(saved)
  report = tmp / 'runs' / 'ann' / 'report.json'
  report.write_text('{"accur')
  r = subprocess.run(base + ['--stages=analyze', '--runs=ann'], capture_output=True, text=True,
                     env=env)
  assert r.returncode == 0, r.stderr[-2000:]
  assert 'cannot be read: analysing the run again' in r.stderr
  assert json.loads(report.read_text())['accuracy']['num_examples'] == 8
