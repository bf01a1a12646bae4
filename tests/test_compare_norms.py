"""experiments/compare_norms.py: its table, JSON and plot on a tiny digits comparison."""
import json
import os
import subprocess
import sys

import pytest

from experiments import compare_norms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.full   # the full tier: tests/conftest.py


def test_steps_within_and_aggregate():
  assert compare_norms.steps_within([0.5, 0.8, 0.95, 0.96, 0.955], 0.01) == 3
  assert compare_norms.steps_within([0.9], 0.01) == 1
  agg = compare_norms.aggregate([{'a': 1.0, 'b': None, 'c': [1.0, 2.0]},
                                 {'a': 3.0, 'b': None, 'c': [3.0, 4.0]}])
  assert agg == {'a': {'mean': 2.0, 'std': 1.0}, 'b': None, 'c': [2.0, 3.0]}


def test_compare_norms_writes_table_json_and_plot(tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  r = subprocess.run([sys.executable, os.path.join(ROOT, 'experiments', 'compare_norms.py'),
                      '--norms=bntt,tdbn', '--seeds=1', '--config.train.epochs=1',
                      '--config.model.timesteps=3', f'--workdir={tmp_path}'], cwd=ROOT, env=env,
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  out = json.load(open(tmp_path / 'compare.json'))
  assert set(out['results']) == {'bntt', 'tdbn'}
  bntt, tdbn = out['results']['bntt']['mean_std'], out['results']['tdbn']['mean_std']
  assert 0.0 <= bntt['test_accuracy']['mean'] <= 1.0
  assert bntt['exit_step']['mean'] in (1, 2, 3) and tdbn['exit_step'] is None
  assert len(bntt['accuracy_after_k']) == 3 and bntt['spikes_per_image']['mean'] > 0
  md = open(tmp_path / 'compare.md').read()
  assert md.count('\n| bntt |') == 1 and '| tdbn |' in md
  assert (tmp_path / 'accuracy_vs_steps.png').stat().st_size > 1000
  r = subprocess.run([sys.executable, os.path.join(ROOT, 'experiments', 'compare_norms.py'),
                      '--norms=bntt,foo'], cwd=ROOT, env=env, capture_output=True, text=True,
                     timeout=300)
  assert r.returncode == 2 and "error: norm 'foo' is not accepted" in r.stderr
