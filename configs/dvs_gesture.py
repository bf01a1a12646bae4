"""BNTT on DVS128 Gesture (Amir et al. 2017) through tonic: a small convolutional network.

Command (tonic's release extracted into <dir>/DVSGesture/ibmGestureTrain/user*_*/<label>.npy
and ibmGestureTest/...; tonic's save_to):
    python -m bntt_jax.main --config=configs/dvs_gesture.py --config.data.dir=/data/tonic \
        --workdir=runs/dvs_gesture
    python -m bntt_jax.main --config=configs/dvs_gesture.py:smoke --config.data.dir=DIR
(``pip install "bntt_jax[events]"`` first. ``:smoke`` (~1 min) needs the ``get_config(arg)``
convention in main; tests/test_tonic.py runs it through ``train.train_and_evaluate``.)

Source: Amir et al., "A low power, fully event-based gesture recognition system", CVPR
2017: 11 gestures by 29 subjects under 3 lightings, DVS128 (128x128, 2 polarities); the
release's split, users 1-23 for training and 24-29 for testing (1,077 / 264 gestures in
tonic's preprocessed copy, where recordings with several gestures are cut per gesture and
timestamps are in ms).

Baseline (BNTT-free): DECOLLE, Kaiser, Mostafa, Neftci, "Synaptic plasticity dynamics for
deep continuous local learning", Front. Neurosci. 14:424, 2020: input summed 128 -> 32 (4x4
blocks), conv 64 (7x7) + max-pool 2, conv 128 (7x7), conv 128 (7x7) + max-pool 2, local
readouts (network checked in the paper's Table 2); it reports 95.54 +- 0.16 % test accuracy
(as recalled, not re-checked here; SLAYER, Shrestha & Orchard 2018, reports 93.64 %). We
keep its input and widths: ``size`` 32 by area resampling (an integer factor: plain 4x4
sums), conv 64 AP2, conv 128, conv 128 AP2 (``model.arch = 'dvsnet'``), BNTT after each,
then the readout FC 11; our convolutions are 3x3 'SAME' and pools average, and each
recording is split into T = 20 equal intervals (``split_by='time'``) instead of DECOLLE's
1 ms steps. Expected: roughly 90-95 %; not run on the real data (it cannot be fetched on
this machine).

Hardware, memory and time: one GPU (or a CPU, slowly). 1,077 x 20 x 32 x 32 x 2 float32
frames are 176 MB, cached once in ``data.options.cache_dir``. A training step at batch 16
and T = 20 is 320 samples through ~58 M MACs of convolutions each, ~110 GFLOP with the
backward. Measured on 2 AVX-512 cores (Xeon 2.6 GHz, load average ~5 from other jobs) with
this config on synthetic files of the real shapes (88 gestures of 3,000 events; untrained,
82 % of neurons firing, so the event-driven convolutions had little to skip): 12 samples/s
after compilation, ~90 s per epoch, ~2.5-3 h for 100 epochs with evaluation (a trained
network fires less and runs faster). GPU: not measured (no GPU was lent to this work); ~10
TFLOP per epoch, minutes.

Hyper-parameters (ours): Adam lr 1e-3, cosine, batch 16, 100 epochs, no weight decay,
leak 0.95, threshold 1.
"""
import os

import ml_collections

from bntt_jax import default_config


def get_config(arg=None):
  config = default_config.get_config()
  config.data.name = 'dvsgesture'
  config.data.source = 'tonic'
  config.data.download = False     # a missing dataset is an error; True lets tonic fetch it
  config.data.augment = 'none'
  config.data.options = ml_collections.ConfigDict({
      'timesteps': 20,
      'size': 32,                  # 128 -> 32: 4x4 sums
      'split_by': 'time',          # time | count | window
      'method': 'area',
      'cache_dir': os.path.join(os.path.expanduser('~'), '.cache', 'bntt_jax', 'tonic'),
      'on_error': 'stop',
  })

  config.model.arch = 'dvsnet'
  config.model.num_classes = 11
  config.model.timesteps = 20
  config.model.encoding = 'frames'
  config.model.norm = 'bntt'
  config.model.leak = 0.95
  config.model.arch_kwargs = ml_collections.ConfigDict({
      'widths': (64, 128, 128),
      'pools': (2, 1, 2),
      'hidden': (),
  })

  config.train.epochs = 100
  config.train.batch_size = 16
  config.train.optimizer = 'adam'
  config.train.learning_rate = 1e-3
  config.train.lr_schedule = 'cosine'
  config.train.weight_decay = 0.0

  config.eval.batch_size = 132
  config.eval.num_keys = 1
  return default_config.variant(config, arg, smoke=_smoke)


def _smoke(config):
  """The same network and code path on a few gestures (tests/tonic_fixtures.py), ~1 min."""
  config.data.options.timesteps = 4
  config.data.options.cache_dir = ''
  config.model.timesteps = 4
  config.train.epochs = 1
  config.train.batch_size = 4
  config.train.checkpoint_every_steps = 0
  config.eval.batch_size = 11
  return config
