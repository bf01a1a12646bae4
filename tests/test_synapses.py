"""Synaptic ops: exact bf16x3 products, narrow residuals, which layers get them."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax._src.ad_checkpoint import saved_residuals

from bntt_jax import config_lib, models, network, synapses
import configs.cifar10


def _weights(rng, shape):
  """Normal weights spread over 2^-60 .. 2^60: large and tiny exponents."""
  return jnp.asarray(rng.randn(*shape) * np.exp2(rng.randint(-60, 60, shape)), jnp.float32)


def test_split_bf16x3_is_exact():
  rng = np.random.RandomState(0)
  w = jnp.concatenate([_weights(rng, (4000,)), jnp.asarray([1.0, -1.0, 1e-30, 3e38, 0.0],
                                                             jnp.float32)])
  hi, mid, lo = synapses.split_bf16x3(w)
  assert hi.dtype == mid.dtype == lo.dtype == jnp.bfloat16
  back = (hi.astype(jnp.float32) + mid.astype(jnp.float32)) + lo.astype(jnp.float32)
  np.testing.assert_array_equal(back, w)
  assert int(jnp.sum(lo != 0)) > 1000           # the third part is needed


def _inputs(rng, kind, shape):
  if kind == 'spikes':
    return jnp.asarray(rng.rand(*shape) < 0.3, jnp.float32)
  if kind == 'signed':
    return jnp.asarray(rng.randint(-1, 2, shape), jnp.float32)
  return jnp.asarray(rng.randint(0, 5, shape) / 4.0, jnp.float32)   # 2x2-pooled spikes


@pytest.mark.parametrize('kind,input_kind', [
    ('conv', 'spikes'), ('conv', 'signed'), ('conv', synapses.pooled(4)),
    ('dense', 'spikes'), ('dense', synapses.pooled(4))])
def test_exact_bf16x3_equals_float32_to_rounding_of_the_sum(kind, input_kind):
  """Forward and weight gradient equal the float32 op's to 1e-6 of the result's scale (the
  order of the float32 sum differs); the input gradient is the float32 op's own."""
  rng = np.random.RandomState(1)
  if kind == 'conv':
    xs, ws = (3, 7, 6, 16), (3, 3, 16, 8)
  else:
    xs, ws = (20, 48), (48, 12)
  x = _inputs(rng, input_kind.split('/')[0], xs)
  w = jnp.asarray(rng.randn(*ws), jnp.float32) * jnp.exp2(
      jnp.asarray(rng.randint(-20, 20, ws[-1:]), jnp.float32))    # each output: its own scale
  g = jnp.asarray(rng.randn(*(xs[:-1] + ws[-1:])), jnp.float32)
  run = lambda precision: jax.vjp(jax.jit(lambda x, w: synapses.synapse(
      x, w, kind=kind, input_kind=input_kind, precision=precision)), x, w)
  (y32, vjp32), (y3, vjp3) = run('float32'), run('exact_bf16x3')
  scale = lambda a: jnp.max(jnp.abs(a), axis=tuple(range(a.ndim - 1)))   # per output channel
  assert float(jnp.max(jnp.abs(y3 - y32) / scale(y32))) < 1e-6
  (dx32, dw32), (dx3, dw3) = vjp32(g), vjp3(g)
  np.testing.assert_array_equal(dx3, dx32)
  assert float(jnp.max(jnp.abs(dw3 - dw32) / scale(dw32))) < 1e-6
  assert float(jnp.max(jnp.abs(dw32))) > 0


def test_exact_bf16x3_runs_bf16_products_with_float32_accumulation():
  x = jnp.zeros((2, 8, 8, 16), jnp.float32)
  w = jnp.zeros((3, 3, 16, 32), jnp.float32)
  f = lambda x, w: jnp.sum(synapses.synapse(x, w, kind='conv', input_kind='spikes',
                                            precision='exact_bf16x3'))
  text = jax.jit(jax.value_and_grad(f, argnums=1)).lower(x, w).as_text()
  convs = [line for line in text.splitlines() if 'stablehlo.convolution' in line]
  # forward and weight gradient: bf16 x bf16 -> f32, the parts stacked along the contracted
  # axis (48 = 3 x 16 input channels; 6 = 3 x 2 examples), one float32 output each
  fwd = r'\(tensor<2x8x8x48xbf16>, tensor<3x3x48x32xbf16>\) -> tensor<2x8x8x32xf32>'
  wgrad = r'\(tensor<6x8x8x16xbf16>, tensor<6x8x8x32xbf16>\) -> tensor<3x3x16x32xf32>'
  assert [bool(re.search(fwd, c)) or bool(re.search(wgrad, c)) for c in convs] == [True] * 2, convs


def test_exact_bf16x3_refuses_inputs_bf16_does_not_hold():
  x, w = jnp.zeros((2, 4)), jnp.zeros((4, 3))
  with pytest.raises(ValueError, match="exact_bf16x3 is not accepted for layer 'conv1': its "
                     r'input \(real\) is not exact in bfloat16'):
    synapses.synapse(x, w, kind='dense', input_kind='real', precision='exact_bf16x3',
                     layer='conv1')
  assert synapses.exact_dtype(synapses.pooled(9)) is None       # k / 9
  assert synapses.exact_dtype(synapses.pooled(256)) == jnp.bfloat16
  assert synapses.exact_dtype('signed') == jnp.int8


@pytest.mark.parametrize('input_kind,dtype', [
    ('spikes', jnp.int8), ('signed', jnp.int8), (synapses.pooled(4), jnp.bfloat16),
    ('real', jnp.float32)])
def test_the_weight_gradient_keeps_the_input_in_its_narrowest_exact_dtype(input_kind, dtype):
  """Before: the float32 input was kept (nn.Conv's autodiff residual)."""
  x, w = jnp.zeros((2, 6, 6, 8)), jnp.zeros((3, 3, 8, 4))
  res = saved_residuals(lambda x, w: synapses.synapse(x, w, kind='conv',
                                                      input_kind=input_kind).sum(), x, w)
  kept = [a.dtype for a, _ in res if a.shape == x.shape]
  assert kept == [dtype], res


def test_vgg9_input_kinds():
  model = models.vgg9(num_steps=2)
  assert model.input_kinds() == ('signed', 'spikes', 'pooled/4', 'spikes', 'pooled/4', 'spikes',
                                 'spikes', 'pooled/4', 'spikes')
  assert models.vgg9(num_steps=2, encoding='direct').input_kinds()[0] == 'real'
  assert set(models.vgg9(num_steps=2, neuron='relu').input_kinds()[1:]) == {'real'}
  vgg11 = models.vgg11(num_steps=2)
  assert vgg11.input_kinds()[8] == 'real'                           # global pool, shape unknown
  assert vgg11.input_kinds((32, 32, 3))[8] == synapses.pooled(4)    # 2x2 left at 32x32


@pytest.mark.full
def test_a_network_with_exact_bf16x3_trains_like_float32():
  """Three SGD steps of a small VGG-like net: losses, parameters and statistics within 1e-5."""
  layers = (models.conv(16), models.conv(16, 2), models.dense(32))
  x = jnp.asarray(np.random.RandomState(3).uniform(-1, 1, (6, 8, 8, 3)), jnp.float32)
  y = jnp.asarray([0, 1, 2, 3, 4, 5])
  results = {}
  for precision in ('float32', 'exact_bf16x3'):
    model = network.SpikingNetwork(layers=layers, num_classes=10, num_steps=4,
                                              synapse_precision=precision, sparse_conv='off',
                                              lif_kernel='off')
    losses = []
    v = model.init({'params': jax.random.PRNGKey(0), 'poisson': jax.random.PRNGKey(1)}, x,
                   train=False)
    params, stats = v['params'], v['batch_stats']

    @jax.jit
    def step(params, stats, i):
      def loss(p):
        out, upd = model.apply({'params': p, 'batch_stats': stats}, x, train=True,
                               rngs={'poisson': jax.random.fold_in(jax.random.PRNGKey(2), i)},
                               mutable=['batch_stats'])
        lp = jax.nn.log_softmax(out.logits)
        return -jnp.mean(lp[jnp.arange(6), y]), upd['batch_stats']
      (l, stats), g = jax.value_and_grad(loss, has_aux=True)(params)
      return jax.tree_util.tree_map(lambda p, g: p - 0.5 * g, params, g), stats, l

    for i in range(3):
      params, stats, l = step(params, stats, i)
      losses.append(float(l))
    results[precision] = (losses, params, stats)
  (l32, p32, s32), (l3, p3, s3) = results['float32'], results['exact_bf16x3']
  np.testing.assert_allclose(l3, l32, rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves((p3, s3)), jax.tree_util.tree_leaves((p32, s32))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(b))))
  assert l32[0] != l32[2]                          # it trains


def test_exact_bf16x3_only_where_the_input_is_exact():
  model = models.vgg9(num_steps=2, encoding='direct', synapse_precision='exact_bf16x3')
  x = jnp.zeros((1, 32, 32, 3))
  v = model.init({'params': jax.random.PRNGKey(0), 'poisson': jax.random.PRNGKey(1)}, x,
                 train=False)
  bound = model.bind(v)
  precisions = {b.name: b.synapse_precision for b in bound.blocks}
  assert precisions['conv1'] == 'float32' and precisions['conv2'] == 'exact_bf16x3'


def test_synapse_precision_auto_follows_the_target():
  config = configs.cifar10.get_config()
  cpu = config_lib.model_kwargs(config, 10, devices=jax.devices('cpu')[:1])

  class FakeTpu:
    platform = 'tpu'

  class FakeGpu:
    platform = 'gpu'
  tpu = config_lib.model_kwargs(config, 10, devices=[FakeTpu()])
  gpu = config_lib.model_kwargs(config, 10, devices=[FakeGpu()])
  assert cpu['synapse_precision'] == tpu['synapse_precision'] == 'float32'
  assert gpu['synapse_precision'] == 'exact_bf16x3'
  config.model.synapse_precision = 'bfloat16'
  assert config_lib.model_kwargs(config, 10, devices=[FakeTpu()])['dtype'] == jnp.bfloat16
