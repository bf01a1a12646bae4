"""The paper's surrogate-gradient baseline: CIFAR-10 VGG9 without BNTT, T = 100.

Command:
    python -m bntt_jax.main --config=configs/cifar10_surrogate.py --workdir=runs/cifar10_surrogate

Expected: 88.7 % top-1 at T = 100 (paper, Fig. 1 caption). Everything else
as ``configs/cifar10.py`` (same VGG9, optimiser, schedule, augmentation); only
``norm = none`` and T = 100. The paper gives no separate learning rate for
this baseline; lr 0.3 may be too high without normalisation (if the loss goes
non-finite the run stops, keeping its last good checkpoint; try
``--config.train.learning_rate=0.1``).

Hardware: one GPU (4x the steps of the BNTT run).
"""
import os

from bntt_jax import config_lib
from bntt_jax import default_config


def get_config(arg=None):
  config = config_lib.load_config(os.path.join(os.path.dirname(__file__), 'cifar10.py'))
  config.model.norm = 'none'
  config.model.timesteps = 100
  config.model.remat = True        # T = 100 activations would not fit otherwise
  return default_config.variant(config, arg)
