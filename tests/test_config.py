"""Configs: every shipped config loads and validates; bad values are named in one line."""
import glob
import os

import ml_collections
import pytest

from bntt_jax import config_lib, data, default_config, models, network, neurons, norms, optim
from bntt_jax.errors import ConfigError

CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), '..', 'configs', '*.py')))


def test_the_paper_configs_are_all_there():
  names = {os.path.basename(p)[:-3] for p in CONFIGS}
  assert {'cifar10', 'cifar10_surrogate', 'cifar100', 'tiny_imagenet', 'digits', 'mnist',
          'digits_ann', 'cifar10_ann'} <= names


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: os.path.basename(p))
def test_config_documents_its_command_and_validates(path):
  with open(path) as f:
    source = f.read()
  assert 'python -m bntt_jax.main --config=configs/' in source     # the command
  assert 'Expected' in source and ('Hardware' in source or 'hardware' in source.lower())
  config = config_lib.load_config(path)
  assert isinstance(config.seed, int)
  source = data.resolve_source(config.data.name, config.data.source)
  if source in data.REGISTRY[config.data.name].needs_dir:   # need a local directory
    with pytest.raises(ConfigError, match='data directory'):
      config_lib.validate(config)
  else:
    config_lib.validate(config)


def test_paper_recipes_match_spec_section_5():
  c10 = config_lib.load_config(os.path.join(os.path.dirname(CONFIGS[0]), 'cifar10.py'))
  assert (c10.model.arch, c10.model.timesteps, c10.model.leak, c10.train.batch_size,
          c10.train.epochs, c10.train.learning_rate, c10.train.momentum,
          c10.train.weight_decay) == ('vgg9', 25, 0.95, 256, 100, 0.3, 0.9, 1e-4)
  assert c10.train.lr_schedule == 'step' and tuple(c10.train.lr_boundaries) == (0.5, 0.7, 0.9)
  assert tuple(c10.data.mean) == (0.4914, 0.4822, 0.4465)
  assert tuple(c10.data.std) == (0.2023, 0.1994, 0.2010)
  assert c10.data.augment == 'crop_flip' and c10.data.crop_padding == 4
  sur = config_lib.load_config(os.path.join(os.path.dirname(CONFIGS[0]), 'cifar10_surrogate.py'))
  assert (sur.model.norm, sur.model.timesteps, sur.model.arch) == ('none', 100, 'vgg9')
  c100 = config_lib.load_config(os.path.join(os.path.dirname(CONFIGS[0]), 'cifar100.py'))
  assert (c100.model.arch, c100.model.timesteps, c100.model.leak, c100.train.batch_size,
          c100.eval.top5) == ('vgg11', 30, 0.99, 128, True)
  d = default_config.get_config()
  assert d.data.name == 'digits' and d.model.encoding == 'poisson' and d.model.timesteps >= 8
  assert d.model.norm == 'bntt' and d.model.neuron == 'lif'


def _bad(**changes):
  config = default_config.get_config()
  for key, value in changes.items():
    section, name = key.split('__')
    config[section][name] = value
  return config


@pytest.mark.parametrize('changes,message', [
    ({'model__arch': 'resnet'}, "model 'resnet' is not accepted: one of dvsnet"),
    ({'data__name': 'svhn'}, "dataset 'svhn' is not accepted"),
    ({'model__timesteps': 0}, 'timesteps 0 is not accepted: an integer >= 1'),
    ({'model__leak': 1.01}, 'leak 1.01 is not accepted: a number in (0, 1]'),
    ({'model__threshold': 0.0}, 'threshold 0.0 is not accepted: a number > 0'),
    ({'train__batch_size': 0}, 'batch size 0 is not accepted: an integer >= 1'),
    ({'model__encoding': 'frames'}, "encoding for digits 'frames' is not accepted"),
    ({'train__optimizer': 'lamb'}, "optimizer 'lamb' is not accepted: one of sgd, adam, adamw"),
    ({'eval__timesteps': 11}, 'eval timesteps 11 is not accepted: an integer in 1..10'),
    ({'model__norm': 'bn', 'model__schedule': 'step'}, "schedule for norm bn 'step'"),
    ({'model__sparse_conv': 'on'}, "sparse_conv 'on' is not accepted: one of auto, off"),
    ({'model__lif_kernel': 'on'}, "lif_kernel 'on' is not accepted: one of auto, tpu, off"),
])
def test_validate_names_the_bad_value(changes, message):
  with pytest.raises(ConfigError) as e:
    config_lib.validate(_bad(**changes))
  assert str(e.value).startswith(message) and '\n' not in str(e.value)


@pytest.mark.parametrize('key,argument,bad', [
    ('arch', 'arch', 'resnet'), ('timesteps', 'num_steps', 0), ('norm', 'norm', 'batchnorm'),
    ('neuron', 'neuron', 'tanh'), ('leak', 'leak', 1.5), ('threshold', 'threshold', 0.0),
    ('surrogate', 'surrogate', 'relu'), ('surrogate_alpha', 'surrogate_alpha', -1.0),
    ('encoding', 'encoding', 'rate'), ('schedule', 'schedule', 'time'),
    ('sparse_conv', 'sparse_conv', 'on'), ('lif_kernel', 'lif_kernel', 'on'),
])
def test_the_config_and_the_library_refuse_a_value_with_one_check(key, argument, bad):
  """Each value is checked once, by the library; validate calls that check: the same line."""
  config = default_config.get_config()
  config.model[key] = bad
  with pytest.raises(ConfigError) as from_config:
    config_lib.validate(config)
  kwargs = dict(arch='smallnet', num_classes=10, num_steps=2)
  kwargs[argument] = bad
  with pytest.raises(ConfigError) as from_library:
    models.create_model(**kwargs)
  assert str(from_config.value) == str(from_library.value)
  assert repr(bad) in str(from_config.value) or str(bad) in str(from_config.value)


def test_the_accepted_sets_are_the_librarys():
  config = default_config.get_config()
  for key, accepted in (('norm', sorted(norms.NORMS)), ('surrogate', sorted(neurons.SURROGATES)),
                        ('schedule', network.SCHEDULES), ('arch', sorted(models.ARCHITECTURES))):
    bad = default_config.get_config()
    bad.model[key] = 'nope'
    with pytest.raises(ConfigError) as e:
      config_lib.validate(bad)
    assert str(e.value).endswith(f'one of {", ".join(accepted)}'), str(e.value)
  config.train.optimizer = 'nope'
  with pytest.raises(ConfigError, match=f'one of {", ".join(optim.OPTIMIZERS)}$'):
    config_lib.validate(config)


def test_validate_rejects_unknown_keys_and_batches_that_do_not_split():
  config = default_config.get_config()
  config.train.epoch = 3          # a typo in a config file
  with pytest.raises(ConfigError, match="config key 'train.epoch' is not accepted"):
    config_lib.validate(config)
  config = default_config.get_config()
  config.model.norm_kwargs = ml_collections.ConfigDict({'use_bias': True})   # free-form: fine
  config_lib.validate(config)
  config.train.batch_size = 30
  with pytest.raises(ConfigError, match='batch size 30 is not accepted: a multiple of the 4'):
    config_lib.validate(config, num_devices=4)


def test_model_arguments_map_one_to_one_onto_create_model():
  config = default_config.get_config()
  kw = config_lib.model_kwargs(config, num_classes=10)
  assert kw['num_steps'] == config.model.timesteps and kw['num_classes'] == 10
  model = config_lib.create_model(config, 10)
  assert model.num_steps == config.model.timesteps and model.norm == 'bntt'
  config.model.sparse_conv = 'off'
  assert config_lib.create_model(config, 10).sparse_conv == 'off'


def test_unknown_norm_argument_is_a_config_error_listing_the_accepted_ones():
  """Before: make_norm dropped 'eps' (PyTorch's spelling of epsilon) without a word."""
  config = default_config.get_config()
  config.model.norm_kwargs = ml_collections.ConfigDict({'eps': 1e-3})
  with pytest.raises(ConfigError) as e:
    config_lib.validate(config)
  assert str(e.value) == ("norm_kwargs key 'eps' is not accepted: one of alpha, epsilon, "
                          "momentum, stat_groups, threshold, use_bias (the norms' settings)")
  # A setting of another norm is fine: one config may carry tdbn's threshold.
  config.model.norm_kwargs = ml_collections.ConfigDict({'epsilon': 1e-3, 'threshold': 0.5})
  config_lib.validate(config)


def _changed(key, value):
  config = default_config.get_config()
  node = config
  *parents, last = key.split('.')
  for p in parents:
    node = node[p]
  node[last] = value
  return config


@pytest.mark.parametrize('key,value', [
    ('model.arch', 'vgg9'), ('model.timesteps', 4), ('model.leak', 0.8),
    ('model.threshold', 0.5), ('model.norm', 'tebn'), ('data.name', 'mnist'), ('seed', 1),
    ('train.batch_size', 64), ('train.learning_rate', 0.05), ('train.optimizer', 'adam'),
    ('data.augment', 'crop_flip'), ('model.dtype', 'bfloat16'),
])
def test_resume_stops_on_a_change_that_changes_the_model_or_the_data(key, value):
  saved = default_config.get_config().to_dict()
  stop, allowed = config_lib.resume_changes(saved, _changed(key, value))
  assert list(stop) == [key] and allowed == {}
  with pytest.raises(ConfigError) as e:
    config_lib.check_resume(saved, _changed(key, value), step=40)
  assert f'{key} (' in str(e.value) and '\n' not in str(e.value)


@pytest.mark.parametrize('key,value', [
    ('train.epochs', 50), ('train.checkpoint_every_steps', 7), ('train.keep_checkpoints', 5),
    ('train.log_every_steps', 3), ('eval.num_keys', 1), ('eval.batch_size', 100),
    ('data.prefetch', 0), ('data.dir', '/elsewhere'), ('model.lif_kernel', 'off'),
])
def test_resume_allows_schedule_length_logging_and_evaluation_changes(key, value):
  saved = default_config.get_config().to_dict()
  stop, allowed = config_lib.resume_changes(saved, _changed(key, value))
  assert stop == {}
  old = saved
  for part in key.split('.'):
    old = old[part]
  assert allowed == {key: (old, value)}


def test_norm_kwargs_entries_are_compared_one_by_one():
  saved = _changed('model.norm_kwargs', ml_collections.ConfigDict({'epsilon': 1e-4})).to_dict()
  stop, _ = config_lib.resume_changes(
      saved, _changed('model.norm_kwargs', ml_collections.ConfigDict({'epsilon': 1e-3})))
  assert stop == {'model.norm_kwargs.epsilon': (1e-4, 1e-3)}
  stop, _ = config_lib.resume_changes(saved, default_config.get_config())
  assert stop == {'model.norm_kwargs.epsilon': (1e-4, None)}


def test_config_record_keeps_every_config_with_the_step_it_took_effect():
  first = default_config.get_config()
  record = config_lib.config_record(None, first, step=0)
  assert record['history'] == [{'step': 0, 'config': json_roundtrip(first)}]
  assert {k: v for k, v in record.items() if k != 'history'} == json_roundtrip(first)
  assert config_lib.config_record(record, first, step=40) == record   # no change: no entry
  longer = _changed('train.epochs', 40)
  r2 = config_lib.config_record(record, longer, step=40)
  assert r2['train']['epochs'] == 40
  assert [h['step'] for h in r2['history']] == [0, 40]
  assert r2['history'][1]['changed'] == {'train.epochs': [25, 40]}
  # Resumed from an older checkpoint (the newer one was damaged): later entries no longer
  # describe the run.
  r3 = config_lib.config_record(r2, first, step=30)
  assert [h['step'] for h in r3['history']] == [0] and r3['train']['epochs'] == 25
  assert config_lib.config_in_force(r2, 39)['train']['epochs'] == 25
  assert config_lib.config_in_force(r2, 40)['train']['epochs'] == 40
  # A run written before histories were kept: its plain config counts from step 0.
  assert config_lib.config_in_force(json_roundtrip(first), 500) == json_roundtrip(first)


def json_roundtrip(config):
  import json  # pylint: disable=g-import-not-at-top
  return json.loads(json.dumps(config.to_dict()))


# Values whose meaning the two command lines used to differ on: analyze read them with
# ast.literal_eval (a quoted string lost its quotes, 1 stayed an int in a float field, an int
# in a bool field was refused), main with ml_collections' flag parsers.
OVERRIDES = ['--config.model.leak=1', '--config.model.norm=none', "--config.data.name='digits'",
             '--config.model.remat=1', '--noconfig.data.download', '--config.analysis.pgd_steps=20',
             '--config.analysis.fgsm_epsilons=(0.1, 0.2)', '--config.data.mean=0.5',
             '--config.analysis.noise_sigmas=()', '--config.eval.timesteps=4',
             '--config.analysis.pgd_random_start', '--config.model.surrogate_alpha=2']


def _as_main_parses(argv):
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  from bntt_jax import cli  # pylint: disable=g-import-not-at-top
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', cli.DEFAULT_CONFIG, flag_values=values,
                                  lock_config=True, sys_argv=argv)
  values(argv)
  return values.config


@pytest.mark.parametrize('override', OVERRIDES)
def test_main_and_analyze_read_an_override_the_same(override):
  from bntt_jax import analyze  # pylint: disable=g-import-not-at-top
  from bntt_jax.analysis import runs  # pylint: disable=g-import-not-at-top
  trained = _as_main_parses(['main', override])
  # analyze: the same argument, applied to a run's saved config as config.json holds it.
  saved = ml_collections.ConfigDict(config_lib._plain(default_config.get_config()))
  _, overrides = analyze.split_overrides(['analyze', '--workdir=w', override])
  analysed = runs.apply_overrides(saved, overrides)
  key = override.split('=', 1)[0].split('config.', 1)[1]
  a, b = config_lib._flat(config_lib._plain(trained)), config_lib._flat(config_lib._plain(analysed))
  assert a[key] == b[key] and type(a[key]) is type(b[key]), (a[key], b[key])
  assert a[key] != config_lib._flat(config_lib._plain(default_config.get_config()))[key]
  assert a == b


def test_a_config_files_own_smoke_replaces_the_default_one():
  """default_config.variant: a file's own ``smoke`` (the event-data configs': a few fixture
  files) is used instead of default_config.smoke; other names are listed in the error. Before,
  the tonic configs parsed their argument themselves, with another message."""
  own = lambda c: (c.train.__setitem__('epochs', 7), c)[1]
  got = default_config.variant(default_config.get_config(), 'smoke', smoke=own)
  assert got.train.epochs == 7 and got.train.batch_size == default_config.get_config(
  ).train.batch_size
  assert default_config.variant(default_config.get_config(), 'smoke').train.batch_size == 4
  with pytest.raises(ValueError, match=r"config variant 'x' is not accepted: one of full, "
                     r"smoke \(or none\)"):
    default_config.variant(default_config.get_config(), 'x', full=own)
