"""DVS-CIFAR10 end to end through the command line, on a tiny synthetic release."""
import json
import os
import subprocess
import sys

import dvs_fixtures
import pytest

pytestmark = pytest.mark.full   # the full tier: tests/conftest.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(args):
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  return subprocess.run([sys.executable, '-m', 'bntt_jax.main', '--config=configs/dvs_cifar10.py']
                        + args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _tiny(tmp_path, data):
  # 2 classes x 4 recordings -> 3 + 3 train, 1 + 1 test; batch 3 -> 2 steps; T 2.
  return [f'--config.data.dir={data}', f'--config.data.options.cache_dir={tmp_path / "cache"}',
          '--config.data.options.timesteps=2', '--config.model.timesteps=2',
          '--config.model.arch_kwargs.widths=(4, 4, 4, 4, 4)',
          '--config.model.arch_kwargs.hidden=(8,)', '--config.train.epochs=1',
          '--config.train.batch_size=3', '--config.eval.batch_size=2',
          f'--workdir={tmp_path / "run"}']


def test_dvs_config_runs_end_to_end_on_a_tiny_release(tmp_path):
  data = tmp_path / 'CIFAR10-DVS'
  dvs_fixtures.make_dataset(data, per_class=4)
  r = _main(_tiny(tmp_path, data))
  assert r.returncode == 0, r.stderr[-3000:]
  summary = json.load(open(tmp_path / 'run' / 'summary.json'))
  assert summary['steps'] == 2 and summary['train_examples'] == 6
  assert summary['test_examples'] == 2 and summary['timesteps'] == 2
  assert 0.0 <= summary['final_test_accuracy'] <= 1.0
  assert any(f.endswith('.frames.npy') for f in os.listdir(tmp_path / 'cache'))


def test_dvs_corrupt_recording_stops_with_its_name_or_is_skipped(tmp_path):
  data = tmp_path / 'CIFAR10-DVS'
  dvs_fixtures.make_dataset(data, per_class=5)
  bad = data / 'automobile' / 'cifar10_automobile_2.aedat'
  bad.write_bytes(bad.read_bytes()[:-3])    # cut inside the last event
  r = _main(_tiny(tmp_path, data))
  assert r.returncode == 2
  lines = [l for l in r.stderr.splitlines() if l.startswith('error:')]
  assert len(lines) == 1 and 'cifar10_automobile_2.aedat' in lines[0], r.stderr[-2000:]
  assert 'Traceback' not in r.stderr
  r = _main(_tiny(tmp_path, data) + ['--config.data.options.on_error=skip'])
  assert r.returncode == 0, r.stderr[-3000:]
  assert 'cifar10_automobile_2.aedat' in r.stderr   # the warning names the skipped file
