"""BNTT on N-MNIST (Orchard et al. 2015) through tonic: a dense network over 34x34x2 frames.

Command (the release extracted into <dir>/NMNIST/Train/<digit>/*.bin and NMNIST/Test/...;
tonic's save_to):
    python -m bntt_jax.main --config=configs/nmnist.py --config.data.dir=/data/tonic \
        --workdir=runs/nmnist
    python -m bntt_jax.main --config=configs/nmnist.py:smoke --config.data.dir=DIR  # ~1 min
(``pip install "bntt_jax[events]"`` first. ``:smoke`` needs the ``get_config(arg)``
convention in main; tests/test_tonic.py runs it through ``train.train_and_evaluate``.)

Source: Orchard, Jayawant, Cohen, Thakor, "Converting static image datasets to spiking
neuromorphic datasets using saccades", Front. Neurosci. 9:437, 2015: MNIST digits recorded
by an ATIS sensor moved in three saccades (~300 ms), 34x34 pixels, 2 polarities; the
release's own split, 60,000 / 10,000.

Baseline (BNTT-free): Wu, Deng, Li, Zhu, Shi, "Spatio-temporal backpropagation for training
high-performance spiking neural networks" (STBP), Front. Neurosci. 2018: a spiking MLP
34x34x2-800-10, 98.78 % on the test set (figure checked in the comparison table of a
Neural Computation review of SNN learning on event data; Lee et al. 2016's 34x34x2-800-10
reports 98.66 %). We keep its network: FC 800 (BNTT) -> FC 10 on the flattened frames
(``model.arch = 'mlp'``). Its temporal resolution (1 ms steps) is not practical here: the
recordings are binned into T = 10 equal intervals of each recording's span
(``split_by='time'``, ~30 ms each). Expected: about 98-99 %; not run on the real data (it
cannot be fetched on this machine).

Hardware, memory and time: a CPU or one GPU with 8 GB of host memory. 60,000 x 10 x 34 x 34
x 2 float32 frames are 5.5 GB (test 0.9 GB), cached once in ``data.options.cache_dir`` (70k
files to parse the first time). Measured on 2 AVX-512 cores (Xeon 2.6 GHz, load average ~5
from other jobs) with this config on synthetic files of the real shapes (700 recordings):
923 samples/s after compilation (a step of 100 x 10 x (2312 x 800 + 800 x 10) MACs, ~11
GFLOP with the backward), ~65 s per epoch, ~35 min for 30 epochs. GPU: not measured (no GPU
was lent to this work); a few minutes expected.

Hyper-parameters (ours): Adam lr 1e-3, cosine, batch 100, 30 epochs, no weight decay,
leak 0.95, threshold 1.
"""
import os

import ml_collections

from bntt_jax import default_config


def get_config(arg=None):
  config = default_config.get_config()
  config.data.name = 'nmnist'
  config.data.source = 'tonic'
  config.data.download = False     # a missing dataset is an error; True lets tonic fetch it
  config.data.augment = 'none'
  config.data.options = ml_collections.ConfigDict({
      'timesteps': 10,
      'size': 34,
      'split_by': 'time',          # time | count | window
      'method': 'area',
      'cache_dir': os.path.join(os.path.expanduser('~'), '.cache', 'bntt_jax', 'tonic'),
      'on_error': 'stop',
      'first_saccade_only': False,   # tonic's NMNIST options
      'stabilize': False,
  })

  config.model.arch = 'mlp'
  config.model.num_classes = 10
  config.model.timesteps = 10
  config.model.encoding = 'frames'
  config.model.norm = 'bntt'
  config.model.leak = 0.95
  config.model.arch_kwargs = ml_collections.ConfigDict({'hidden': (800,)})

  config.train.epochs = 30
  config.train.batch_size = 100
  config.train.optimizer = 'adam'
  config.train.learning_rate = 1e-3
  config.train.lr_schedule = 'cosine'
  config.train.weight_decay = 0.0

  config.eval.batch_size = 1000
  config.eval.num_keys = 1
  return default_config.variant(config, arg, smoke=_smoke)


def _smoke(config):
  """The same network and code path on a few recordings (tests/tonic_fixtures.py), ~1 min."""
  config.data.options.timesteps = 4
  config.data.options.cache_dir = ''
  config.model.timesteps = 4
  config.train.epochs = 1
  config.train.batch_size = 5
  config.train.checkpoint_every_steps = 0
  config.eval.batch_size = 10
  return config
