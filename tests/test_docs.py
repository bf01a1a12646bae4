"""The documentation's links, paths and command lines point at things that exist.

Pages: README.md, CONTRIBUTING.md and docs/**/*.md. Checked, reading the files only (no JAX
import, no compile):

* every relative Markdown link ``[text](path#anchor)``: the file exists, and the anchor is a
  heading of that page (GitHub's slugs); ``[text](#anchor)``: a heading of the same page;
* every repository path named in backticks (``experiments/x.py``, ``tests/test_x.py::test_y``,
  ``configs/x.py``, ``docs/x.md``, ``bntt_jax/...``, ``shared/...``, ``../...``) exists;
* every command line, in a fenced block or inline code, that runs ``python -m bntt_jax.X``,
  ``python -m pytest`` or ``python experiments/X.py``: the module or script exists, and each of
  its ``--flags`` is one that entry point defines (absl ``flags.DEFINE_*`` and
  ``config_flags.DEFINE_config_file``, argparse ``add_argument``, pytest's ``addoption`` in
  tests/conftest.py: read from their source with ``ast``, from the entry point's file and the
  package modules it imports); ``--config=FILE`` names a file, and ``--config.KEY=VALUE`` (and
  any inline ``config.KEY``) a key of ``bntt_jax.default_config.get_config()`` (any key below
  the free-form dicts, ``config_lib.FREE_FORM``);
* an inline flag with no command around it (``--search=configured``) is one that some entry
  point defines.

Run first on the README of cad1613 (1,229 lines) and docs/BNTT_SPEC.md, it failed on two paths
outside the repository, and on nothing else of ours: `shared/bench`, named three times as the
source of the peers' benchmark and figures, and the spec's `../seed/bntt_supplementary.txt`
(the pages now say where they come from). Every link, anchor and flag of that README
was right (its one other hit, SLURM's `--signal`, was not ours: an inline flag now stands in its
command, `sbatch --signal`). Planted in a temporary copy, a broken link, anchor, path, flag,
config key and script each fail (:func:`test_a_planted_error_of_each_kind_is_caught`); so did
`docs/analysis.md` for `docs/analyses.md` and `--config.train.epoch=5` planted in a copy of the
repository's README (both named in the failure). experiments/reproduce.py,
configs/fashion_mnist.py and docs/results/fashion_mnist.md, which the pages name, come with the
results part of issue 29: until they land, the checks of the pages that name them fail.
"""
import ast
import functools
import glob
import os
import re
import shlex

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Pages that must exist (their links are checked like any other's).
REQUIRED = ('README.md', 'CONTRIBUTING.md', 'docs/results/fashion_mnist.md')
PATH_PREFIXES = ('bntt_jax/', 'experiments/', 'tests/', 'configs/', 'docs/', '.ci/', 'shared/',
                 '../')
# pytest's own long options a page may use (the rest of a pytest command's flags are ours).
PYTEST_OWN = {'--co', '--collect-only', '--lf', '--last-failed', '--durations', '--maxfail',
              '--tb', '--pdb', '--exitfirst'}
# Placeholders a page may write inside a path or command (`runs/<config>`, `DIR`, `...`).
PLACEHOLDER = re.compile(r'[<>*{}]|\.\.\.|\bN\b')


def pages(root=ROOT):
  found = [os.path.join(root, f) for f in ('README.md', 'CONTRIBUTING.md')
           if os.path.exists(os.path.join(root, f))]
  return found + sorted(glob.glob(os.path.join(root, 'docs', '**', '*.md'), recursive=True))


# --- Markdown -----------------------------------------------------------------------------

FENCE = re.compile(r'^```.*?^```', re.M | re.S)
INLINE = re.compile(r'`([^`\n]+)`')
LINK = re.compile(r'(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)|!\[[^\]\n]*\]\(([^)\s]+)\)')


def _prose(text: str) -> str:
  """The text outside fenced code blocks."""
  return FENCE.sub('', text)


def slug(heading: str) -> str:
  """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces ->
  hyphens."""
  h = re.sub(r'`|\*\*|__|\[([^\]]*)\]\([^)]*\)', r'\1', heading.strip()).lower()
  h = re.sub(r'[^\w\- ]', '', h)
  return h.replace(' ', '-')


def anchors(text: str) -> set:
  seen, out = {}, set()
  for line in _prose(text).splitlines():
    m = re.match(r'#{1,6}\s+(.*?)\s*#*\s*$', line)
    if m:
      s = slug(m.group(1))
      n = seen.get(s, 0)
      seen[s] = n + 1
      out.add(s if n == 0 else f'{s}-{n}')
  return out


def check_links(page: str, root: str = ROOT):
  text = open(page).read()
  bad = []
  for m in LINK.finditer(_prose(text)):
    target = m.group(1) or m.group(2)
    if re.match(r'[a-z][a-z0-9+.-]*:', target):     # http:, https:, mailto:
      continue
    path, _, anchor = target.partition('#')
    where = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
    if not os.path.exists(where):
      bad.append(f'link {target}: no file {os.path.relpath(where, root)}')
      continue
    if not os.path.abspath(where).startswith(os.path.abspath(root) + os.sep):
      bad.append(f'link {target}: outside the repository')
      continue
    if anchor and where.endswith('.md') and anchor not in anchors(open(where).read()):
      bad.append(f'link {target}: no heading #{anchor} in {os.path.relpath(where, root)}')
  return bad


def check_paths(page: str, root: str = ROOT):
  bad = []
  for code in INLINE.findall(_prose(open(page).read())):
    for token in code.split():
      token = token.strip('(),;:')
      if not token.startswith(PATH_PREFIXES) or PLACEHOLDER.search(token.replace('../', '', 1)):
        continue
      path = token.split('::')[0]
      if path.startswith('configs/') and ':' in path:     # configs/X.py:variant
        error = config_ref_error(path)
        if error:
          bad.append(f'path {token}: {error}')
        continue
      base = os.path.dirname(page) if token.startswith('../') else root
      if not os.path.exists(os.path.join(base, path)):
        bad.append(f'path {token}: not in the repository')
  return bad


# --- entry points and their flags -----------------------------------------------------------

def _call_name(node: ast.Call) -> str:
  f = node.func
  return f.attr if isinstance(f, ast.Attribute) else getattr(f, 'id', '')


def _defined_in(path: str):
  """``(flag names, bool flag names)`` defined in a Python file."""
  names, bools = set(), set()
  for node in ast.walk(ast.parse(open(path).read(), path)):
    if not isinstance(node, ast.Call) or not node.args:
      continue
    first = node.args[0]
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
      continue
    name = _call_name(node)
    if name.startswith('DEFINE_'):                       # absl; DEFINE_config_file too
      names.add('--' + first.value)
      if name in ('DEFINE_bool', 'DEFINE_boolean'):
        bools.add('--' + first.value)
    elif name in ('add_argument', 'addoption'):          # argparse; pytest
      names.update(a.value for a in node.args
                   if isinstance(a, ast.Constant) and str(a.value).startswith('--'))
  # An entry point that takes --config.KEY=VALUE overrides without a --config flag
  # (bntt_jax.analyze: they apply to each run's own config) names the prefix itself.
  source = open(path).read()
  if "'--config.'" in source or '"--config."' in source:
    names.add('--config.')
  return names, bools


def _package_imports(path: str):
  out = []
  for node in ast.walk(ast.parse(open(path).read(), path)):
    mods = []
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      if node.module == 'bntt_jax':
        mods = [f'bntt_jax.{a.name}' for a in node.names]
      elif node.module.startswith('bntt_jax'):
        mods = [node.module] + [f'{node.module}.{a.name}' for a in node.names]
    elif isinstance(node, ast.Import):
      mods = [a.name for a in node.names if a.name.startswith('bntt_jax')]
    out.extend(mods)
  return out


def module_file(module: str, root: str = ROOT):
  base = os.path.join(root, *module.split('.'))
  for f in (base + '.py', os.path.join(base, '__main__.py')):
    if os.path.exists(f):
      return f
  return None


@functools.lru_cache(maxsize=None)
def flags_of(entry: str, root: str = ROOT):
  """The flags ``entry`` (``bntt_jax.main``, ``experiments/x.py``, ``pytest``) accepts, from
  its file and the package modules it imports; None when it does not exist."""
  extra = set()
  if entry == 'pytest':
    files = [os.path.join(root, 'tests', 'conftest.py')]
    extra = PYTEST_OWN
  else:
    first = module_file(entry, root) if not entry.endswith('.py') else (
        os.path.join(root, entry) if os.path.exists(os.path.join(root, entry)) else None)
    if first is None:
      return None
    files = [first] + [f for f in (module_file(m, root) for m in _package_imports(first)) if f]
  names, bools = set(), set()
  for f in files:
    n, b = _defined_in(f)
    names |= n
    bools |= b
  return frozenset(names | extra | {'--no' + b[2:] for b in bools} | {'--help'})


def all_entries(root: str = ROOT):
  mains = [os.path.relpath(f, root)[:-3].replace(os.sep, '.')
           for f in glob.glob(os.path.join(root, 'bntt_jax', '**', '*.py'), recursive=True)
           if 'DEFINE_' in open(f).read() or f.endswith('__main__.py')]
  mains = [m.removesuffix('.__main__') for m in mains]
  scripts = [os.path.relpath(f, root) for f in glob.glob(os.path.join(root, 'experiments', '*.py'))]
  return mains + scripts + ['pytest']


@functools.lru_cache(maxsize=None)
def _config_tree():
  import ml_collections  # pylint: disable=g-import-not-at-top  # plain data, no JAX
  from bntt_jax import config_lib, default_config  # pylint: disable=g-import-not-at-top
  return default_config.get_config(), config_lib.FREE_FORM, ml_collections.ConfigDict


def config_key_exists(key: str) -> bool:
  config, free, dict_type = _config_tree()
  node, parts = config, key.split('.')
  for i, part in enumerate(parts):
    if '.'.join(parts[:i]) in free:
      return True
    if not isinstance(node, dict_type) or part not in node:
      return False
    node = node[part]
  return True


def _commands(text: str):
  """Command lines: each fenced block's lines (``\\``-continuations joined), and inline code
  spans that hold ``python``."""
  out = []
  for block in FENCE.findall(text):
    body = block.split('\n', 1)[1].rsplit('```', 1)[0]
    out.extend(l for l in body.replace('\\\n', ' ').splitlines() if 'python' in l)
  out.extend(c for c in INLINE.findall(_prose(text)) if re.search(r'\bpython3?\b', c))
  return out


def _split(line: str):
  line = line.split(' #', 1)[0]
  try:
    return shlex.split(line)
  except ValueError:
    return line.split()


def parse_command(line: str):
  """``(entry, flags)``: the entry point a command runs and the flags given to it; entry None
  when the line runs none of ours."""
  tokens = _split(line)
  for i, t in enumerate(tokens):
    if not re.search(r'(^|/)python3?$', t):
      continue
    rest = tokens[i + 1:]
    if rest[:1] == ['-m'] and len(rest) > 1:
      entry, args = rest[1], rest[2:]
      if entry == 'pytest':
        return 'pytest', args
      if entry.startswith('bntt_jax'):
        return entry, args
      return None, []
    if rest and rest[0].startswith('experiments/'):
      return rest[0], rest[1:]
    return None, []
  return None, []


def check_flag(flag: str, known) -> str:
  name, _, value = flag.partition('=')
  if name.startswith(('--config.', '--noconfig.')) and known & {'--config', '--config.'}:
    key = name.split('.', 1)[1]
    if re.search(r'[A-Z<>]', key):                      # --config.KEY=VALUE
      return ''
    return '' if config_key_exists(key) else f'config key {key}: not in default_config'
  if name.startswith('--xla_'):                          # XLA's own (XLA_FLAGS)
    return ''
  if name not in known:
    return f'flag {name}: not defined'
  if name == '--config' and value and not PLACEHOLDER.search(value):
    return config_ref_error(value)
  return ''


def config_ref_error(value: str) -> str:
  """'' where ``value`` names a config file, or ``file:variant`` with a variant the file's
  ``get_config(arg)`` accepts (``smoke``, or a ``name=`` of its ``default_config.variant``
  call); ``configs/X.py`` is a placeholder."""
  path, _, variant = value.partition(':')
  if os.path.basename(path) == 'X.py':
    return ''
  if not os.path.exists(os.path.join(ROOT, path)):
    return f'--config={value}: no such file'
  if variant and variant != 'smoke':
    source = open(os.path.join(ROOT, path)).read()
    if not re.search(r'default_config\.variant\([^)]*\b' + re.escape(variant) + r'=', source):
      return f'--config={value}: {path} has no variant {variant!r}'
  return ''


def check_commands(page: str, root: str = ROOT):
  text = open(page).read()
  bad = []
  for line in _commands(text):
    entry, args = parse_command(line)
    if entry is None:
      continue
    known = flags_of(entry, root)
    if known is None:
      bad.append(f'{entry}: no such module or script (in: {line.strip()})')
      continue
    for a in args:
      if a.startswith('--'):
        why = check_flag(a, known)
        if why:
          bad.append(f'{entry} {why} (in: {line.strip()})')
  # Inline flags and config keys outside any command.
  every = frozenset().union(*(flags_of(e, root) or () for e in all_entries(root)))
  for code in INLINE.findall(_prose(text)):
    words = code.split()
    # A command of another program (`sbatch --signal`, `pip install -e .`) is not ours.
    if re.search(r'\bpython3?\b', code) or not words[0].startswith(('--', 'config.')):
      continue
    for token in words:
      if token.startswith('--') and len(token) > 2 and not PLACEHOLDER.search(token):
        why = check_flag(token.rstrip(',;:)'), every | {'--config'})
        if why:
          bad.append(f'inline {token}: {why}')
      m = re.match(r'config\.([a-z_][\w.]*[a-z_\d])', token)
      if m and re.fullmatch(r'json|py|md|ya?ml|txt', m.group(1)):   # config.json: a file
        continue
      if m and not config_key_exists(m.group(1)):
        bad.append(f'inline {token}: config key {m.group(1)} not in default_config')
  return bad


# --- the tests ----------------------------------------------------------------------------

def test_the_required_pages_exist():
  missing = [p for p in REQUIRED if not os.path.exists(os.path.join(ROOT, p))]
  assert not missing
  assert len(pages()) >= 8


@pytest.mark.parametrize('page', [os.path.relpath(p, ROOT) for p in pages()])
def test_every_link_path_and_flag_exists(page):
  path = os.path.join(ROOT, page)
  bad = check_links(path) + check_paths(path) + check_commands(path)
  assert not bad, '\n'.join(bad)


def test_the_readme_is_a_front_page():
  assert sum(1 for _ in open(os.path.join(ROOT, 'README.md'))) <= 250


def test_the_entry_points_flags_are_read():
  """The AST reading finds the flags each entry point defines (else every check passes)."""
  assert {'--config', '--workdir', '--plan', '--noplan'} <= flags_of('bntt_jax.main')
  assert {'--config', '--topology', '--search', '--json', '--hbm_gib'} <= flags_of('bntt_jax.plan')
  assert {'--workdir', '--outdir', '--reference'} <= flags_of('bntt_jax.analyze')
  assert {'--batch', '--spike-rate', '--peer-python'} <= flags_of('experiments/benchmark.py')
  assert {'--config', '--norms', '--seeds'} <= flags_of('experiments/compare_norms.py')
  assert '--full' in flags_of('pytest')
  assert flags_of('bntt_jax.kernels') is not None and flags_of('bntt_jax.nothing') is None
  assert config_key_exists('train.epochs') and config_key_exists('model.arch_kwargs.widths')
  assert not config_key_exists('train.epoch') and not config_key_exists('model.nope')


def test_a_planted_error_of_each_kind_is_caught(tmp_path):
  """A copy of the README with one broken link, anchor, path, flag and config key each."""
  readme = os.path.join(ROOT, 'README.md')
  good = open(readme).read()
  planted = {
      'link': ('[x](docs/no_such_page.md)', 'link docs/no_such_page.md: no file'),
      'anchor': ('[x](#no-such-heading)', 'no heading #no-such-heading'),
      'path': ('`experiments/no_such_script.py`', 'path experiments/no_such_script.py'),
      'flag': ('```bash\npython -m bntt_jax.main --work_dir=runs/x\n```',
               'flag --work_dir: not defined'),
      'key': ('`python -m bntt_jax.main --config.train.epoch=3`', 'config key train.epoch'),
      'script': ('```bash\npython experiments/nope.py --batch=1\n```', 'no such module'),
      'variant': ('```bash\npython -m bntt_jax.main --config=configs/cifar10.py:ful\n```',
                  "configs/cifar10.py has no variant 'ful'"),
      'variant path': ('`configs/fashion_mnist.py:smok`',
                       "configs/fashion_mnist.py has no variant 'smok'"),
  }
  for kind, (text, expected) in planted.items():
    page = tmp_path / f'{kind}.md'
    page.write_text(good + '\n' + text + '\n')
    # Resolve relative links and paths against the repository, as the README's are.
    bad = check_links(str(page), str(tmp_path)) if kind in ('link', 'anchor') else []
    bad += check_paths(str(page)) if kind in ('path', 'variant path') else []
    bad += check_commands(str(page)) if kind in ('flag', 'key', 'script', 'variant') else []
    assert any(expected in b for b in bad), (kind, bad)
