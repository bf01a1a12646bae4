"""Event-driven convolutions (bntt_jax.kernels.sparse_conv) equal XLA's dense ones, in a network too."""

import ctypes
import os
import re
import shutil
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bntt_jax import blocks
from bntt_jax import errors
from bntt_jax import models
from bntt_jax.kernels import build
from bntt_jax.kernels import sparse_conv
from bntt_jax.kernels import winograd
import kernel_fixtures
from kernel_fixtures import isa  # pylint: disable=unused-import  (the fixture)
import step_fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _needs_kernels():
  kernel_fixtures.needs(sparse_conv)


def _operands(rng, n, h, w, c, d, density, values=(1.0,)):
  x = (rng.random((n, h, w, c)) < density) * rng.choice(values, (n, h, w, c))
  return (jnp.asarray(x, jnp.float32),
          jnp.asarray(rng.standard_normal((3, 3, c, d)), jnp.float32),
          jnp.asarray(rng.standard_normal((n, h, w, d)), jnp.float32))


@pytest.mark.parametrize('shape,density,values', [
    ((2, 5, 7, 16, 64), 0.3, (1.0,)),             # spikes; odd sizes: every border case
    ((3, 8, 8, 32, 128), 0.25, (1.0,)),
    ((2, 6, 4, 16, 64), 0.5, (0.25, 0.5, -1.0)),  # any values (pooled spikes, signed input)
    ((2, 4, 4, 16, 64), 0.0, (1.0,)),             # no spikes at all
    ((1, 3, 3, 16, 64), 1.0, (1.0,)),             # all spikes
])
def test_forward_and_gradients_equal_dense_convolution(shape, density, values, isa):
  """In each variant the CPU runs (the compiled program calls that variant's kernels)."""
  _needs_kernels()
  x, w, g = _operands(np.random.default_rng(0), *shape, density, values)
  assert f'bntt_sparse_conv_forward_{isa}' in jax.jit(sparse_conv.conv3x3).lower(x, w).as_text()
  ys, vjp_s = jax.vjp(jax.jit(sparse_conv.conv3x3), x, w)
  yd, vjp_d = jax.vjp(sparse_conv.dense_conv3x3, x, w)
  dx_s, dw_s = vjp_s(g)
  dx_d, dw_d = vjp_d(g)
  scale = lambda a: 1e-5 * max(1.0, float(jnp.max(jnp.abs(a))))
  np.testing.assert_allclose(ys, yd, rtol=0, atol=scale(yd))
  np.testing.assert_allclose(dw_s, dw_d, rtol=0, atol=scale(dw_d))
  np.testing.assert_allclose(dx_s, dx_d, rtol=0, atol=scale(dx_d))


@pytest.mark.parametrize('n', [7, 320])
def test_weight_gradient_over_groups_of_small_samples_equals_dense(n, isa):
  """The weight gradient sums a small image's nonzeros over a group of samples at a time
  (sparse_conv.cc, ChannelLists): at 3 % ones a 4x4 sample has under one nonzero per channel,
  so a group takes samples until the byte bound (28 such samples at 64 output channels) or its
  chunk's end (n 7: chunks of one sample; n 320: chunks of 40, groups cut by the bound).
  Spikes in even samples, other values in odd ones and no nonzero in every fifth: a group's
  lists mix binary and valued samples."""
  del isa
  _needs_kernels()
  rng = np.random.default_rng(5)
  on = rng.random((n, 4, 4, 16)) < 0.03
  value = np.where(np.arange(n)[:, None, None, None] % 2 == 0, 1.0,
                   rng.choice([0.25, 0.5, -1.0], on.shape))
  x = jnp.asarray(on * value * (np.arange(n) % 5 != 4)[:, None, None, None], jnp.float32)
  w = jnp.asarray(rng.standard_normal((3, 3, 16, 64)), jnp.float32)
  g = jnp.asarray(rng.standard_normal((n, 4, 4, 64)), jnp.float32)
  dw_s = jax.jit(lambda x, w, g: jax.vjp(sparse_conv.conv3x3, x, w)[1](g)[1])(x, w, g)
  dw_d = jax.vjp(sparse_conv.dense_conv3x3, x, w)[1](g)[1]
  np.testing.assert_allclose(dw_s, dw_d, rtol=0,
                             atol=1e-5 * max(1.0, float(jnp.max(jnp.abs(dw_d)))))


@pytest.mark.parametrize('density', [0.05, 0.9])   # below and above max_density: both branches
@pytest.mark.parametrize('values', [(1.0,), (0.25, 0.5, 0.75, 1.0)])   # spikes, pooled spikes
def test_density_switched_convolution_equals_dense(density, values, isa):
  """conv3x3_where_sparse: forward and both gradients equal XLA's whether the density picks the
  event-driven kernel or the dense forward, in each variant."""
  del isa
  _needs_kernels()
  x, w, g = _operands(np.random.default_rng(4), 3, 6, 6, 16, 64, density, values)
  assert bool(sparse_conv.event_driven(x, w.shape)) == (
      density < sparse_conv.max_density(w.shape))
  ys, vjp_s = jax.vjp(jax.jit(sparse_conv.conv3x3_where_sparse), x, w)
  yd, vjp_d = jax.vjp(sparse_conv.dense_conv3x3, x, w)
  scale = lambda a: 1e-5 * max(1.0, float(jnp.max(jnp.abs(a))))
  np.testing.assert_allclose(ys, yd, rtol=0, atol=scale(yd))
  for got, want in zip(vjp_s(g), vjp_d(g)):
    np.testing.assert_allclose(got, want, rtol=0, atol=scale(want))


def test_density_switch_is_a_conditional_around_the_forward_kernel():
  """The choice is made at run time, from the input's nonzeros: the compiled forward holds a
  conditional whose branches are the kernel and the dense forward (the Winograd kernel where it
  runs, with a tenth as the switch, else XLA's convolution, with a half); the weight gradient
  is the kernel's."""
  _needs_kernels()
  x, w, g = _operands(np.random.default_rng(5), 2, 4, 4, 16, 64, 0.2)
  fwd = jax.jit(sparse_conv.conv3x3_where_sparse).lower(x, w).as_text()
  assert 'stablehlo.case' in fwd or 'conditional' in fwd
  dense = 'bntt_winograd_conv' if winograd.available() else 'convolution'
  assert 'bntt_sparse_conv_forward' in fwd and dense in fwd
  assert sparse_conv.max_density(w.shape) == (0.1 if winograd.available() else 0.5)
  grad = jax.jit(lambda x, w, g: jax.vjp(sparse_conv.conv3x3_where_sparse, x, w)[1](g)).lower(
      x, w, g).as_text()
  assert 'bntt_sparse_conv_weight_grad' in grad


def test_supports_only_float32_3x3_with_channel_multiples():
  assert sparse_conv.supports((2, 8, 8, 64), (3, 3, 64, 128), jnp.float32)
  assert not sparse_conv.supports((2, 8, 8, 64), (3, 3, 64, 128), jnp.bfloat16)
  assert not sparse_conv.supports((2, 8, 8, 3), (3, 3, 3, 64), jnp.float32)     # C % 16
  assert not sparse_conv.supports((2, 8, 8, 64), (3, 3, 64, 32), jnp.float32)   # D % 64
  assert not sparse_conv.supports((2, 8, 8, 64), (5, 5, 64, 64), jnp.float32)


def _net(sparse, schedule='layer'):
  layers = (models.conv(64), models.conv(64, 2), models.conv(64), models.dense(32))
  from bntt_jax import network  # pylint: disable=g-import-not-at-top
  return network.SpikingNetwork(layers=layers, num_classes=10, num_steps=4,
                                schedule=schedule, sparse_conv=sparse)


@pytest.mark.parametrize('schedule', ['layer', 'step'])
def test_network_with_event_driven_convolutions_equals_dense_one(schedule):
  _needs_kernels()
  x = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (4, 8, 8, 3)), jnp.float32)
  y = jnp.arange(4) % 10
  (p_a, l_a, s_a, sp_a, g_a), (p_o, l_o, s_o, sp_o, g_o) = (
      step_fixtures.init_and_step(_net(sparse, schedule), x, y) for sparse in ('auto', 'off'))
  # The same parameters (names, shapes, initial values): checkpoints are interchangeable.
  jax.tree.map(np.testing.assert_array_equal, p_a, p_o)
  # conv2 takes conv1's spikes: event-driven; conv3 (pooled spikes) through the density
  # switch; conv1 (pixels) dense. Equal up to float32 rounding.
  assert any(s > 0 for s in jax.tree.leaves(jax.tree.map(jnp.sum, sp_a)))
  np.testing.assert_allclose(l_a, l_o, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), sp_a, sp_o)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), s_a, s_o)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), g_a, g_o)


def test_network_uses_the_kernels_where_the_input_is_spikes_or_pooled_spikes(monkeypatch):
  """conv2 (conv1's spikes) and conv3 (conv2's 2x2-pooled spikes) through the density switch;
  conv1 (pixels) never. Before the switch conv3 ran XLA's convolution only (measured: no
  pooled call); before the Winograd kernel conv2 ran the event-driven forward at any density."""
  _needs_kernels()
  calls = []
  real_switched = sparse_conv.conv3x3_where_sparse
  monkeypatch.setattr(sparse_conv, 'conv3x3_where_sparse',
                      lambda x, w: calls.append(x.shape) or real_switched(x, w))
  x = jnp.zeros((2, 8, 8, 3))
  for sparse, expected in (('auto', [(4 * 2, 8, 8, 64),    # T * B = 8
                                     (4 * 2, 4, 4, 64)]), ('off', [])):
    calls.clear()
    model = _net(sparse)
    model.init({'params': jax.random.PRNGKey(0), 'poisson': jax.random.PRNGKey(1)}, x,
               train=False)
    assert calls == expected, sparse


def test_fallback_when_unavailable_is_xla_convolution(monkeypatch):
  monkeypatch.setattr(sparse_conv, 'available', lambda: False)
  x = jnp.asarray(np.random.default_rng(2).random((2, 4, 4, 16)) < 0.3, jnp.float32)
  conv = blocks.Synapse('conv', 64, input_kind='spikes', sparse_conv=True)
  v = conv.init(jax.random.PRNGKey(0), x)
  np.testing.assert_array_equal(conv.apply(v, x),
                                sparse_conv.dense_conv3x3(x, v['params']['kernel']))


def test_bad_sparse_conv_setting_is_one_line_error():
  with pytest.raises(ValueError, match="sparse_conv 'yes' is not accepted: one of auto, off"):
    _net('yes').init({'params': jax.random.PRNGKey(0), 'poisson': jax.random.PRNGKey(1)},
                     jnp.zeros((1, 8, 8, 3)), train=False)


def test_kernels_are_deterministic(isa):
  del isa
  _needs_kernels()
  x, w, g = _operands(np.random.default_rng(3), 24, 8, 8, 32, 128, 0.25)
  f = jax.jit(lambda x, w, g: jax.vjp(sparse_conv.conv3x3, x, w)[1](g)[1])
  first = np.asarray(f(x, w, g))
  for _ in range(3):
    np.testing.assert_array_equal(f(x, w, g), first)


def test_bad_variant_setting_is_one_line_error(monkeypatch):
  monkeypatch.setenv('BNTT_KERNEL_ISA', 'avx3')
  with pytest.raises(errors.ConfigError, match=r"^BNTT_KERNEL_ISA 'avx3' is not accepted: "
                     r"one of auto, avx512, avx2, generic$"):
    sparse_conv.available()


def test_a_variant_the_cpu_cannot_run_is_refused_and_xla_runs(monkeypatch):
  """A forced variant the CPU lacks is not built: the reason names the setting and the missing
  flags, the blocks use XLA's convolution (a CPU without AVX2 or AVX-512, made up here)."""
  monkeypatch.setattr(build, '_loaded', {})
  monkeypatch.setattr(build, 'cpu_flags', lambda: frozenset({'sse2', 'avx'}))
  for forced, lacks in (('avx512', 'avx512f'), ('avx2', 'avx2, fma')):
    monkeypatch.setenv('BNTT_KERNEL_ISA', forced)
    assert not sparse_conv.available() and not winograd.available()
    assert sparse_conv.unavailable_reason() == f'BNTT_KERNEL_ISA={forced}: the CPU has no {lacks}'
    conv = blocks.Synapse('conv', 64, input_kind='spikes', sparse_conv=True)
    x = jnp.ones((1, 4, 4, 16))
    v = conv.init(jax.random.PRNGKey(0), x)
    assert 'bntt_sparse_conv' not in jax.jit(conv.apply).lower(v, x).as_text()
  monkeypatch.setenv('BNTT_KERNEL_ISA', 'auto')   # the best this made-up CPU runs
  assert build.variant() == 'generic'


@pytest.mark.skipif(not shutil.which('objdump'), reason='no objdump')
def test_avx2_build_holds_no_avx512_instruction():
  """Built on an AVX-512 host, the avx2 variant's libraries use no AVX-512 register (zmm,
  ymm16-31, the mask registers): they run on an AVX2-only CPU. The avx512 variant's do (so the
  check can fail), and each variant has its own cached library."""
  if build.missing('avx2') or not shutil.which(os.environ.get('CXX', 'g++')):
    pytest.skip('the CPU has no AVX2, or no C++ compiler')
  avx512 = re.compile(r'%zmm|%ymm(1[6-9]|2[0-9]|3[01])\b|%xmm(1[6-9]|2[0-9]|3[01])\b|%k[0-7]\b')
  for name in ('sparse_conv', 'winograd', 'lif'):
    path = build._build(name, 'avx2')  # pylint: disable=protected-access
    assert '_avx2_' in os.path.basename(path)
    text = subprocess.run(['objdump', '-d', path], capture_output=True, text=True,
                          check=True).stdout
    assert 'ymm' in text or name == 'lif', name
    assert not avx512.search(text), (name, avx512.search(text).group())
  if not build.missing('avx512'):
    path = build._build('sparse_conv', 'avx512')  # pylint: disable=protected-access
    assert path != build._build('sparse_conv', 'avx2')  # pylint: disable=protected-access
    assert avx512.search(subprocess.run(['objdump', '-d', path], capture_output=True,
                                        text=True, check=True).stdout)


def test_a_build_that_fails_its_self_test_is_refused(monkeypatch):
  """The self-test runs before the handlers are registered; a nonzero answer refuses the build
  with its message (a stand-in for a library that computes wrong numbers)."""
  _needs_kernels()
  monkeypatch.setattr(build, '_loaded', {})
  monkeypatch.setattr(build, '_self_test', lambda lib, symbol: (_ for _ in ()).throw(
      build._Refused(f'the build failed its self-test ({symbol}: forward: max error 3)')))  # pylint: disable=protected-access
  assert not sparse_conv.available()
  assert sparse_conv.unavailable_reason() == (
      'the build failed its self-test (BnttSparseConvSelfTest: forward: max error 3)')


@pytest.mark.parametrize('variant', build.VARIANTS)
def test_each_variants_self_test_passes(variant):
  """The libraries' own checks against a direct convolution in double, called directly."""
  if build.missing(variant) or not shutil.which(os.environ.get('CXX', 'g++')):
    pytest.skip(f'the CPU cannot run {variant}, or no C++ compiler')
  for name, symbol in (('sparse_conv', 'BnttSparseConvSelfTest'),
                       ('winograd', 'BnttWinogradSelfTest')):
    lib = ctypes.CDLL(build._build(name, variant))  # pylint: disable=protected-access
    msg = ctypes.create_string_buffer(512)
    assert getattr(lib, symbol)(msg, 512) == 0, msg.value
    isa_name = getattr(lib, symbol.replace('SelfTest', 'Isa'))
    isa_name.restype = ctypes.c_char_p
    assert isa_name() == variant.encode()


_AARCH64_MAIN = r'''
#include <cstdio>
extern "C" int BnttSparseConvSelfTest(char* msg, int len);
extern "C" int BnttWinogradSelfTest(char* msg, int len);
int main() {
  char a[512] = "", b[512] = "";
  const int ra = BnttSparseConvSelfTest(a, 512), rb = BnttWinogradSelfTest(b, 512);
  std::printf("%d %d %s %s\n", ra, rb, a, b);
  return ra || rb;
}
'''


@pytest.mark.full
@pytest.mark.skipif(not (shutil.which('aarch64-linux-gnu-g++') and shutil.which('qemu-aarch64')),
                    reason='no aarch64 cross compiler or qemu-user (Debian: g++-aarch64-linux-gnu, '
                    'qemu-user)')
def test_generic_variant_builds_for_aarch64_and_passes_its_self_tests_there(tmp_path):
  """The generic variant, cross-compiled with the variant's flags for aarch64 (NEON through the
  vector extensions) and run under qemu: both kernels' self-tests pass. (Emulated: it says the
  numbers are right on aarch64, not how fast they are.)"""
  flags = [f for f in build.compile_flags('generic') if f not in ('-shared', '-fPIC')]
  (tmp_path / 'main.cc').write_text(_AARCH64_MAIN)
  exe = tmp_path / 'selftest'
  subprocess.run(['aarch64-linux-gnu-g++', *flags, build.source('sparse_conv'),
                  build.source('winograd'), str(tmp_path / 'main.cc'), '-o', str(exe), '-static',
                  '-lpthread'], check=True, capture_output=True)
  r = subprocess.run(['qemu-aarch64', str(exe)], capture_output=True, text=True, check=False)
  assert (r.returncode, r.stdout) == (0, '0 0  \n'), r.stdout + r.stderr


@pytest.mark.full
@pytest.mark.parametrize('source,define', [('sparse_conv', []), ('winograd', ['-DWINOGRAD'])])
def test_kernels_alone_benchmark_builds_and_times_every_layer(source, define, tmp_path):
  """experiments/kernels_alone.cc, built as its header says (the variant build.py picks here),
  on 2 samples: one line per VGG9 layer and a total naming the variant."""
  variant = build.variant()
  flags = [f for f in build.compile_flags(variant) if f not in ('-shared', '-fPIC')]
  exe = tmp_path / source
  r = subprocess.run(['g++', *flags, '-I', os.path.dirname(build.source(source)),
                      f'-DKERNEL_SOURCE="{source}.cc"', *define,
                      os.path.join(ROOT, 'experiments', 'kernels_alone.cc'), '-o', str(exe),
                      '-lpthread'], capture_output=True, text=True, check=False)
  if r.returncode:
    pytest.skip(f'no C++ compiler for {variant}: {r.stderr[-300:]}')
  out = subprocess.run([str(exe), '0.05', '1', '2'], capture_output=True, text=True, check=True)
  lines = out.stdout.splitlines()
  assert [l.split()[0] for l in lines] == ['conv2', 'conv3', 'conv4', 'conv5', 'conv6', 'conv7',
                                           'all']
  assert f'({variant}, 0.05 ones, 2 samples, min of 1)' in lines[-1]
  bad = subprocess.run([str(exe), '2'], capture_output=True, text=True, check=False)
  assert bad.returncode == 2 and 'usage:' in bad.stderr
