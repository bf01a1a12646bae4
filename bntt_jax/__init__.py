"""bntt_jax: Batch Normalization Through Time for spiking neural networks in JAX/Flax.

Kim & Panda, "Revisiting Batch Normalization for Training Low-latency Deep
Spiking Neural Networks from Scratch" (Frontiers in Neuroscience, 2021).

The public building blocks::

    from bntt_jax import coding, neurons, norms, blocks, network, models
    model = models.vgg9(num_steps=25)          # a flax.linen Module

Importing this package runs nothing and does not start a JAX backend.
"""
__version__ = '0.1.0'
