"""The paper's networks as lists of layers (spec section 4). Nothing about time here.

* ``vgg9``: CIFAR-10, 32x32 -- conv 64, 64, AP2, 128, 128, AP2, 256, 256, 256,
  AP2, FC 1024, FC classes.
* ``vgg11``: CIFAR-100 / Tiny-ImageNet -- conv 64 AP, 128 AP, 256, 256 AP,
  512, 512 AP, 512, 512, global AP, FC 4096, FC classes.
* ``dvsnet``: DVS-CIFAR10, 42x42x2 frames. Figure S1's widths are not in the
  material; after Wu et al. (AAAI 2019) we use a 5-layer convolutional feature
  extractor conv 64, 128 AP2, 128 AP2, 256 AP2, 256 AP2 (42 -> 21 -> 10 -> 5
  -> 2) and a classifier FC 512, FC classes. Widths, pools and the hidden FC
  are arguments.
* ``vgg``: any VGG-style stack, ``arch_kwargs`` ``widths``, ``pools`` (one per convolution)
  and ``hidden``; by default VGG9's layout at a quarter of its widths, conv 16, 16, AP2, 32,
  32, AP2, 64, 64, 64, AP2, FC 256 (Fashion-MNIST at 14x14 or 28x28).
* ``smallnet``: grey 8x8 (digits) or 28x28 (MNIST): conv 32 AP2, conv 64 AP2,
  FC 256, FC classes.
* ``mlp``: dense BNTT layers only, e.g. SHD's 700 channels per step (``[B, T, 700]``
  frames) or N-MNIST's flattened 34x34x2: FC ``hidden[0]``, ..., FC classes (no
  recurrent connections). Default hidden (256,); ``hidden`` in ``arch_kwargs``.

Every hidden layer is synapse (no bias) -> norm -> LIF (-> pool); the last FC is
the accumulating readout. Weights use the reference init (xavier-uniform,
gain 2).
"""
from __future__ import annotations

from typing import Any, Sequence

from bntt_jax import errors
from bntt_jax import neurons as neurons_lib
from bntt_jax import norms as norms_lib
from bntt_jax.blocks import GLOBAL_POOL, LayerSpec
from bntt_jax.network import SpikingNetwork


def conv(features: int, pool: int = 1) -> LayerSpec:
  return LayerSpec('conv', features, pool)


def dense(features: int) -> LayerSpec:
  return LayerSpec('dense', features)


def vgg9_layers() -> tuple:
  return (conv(64), conv(64, 2), conv(128), conv(128, 2), conv(256), conv(256), conv(256, 2),
          dense(1024))


def vgg11_layers() -> tuple:
  return (conv(64, 2), conv(128, 2), conv(256), conv(256, 2), conv(512), conv(512, 2),
          conv(512), conv(512, GLOBAL_POOL), dense(4096))


def vgg_layers(widths: Sequence[int], pools: Sequence[int], hidden: Sequence[int],
               name: str = 'vgg') -> tuple:
  """3x3 convolutions of ``widths``, each followed by average pooling ``pools[i]`` (1: none),
  then dense layers of ``hidden``."""
  if len(widths) != len(pools):
    raise errors.ConfigError(f'{name} pools', tuple(pools),
                             f'one per convolution ({len(widths)}, as widths {tuple(widths)})')
  return tuple(conv(w, p) for w, p in zip(widths, pools)) + tuple(dense(h) for h in hidden)


def dvsnet_layers(widths: Sequence[int] = (64, 128, 128, 256, 256),
                  pools: Sequence[int] = (1, 2, 2, 2, 2),
                  hidden: Sequence[int] = (512,)) -> tuple:
  return vgg_layers(widths, pools, hidden, 'dvsnet')


# VGG9's layout (7 convolutions, 3 poolings, one hidden FC) at a quarter of its widths: the
# default of ``vgg`` (configs/fashion_mnist.py).
VGG9_QUARTER = dict(widths=(16, 16, 32, 32, 64, 64, 64), pools=(1, 2, 1, 2, 1, 1, 2),
                    hidden=(256,))


def vgg_small_layers(widths: Sequence[int] = VGG9_QUARTER['widths'],
                     pools: Sequence[int] = VGG9_QUARTER['pools'],
                     hidden: Sequence[int] = VGG9_QUARTER['hidden']) -> tuple:
  return vgg_layers(widths, pools, hidden)


def smallnet_layers(widths: Sequence[int] = (32, 64), hidden: int = 256) -> tuple:
  return tuple(conv(w, 2) for w in widths) + (dense(hidden),)


def mlp_layers(hidden: Sequence[int] = (256,)) -> tuple:
  hidden = tuple(hidden)
  if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
    raise errors.ConfigError('mlp hidden widths', hidden, 'one or more integers >= 1')
  return tuple(dense(h) for h in hidden)


ARCHITECTURES = {
    'vgg9': vgg9_layers,
    'vgg11': vgg11_layers,
    'dvsnet': dvsnet_layers,
    'smallnet': smallnet_layers,
    'vgg': vgg_small_layers,
    'mlp': mlp_layers,
}


NEURONS = ('lif', 'relu')


def check_arguments(arch: str, num_classes, neuron: str) -> None:
  """The one check of a model's architecture, class count and neuron (``ConfigError``)."""
  errors.check_one_of('model', arch, tuple(sorted(ARCHITECTURES)))
  errors.check_int_at_least('num_classes', num_classes, 1)
  errors.check_one_of('neuron', neuron, NEURONS)


def create_model(arch: str, *, num_classes: int, num_steps: int, norm: str = 'bntt',
                 leak: float = 0.95, threshold: float = 1.0, surrogate: str = 'triangle',
                 surrogate_alpha: float | None = None, neuron: str = 'lif',
                 encoding: str = 'poisson', rescale: float = 2.0, schedule: str = 'layer',
                 unroll: int = 1, dtype: Any = None, remat: bool = False,
                 synapse_precision: str = 'float32', sparse_conv: str = 'auto',
                 lif_kernel: str = 'auto', norm_kwargs: dict | None = None,
                 arch_kwargs: dict | None = None, axis_name: str | None = None) -> SpikingNetwork:
  """A network by architecture name; every argument is checked with a one-line error
  (``ConfigError``: here, by the neurons, the norms and :func:`network.check_settings`)."""
  check_arguments(arch, num_classes, neuron)
  norms_lib.check_norm(norm)
  # LIF settings are checked for the ReLU twin too (one config carries both).
  lif = neurons_lib.LIFParams(leak, threshold,
                              neurons_lib.make_surrogate(surrogate, surrogate_alpha))
  cell = lif if neuron == 'lif' else 'relu'
  nk = dict(norm_kwargs or {})
  if norm == 'tdbn':
    nk.setdefault('threshold', threshold)
  layers = ARCHITECTURES[arch](**(arch_kwargs or {}))
  return SpikingNetwork(layers=layers, num_classes=num_classes, num_steps=num_steps, norm=norm,
                        norm_kwargs=tuple(sorted(nk.items())), neuron=cell, encoding=encoding,
                        rescale=rescale, schedule=schedule, unroll=unroll, dtype=dtype,
                        remat=remat, synapse_precision=synapse_precision,
                        sparse_conv=sparse_conv, lif_kernel=lif_kernel,
                        axis_name=axis_name)


def vgg9(num_classes: int = 10, num_steps: int = 25, **kw) -> SpikingNetwork:
  return create_model('vgg9', num_classes=num_classes, num_steps=num_steps, **kw)


def vgg11(num_classes: int = 100, num_steps: int = 30, **kw) -> SpikingNetwork:
  return create_model('vgg11', num_classes=num_classes, num_steps=num_steps, **kw)


def dvsnet(num_classes: int = 10, num_steps: int = 20, **kw) -> SpikingNetwork:
  kw.setdefault('encoding', 'frames')
  return create_model('dvsnet', num_classes=num_classes, num_steps=num_steps, **kw)


def smallnet(num_classes: int = 10, num_steps: int = 8, **kw) -> SpikingNetwork:
  return create_model('smallnet', num_classes=num_classes, num_steps=num_steps, **kw)
