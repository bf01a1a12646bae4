"""The command line: one-line errors with exit code 2, SIGKILL-and-resume equality."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from bntt_jax import checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(cache_dir=None):
  env = dict(os.environ)
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  if cache_dir:
    # The three runs of the resume test compile the same programs once.
    env['JAX_COMPILATION_CACHE_DIR'] = str(cache_dir)
  return env


def _main(args, cache_dir=None, **kw):
  return subprocess.run([sys.executable, '-m', 'bntt_jax.main'] + args, cwd=ROOT,
                        env=_env(cache_dir), capture_output=True, text=True, timeout=300, **kw)


@pytest.mark.parametrize('args,message', [
    (['--config.model.arch=vgg99'],
     "error: model 'vgg99' is not accepted: one of dvsnet, smallnet, vgg11, vgg9"),
    (['--config.data.name=imagenet'],
     "error: dataset 'imagenet' is not accepted: one of cifar10, cifar100, digits"),
    (['--config.train.epochz=3'],
     "error: config key 'train.epochz' is not accepted: train has b1, b2, batch_size"),
    (['--config=configs/no_such_config.py'],
     "error: config file 'configs/no_such_config.py' is not accepted"),
    (['--config=configs/mnist.py', '--config.data.source=idx', '--config.data.dir=/no/such/dir'],
     "error: data directory '/no/such/dir' is not accepted: a directory of MNIST IDX files"),
    (['--config=configs/tiny_imagenet.py'],
     "error: data directory '(config.data.dir is empty)' is not accepted: a tiny-imagenet-200"),
    (['--config.model.timesteps=0'], 'error: timesteps 0 is not accepted: an integer >= 1'),
    (['--config.model.leak=1.5'], 'error: leak 1.5 is not accepted: a number in (0, 1]'),
    (['--config.model.leak=0'], 'error: leak 0.0 is not accepted: a number in (0, 1]'),
    (['--config.model.threshold=0'], 'error: threshold 0.0 is not accepted: a number > 0'),
    (['--config.model.threshold=-1'], 'error: threshold -1.0 is not accepted: a number > 0'),
    (['--config.train.batch_size=0'], 'error: batch size 0 is not accepted: an integer >= 1'),
    (['--config.train.epochs=abc'], 'error: flag --config.train.epochs=abc'),
])
def test_bad_input_gives_one_line_and_exit_code_2(tmp_path, args, message):
  r = _main(args + [f'--workdir={tmp_path / "run"}'])
  assert r.returncode == 2, r.stderr
  lines = [line for line in r.stderr.splitlines() if line.startswith('error:')]
  assert len(lines) == 1 and lines[0].startswith(message), r.stderr
  assert 'Traceback' not in r.stderr
  assert not (tmp_path / 'run' / 'checkpoints').exists()     # nothing ran


def test_non_finite_loss_exits_non_zero_and_says_so(tmp_path):
  r = _main(['--config=configs/digits_ann.py', '--config.model.norm=none',
             '--config.train.learning_rate=1e30', '--config.train.epochs=1',
             '--config.train.log_every_steps=1', f'--workdir={tmp_path / "run"}'])
  assert r.returncode == 1
  assert 'error: non-finite training loss' in r.stderr and 'training stopped' in r.stderr
  assert 'Traceback' not in r.stderr


def test_sigkill_and_resume_ends_with_the_same_parameters(tmp_path):
  """The embedded default (no --config: digits), tiny: 66 steps, checkpoints every 4 steps."""
  cache = tmp_path / 'jax_cache'
  tiny = ['--config.train.epochs=6', '--config.model.timesteps=4',
          '--config.train.batch_size=128', '--config.train.checkpoint_every_steps=4',
          '--config.train.log_every_steps=2', '--config.eval.num_keys=2']
  whole, broken = tmp_path / 'whole', tmp_path / 'broken'
  r = _main(tiny + [f'--workdir={whole}'], cache)
  assert r.returncode == 0, r.stderr[-2000:]

  proc = subprocess.Popen([sys.executable, '-m', 'bntt_jax.main'] + tiny +
                          [f'--workdir={broken}'], cwd=ROOT, env=_env(cache),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckpts = broken / 'checkpoints'
  deadline = time.time() + 240
  try:
    while time.time() < deadline and proc.poll() is None:
      if ckpts.is_dir() and any(p.name.isdigit() and int(p.name) >= 8 for p in ckpts.iterdir()):
        break
      time.sleep(0.01)
    assert proc.poll() is None, 'the run ended before it could be killed'
    os.kill(proc.pid, signal.SIGKILL)
  finally:
    proc.wait()
  killed_at = max(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
  assert 8 <= killed_at < 66 and not (broken / 'summary.json').exists()

  r = _main(tiny + [f'--workdir={broken}'], cache)
  assert r.returncode == 0, r.stderr[-2000:]
  assert 'Resuming from the checkpoint' in r.stderr
  a, b = checkpoint.load_state(str(whole)), checkpoint.load_state(str(broken))
  assert int(a['step']) == int(b['step']) == 66
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(x, y)

  def rows(d):
    with open(d / 'metrics.jsonl') as f:
      return [{k: v for k, v in json.loads(line).items() if k not in ('img_per_s', 'wall_seconds')}
              for line in f]
  assert rows(whole) == rows(broken) and len(rows(whole)) == 6
  sa, sb = (json.loads((d / 'summary.json').read_text()) for d in (whole, broken))
  assert sa['final_test_accuracies'] == sb['final_test_accuracies']
  assert sa['final_test_accuracy'] >= 0.5        # 6 epochs of T = 4 learn something
