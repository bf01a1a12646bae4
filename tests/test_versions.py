"""The tested JAX range (bntt_jax.versions): the same in the package's metadata, and one line
where a feature that reads changing JAX APIs meets a JAX outside it.

Before bntt_jax.versions, pyproject.toml and requirements.txt said ``jax>=0.7`` with no upper
bound, and with a JAX outside the range the Pallas kernels' choice (``lif_tpu.supports``) and
``xla_cost``'s cost analysis ran on regardless (the two tests that call them with a monkeypatched
``0.11.0`` returned True / a cost there instead of raising).
"""
import os
import re

import jax
import jax.numpy as jnp
import pytest

from bntt_jax import versions
from bntt_jax import xla_cost
from bntt_jax.errors import ConfigError
from bntt_jax.kernels import lif_tpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_parse_reads_the_release_numbers_and_stops_at_a_suffix():
  assert versions.parse('0.10.2') == (0, 10, 2)
  assert versions.parse('0.11.0.dev20260101') == (0, 11, 0)
  assert versions.parse('0.9.0rc1') == (0, 9, 0)
  assert versions.parse('1.0') == (1, 0)


@pytest.mark.parametrize('version, tested', [
    ('0.6.2', False), ('0.7', True), ('0.7.0', True), ('0.10.2', True), ('0.10.99', True),
    ('0.11.0', False), ('0.11.0.dev20260101', False), ('1.0.0', False)])
def test_the_range_is_half_open(version, tested):
  assert versions.tested_range() == '>=0.7,<0.11'
  assert versions.is_tested(version) is tested


def test_the_installed_jax_is_in_the_range_and_passes():
  jax_version, lib_version = versions.installed()
  assert jax_version == jax.__version__
  assert versions.is_tested(jax_version) and versions.is_tested(lib_version)
  versions.require_tested_jax('anything')   # no error


@pytest.mark.parametrize('installed, named', [(('0.11.0', '0.11.0'), "installed jax '0.11.0'"),
                                              (('0.10.2', '0.6.0'), "installed jaxlib '0.6.0'")])
def test_outside_the_range_is_one_line_naming_the_version_and_the_range(installed, named):
  with pytest.raises(ConfigError) as e:
    versions.require_tested_jax('the Pallas TPU LIF kernels', installed)
  message = str(e.value)
  assert '\n' not in message
  assert message.startswith(named + ' is not accepted: jax>=0.7,<0.11 is the tested range for '
                            'the Pallas TPU LIF kernels')
  assert 'pip install -c constraints.txt' in message


def test_an_unknown_distribution_is_not_checked():
  versions.require_tested_jax('x', (None, None))


def test_the_package_metadata_bounds_jax_to_the_same_range():
  """pyproject.toml's dependencies and [tpu] extra, requirements.txt and requirements-tpu.txt
  bound jax (and jaxlib) by TESTED_JAX; constraints.txt's pin lies in it."""
  spec = versions.tested_range()
  texts = {f: open(os.path.join(ROOT, f)).read()
           for f in ('pyproject.toml', 'requirements.txt', 'requirements-tpu.txt')}
  assert f'"jax{spec}"' in texts['pyproject.toml'] and f'"jaxlib{spec}"' in texts['pyproject.toml']
  assert f'"jax[tpu]{spec}"' in texts['pyproject.toml']
  assert re.search(rf'^jax{re.escape(spec)}$', texts['requirements.txt'], re.M)
  assert re.search(rf'^jaxlib{re.escape(spec)}$', texts['requirements.txt'], re.M)
  assert re.search(rf'^jax\[tpu\]{re.escape(spec)}$', texts['requirements-tpu.txt'], re.M)
  pins = dict(re.findall(r'^(jax|jaxlib)==(\S+)$',
                         open(os.path.join(ROOT, 'constraints.txt')).read(), re.M))
  assert set(pins) == {'jax', 'jaxlib'} and all(versions.is_tested(v) for v in pins.values())


@pytest.fixture
def untested_jax(monkeypatch):
  monkeypatch.setattr(versions, 'installed', lambda: ('0.11.0', '0.11.0'))


def test_the_pallas_kernels_choice_refuses_an_untested_jax_in_one_line(untested_jax):
  x = jax.ShapeDtypeStruct((4, 8, 16, 16, 128), jnp.float32)
  mul = jax.ShapeDtypeStruct((4, 1, 128), jnp.float32)
  with pytest.raises(ConfigError, match=r"^installed jax '0\.11\.0' is not accepted: .*"
                     r'Pallas TPU LIF kernels \(--config\.model\.lif_kernel=off'):
    lif_tpu.supports(x, mul, mul)


def test_the_pallas_kernels_choice_is_unchanged_with_the_tested_jax():
  x = jax.ShapeDtypeStruct((4, 8, 16, 16, 128), jnp.float32)
  mul = jax.ShapeDtypeStruct((4, 1, 128), jnp.float32)
  assert lif_tpu.supports(x, mul, mul)


def test_xla_cost_refuses_an_untested_jax_before_its_private_apis(untested_jax):
  with pytest.raises(ConfigError, match=r"^installed jax '0\.11\.0' is not accepted: .*"
                     r'bntt_jax\.xla_cost'):
    xla_cost._xla_cost('HloModule m\n\nENTRY e {\n  ROOT p = f32[2] parameter(0)\n}\n')
