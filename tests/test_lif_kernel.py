"""The LIF kernel (bntt_jax.kernels.lif) equals the lax.scan recurrence, in a network too."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import configs.cifar10
from bntt_jax import config_lib
from bntt_jax import default_config
from bntt_jax import kernels
from bntt_jax import models
from bntt_jax import network
from bntt_jax import neurons
from bntt_jax import plan_lib
from bntt_jax.kernels import lif as lif_kernel
import kernel_fixtures
from kernel_fixtures import isa  # pylint: disable=unused-import  (the fixture)
import step_fixtures


def _needs_kernel():
  kernel_fixtures.needs(lif_kernel)


def _operands(seed, shape, groups):
  k = jax.random.split(jax.random.PRNGKey(seed), 4)
  t, c = shape[0], shape[-1]
  x = jax.random.normal(k[0], shape) * 0.8 + 0.35
  mul = 1.0 + 0.3 * jax.random.normal(k[1], (t, groups, c))
  add = 0.1 * jax.random.normal(k[2], (t, groups, c))
  return x, mul, add, jax.random.normal(k[3], shape)


@pytest.mark.parametrize('surrogate', sorted(neurons.SURROGATES))
@pytest.mark.parametrize('shape,groups', [
    ((6, 4, 5, 3, 24), 1),    # conv-like [T, B, H, W, C], C not a multiple of 16
    ((5, 6, 7, 2), 2),        # two statistics groups, tiny channel count
    ((25, 3, 1030), 1),       # dense-like [T, B, F], rows longer than a block
    ((3, 70, 4, 4, 64), 1),   # more rows than the kernel's fixed ranges
    ((1, 5, 40), 1),          # one step
])
def test_spikes_and_gradients_equal_the_scan(surrogate, shape, groups):
  _needs_kernel()
  p = neurons.LIFParams(0.9, 1.1, neurons.make_surrogate(surrogate))
  x, mul, add, g = _operands(0, shape, groups)
  s_k, vjp_k = jax.vjp(jax.jit(lambda *a: lif_kernel.lif_affine_sequence(*a, p)), x, mul, add)
  s_s, vjp_s = jax.vjp(lambda *a: neurons.lif_affine_sequence(*a, p), x, mul, add)
  assert 0.05 < float(jnp.mean(s_s)) < 0.95            # the test exercises both outcomes
  # The forward uses XLA's fused multiply-adds: spikes are equal, not merely close.
  np.testing.assert_array_equal(s_k, s_s)
  for a, b in zip(vjp_k(g), vjp_s(g)):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * max(1.0, float(jnp.max(jnp.abs(b)))))


@pytest.mark.parametrize('shape,groups', [
    ((6, 4, 5, 3, 24), 1),
    pytest.param((3, 70, 4, 4, 64), 1, marks=pytest.mark.full),   # ~10 s a variant
])
def test_spikes_and_gradients_equal_the_scan_in_each_variant(shape, groups, isa):
  """The same check in each instruction-set variant the CPU runs (lif.cc has no hand-written
  vectors; its flags differ: avx512 -march=native, avx2 without AVX-512, generic none)."""
  assert f'bntt_lif_forward_{isa}' in jax.jit(
      lambda x, m, a: lif_kernel.lif_affine_sequence(x, m, a, neurons.LIFParams())).lower(
          *_operands(0, shape, groups)[:3]).as_text()
  test_spikes_and_gradients_equal_the_scan('triangle', shape, groups)


def test_gradient_is_deterministic():
  _needs_kernel()
  p = neurons.LIFParams()
  x, mul, add, g = _operands(1, (10, 64, 8, 8, 32), 1)
  f = jax.jit(lambda x, m, a, g: jax.vjp(lambda *z: lif_kernel.lif_affine_sequence(*z, p),
                                         x, m, a)[1](g))
  first = [np.asarray(v) for v in f(x, mul, add, g)]
  for _ in range(3):
    for a, b in zip(f(x, mul, add, g), first):
      np.testing.assert_array_equal(a, b)


def test_supports_only_float32_and_whole_groups():
  x, mul, add, _ = _operands(2, (3, 4, 8), 2)
  assert lif_kernel.supports(x, mul, add)
  assert not lif_kernel.supports(x.astype(jnp.bfloat16), mul, add)
  assert not lif_kernel.supports(x[:, :3], mul, add)   # 3 examples in 2 groups
  assert not lif_kernel.supports(x[:2], mul, add)      # 2 steps, 3 steps' affine maps
  assert not lif_kernel.supports(x, mul[..., :4], add[..., :4])


def _net(lif, schedule='layer', dtype=None):
  layers = (models.conv(16), models.conv(16, 2), models.dense(24))
  return network.SpikingNetwork(layers=layers, num_classes=10, num_steps=5,
                                schedule=schedule, lif_kernel=lif, dtype=dtype)


# bfloat16 synapses: the kernel widens their output as the scan does; gradients reach the
# synapses through bfloat16, so they agree to bfloat16 rounding.
@pytest.mark.full
@pytest.mark.parametrize('dtype,rtol', [(None, 1e-4), (jnp.bfloat16, 2e-2)])
def test_network_with_the_kernel_equals_the_scan(dtype, rtol):
  _needs_kernel()
  x = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (6, 8, 8, 3)), jnp.float32)
  y = jnp.arange(6) % 10
  (_, l_a, s_a, sp_a, g_a), (_, l_o, s_o, sp_o, g_o) = (
      step_fixtures.init_and_step(_net(lif, dtype=dtype), x, y) for lif in ('auto', 'off'))
  assert all(float(jnp.sum(s)) > 0 for s in jax.tree.leaves(sp_a))
  np.testing.assert_allclose(l_a, l_o, rtol=1e-6)
  jax.tree.map(np.testing.assert_array_equal, sp_a, sp_o)   # spike counts: equal
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), s_a, s_o)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 1e-2), g_a, g_o)


@pytest.mark.parametrize('lif,schedule,expected', [
    ('auto', 'layer', 3), ('off', 'layer', 0), ('auto', 'step', 0)])
def test_network_uses_the_kernel_in_the_layer_schedule(monkeypatch, lif, schedule, expected):
  _needs_kernel()
  calls = []
  real = lif_kernel.lif_affine_sequence
  monkeypatch.setattr(lif_kernel, 'lif_affine_sequence',
                      lambda *a: calls.append(a[0].shape) or real(*a))
  model, x, rngs = _net(lif, schedule), jnp.zeros((2, 8, 8, 3)), {'poisson': jax.random.PRNGKey(1)}
  v = model.init({'params': jax.random.PRNGKey(0), **rngs}, x, train=False)   # the layer way
  calls.clear()
  model.apply(v, x, train=True, rngs=rngs, mutable=['batch_stats'])
  assert len(calls) == expected


def test_unavailable_kernel_is_a_clear_error_and_the_network_falls_back(monkeypatch):
  monkeypatch.setattr(lif_kernel, 'available', lambda: False)
  monkeypatch.setattr(lif_kernel, 'unavailable_reason', lambda: 'no compiler')
  x, mul, add, _ = _operands(3, (3, 4, 8), 1)
  with pytest.raises(RuntimeError, match='LIF kernel is not available here: no compiler'):
    lif_kernel.lif_affine_sequence(x, mul, add, neurons.LIFParams())
  v = _net('auto').init({'params': jax.random.PRNGKey(0), 'poisson': jax.random.PRNGKey(1)},
                        jnp.zeros((2, 8, 8, 3)), train=False)
  assert 'batch_stats' in v


def test_bad_lif_kernel_setting_is_one_line_error():
  with pytest.raises(ValueError, match="lif_kernel 'yes' is not accepted: one of auto, tpu, off"):
    _net('yes').init({'params': jax.random.PRNGKey(0), 'poisson': jax.random.PRNGKey(1)},
                     jnp.zeros((1, 8, 8, 3)), train=False)


def test_what_runs_the_kernel_ops_is_reported_per_kind():
  """``config_lib.kernels_in_use``: what a run records in summary.json."""
  _needs_kernel()
  config = default_config.get_config()
  config.model.arch = 'vgg9'
  cpu = jax.devices('cpu')[0]
  one = config_lib.create_model(config, 10, devices=[cpu])
  # The variant each kernel built as: the widest this CPU runs ($BNTT_KERNEL_ISA unset).
  sparse, wino = (f'kernel ({mod.variant()})' if mod.available() else (
      f'xla (unavailable: {mod.unavailable_reason()})')
                  for mod in (kernels.sparse_conv, kernels.winograd))
  assert config_lib.kernels_in_use(one) == {'sparse_conv': sparse, 'winograd': wino,
                                            'lif': f'kernel ({kernels.build.variant()})'}
  assert kernels.build.variant() in kernels.build.VARIANTS
  eight = config_lib.create_model(config, 10, devices=[cpu] * 8)
  assert set(config_lib.kernels_in_use(eight).values()) == {
      'xla (off: the setting, or not one CPU device)'}
  config.model.schedule, config.model.dtype = 'step', 'bfloat16'
  assert config_lib.kernels_in_use(config_lib.create_model(config, 10, devices=[cpu])) == {
      'sparse_conv': 'xla (no float32 convolution of spikes)',
      'winograd': 'xla (no float32 convolution of spikes)',
      'lif': 'xla (no LIF layer of the layer schedule)'}


def test_the_kernels_command_builds_them_and_says_which_this_machine_can_use():
  """Each kernel's line names the variant it built as; a bad $BNTT_KERNEL_ISA is one line on
  stderr and exit status 2."""
  _needs_kernel()
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  env.pop('BNTT_KERNEL_ISA', None)
  r = subprocess.run([sys.executable, '-m', 'bntt_jax.kernels'], capture_output=True, text=True,
                     check=False, env=env)
  lines = r.stdout.splitlines()
  variant = kernels.build.variant()
  assert lines[2] == f'lif: available ({variant})', r.stderr[-2000:]
  for line, (name, mod) in zip(lines, [('sparse_conv', kernels.sparse_conv),
                                       ('winograd', kernels.winograd)]):
    assert line == (f'{name}: available ({variant})' if mod.available() else
                    f'{name}: not available ({mod.unavailable_reason()})')
  assert r.returncode == (0 if kernels.sparse_conv.available() else 1)
  r = subprocess.run([sys.executable, '-m', 'bntt_jax.kernels'], capture_output=True, text=True,
                     check=False, env=dict(env, BNTT_KERNEL_ISA='sse'))
  assert (r.returncode, r.stdout, r.stderr) == (
      2, '', "error: BNTT_KERNEL_ISA 'sse' is not accepted: one of auto, avx512, avx2, generic\n")


def test_the_pure_jax_recurrence_holds_at_most_15_percent_more_than_the_kernel():
  """VGG9's compiled train step on one CPU device (batch 4, T 4): the temporaries with
  ``lif_kernel='off'`` (the pure-JAX recurrence, what GPUs run) within 15 % of the kernel's.

  Measured before (3e7e6cc): 98.2 MiB against 51.4 (1.91x; 1.79 GiB against 0.67 at batch 16,
  T 25). XLA:CPU created each scan's zero-initialised buffers (the spikes, the backward's
  recomputed membranes and input gradient) at the program's start, so every layer's were live
  through the whole step, and it copied ``x`` into a layout of its own for a unit group axis.
  After: 54.7 MiB (1.06x)."""
  _needs_kernel()
  temps = {}
  for lif in ('auto', 'off'):
    config = configs.cifar10.get_config()
    config.model.timesteps = config.eval.timesteps = 4
    config.train.batch_size = config.eval.batch_size = 4
    config.model.lif_kernel = lif
    s = plan_lib.setup(config, jax.devices('cpu')[:1])
    assert config_lib.kernels_in_use(s.model)['lif'] == (
        f'kernel ({lif_kernel.variant()})' if lif == 'auto'
        else 'xla (off: the setting, or not one CPU device)')
    temps[lif] = plan_lib.compile_train_step(s, 4).memory_analysis().temp_size_in_bytes
  assert temps['off'] <= 1.15 * temps['auto'], temps
