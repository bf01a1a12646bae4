"""ANN twin of the CIFAR-10 VGG9 (for the analyses: energy, robustness).

Command:
    python -m bntt_jax.main --config=configs/cifar10_ann.py --workdir=runs/cifar10_ann

The same VGG9 and recipe as ``configs/cifar10.py`` with ReLU units, one time
step, the normalised image as a direct (non-spiking) input and plain BN with
a shift (``norm = bn``, ``use_bias``). Expected: ~91 % (the paper's ANN for
conversion reaches 91.2 %, Fig. 1 caption; not a BNTT result).

Hardware: one GPU (on 2 CPU cores ~8 minutes per epoch, estimated from its FLOPs).
"""
import os

from bntt_jax import config_lib
from bntt_jax import default_config


def get_config(arg=None):
  config = config_lib.load_config(os.path.join(os.path.dirname(__file__), 'cifar10.py'))
  config.model.neuron = 'relu'
  config.model.timesteps = 1
  config.model.encoding = 'direct'
  config.model.norm = 'bn'
  config.model.norm_kwargs = {'use_bias': True}
  config.train.learning_rate = 0.1    # 0.3 is the SNN's rate; ReLU nets with BN prefer 0.1
  config.eval.num_keys = 1             # deterministic: no Poisson draws
  return default_config.variant(config, arg)
