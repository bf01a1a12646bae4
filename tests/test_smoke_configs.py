"""Every config's smoke variant (``--config=configs/X.py:smoke``) trains end to end: the same
network, data source and code path as the full run, on mocked tfds data (CIFAR), written IDX
and Tiny-ImageNet and DVS-CIFAR10 files in their own layouts, or the embedded digits (full tier:
CI runs them; the tonic configs' smoke runs are in tests/test_tonic.py)."""
import glob
import gzip
import os

import numpy as np
import pytest

import dvs_fixtures
from bntt_jax import config_lib, train
from test_data import _tiny_imagenet_dir

CONFIGS = os.path.join(os.path.dirname(__file__), '..', 'configs')
TONIC = ('dvs_gesture', 'nmnist', 'shd')
NAMES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(CONFIGS, '*.py'))
               if os.path.basename(p)[:-3] not in TONIC)


def _idx_dir(root, classes=10, n=20):
  """An MNIST-format release: n train and n test images of 28x28, every class present."""
  root.mkdir()
  rng = np.random.default_rng(0)
  for prefix in ('train', 't10k'):
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % classes).astype(np.uint8)
    with gzip.open(root / f'{prefix}-images-idx3-ubyte.gz', 'wb') as f:
      f.write(b'\x00\x00\x08\x03' + np.array([n, 28, 28], '>i4').tobytes() + images.tobytes())
    with gzip.open(root / f'{prefix}-labels-idx1-ubyte.gz', 'wb') as f:
      f.write(b'\x00\x00\x08\x01' + np.array([n], '>i4').tobytes() + labels.tobytes())
  return str(root)


@pytest.mark.full
@pytest.mark.parametrize('name', NAMES)
def test_the_smoke_variant_trains_end_to_end(name, tmp_path):
  config = config_lib.load_config(os.path.join(CONFIGS, f'{name}.py:smoke'))
  full = config_lib.load_config(os.path.join(CONFIGS, f'{name}.py'))
  # The same network and data source as the full run; fewer, smaller steps.
  assert config.model.to_dict() == full.model.to_dict()
  assert (config.data.name, config.data.source) == (full.data.name, full.data.source)
  assert config.train.epochs == 1 and config.train.batch_size == 4
  assert config.data.train_examples == 8
  mock = None
  name_ = config.data.name
  if name_ in ('cifar10', 'cifar100'):
    pytest.importorskip('tensorflow')   # tfds's mock needs TensorFlow to look prepared
    tfds = pytest.importorskip('tensorflow_datasets')
    mock = tfds.testing.mock_data(num_examples=20)
  elif name_ in ('mnist', 'fashion_mnist'):
    config.data.source = 'idx'
    config.data.dir = _idx_dir(tmp_path / 'idx')
  elif name_ == 'tiny_imagenet':
    root = tmp_path / 'tiny-imagenet-200'
    _tiny_imagenet_dir(root, per_class=3)
    config.data.dir = str(root)
    config.data.options.cache_dir = str(tmp_path / 'cache')
    config.data.test_examples = 3
    config.eval.batch_size = 3
  elif name_ == 'dvs_cifar10':
    data = tmp_path / 'dvs'
    dvs_fixtures.make_dataset(data, per_class=8)
    config.data.dir = str(data)
    config.data.options.cache_dir = str(tmp_path / 'cache')
    config.data.test_examples = 0    # the seeded split's test recordings, all of them
    config.eval.batch_size = 4
  workdir = str(tmp_path / 'run')
  if mock is not None:
    with mock:
      summary = train.train_and_evaluate(config, workdir)
  else:
    summary = train.train_and_evaluate(config, workdir)
  assert summary['steps'] == 2 and summary['epochs'] == 1
  assert summary['timesteps'] == full.model.timesteps
  assert len(summary['final_test_accuracies']) == full.eval.num_keys
  assert 0.0 <= summary['final_test_accuracy'] <= 1.0
  assert os.path.exists(os.path.join(workdir, 'steps.jsonl'))
