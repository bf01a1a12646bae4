"""BNTT SNN on scikit-learn's bundled digits: the embedded default (no download).

Command:
    python -m bntt_jax.main --config=configs/digits.py --workdir=runs/digits

Expected: final_test_accuracy >= 0.97 (measured 0.987 +- 0.001, mean and std
of 3 Poisson evaluation draws on the 360 held-out digits; 0.986 +- 0.004 before
the event-driven convolutions of pooled spikes changed float32 rounding, when
seeds 1, 2 gave 0.987, 0.990) in 24-28 s of wall-clock time on 2 idle CPU
cores, compilation included (50-75 s on busy ones; the project's target: 3
minutes). Not a paper result: a quick check that the whole method trains.

Model: smallnet (conv 32 AP2, conv 64 AP2, FC 256, FC 10), BNTT, Poisson
input, T = 10, leak 0.95; SGD momentum 0.9, lr 0.1 cosine, batch 32, 25
epochs. Hardware: any CPU.
"""
from bntt_jax import default_config


def get_config(arg=None):
  return default_config.variant(default_config.get_config(), arg)
