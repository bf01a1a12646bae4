"""MNIST with a small BNTT SNN.

Commands:
    python -m bntt_jax.main --config=configs/mnist.py --workdir=runs/mnist
    python -m bntt_jax.main --config=configs/mnist.py --config.data.source=idx \
        --config.data.dir=DIR --workdir=runs/mnist

The first reads tfds ``mnist`` (needs internet and TensorFlow to prepare on
first use); the second reads any directory of MNIST-format IDX files
(``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-...``, plain
or ``.gz``; Fashion-MNIST's files too, with ``--config.data.name=fashion_mnist``).

Expected: ~99 % (not a paper result). smallnet (conv 32 AP2, conv 64 AP2,
FC 256) at 28x28, BNTT, T = 10, batch 64, 10 epochs, SGD lr 0.1 cosine.
Hardware: 2 CPU cores take ~1 hour; a GPU a few minutes.
"""
from bntt_jax import default_config


def get_config(arg=None):
  config = default_config.get_config()
  config.data.name = 'mnist'
  config.data.source = 'tfds'
  config.model.timesteps = 10
  config.train.epochs = 10
  config.train.batch_size = 64
  config.eval.batch_size = 500
  return default_config.variant(config, arg)
