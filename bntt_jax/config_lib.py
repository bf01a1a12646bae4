"""Configs: loading a config file, checking every value before anything compiles.

A bad value raises :class:`bntt_jax.errors.ConfigError`, whose message is one
line: ``<what> <value> is not accepted: <accepted>``. A value the library takes is
checked by the library's own check (``models.check_arguments``, ``norms.check_norm``,
``neurons.LIFParams``, ``network.check_settings``, ``optim``'s, ``platform``'s, the data
pipeline's), which :func:`validate` calls, and every accepted set is the library's;
only what exists in a config alone (its keys, the data, the schedule's numbers) is
checked here.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import os
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

import ml_collections

from bntt_jax import default_config
from bntt_jax import errors
from bntt_jax.errors import ConfigError

# Sub-dicts whose keys are free (passed through to a function's **kwargs).
FREE_FORM = ('model.norm_kwargs', 'model.arch_kwargs', 'data.options')
DTYPES = ('float32', 'bfloat16', 'float16')
BATCH_STATS = ('global', 'per_device')


def split_config_arg(path: str) -> Tuple[str, Optional[str]]:
  """``configs/X.py:arg`` -> ``('configs/X.py', 'arg')`` (ml_collections' convention); a path
  without ``:arg`` -> ``(path, None)``."""
  if not os.path.isfile(path) and ':' in path:
    base, arg = path.rsplit(':', 1)
    if os.path.isfile(base):
      return base, arg
  return path, None


def load_config(path: str) -> ml_collections.ConfigDict:
  """``get_config()`` of a config file, e.g. ``configs/cifar10.py``, or ``get_config(arg)`` of
  ``configs/cifar10.py:arg`` (e.g. ``:smoke``)."""
  path, arg = split_config_arg(path)
  if not os.path.isfile(path):
    raise ConfigError('config file', path, 'a path to a .py file with get_config()')
  name = 'bntt_config_' + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config() if arg is None else module.get_config(arg)


def _keys(cfg: ml_collections.ConfigDict, prefix: str = '') -> Iterable[str]:
  for k, v in cfg.items():
    name = f'{prefix}{k}'
    yield name
    if isinstance(v, ml_collections.ConfigDict) and name not in FREE_FORM:
      yield from _keys(v, name + '.')


def check_keys(config: ml_collections.ConfigDict) -> None:
  known = set(_keys(default_config.get_config()))
  for key in _keys(config):
    if key not in known:
      parent = key.rpartition('.')[0]
      siblings = sorted(k.rpartition('.')[2] for k in known if k.rpartition('.')[0] == parent)
      raise ConfigError('config key', key,
                        f'{parent or "the top level"} has {", ".join(siblings)}')


_one_of = errors.check_one_of
_int_at_least = errors.check_int_at_least
_positive = errors.check_positive


def validate(config: ml_collections.ConfigDict, num_devices: int = 1,
             check_data: bool = True) -> None:
  """Check every value; raise ``ConfigError`` at the first one not accepted.

  ``check_data=False`` skips the one check that looks at the disk (the data directory), for
  a plan of a run on another machine.
  """
  # pylint: disable=g-import-not-at-top
  from bntt_jax import data, models, neurons, norms, network, optim, platform, synapses
  from bntt_jax.data import pipeline
  # pylint: enable=g-import-not-at-top
  check_keys(config)
  d, m, t, e = config.data, config.model, config.train, config.eval
  _int_at_least('seed', config.seed, 0)
  _one_of('matmul precision', config.matmul_precision, platform.MATMUL_PRECISIONS)
  # Dataset, source and directory.
  data.resolve_source(d.name, d.source)
  _one_of('augmentation', d.augment, pipeline.AUGMENTATIONS)
  _int_at_least('crop padding', d.crop_padding, 0)
  if len(d.mean) != len(d.std) or any(s <= 0 for s in d.std):
    raise ConfigError('data mean/std', (tuple(d.mean), tuple(d.std)),
                      'two tuples of the same length, std > 0 (or both empty)')
  kind = data.REGISTRY[d.name].kind
  if kind == 'frames' and d.augment != 'none':
    raise ConfigError('augmentation', d.augment, f'none for {d.name} (event frames)')
  # Model.
  models.check_arguments(m.arch, 1 if m.num_classes is None else m.num_classes, m.neuron)
  network.check_settings(num_steps=m.timesteps, schedule=m.schedule, encoding=m.encoding,
                         sparse_conv=m.sparse_conv, lif_kernel=m.lif_kernel)
  norms.check_norm(m.norm)
  settings = norm_settings(norms)
  for key in m.norm_kwargs.keys():
    if key not in settings:
      raise ConfigError('norm_kwargs key', key, f'one of {", ".join(settings)} (the norms\' '
                        'settings)')
  neurons.LIFParams(m.leak, m.threshold, neurons.make_surrogate(m.surrogate, m.surrogate_alpha))
  if (m.encoding == 'frames') != (kind == 'frames'):
    accepted = 'frames (the dataset is event frames)' if kind == 'frames' else (
        'poisson or direct (the dataset is static images)')
    raise ConfigError(f'encoding for {d.name}', m.encoding, accepted)
  _positive('rescale', m.rescale)
  if m.schedule == 'step' and m.norm not in norms.CAUSAL_NORMS:
    raise ConfigError(f'schedule for norm {m.norm}', m.schedule,
                      'layer (this norm pools statistics over time)')
  _int_at_least('unroll', m.unroll, 1)
  _one_of('dtype', m.dtype, DTYPES)
  # auto and bfloat16 are resolved by model_kwargs into the network's precisions and dtype.
  _one_of('synapse_precision', m.synapse_precision, ('auto',) + synapses.PRECISIONS + (
      'bfloat16',))
  if m.dtype != 'float32' and m.synapse_precision not in ('auto', m.dtype):
    raise ConfigError(f'synapse_precision with dtype {m.dtype}', m.synapse_precision,
                      'auto (float32 and exact_bf16x3 are float32 synapses)')
  _one_of('batch_stats', m.batch_stats, BATCH_STATS)
  # Training.
  _int_at_least('epochs', t.epochs, 1)
  dev = f' divisible by the {num_devices} devices' if num_devices > 1 else ''
  _int_at_least('batch size', t.batch_size, 1, dev)
  _int_at_least('eval batch size', e.batch_size, 1, dev)
  for what, b in (('batch size', t.batch_size), ('eval batch size', e.batch_size)):
    if b % num_devices:
      raise ConfigError(what, b, f'a multiple of the {num_devices} devices')
  _one_of('optimizer', t.optimizer, optim.OPTIMIZERS)
  _positive('learning rate', t.learning_rate)
  _one_of('lr schedule', t.lr_schedule, optim.LR_SCHEDULES)
  if any(not 0 < f <= 1 for f in t.lr_boundaries):
    raise ConfigError('lr boundaries', tuple(t.lr_boundaries), 'fractions in (0, 1]')
  _positive('lr decay', t.lr_decay)
  if t.warmup_epochs < 0:
    raise ConfigError('warmup epochs', t.warmup_epochs, 'a number >= 0')
  if not 0 <= t.momentum < 1:
    raise ConfigError('momentum', t.momentum, 'a number in [0, 1)')
  if t.weight_decay < 0:
    raise ConfigError('weight decay', t.weight_decay, 'a number >= 0')
  _int_at_least('checkpoint_every_steps', t.checkpoint_every_steps, 0)
  _int_at_least('keep_checkpoints', t.keep_checkpoints, 1)
  _int_at_least('log_every_steps', t.log_every_steps, 1)
  # Evaluation.
  if e.timesteps is not None and not (isinstance(e.timesteps, int) and
                                      1 <= e.timesteps <= m.timesteps):
    raise ConfigError('eval timesteps', e.timesteps, f'an integer in 1..{m.timesteps} (T)')
  _int_at_least('eval num_keys', e.num_keys, 1)
  # The data directory last: it is the only check that looks at the disk.
  if check_data:
    data.check_data_dir(d.name, d.source, d.dir)


def norm_settings(norms) -> Tuple[str, ...]:
  """Keys ``model.norm_kwargs`` may hold: the settings (numbers, flags) of any norm.

  ``norms.make_norm`` passes each norm the ones it has and drops the rest, so one config
  can carry, e.g., tdbn's ``threshold``; a key no norm has is a typo.
  """
  return tuple(sorted({
      f.name for cls in norms.NORMS.values() for f in dataclasses.fields(cls)
      if f.name not in ('num_steps', 'parent', 'name')
      and isinstance(f.default, (bool, int, float))}))


def model_kwargs(config: ml_collections.ConfigDict, num_classes: int, *,
                 devices: Optional[Sequence[Any]] = None, axis_name: Optional[str] = None) -> dict:
  """``create_model`` arguments of ``config.model``.

  Args:
    devices: the devices the model will run on (default: this process's
      view, ``jax.devices()``). ``batch_stats = per_device`` splits the
      norms' batch statistics into one group per device (``stat_groups``; the
      global batch is laid out device by device along the ``data`` mesh
      axis); the CPU kernels (``sparse_conv``, ``lif_kernel``: ``auto``) are
      switched off unless the target is one CPU device, whatever the host's
      own backend (a TPU program compiled on a CPU host must not embed CPU
      custom calls), and ``lif_kernel = auto`` on TPUs is their Pallas kernel
      (``tpu``); ``synapse_precision = auto`` is exact_bf16x3 on GPUs,
      float32 on TPUs and CPUs.
    axis_name: the mesh axis of a network applied inside ``shard_map``.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  m = config.model
  devices = list(jax.devices() if devices is None else devices)
  dtype = {'float32': None, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}[m.dtype]
  norm_kwargs = m.norm_kwargs.to_dict()
  if m.batch_stats == 'per_device':
    norm_kwargs['stat_groups'] = len(devices)
  one_cpu = len(devices) == 1 and devices[0].platform == 'cpu'
  kernel = lambda setting: setting if one_cpu else 'off'
  # The LIF kernels of the target: the CPU kernel on one CPU device, the Pallas ones on TPUs.
  if all(d.platform == 'tpu' for d in devices):
    lif_kernel = 'off' if m.lif_kernel == 'off' else 'tpu'
  else:
    lif_kernel = kernel('off' if m.lif_kernel == 'tpu' else m.lif_kernel)
  precision = m.synapse_precision
  if precision == 'bfloat16':     # = dtype bfloat16 (then the network ignores the precision)
    dtype, precision = jnp.bfloat16, 'float32'
  elif precision == 'auto':
    # Measured by the plan's roofline (README): on a GPU exact_bf16x3 moves float32's work from
    # the CUDA cores to the tensor cores; a TPU's step is bandwidth-bound and exact_bf16x3's
    # repeated inputs move more bytes; XLA:CPU has no fast bf16 convolution.
    precision = 'exact_bf16x3' if devices[0].platform in ('gpu', 'cuda', 'rocm') else 'float32'
  return dict(num_classes=m.num_classes or num_classes, num_steps=m.timesteps, norm=m.norm,
              leak=m.leak, threshold=m.threshold, surrogate=m.surrogate,
              surrogate_alpha=m.surrogate_alpha, neuron=m.neuron, encoding=m.encoding,
              rescale=m.rescale, schedule=m.schedule, unroll=m.unroll, dtype=dtype,
              remat=m.remat, synapse_precision=precision, sparse_conv=kernel(m.sparse_conv),
              lif_kernel=lif_kernel,
              norm_kwargs=norm_kwargs, arch_kwargs=m.arch_kwargs.to_dict(), axis_name=axis_name)


def create_model(config: ml_collections.ConfigDict, num_classes: int, *,
                 devices: Optional[Sequence[Any]] = None, axis_name: Optional[str] = None):
  """The flax module ``config.model`` describes (arguments: :func:`model_kwargs`).

  A model that may use the CPU kernels has them built here (:func:`bntt_jax.kernels.prepare`),
  not while it is first traced."""
  from bntt_jax import kernels  # pylint: disable=g-import-not-at-top
  from bntt_jax import models  # pylint: disable=g-import-not-at-top
  kw = model_kwargs(config, num_classes, devices=devices, axis_name=axis_name)
  if 'auto' in (kw['sparse_conv'], kw['lif_kernel']):
    kernels.prepare()
  return models.create_model(config.model.arch, **kw)


def kernels_in_use(model) -> Dict[str, str]:
  """What runs ``model``'s event-driven convolutions, their dense parts (input gradients,
  forwards of dense inputs) and LIF recurrences: ``{'sparse_conv': ..., 'winograd': ...,
  'lif': ...}``, each ``'kernel'`` (the CPU kernel, for the layers whose shapes it takes)
  or ``'xla (why)'``. Results differ between the two by float32 rounding; runs record it."""
  from bntt_jax import kernels  # pylint: disable=g-import-not-at-top
  float32 = model.dtype is None and model.synapse_precision == 'float32'

  def which(kind, setting, serves, why_not):
    if not serves:
      return f'xla ({why_not})'
    if setting == 'tpu':
      return 'pallas (TPU kernels, for the layers whose shapes they take)'
    if setting != 'auto':
      return 'xla (off: the setting, or not one CPU device)'
    if not getattr(kernels, kind).available():
      return f'xla (unavailable: {getattr(kernels, kind).unavailable_reason()})'
    return f'kernel ({getattr(kernels, kind).variant()})'

  spike_convs = any(sp and spec.kind == 'conv'
                    for sp, spec in zip(model.spike_inputs(), model.layers))
  return {
      'sparse_conv': which('sparse_conv', model.sparse_conv, spike_convs and float32,
                           'no float32 convolution of spikes'),
      'winograd': which('winograd', model.sparse_conv, spike_convs and float32,
                        'no float32 convolution of spikes'),
      'lif': which('lif', model.lif_kernel,
                   model.schedule == 'layer' and model.neuron != 'relu',
                   'no LIF layer of the layer schedule'),
  }



# Resuming a run with another config. The rule, in one place: a changed key stops the
# resumed run (ConfigError naming the keys) unless it is one of these, which change how
# long the run is, what it logs and saves, how it evaluates, or how the same function is
# computed (kernels, remat, scan unrolling, the schedule: equal numbers to float
# rounding), but not the model, the data or the optimisation. Those are allowed and
# recorded in config.json's history with the step they took effect. A prefix ending in
# '.' covers a whole section.
RESUMABLE = (
    'train.epochs', 'train.checkpoint_every_steps', 'train.keep_checkpoints',
    'train.log_every_steps', 'eval.', 'analysis.', 'data.dir', 'data.download',
    'data.prefetch', 'data.options.cache_dir', 'data.options.workers', 'model.sparse_conv',
    'model.lif_kernel', 'model.remat', 'model.unroll', 'model.schedule',
)


def _plain(config) -> Dict[str, Any]:
  """A config as JSON has it (tuples as lists), without a run record's history."""
  d = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
  d.pop('history', None)
  return json.loads(json.dumps(d))


def _flat(d: Dict[str, Any], prefix: str = '') -> Dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):        # an empty free-form dict holds no keys
      out.update(_flat(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def _resumable(key: str) -> bool:
  return any(key == r or (r.endswith('.') and key.startswith(r)) for r in RESUMABLE)


def resume_changes(saved, new) -> Tuple[Dict[str, tuple], Dict[str, tuple]]:
  """``(stopping, allowed)``: the keys that differ between a run's saved config and
  ``new``, each ``key: (saved value, new value)`` (None where a key is absent), split by
  :data:`RESUMABLE`. Free-form dicts (``model.norm_kwargs``, ...) are compared entry by
  entry."""
  a, b = _flat(_plain(saved)), _flat(_plain(new))
  # A key added to the schema after the run was saved: it was trained under the default.
  for key, value in _flat(_plain(default_config.get_config())).items():
    a.setdefault(key, value)
  stopping, allowed = {}, {}
  for key in sorted(set(a) | set(b)):
    if a.get(key) != b.get(key):
      (allowed if _resumable(key) else stopping)[key] = (a.get(key), b.get(key))
  return stopping, allowed


def check_resume(saved, new, step: int) -> None:
  """Raise ``ConfigError`` if ``new`` changes a key that stops a resumed run."""
  stopping, _ = resume_changes(saved, new)
  if stopping:
    listed = ', '.join(f'{k} ({json.dumps(a)} -> {json.dumps(b)})' for k, (a, b) in
                       stopping.items())
    raise ConfigError('config for resuming at step', step,
                      f'the config the run was trained under, or a new --workdir: {listed} '
                      'changed (only the schedule length, logging, checkpointing, evaluation '
                      'and kernels may change on resume: bntt_jax.config_lib.RESUMABLE)')


def config_in_force(record: Optional[Dict[str, Any]], step: int) -> Optional[Dict[str, Any]]:
  """The config a run's ``config.json`` (``record``) says was in force at ``step``."""
  if record is None:
    return None
  history = record.get('history') or [{'step': 0, 'config': _plain(record)}]
  in_force = [h for h in history if h['step'] <= step]
  return (in_force or history)[-1]['config']


def config_record(record: Optional[Dict[str, Any]], config, step: int) -> Dict[str, Any]:
  """What ``config.json`` holds after a run (re)starts at ``step`` with ``config``.

  The current config at the top level, as before (readers that want the run's
  config read it as they always did), and ``history``: ``[{step, config,
  changed}]``, every config the run was trained under with the step it took
  effect (``changed``: ``{key: [before, after]}``). Entries after ``step``
  (a resume from an older checkpoint than the newest) no longer describe the run
  and are dropped.
  """
  current = _plain(config)
  history = []
  if record is not None:
    history = [h for h in (record.get('history') or [{'step': 0, 'config': _plain(record)}])
               if h['step'] <= step]
  if not history:
    history = [{'step': step, 'config': current}]
  elif history[-1]['config'] != current:
    stopping, allowed = resume_changes(history[-1]['config'], current)
    changed = {k: list(v) for k, v in sorted({**stopping, **allowed}.items())}
    history.append({'step': step, 'config': current, 'changed': changed})
  return {**current, 'history': history}


def read_run_record(path: str, what_to_do: str = 'restore it from a copy') -> Dict[str, Any]:
  """A run's ``config.json`` as saved (the current config and its ``history``).

  Raises:
    DataError: one line naming the file, why it cannot be read (not JSON: e.g. half written
      by a full disk; not a run's config) and ``what_to_do``. The file is left as it is.
  """
  try:
    with open(path) as f:
      record = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise errors.DataError(f'run record {path!r} cannot be read ({type(e).__name__}: '
                           f'{describe_flag_error(e)}): it holds the config the run was '
                           f'trained under; {what_to_do}') from None
  missing = [k for k in ('model', 'data', 'train') if not isinstance(record, dict)
             or not isinstance(record.get(k), dict)]
  if missing:
    raise errors.DataError(f'run record {path!r} is not a bntt_jax run\'s config (it has no '
                           f'{", ".join(missing)} section): {what_to_do}')
  return record


def read_run_config(path: str) -> ml_collections.ConfigDict:
  """The current config of a run from its ``config.json`` (with or without a history);
  a damaged file is a one-line ``DataError`` (:func:`read_run_record`)."""
  return ml_collections.ConfigDict(_plain(read_run_record(path)))


def _config_path(argv, default: str, flag: str = 'config') -> str:
  for i, arg in enumerate(argv[1:], 1):
    if arg.startswith(f'--{flag}='):
      return arg.split('=', 1)[1]
    if arg == f'--{flag}' and i + 1 < len(argv):
      return argv[i + 1]
  return default


def check_command_line(argv, default_path: str, flag: str = 'config') -> None:
  """Before absl parses ``argv``: the config file exists, each ``--config.KEY`` names a key.

  absl and ml_collections report these with a traceback or several lines;
  here each is one ``ConfigError``.
  """
  path = _config_path(argv, default_path, flag)
  try:
    config = load_config(path)
  except ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError('config file', path,
                      f'a file whose get_config() runs ({type(e).__name__}: {e})') from None
  _check_override_keys(argv, config, flag)


def _check_override_keys(argv, config: ml_collections.ConfigDict, flag: str = 'config') -> None:
  """Each ``--config.KEY`` (``--noconfig.KEY``) of ``argv[1:]`` names a key of ``config``."""
  prefix = f'--{flag}.'
  for arg in argv[1:]:
    for p in (prefix, f'--no{flag}.'):
      if arg.startswith(p):
        key = arg[len(p):].split('=', 1)[0]
        node, parts = config, key.split('.')
        for i, part in enumerate(parts):
          if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            parent = '.'.join(parts[:i])
            names = ', '.join(sorted(node.keys())) if isinstance(
                node, ml_collections.ConfigDict) and node.keys() else (
                    'no such key (free-form keys are set in a config file)')
            raise ConfigError('config key', key, f'{parent or "the config"} has {names}')
          node = node[part]


def parse_overrides(args: Sequence[str], template: ml_collections.ConfigDict,
                    flag: str = 'config') -> Dict[str, Any]:
  """``--config.KEY=VALUE`` arguments parsed exactly as ``main`` parses them: by
  ml_collections' ``config_flags`` on ``template``, each value by its field's type (bool,
  int, float, str, tuple, ...). Returns ``{KEY: value}`` in the order given (the last of a
  repeated key wins); ``template`` is not changed. An unknown key or a value its field's
  type does not take is a one-line ``ConfigError``."""
  # pylint: disable=g-import-not-at-top
  from absl import flags
  from ml_collections import config_flags
  # pylint: enable=g-import-not-at-top
  argv = ['overrides', *args]
  _check_override_keys(argv, template, flag)
  values = flags.FlagValues()
  config_flags.DEFINE_config_dict(flag, copy.deepcopy(template),
                                  flag_values=values, lock_config=True, sys_argv=argv)
  try:
    values(argv)
  except Exception as e:  # pylint: disable=broad-except
    named = [a for a in args if a.split('=', 1)[0] in str(e)]
    raise ConfigError('config override', named[-1] if named else ' '.join(args),
                      f'a value of the field\'s type ({describe_flag_error(e)})') from None
  return dict(config_flags.get_override_values(values[flag]))


def describe_flag_error(error: Exception) -> str:
  """One line for a flag-parsing error (absl's own message may span several)."""
  lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
  return lines[0] if lines else type(error).__name__
