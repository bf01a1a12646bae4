"""The package's layers: every import points down (or within its layer), read from the source.

Before this test, two imports ran the wrong way and it failed on both: ``default_config``
(the config schema, bottom layer) imported ``analysis.pipeline`` for its settings, so loading
any config file imported JAX, flax and the model stack; ``analysis.runs`` imported ``train``
for ``load_run``, ``load_data`` and ``eval_keys`` (now in ``run_lib``, beneath both).
"""
import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, 'bntt_jax')

# Bottom to top (README, Layout). A module may import its own layer and the layers below.
LAYERS = [
    ('foundation', ['errors', 'files', 'versions', 'vma', 'platform', 'default_config',
                  'xla_cost']),
    ('core math and its CPU kernels', ['coding', 'neurons', 'norms', 'synapses', 'kernels',
                                       'blocks']),
    ('network', ['network']),
    ('models', ['models']),
    ('the parts of a run', ['data', 'checkpoint', 'metrics', 'sharding', 'optim',
                            'preemption', 'runlock', 'config_lib', 'run_lib', 'evaluator',
                            'summary_writer']),
    ('training and analysis', ['train', 'analysis']),
    ('command lines', ['main', 'analyze', 'plan']),
]
# Within a layer, these pairs stay apart: training and analysis share what lies beneath them.
APART = [('train', 'analysis')]


def _unit(module: str) -> str:
  """``bntt_jax.data.pipeline`` -> ``data``: the top-level module or subpackage."""
  return module.split('.')[1] if module.count('.') else ''


def _level(unit: str) -> int:
  for i, (_, units) in enumerate(LAYERS):
    if unit in units:
      return i
  raise AssertionError(f'bntt_jax.{unit} is in no layer of tests/test_layers.py: add it')


def package_imports():
  """``[(importer unit, imported unit, file, line)]`` for every import of ``bntt_jax``
  modules in the package, at any depth (function-level imports count)."""
  found = []
  for root, _, files in os.walk(PACKAGE):
    for f in sorted(files):
      if not f.endswith('.py'):
        continue
      path = os.path.join(root, f)
      rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
      importer = _unit(rel.removesuffix('.__init__'))
      if not importer:
        continue
      for node in ast.walk(ast.parse(open(path).read(), path)):
        targets = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
          if node.module == 'bntt_jax':
            targets = [f'bntt_jax.{a.name}' for a in node.names]
          elif node.module.startswith('bntt_jax.'):
            targets = [node.module]
        elif isinstance(node, ast.Import):
          targets = [a.name for a in node.names if a.name.startswith('bntt_jax.')]
        for t in targets:
          if _unit(t) != importer:
            found.append((importer, _unit(t), os.path.relpath(path, ROOT), node.lineno))
  return found


def test_every_import_points_down_the_layers():
  imports = package_imports()
  assert len(imports) > 50   # the scan sees the package's imports
  upward = [f'{file}:{line}: {a} ({LAYERS[_level(a)][0]}) imports {b} '
            f'({LAYERS[_level(b)][0]})' for a, b, file, line in imports if _level(b) > _level(a)]
  apart = [f'{file}:{line}: {a} imports {b}' for a, b, file, line in imports
           if (a, b) in APART or (b, a) in APART]
  assert not upward and not apart, '\n'.join(upward + apart)


def test_every_module_has_a_layer():
  units = {f[:-3] for f in os.listdir(PACKAGE) if f.endswith('.py') and f != '__init__.py'}
  units |= {d for d in os.listdir(PACKAGE)
            if os.path.isfile(os.path.join(PACKAGE, d, '__init__.py'))}
  for u in units:
    _level(u)


@pytest.mark.parametrize('config', sorted(f for f in os.listdir(os.path.join(ROOT, 'configs'))
                                          if f.endswith('.py')))
def test_loading_a_config_file_imports_no_jax(config):
  code = ('import importlib.util, sys\n'
          f'spec = importlib.util.spec_from_file_location("c", "configs/{config}")\n'
          'm = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n'
          'c = m.get_config()\n'
          'assert c.analysis.e_mac_pj == 4.6\n'
          'print(sorted(x for x in ("jax", "flax", "optax", "tensorflow") if x in sys.modules))\n')
  r = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                     check=False)
  assert r.returncode == 0, r.stderr[-2000:]
  assert r.stdout.strip() == '[]', r.stdout
