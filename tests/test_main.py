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

pytestmark = pytest.mark.full   # the full tier: tests/conftest.py

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
     "error: model 'vgg99' is not accepted: one of dvsnet, mlp, smallnet"),
    (['--config.data.name=imagenet'],
     "error: dataset 'imagenet' is not accepted: one of cifar10, cifar100, cifar10dvs, digits"),
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
    # Before: the typo (PyTorch's name for epsilon) was dropped and the run trained.
    (["--config.model.norm_kwargs={'eps': 1e-3}"],
     "error: norm_kwargs key 'eps' is not accepted: one of alpha, epsilon, momentum, "
     "stat_groups, threshold, use_bias"),
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


def _idx_dir(root, truncate_gz):
  import gzip  # pylint: disable=g-import-not-at-top
  root.mkdir()
  rng = np.random.RandomState(0)
  for name, a in (('train-images-idx3-ubyte', rng.randint(0, 256, (40, 28, 28))),
                  ('train-labels-idx1-ubyte', rng.randint(0, 10, 40)),
                  ('t10k-images-idx3-ubyte', rng.randint(0, 256, (10, 28, 28))),
                  ('t10k-labels-idx1-ubyte', rng.randint(0, 10, 10))):
    payload = bytes([0, 0, 0x08, a.ndim]) + b''.join(
        int(s).to_bytes(4, 'big') for s in a.shape) + a.astype(np.uint8).tobytes()
    path = root / (name + '.gz')
    path.write_bytes(gzip.compress(payload))
  if truncate_gz:
    bad = root / 'train-images-idx3-ubyte.gz'
    bad.write_bytes(bad.read_bytes()[:-100])
  return root / 'train-images-idx3-ubyte.gz'


def _tiny_imagenet(root):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  for c in ('n01443537', 'n01629819'):
    d = root / 'train' / c / 'images'
    d.mkdir(parents=True)
    for i in range(2):
      Image.fromarray(np.random.RandomState(i).randint(0, 256, (64, 64, 3), np.uint8)).save(
          d / f'{c}_{i}.JPEG')
  (root / 'val' / 'images').mkdir(parents=True)
  Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(root / 'val' / 'images' / 'val_0.JPEG')
  (root / 'val' / 'val_annotations.txt').write_text('val_0.JPEG\tn01443537\t0\t0\t63\t63\n')
  bad = root / 'train' / 'n01629819' / 'images' / 'n01629819_1.JPEG'
  bad.write_bytes(bad.read_bytes()[:300])
  return bad


def test_truncated_idx_file_is_one_line_naming_it_and_exit_code_2(tmp_path):
  """Before: exit 1 with gzip's raw EOFError traceback."""
  bad = _idx_dir(tmp_path / 'mnist', truncate_gz=True)
  r = _main(['--config=configs/mnist.py', '--config.data.source=idx',
             f'--config.data.dir={tmp_path / "mnist"}', f'--workdir={tmp_path / "run"}'])
  assert r.returncode == 2, r.stderr[-3000:]
  lines = [line for line in r.stderr.splitlines() if line.startswith('error:')]
  assert len(lines) == 1 and str(bad) in lines[0] and 'truncated or corrupt' in lines[0]
  assert 'Traceback' not in r.stderr


def test_truncated_tiny_imagenet_image_is_one_line_naming_it_and_exit_code_2(tmp_path):
  """Before: exit 1 with Pillow's "image file is truncated" OSError traceback."""
  bad = _tiny_imagenet(tmp_path / 'tiny-imagenet-200')
  r = _main(['--config=configs/tiny_imagenet.py', f'--config.data.dir={tmp_path / "tiny-imagenet-200"}',
             '--config.model.timesteps=1', f'--workdir={tmp_path / "run"}'])
  assert r.returncode == 2, r.stderr[-3000:]
  lines = [line for line in r.stderr.splitlines() if line.startswith('error:')]
  assert len(lines) == 1 and str(bad) in lines[0] and 'cannot be decoded' in lines[0]
  assert 'Traceback' not in r.stderr


def test_unprepared_tfds_dataset_without_network_says_where_and_how_exit_code_2(tmp_path):
  """No network: every HTTP(S) request goes to a closed local port, and tfds's 10 retries
  with back-off (3.5 minutes) are cut to none. Before: exit 1 with a raw
  requests.exceptions.ProxyError (a ConnectionError) traceback."""
  pytest.importorskip('tensorflow')
  data_dir = tmp_path / 'tensorflow_datasets'
  code = ('from tensorflow_datasets.core.download import downloader; downloader.MAX_RETRIES = 0; '
          'from bntt_jax import main; main.run()')
  env = dict(_env(), HTTP_PROXY='http://127.0.0.1:9', HTTPS_PROXY='http://127.0.0.1:9',
             BNTT_CPU_RUNTIME='default')
  r = subprocess.run([sys.executable, '-c', code, '--config=configs/cifar10.py',
                      f'--config.data.dir={data_dir}', f'--workdir={tmp_path / "run"}'],
                     cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert r.returncode == 2, r.stderr[-3000:]
  lines = [line for line in r.stderr.splitlines() if line.startswith('error:')]
  assert len(lines) == 1, r.stderr[-3000:]
  assert "tfds dataset 'cifar10'" in lines[0] and str(data_dir) in lines[0]
  assert 'could not be downloaded' in lines[0]
  assert ("tfds.builder('cifar10', data_dir=DIR, file_format='array_record')"
          ".download_and_prepare(file_format='array_record')") in lines[0]
  assert 'Traceback' not in r.stderr
