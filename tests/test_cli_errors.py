"""What users get wrong, on every command line: one table per entry point, one row per bad
input, each checked against the real subprocess: its exit code, its one ``error:`` line (which
must hold the row's message), no traceback, and the directories the row names unchanged
(nothing written, nothing overwritten). Then the library calls users make directly: a clear
``ValueError``/``ConfigError`` naming the argument, not an error from deep inside a trace.

Exit codes: :mod:`bntt_jax.cli` (2 for anything a user can cause).

Measured on the code before these checks (cad1613), row by row ("tb": a traceback; "wrote":
the row's directory changed); the rows not named passed there already:

* main: ``damaged_config_json`` exit 1, tb (JSONDecodeError), after the run lock and
  ``checkpoints/`` were made in the workdir; ``config_json_not_a_config`` and
  ``damaged_metrics_line`` wrote: a whole 25-epoch run trained, its config.json replaced,
  the metrics.jsonl rewritten; ``workdir_is_a_file`` tb (FileExistsError),
  ``workdir_under_a_file`` tb (NotADirectoryError); ``idx_label_outside_classes``,
  ``idx_negative_label``, ``idx_images_of_another_shape``, ``idx_float_images`` wrote: each
  run trained (a 12-class network; a label -1; 32x32 images as mnist; float32 pixels cast to
  uint8) and exited 0; ``unknown_jax_platform`` tb (RuntimeError: Unable to initialize
  backend 'foo').
* analyze: ``missing_dir``, ``empty_dir``, ``foreign_dir`` tb (FileNotFoundError), ``a_file``
  tb (NotADirectoryError); ``damaged_config_json`` tb (JSONDecodeError);
  ``config_json_not_a_config`` and ``no_checkpoint`` wrote (orbax made ``checkpoints/``), tb;
  ``damaged_checkpoint`` tb (KeyError 'Unknown key: state'); ``second_workdir_missing``: the
  first run was read (its tb) before the second was looked at; ``reference_out_of_range``:
  not checked (read only for a comparison of several runs).
* plan: ``unknown_tpu``: "compiling for TPUs needs libtpu (pip install 'jax[tpu]')" although
  libtpu is installed (the cause, "Invalid TPU external name", at the end of the line),
  after six lines of libtpu's start-up warnings; ``misspelt_topology_flag``: "topology '' is
  not accepted", not the flag; ``hbm_gib_not_positive``: a plan against -1 GiB compiled and
  ended "its train step needs 0.0... GiB of -1 GiB"; ``no_cpu_devices`` tb
  (ZeroDivisionError).
* kernels: ``an_argument``: exit 0, the argument ignored and the kernels built.
* compare_norms: ``unknown_flag`` and ``positional`` exit 1 with absl's usage text and no
  ``error:`` line; ``misspelt_config_key`` tb (ml_collections' AttributeError);
  ``damaged_summary_json`` tb (JSONDecodeError); ``damaged_config_json`` tb (JSONDecodeError,
  after ``checkpoints/`` was made).
* the library: each row's docstring comment (an XLA/flax shape error, a sklearn error, or no
  error at all); the labels rows loaded 12 classes, and a label -1, without a word.

Time: every row is a subprocess, mostly Python's and JAX's start-up (0.3 s of CPU before JAX,
2-3 s with it); the rows run side by side.
"""
import concurrent.futures
import gzip
import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_LIBTPU = importlib.util.find_spec('libtpu') is not None


def _env(**extra):
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''),
             JAX_PLATFORMS='cpu', BNTT_CPU_RUNTIME='default')   # no re-exec: start-up only
  env.pop('XLA_FLAGS', None)
  env.update(extra)
  return env


def _snapshot(path):
  """``{relative path: bytes}`` of everything under ``path`` (None: it does not exist)."""
  if not os.path.exists(path):
    return None
  if os.path.isfile(path):
    return {'': open(path, 'rb').read()}
  out = {}
  for root, dirs, files in os.walk(path):
    for d in dirs:
      out[os.path.relpath(os.path.join(root, d), path) + '/'] = b''
    for f in files:
      p = os.path.join(root, f)
      out[os.path.relpath(p, path)] = open(p, 'rb').read()
  return out


def _check(r, code: int, message: str):
  """Exit ``code``, exactly one ``error:`` line (argparse's ``prog: error:`` too), holding
  ``message``; no traceback."""
  err = r.stderr
  assert 'Traceback' not in err, err[-3000:]
  lines = [l for l in err.splitlines() if re.match(r'(\S+: )?error: ', l)]
  assert len(lines) == 1, f'rc {r.returncode}; error lines {lines}:\n{err[-3000:]}'
  assert message in lines[0], f'{message!r} not in {lines[0]!r}'
  assert r.returncode == code, (r.returncode, err[-2000:])


# ---------------------------------------------------------------------------------------------
# What the rows read: IDX sets, run directories, a comparison's workdir. None is a trained run.


def _write_idx(path, a, code=0x08):
  dtype = {0x08: np.uint8, 0x09: np.int8, 0x0D: np.dtype('>f4')}[code]
  payload = bytes([0, 0, code, a.ndim]) + b''.join(int(s).to_bytes(4, 'big') for s in a.shape)
  with gzip.open(path + '.gz', 'wb') as f:
    f.write(payload + a.astype(dtype).tobytes())


def _idx_dir(root, *, shape=(28, 28), image_code=0x08, label_code=0x08, bad_label=None):
  os.makedirs(root)
  rng = np.random.RandomState(0)
  ytr = rng.randint(0, 10, 40)
  if bad_label is not None:
    ytr[7] = bad_label
  for name, a, code in (('train-images-idx3-ubyte', rng.randint(0, 256, (40,) + shape), image_code),
                        ('train-labels-idx1-ubyte', ytr, label_code),
                        ('t10k-images-idx3-ubyte', rng.randint(0, 256, (10,) + shape), image_code),
                        ('t10k-labels-idx1-ubyte', rng.randint(0, 10, 10), label_code)):
    _write_idx(os.path.join(root, name), a, code)
  return root


def _config_json():
  from bntt_jax import config_lib, default_config  # pylint: disable=g-import-not-at-top
  return json.dumps(config_lib._plain(default_config.get_config()), indent=2)


def _run_dir(root, config_json=None, metrics=None, summary=None, checkpoint=None, files=None):
  os.makedirs(root)
  for name, text in (('config.json', config_json), ('metrics.jsonl', metrics),
                     ('summary.json', summary)):
    if text is not None:
      with open(os.path.join(root, name), 'w') as f:
        f.write(text)
  if checkpoint is not None:   # a step directory holding what is not an orbax checkpoint
    os.makedirs(os.path.join(root, 'checkpoints', '44'))
    with open(os.path.join(root, 'checkpoints', '44', 'state'), 'w') as f:
      f.write(checkpoint)
  for name, text in (files or {}).items():
    with open(os.path.join(root, name), 'w') as f:
      f.write(text)
  return root


@pytest.fixture(scope='module')
def place(tmp_path_factory):
  """``{name: path}`` of what the rows read (never changed by a row: each checks that)."""
  t = str(tmp_path_factory.mktemp('cli_errors'))
  good = _config_json()
  epoch = json.dumps({'epoch': 0, 'step': 44, 'test_accuracy': 0.5})
  p = {
      'idx_label_11': _idx_dir(f'{t}/idx_label_11', bad_label=11),
      'idx_label_neg': _idx_dir(f'{t}/idx_label_neg', label_code=0x09, bad_label=-1),
      'idx_32x32': _idx_dir(f'{t}/idx_32x32', shape=(32, 32)),
      'idx_float': _idx_dir(f'{t}/idx_float', image_code=0x0D),
      'empty': _run_dir(f'{t}/empty'),
      'foreign': _run_dir(f'{t}/foreign', files={'notes.txt': 'not a run\n'}),
      # Half written (a full disk): the config the run was trained under, cut.
      'damaged_config': _run_dir(f'{t}/damaged_config', config_json=good[:len(good) // 2]),
      'not_a_config': _run_dir(f'{t}/not_a_config', config_json='[1, 2, 3]\n'),
      'no_checkpoint': _run_dir(f'{t}/no_checkpoint', config_json=good),
      'damaged_checkpoint': _run_dir(f'{t}/damaged_checkpoint', config_json=good,
                                     checkpoint='not a checkpoint'),
      'damaged_metrics': _run_dir(f'{t}/damaged_metrics', config_json=good,
                                  metrics=f'{epoch[:20]}\n{epoch}\n'),
      'a_file': _run_dir(f'{t}/files', files={'a_file': 'x'}) + '/a_file',
      'bad_config_file': _run_dir(f'{t}/configs', files={
          'raises.py': 'def get_config():\n  raise RuntimeError("half edited")\n'}) + '/raises.py',
  }
  # A comparison whose first run's summary.json is damaged.
  p['compare'] = f'{t}/compare'
  _run_dir(f'{t}/compare/bntt/seed0', config_json=good, summary='{"final_test_accu')
  # One whose first run, not finished, has a damaged config.json.
  p['compare_unfinished'] = f'{t}/compare_unfinished'
  _run_dir(f'{t}/compare_unfinished/bntt/seed0', config_json=good[:len(good) // 2])
  p['missing'] = f'{t}/no_such_dir'
  return p


def _run_row(cmd, args, place, new, env=None, timeout=300):
  """The row's subprocess; asserts that every directory of ``place`` it names is unchanged
  and that the new workdir ``new`` is not there (a run stopped by its data removes the
  empty directories and the lock it made before reading them; before 7afcca0's successor it
  left them: the idx_* rows' workdirs held checkpoints/ and .lock)."""
  args = [a.format(**place, new=new) for a in args]
  watched = [place[k] for k in place if any(place[k] in a for a in args)]
  before = {w: _snapshot(w) for w in watched}
  r = subprocess.run(cmd + args, cwd=ROOT, env=env or _env(), capture_output=True, text=True,
                     timeout=timeout)
  changed = [w for w in watched if _snapshot(w) != before[w]]
  if os.path.exists(new):
    changed.append(new)
  return r, changed


ROWS = {}   # (table, row id) -> (command, args, env): filled by the tables below


def _table(name, cmd, rows, env=None):
  for row_id, args, *_ in rows:
    ROWS[name, row_id] = (cmd, args, env)
  return rows


# The tests that read one fixed row, and the table of each parametrized test.
_FIXED = {'test_main_unknown_jax_platform': ('main_env', 'unknown_jax_platform'),
          'test_plan_unknown_tpu_is_named_without_libtpu_noise': ('plan', 'unknown_tpu'),
          'test_kernels_refuses_an_argument': ('kernels', 'an_argument')}
_TABLE_OF = {'test_main': 'main', 'test_analyze': 'analyze', 'test_plan': 'plan'}


def _selected_rows(items):
  keys = set()
  for item in items:
    name = getattr(item, 'originalname', item.name)
    params = getattr(getattr(item, 'callspec', None), 'params', {})
    if name in _FIXED:
      keys.add(_FIXED[name])
    elif name in _TABLE_OF:
      keys.add((_TABLE_OF[name], params['row_id']))
    elif name == 'test_experiments_scripts':
      keys.add((params['script'], params['row_id']))
  return keys


@pytest.fixture(scope='module')
def results(request, place, tmp_path_factory):
  """The selected rows' ``(CompletedProcess, changed paths)``, the subprocesses run side by
  side (each is mostly Python's and JAX's start-up)."""
  base = tmp_path_factory.mktemp('new_runs')
  keys = _selected_rows(request.session.items)
  with concurrent.futures.ThreadPoolExecutor(max(2, min(4, os.cpu_count() or 2))) as pool:
    futures = {key: pool.submit(_run_row, *ROWS[key][:2], place,
                                str(base / f'{key[0]}-{key[1]}'), ROWS[key][2])
               for key in keys}
    return {key: f.result() for key, f in futures.items()}


def _row(results, table, row_id, code, message):
  r, changed = results[table, row_id]
  assert not changed, f'changed: {changed}\n{r.stderr[-2000:]}'
  _check(r, code, message)
  return r


# ---------------------------------------------------------------------------------------------
# python -m bntt_jax.main

MAIN_CMD = [sys.executable, '-m', 'bntt_jax.main']
# The IDX sets hold 40 training examples: a batch that fits them, and a run that would be short.
IDX_RUN = ['--config=configs/mnist.py', '--config.data.source=idx', '--config.train.batch_size=8',
           '--config.eval.batch_size=5', '--config.train.epochs=1', '--config.model.timesteps=2']
MAIN = [
    ('positional_argument', ['train'], "argument 'train' is not accepted: flags only"),
    ('unknown_flag', ['--workdr=x'], "Unknown command line flag 'workdr'"),
    ('misspelt_config_key', ['--config.model.timestep=3'],
     "config key 'model.timestep' is not accepted: model has"),
    ('value_of_another_type', ['--config.train.epochs=abc'], 'flag --config.train.epochs=abc'),
    ('value_out_of_range', ['--config.model.timesteps=0'],
     'timesteps 0 is not accepted: an integer >= 1'),
    ('unknown_model', ['--config.model.arch=vgg99'], "model 'vgg99' is not accepted: one of"),
    ('missing_config_file', ['--config=configs/no_such.py'],
     "config file 'configs/no_such.py' is not accepted"),
    ('config_file_that_raises', ['--config={bad_config_file}'],
     'a file whose get_config() runs (RuntimeError: half edited)'),
    ('missing_data_dir', ['--config=configs/mnist.py', '--config.data.source=idx',
                          '--config.data.dir={missing}'],
     'is not accepted: a directory of MNIST IDX files'),
    ('damaged_config_json', ['--workdir={damaged_config}'],
     "config.json' cannot be read (JSONDecodeError"),
    ('config_json_not_a_config', ['--workdir={not_a_config}'],
     "is not a bntt_jax run's config (it has no model, data, train section)"),
    ('damaged_metrics_line', ['--workdir={damaged_metrics}'],
     "metrics.jsonl' line 1 of 2 cannot be read"),
    ('workdir_is_a_file', ['--workdir={a_file}'], 'a directory for the run (it is a file)'),
    # Before: accepted, the run's files written beside the user's.
    ('workdir_of_other_files', ['--workdir={foreign}'],
     "a new or empty directory, or a run's (it holds no config.json and 1 entry no run "
     "writes: 'notes.txt')"),
    ('workdir_under_a_file', ['--workdir={a_file}/run'], 'a_file is a file)'),
    ('idx_label_outside_classes', IDX_RUN + ['--config.data.dir={idx_label_11}'],
     'label 11 is not accepted (1 of 40 labels lie outside 0..9): mnist has 10 classes'),
    ('idx_negative_label', IDX_RUN + ['--config.data.dir={idx_label_neg}'],
     'label -1 is not accepted (1 of 40 labels lie outside 0..9)'),
    ('idx_images_of_another_shape', IDX_RUN + ['--config.data.dir={idx_32x32}'],
     'examples of shape (32, 32, 1) are not accepted: (28, 28, 1)'),
    ('idx_float_images', IDX_RUN + ['--config.data.dir={idx_float}'],
     'holds images of type float32: not accepted: unsigned bytes'),
]


# Each row runs in a new --workdir unless it names its own.
MAIN = [(i, a if any(x.startswith('--workdir') for x in a) else a + ['--workdir={new}'], m)
        for i, a, m in MAIN]
_table('main', MAIN_CMD, MAIN)
_table('main_env', MAIN_CMD, [('unknown_jax_platform', ['--workdir={new}'])],
       env=_env(JAX_PLATFORMS='foo'))


@pytest.mark.parametrize('row_id,message', [(r[0], r[2]) for r in MAIN], ids=[r[0] for r in MAIN])
def test_main(results, row_id, message):
  _row(results, 'main', row_id, 2, message)


def test_main_unknown_jax_platform(results):
  _row(results, 'main_env', 'unknown_jax_platform', 2, "JAX platforms 'foo' are not accepted here")


# ---------------------------------------------------------------------------------------------
# python -m bntt_jax.analyze

ANALYZE = [
    ('no_workdir', [], '--workdir is required'),
    ('positional_argument', ['--workdir={no_checkpoint}', 'extra'],
     "argument 'extra' is not accepted: flags only"),
    ('unknown_flag', ['--workdir={no_checkpoint}', '--outdri=x'],
     "Unknown command line flag 'outdri'"),
    ('misspelt_override', ['--workdir={no_checkpoint}', '--config.analysis.pgd_stepz=3'],
     "config key 'analysis.pgd_stepz' is not accepted"),
    ('missing_dir', ['--workdir={missing}'], 'there is no such directory'),
    ('empty_dir', ['--workdir={empty}'], 'it holds no config.json, so no run'),
    ('foreign_dir', ['--workdir={foreign}'], 'it holds no config.json, so no run'),
    ('a_file', ['--workdir={a_file}'], 'a run directory (python -m bntt_jax.main --workdir=DIR '
                                       'writes one): it is a file'),
    ('damaged_config_json', ['--workdir={damaged_config}'],
     "config.json' cannot be read (JSONDecodeError"),
    ('config_json_not_a_config', ['--workdir={not_a_config}'],
     "is not a bntt_jax run's config"),
    ('no_checkpoint', ['--workdir={no_checkpoint}'], 'with a checkpoint:'),
    ('damaged_checkpoint', ['--workdir={damaged_checkpoint}'],
     "checkpoints' cannot be read"),
    ('second_workdir_missing', ['--workdir={damaged_checkpoint}', '--workdir={missing}'],
     'no_such_dir'),
    ('reference_out_of_range', ['--workdir={no_checkpoint}', '--reference=3'],
     '--reference 3 is not accepted: the index of one of the 1 --workdir runs (0..0)'),
]


_table('analyze', [sys.executable, '-m', 'bntt_jax.analyze'], ANALYZE)


@pytest.mark.parametrize('row_id,message', [(r[0], r[2]) for r in ANALYZE],
                         ids=[r[0] for r in ANALYZE])
def test_analyze(results, row_id, message):
  _row(results, 'analyze', row_id, 2, message)


# ---------------------------------------------------------------------------------------------
# python -m bntt_jax.plan

PLAN = [
    ('no_topology', [], "topology '' is not accepted: a JAX TPU topology name"),
    ('topology_syntax', ['--topology=v5e'], "topology 'v5e' is not accepted"),
    ('no_cpu_devices', ['--topology=cpu:0'], "topology 'cpu:0' is not accepted: a JAX TPU "),
    ('misspelt_topology_flag', ['--topolgy=v5e:2x2'], "Unknown command line flag 'topolgy'"),
    ('gpu_topology_shape', ['--topology=h100:1x2x3'],
     "topology 'h100:1x2x3' is not accepted: h100:GPUS or h100:HOSTSxGPUS"),
    ('unknown_search_variant', ['--topology=cpu:1', '--search=fp8'],
     "--search 'fp8' is not accepted"),
    ('hbm_gib_not_positive', ['--topology=cpu:1', '--hbm_gib=-1'],
     '--hbm_gib -1.0 is not accepted: a number of GiB > 0'),
    ('misspelt_config_key', ['--topology=cpu:1', '--config.train.batchsize=8'],
     "config key 'train.batchsize' is not accepted"),
    ('batch_not_divisible', ['--topology=cpu:3'],
     'is not accepted: a multiple of the 3 devices'),
    ('missing_config_file', ['--topology=cpu:1', '--config=configs/no_such.py'],
     "config file 'configs/no_such.py' is not accepted"),
]


_table('plan', [sys.executable, '-m', 'bntt_jax.plan'],
       PLAN + [('unknown_tpu', ['--topology=v9z:3x3'])])


@pytest.mark.parametrize('row_id,message', [(r[0], r[2]) for r in PLAN], ids=[r[0] for r in PLAN])
def test_plan(results, row_id, message):
  _row(results, 'plan', row_id, 2, message)


@pytest.mark.skipif(not HAVE_LIBTPU, reason="naming TPUs needs libtpu: pip install 'jax[tpu]'")
def test_plan_unknown_tpu_is_named_without_libtpu_noise(results):
  """The one line names the unknown TPU, not a missing libtpu, and it is the only line."""
  r = _row(results, 'plan', 'unknown_tpu', 2,
           "topology 'v9z:3x3' is not accepted: 'v9z' is not a TPU libtpu knows")
  assert 'needs libtpu' not in r.stderr
  assert len(r.stderr.strip().splitlines()) == 1, r.stderr


# ---------------------------------------------------------------------------------------------
# python -m bntt_jax.kernels


_table('kernels', [sys.executable, '-m', 'bntt_jax.kernels'], [('an_argument', ['--rebuild'])])


def test_kernels_refuses_an_argument(results):
  _row(results, 'kernels', 'an_argument', 2,
       "argument '--rebuild' is not accepted: python -m bntt_jax.kernels takes none")


# ---------------------------------------------------------------------------------------------
# The user-facing scripts in experiments/

SCRIPTS = [
    ('compare_norms', 'unknown_norm', ['--norms=bntt,foo'], "norm 'foo' is not accepted"),
    ('compare_norms', 'seeds_out_of_range', ['--seeds=0'],
     'seeds 0 is not accepted: an integer >= 1'),
    ('compare_norms', 'unknown_flag', ['--nroms=bntt'], "Unknown command line flag 'nroms'"),
    ('compare_norms', 'misspelt_config_key', ['--config.model.timestep=3'],
     "config key 'model.timestep' is not accepted"),
    ('compare_norms', 'positional', ['bntt'], "argument 'bntt' is not accepted: flags only"),
    ('compare_norms', 'damaged_summary_json', ['--norms=bntt', '--seeds=1',
                                               '--workdir={compare}'],
     "summary.json' of a finished run cannot be read (JSONDecodeError): remove it and rerun"),
    ('compare_norms', 'damaged_config_json', ['--norms=bntt', '--seeds=1',
                                              '--workdir={compare_unfinished}'],
     "config.json' cannot be read (JSONDecodeError"),
    ('benchmark', 'repeats_out_of_range', ['--repeats=0'], '--repeats=0: must be at least 1'),
    ('benchmark', 'unknown_flag', ['--bach=16'], 'unrecognized arguments: --bach=16'),
    ('profile_step', 'steps_out_of_range', ['--steps=0'], '--steps 0 is not accepted'),
    ('plan_table', 'unknown_table', ['--only=strong'], "argument --only: invalid choice: 'strong'"),
    ('conv_roofline', 'unknown_dtype', ['--dtype=float64'],
     "argument --dtype: invalid choice: 'float64'"),
]


for _script in sorted({r[0] for r in SCRIPTS}):
  _table(_script, [sys.executable, os.path.join(ROOT, 'experiments', f'{_script}.py')],
         [r[1:] for r in SCRIPTS if r[0] == _script])


@pytest.mark.parametrize('script,row_id,message', [(r[0], r[1], r[3]) for r in SCRIPTS],
                         ids=[f'{r[0]}-{r[1]}' for r in SCRIPTS])
def test_experiments_scripts(results, script, row_id, message):
  _row(results, script, row_id, 2, message)


# ---------------------------------------------------------------------------------------------
# The library, called directly


def _library_rows():
  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp
  from bntt_jax import coding, data, models, norms
  # pylint: enable=g-import-not-at-top
  k = jax.random.PRNGKey(0)
  net = models.smallnet(num_steps=2)
  x = jnp.zeros((2, 8, 8, 1))
  init = lambda m, v: m.init({'params': k, 'poisson': k}, v, train=False)
  return [
      # Before: TypeError "convolution requires lhs and rhs ndim to be equal, got 3 and 4".
      ('input_without_channel_axis', lambda: init(net, jnp.zeros((2, 8, 8))),
       'input x of shape (2, 8, 8) is not accepted: [B, H, W, C] images'),
      ('frames_model_given_images', lambda: init(models.dvsnet(num_steps=2),
                                                 jnp.zeros((2, 42, 42, 2))),
       'input x of shape (2, 42, 42, 2) is not accepted: [B, T_in, H, W, C] frames'),
      # Before: "dtype argument to `uniform` must be a float dtype, got uint8".
      ('uint8_pixels', lambda: init(net, jnp.zeros((2, 8, 8, 1), jnp.uint8)),
       'input x of dtype uint8 is not accepted: a float array'),
      # Before: TypeError "le got incompatible shapes for broadcasting".
      ('example_ids_of_another_length',
       lambda: net.apply(init(net, x), x, train=False, rngs={'poisson': k},
                         example_ids=jnp.arange(3)),
       'example_ids of shape (3,) is not accepted: [2], one id per example'),
      ('too_many_steps', lambda: net.apply(init(net, x), x, train=False, rngs={'poisson': k},
                                           num_steps=5),
       'num_steps 5 is not accepted: the network was built for 1..2 steps'),
      ('num_classes_zero', lambda: models.create_model('smallnet', num_classes=0, num_steps=2),
       'num_classes 0 is not accepted: an integer >= 1'),
      ('unknown_norm', lambda: models.create_model('smallnet', num_classes=10, num_steps=2,
                                                   norm='batchnorm'),
       "norm 'batchnorm' is not accepted: one of bn, bntt, none, tdbn, tebn"),
      # Before: no error: the typo was dropped and the defaults used.
      ('misspelt_norm_kwarg', lambda: init(models.create_model(
          'smallnet', num_classes=10, num_steps=2, norm_kwargs={'eps': 1e-3}), x),
       "norm_kwargs key 'eps' is not accepted: one of alpha, axis_name, epsilon"),
      # Before: ValueError "2 time steps asked of a norm trained for 0; accepted: 1..0".
      ('norm_of_no_steps', lambda: norms.make_norm('bntt', 0),
       'num_steps 0 is not accepted: an integer >= 1'),
      # Before, the next four: no error (an empty spike train; rescale -1 fires always).
      ('poisson_no_steps', lambda: coding.poisson_encode(k, x, 0),
       'num_steps 0 is not accepted: an integer >= 1'),
      ('poisson_negative_rescale', lambda: coding.poisson_encode(k, x, 2, rescale=-1.0),
       'rescale -1.0 is not accepted: a number > 0'),
      ('direct_no_steps', lambda: coding.direct_encode(x, 0),
       'num_steps 0 is not accepted: an integer >= 1'),
      ('example_keys_of_another_length', lambda: coding.example_keys(k, 4, jnp.arange(3)),
       'example_ids of shape (3,) is not accepted: [4]'),
      # Before: IndexError "tuple index out of range".
      ('poisson_scalar_input', lambda: coding.poisson_step(k, jnp.float32(1), 0),
       'input x of shape () is not accepted: [B, ...]'),
      ('unknown_dataset', lambda: data.load_dataset('imagenet'),
       "dataset 'imagenet' is not accepted: one of"),
      # Before: TypeError "load() got an unexpected keyword argument 'test_fractoin'".
      ('misspelt_loader_option', lambda: data.load_dataset('digits',
                                                           options={'test_fractoin': 0.1}),
       "data.options ['test_fractoin'] is not accepted: keyword arguments of "
       'bntt_jax.data.digits.load'),
      # Before: scikit-learn's InvalidParameterError about test_size.
      ('loader_option_out_of_range', lambda: data.load_dataset('digits',
                                                               options={'test_fraction': 2.0}),
       'digits test_fraction 2.0 is not accepted: a fraction in (0, 1)'),
  ]


def _library_row_ids():
  return ['input_without_channel_axis', 'frames_model_given_images', 'uint8_pixels',
          'example_ids_of_another_length', 'too_many_steps', 'num_classes_zero', 'unknown_norm',
          'misspelt_norm_kwarg', 'norm_of_no_steps', 'poisson_no_steps',
          'poisson_negative_rescale', 'direct_no_steps', 'example_keys_of_another_length',
          'poisson_scalar_input', 'unknown_dataset', 'misspelt_loader_option',
          'loader_option_out_of_range']


@pytest.mark.parametrize('row', _library_row_ids())
def test_library(row):
  (call, message), = [r[1:] for r in _library_rows() if r[0] == row]
  with pytest.raises(ValueError) as e:   # ConfigError is a ValueError
    call()
  assert message in str(e.value) and '\n' not in str(e.value), str(e.value)


@pytest.mark.parametrize('labels,message', [
    ([3, 11], 'label 11 is not accepted (20 of 40 labels lie outside 0..9): mnist has 10 classes'),
    ([-1, 2], 'label -1 is not accepted'),
])
def test_library_labels_outside_the_classes(tmp_path, labels, message):
  """Through ``load_dataset`` as a user calls it; a config's ``num_classes`` widens the range."""
  from bntt_jax import data  # pylint: disable=g-import-not-at-top
  d = str(tmp_path / 'idx')
  _idx_dir(d, label_code=0x09)
  _write_idx(os.path.join(d, 'train-labels-idx1-ubyte'), np.asarray(labels * 20), 0x09)
  with pytest.raises(ValueError, match=re.escape(message)):
    data.load_dataset('mnist', source='idx', data_dir=d)
  if labels[1] == 11:
    ds = data.load_dataset('mnist', source='idx', data_dir=d, num_classes=12)
    assert ds.info.num_classes == 10 and not ds.info.classes_inferred and ds.train.y.max() == 11


# ---------------------------------------------------------------------------------------------
# Records a command rebuilds (full tier: they need a trained run).


@pytest.mark.full
def test_damaged_records_that_are_rebuilt_say_so(tmp_path):
  """A finished tiny run (digits, 1 epoch, T 2): its summary.json damaged, then the same
  ``main`` command: it resumes at the end, says the file is rewritten, and rewrites it; its
  report.json damaged, then ``analyze``: no command reads report.json, and the analysis
  writes a whole one."""
  run = tmp_path / 'run'
  base = [sys.executable, '-m', 'bntt_jax.main', '--config.train.epochs=1',
          '--config.model.timesteps=2', f'--workdir={run}']
  r = subprocess.run(base, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  first = json.loads((run / 'summary.json').read_text())
  (run / 'summary.json').write_text('{"final_test_accuracy": 0.')
  r = subprocess.run(base, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  assert 'summary.json cannot be read (JSONDecodeError); the run rewrites it' in r.stderr
  again = json.loads((run / 'summary.json').read_text())
  assert again['final_test_accuracy'] == first['final_test_accuracy']
  (run / 'report.json').write_text('{"accur')
  r = subprocess.run([sys.executable, '-m', 'bntt_jax.analyze', f'--workdir={run}',
                      '--config.analysis.pgd_epsilons=()', '--config.analysis.noise_sigmas=()',
                      '--config.analysis.fgsm_epsilons=(0.1,)'], cwd=ROOT, env=_env(),
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  report = json.loads((run / 'report.json').read_text())
  assert 0 <= report['accuracy']['clean'] <= 1
