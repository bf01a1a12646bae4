"""ANN twin of the digits default (for the analyses and a quick check).

Command:
    python -m bntt_jax.main --config=configs/digits_ann.py --workdir=runs/digits_ann

smallnet with ReLU units, one step, the normalised image as direct input and
plain BN with a shift (``norm = bn``, ``use_bias``); everything else as
``configs/digits.py``.

Expected: final_test_accuracy ~0.99 (measured 0.992 in 11 s on 2 CPU cores; not a
paper result).
Hardware: any CPU.
"""
from bntt_jax import default_config


def get_config(arg=None):
  config = default_config.get_config()
  config.model.neuron = 'relu'
  config.model.timesteps = 1
  config.model.encoding = 'direct'
  config.model.norm = 'bn'
  config.model.norm_kwargs = {'use_bias': True}
  config.eval.num_keys = 1       # deterministic: no Poisson draws
  return default_config.variant(config, arg)
