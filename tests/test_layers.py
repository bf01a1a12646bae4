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
                    'xla_cost', 'timing']),
    ('core math and its CPU kernels', ['coding', 'neurons', 'norms', 'synapses', 'kernels',
                                       'blocks']),
    ('network', ['network']),
    ('models', ['models']),
    ('the parts of a run', ['data', 'checkpoint', 'metrics', 'sharding', 'optim', 'records',
                            'preemption', 'runlock', 'config_lib', 'run_lib', 'evaluator',
                            'summary_writer']),
    ('training and analysis', ['train', 'analysis', 'plan_lib']),
    ('command lines', ['cli', 'main', 'analyze', 'plan']),
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


def import_graph(package_dir: str, package: str = 'bntt_jax'):
  """``{module: {(imported module, file, line)}}`` of every module under ``package_dir``
  (``package``'s directory), from the source: top-level and function-level imports alike,
  absolute and relative. ``from P import name`` is an edge to ``P.name`` where that is a
  module, else to ``P``; imports of other packages are left out."""
  modules = {}
  for root, _, files in os.walk(package_dir):
    for f in sorted(files):
      if f.endswith('.py'):
        rel = os.path.relpath(os.path.join(root, f), os.path.dirname(package_dir))[:-3]
        modules[rel.replace(os.sep, '.').removesuffix('.__init__')] = os.path.join(root, f)
  graph = {m: set() for m in modules}
  for module, path in modules.items():
    is_package = path.endswith('__init__.py')
    for node in ast.walk(ast.parse(open(path).read(), path)):
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ''
        if node.level:   # relative: from the importer's package, up level - 1
          parts = module.split('.') if is_package else module.split('.')[:-1]
          parts = parts[:len(parts) - node.level + 1]
          base = '.'.join(parts + ([base] if base else []))
        targets = [f'{base}.{a.name}' if f'{base}.{a.name}' in modules else base
                   for a in node.names]
      else:
        continue
      for t in targets:
        while t and t not in modules and '.' in t:   # import a.b.c of a module a.b
          t = t.rpartition('.')[0]
        if t in modules and t != module:
          graph[module].add((t, os.path.relpath(path, os.path.dirname(package_dir)),
                             node.lineno))
  return graph


def find_cycle(graph):
  """One import cycle of ``graph`` (:func:`import_graph`) as ``[(module, file, line)]``
  edges, or ``[]``."""
  state, stack = {}, []   # state: 1 on the path, 2 done

  def visit(m):
    state[m] = 1
    for t, file, line in sorted(graph[m]):
      stack.append((m, t, file, line))
      if state.get(t) == 1:
        start = next(i for i, e in enumerate(stack) if e[0] == t)
        return stack[start:]
      if t not in state:
        found = visit(t)
        if found:
          return found
      stack.pop()
    state[m] = 2
    return []

  for m in sorted(graph):
    if m not in state:
      found = visit(m)
      if found:
        return found
  return []


def _describe(cycle) -> str:
  return '\n'.join(f'{file}:{line}: {a} imports {b}' for a, b, file, line in cycle)


def test_the_package_has_no_import_cycle():
  """Every import counts, at the top of a module or inside a function (a function-level
  import still closes the cycle when it runs).

  Before: two cycles, ``main`` <-> ``plan`` (plan took ``DEFAULT_CONFIG`` and
  ``parse_flags`` from main; now ``bntt_jax.cli``) and ``data.digits`` <-> ``data`` (digits
  took ``Dataset`` from the package that imports it; now the package builds it)."""
  graph = import_graph(PACKAGE)
  assert sum(len(v) for v in graph.values()) > 100   # the scan sees the package's imports
  cycle = find_cycle(graph)
  assert not cycle, 'import cycle:\n' + _describe(cycle)


def test_the_cycle_check_finds_a_planted_cycle(tmp_path):
  """A package whose ``a`` imports ``sub.b`` at the top, ``sub.b`` imports ``sub`` (its
  package) inside a function, and ``sub/__init__`` imports ``a`` relatively."""
  pkg = tmp_path / 'pkg'
  (pkg / 'sub').mkdir(parents=True)
  (pkg / '__init__.py').write_text('')
  (pkg / 'a.py').write_text('from pkg.sub import b\n')
  (pkg / 'sub' / 'b.py').write_text('def f():\n  from pkg import sub\n  return sub\n')
  (pkg / 'sub' / '__init__.py').write_text('from .. import a\n')
  (pkg / 'c.py').write_text('import pkg.a\nimport os\n')
  graph = import_graph(str(pkg), 'pkg')
  assert {t for t, _, _ in graph['pkg.c']} == {'pkg.a'}
  cycle = find_cycle(graph)
  assert [(a, b) for a, b, _, _ in cycle] == [('pkg.a', 'pkg.sub.b'), ('pkg.sub.b', 'pkg.sub'),
                                               ('pkg.sub', 'pkg.a')], cycle
  assert 'pkg/sub/b.py:2: pkg.sub.b imports pkg.sub' in _describe(cycle)
  (pkg / 'sub' / '__init__.py').write_text('')   # the cycle broken
  assert find_cycle(import_graph(str(pkg), 'pkg')) == []
