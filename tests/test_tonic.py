"""DVS Gesture, N-MNIST, SHD and CIFAR10-DVS through tonic (bntt_jax.data.tonic_source).

Files are written in each release's own layout (tests/tonic_fixtures.py) and read by tonic's
own dataset classes; the expected frames are computed here from the events the fixtures
wrote, by loops independent of the module's binning.
"""
import importlib.util
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import tonic_fixtures as fx

from bntt_jax import config_lib
from bntt_jax import data
from bntt_jax import models
from bntt_jax import train
from bntt_jax.data import dvs, tonic_source
from bntt_jax.errors import ConfigError, DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_AEDAT = importlib.util.find_spec('aedat') is not None
# The tests that read files through tonic; the rest (binning, errors, the network, the
# configs) run without it.
needs_tonic = pytest.mark.skipif(
    importlib.util.find_spec('tonic') is None,
    reason='tonic is not installed (the optional extra bntt_jax[events]): its datasets untested')
needs_aedat = pytest.mark.skipif(
    not HAVE_AEDAT, reason='the aedat package (tonic reads AEDAT 4.0 with it) is not installed')


def _load(name, d, **options):
  return data.load_dataset(name, source='tonic', data_dir=str(d), download=False,
                           options=options)


def expected_frames(ev, timesteps, sensor_w, sensor_h, polarities, size, split_by='time',
                    window_us=0, origin='first'):
  """Independent reference: per-event loops, integer block sums (size divides the sensor)."""
  t = np.asarray(ev['t'], np.int64)
  t0 = t.min() if origin == 'first' else 0
  span = t.max() - t0
  out = np.zeros((timesteps, size if sensor_h > 1 else 1, size, polarities))
  fy, fx_ = (sensor_h // size if sensor_h > 1 else 1), sensor_w // size
  order = np.argsort(t, kind='stable')
  rank = np.empty_like(order)
  rank[order] = np.arange(t.size)
  for k in range(t.size):
    if split_by == 'time':
      b = 0 if span == 0 else min((t[k] - t0) * timesteps // span, timesteps - 1)
    elif split_by == 'count':
      b = rank[k] * timesteps // t.size
    else:
      if not 0 <= t[k] - t0 < window_us:
        continue
      b = (t[k] - t0) * timesteps // window_us
    out[b, ev['y'][k] // fy, ev['x'][k] // fx_, ev['p'][k]] += 1
  return out[:, 0, :, 0] if sensor_h == 1 else out


# -- binning, against the DVS-CIFAR10 path ------------------------------------


@pytest.mark.parametrize('split_by', ['time', 'count'])
@pytest.mark.parametrize('method', ['area', 'floor'])
def test_frames_equal_the_dvs_paths_binning_on_the_same_events(split_by, method):
  rng = np.random.default_rng(3)
  n = 500
  ev = np.empty(n, dvs.EVENT_DTYPE)
  ev['t'] = np.sort(rng.integers(0, 10_000, n)) + 77
  ev['x'], ev['y'] = rng.integers(0, 128, n), rng.integers(0, 128, n)
  ev['p'] = rng.integers(0, 2, n)
  ours = tonic_source.events_to_frames(
      {k: ev[k].astype(np.int64) for k in 'txyp'}, sensor=(128, 128, 2), timesteps=7,
      size=42, split_by=split_by, method=method)
  np.testing.assert_allclose(ours, dvs.events_to_frames(ev, 7, 42, split_by, 128, method=method),
                             rtol=0, atol=1e-5)
  assert ours.sum() == pytest.approx(n)


def test_window_bins_are_fixed_width_from_the_origin_and_drop_later_events():
  ev = {'t': np.array([0, 99, 100, 250, 399, 400, 1000]), 'x': np.array([0, 1, 2, 3, 4, 5, 6]),
        'y': np.zeros(7, np.int64), 'p': np.zeros(7, np.int64)}
  f = tonic_source.events_to_frames(ev, sensor=(700, 1, 1), timesteps=4, size=700,
                                    split_by='window', window_us=400, origin='zero')
  assert f.shape == (4, 700)
  # bins [0,100) [100,200) [200,300) [300,400); t = 400 and 1000 are dropped.
  assert f[0, 0] == f[0, 1] == 1 and f[1, 2] == 1 and f[2, 3] == 1 and f[3, 4] == 1
  assert f.sum() == 5
  # From the first event instead: t - 99.
  ev['t'] = ev['t'] + 99
  g = tonic_source.events_to_frames(ev, sensor=(700, 1, 1), timesteps=4, size=700,
                                    split_by='window', window_us=400, origin='first')
  np.testing.assert_array_equal(f, g)


def test_shd_channels_are_area_resampled_keeping_every_spike():
  ev = {'t': np.arange(7), 'x': np.array([0, 4, 5, 9, 10, 698, 699]), 'y': np.zeros(7, int),
        'p': np.zeros(7, int)}
  f = tonic_source.events_to_frames(ev, sensor=(700, 1, 1), timesteps=1, size=140,
                                    split_by='time')
  assert f.shape == (1, 140) and f.sum() == pytest.approx(7)
  np.testing.assert_allclose(f[0, :3], [2, 2, 1])     # 5 channels per output channel
  assert f[0, 139] == pytest.approx(2)
  g = tonic_source.events_to_frames(ev, sensor=(700, 1, 1), timesteps=1, size=300,
                                    split_by='time')
  # Output k covers channels [7k/3, 7(k+1)/3): channel 4 ([4, 5)) gives 2/3 to output 1
  # ([2.33, 4.67)) and 1/3 to output 2 ([4.67, 7)), which also holds channel 5 whole.
  assert g.sum() == pytest.approx(7)
  np.testing.assert_allclose(g[0, :3], [1, 2 / 3, 1 / 3 + 1], rtol=1e-6)


# -- each dataset end to end --------------------------------------------------


@needs_tonic
def test_dvsgesture_frames_labels_and_splits_through_tonic(tmp_path):
  written = fx.write_dvsgesture(tmp_path)
  ds = _load('dvsgesture', tmp_path, timesteps=5, size=32)
  assert ds.info.kind == 'frames' and ds.info.num_classes == 11
  assert ds.train.x.shape == (11, 5, 32, 32, 2) and ds.train.x.dtype == np.float32
  assert len(ds.test) == 11
  # Rows are sorted by path: '0.npy', '1.npy', '10.npy', '2.npy', ...
  assert ds.train.y.tolist() == sorted(range(11), key=str)
  for split, got in (('train', ds.train), ('test', ds.test)):
    for ev, label in written[split]:
      row = got.y.tolist().index(label)
      np.testing.assert_allclose(got.x[row], expected_frames(ev, 5, 128, 128, 2, 32), atol=1e-4)
  assert data.example_spec('dvsgesture', {'timesteps': 5, 'size': 32}) == (
      ds.train.x.shape[1:], 11)


@needs_tonic
def test_nmnist_frames_follow_tonics_overflow_markers_and_count_bins(tmp_path):
  written = fx.write_nmnist(tmp_path)
  ds = _load('nmnist', tmp_path, timesteps=3, split_by='count')
  assert ds.train.x.shape == (20, 3, 34, 34, 2) and ds.test.x.shape == (10, 3, 34, 34, 2)
  np.testing.assert_array_equal(ds.train.y, np.repeat(np.arange(10), 2))
  for split, got in (('train', ds.train), ('test', ds.test)):
    for row, (ev, label) in enumerate(written[split]):
      assert got.y[row] == label
      np.testing.assert_array_equal(got.x[row], expected_frames(ev, 3, 34, 34, 2, 34, 'count'))
  # The recording with the overflow marker: its second half is 2**13 us later, so with
  # 'time' bins its events move towards the last bin compared with ignoring the marker.
  ev, _ = written['train'][0]
  t = _load('nmnist', tmp_path, timesteps=3)
  np.testing.assert_array_equal(t.train.x[0], expected_frames(ev, 3, 34, 34, 2, 34, 'time'))
  assert data.example_spec('nmnist', {'timesteps': 3}) == (t.train.x.shape[1:], 10)


@needs_tonic
def test_shd_frames_from_the_h5_release_in_10ms_windows(tmp_path):
  written = fx.write_shd(tmp_path)
  ds = _load('shd', tmp_path, timesteps=100, split_by='window', window_us=1_000_000)
  assert ds.train.x.shape == (40, 100, 700) and ds.test.x.shape == (20, 100, 700)
  np.testing.assert_array_equal(ds.train.y, np.arange(40) % 20)
  for split, got in (('train', ds.train), ('test', ds.test)):
    for row, (ev, label) in enumerate(written[split]):
      want = expected_frames(ev, 100, 700, 1, 1, 700, 'window', 1_000_000, 'zero')
      np.testing.assert_array_equal(got.x[row], want)
      assert got.x[row].sum() == len(ev['t'])   # every spike lies in [0.05, 0.95] s
  assert data.example_spec('shd', {'timesteps': 100}) == ((100, 700), 20)
  small = _load('shd', tmp_path, timesteps=4, size=140)
  assert small.train.x.shape == (40, 4, 140)
  np.testing.assert_allclose(small.train.x.sum(axis=(1, 2)), [len(e['t']) for e, _ in
                                                              written['train']], rtol=1e-5)


@needs_tonic
@needs_aedat
def test_cifar10dvs_through_tonic_equals_our_aedat2_reader(tmp_path):
  """The same recordings in AEDAT 4.0 (DV's axes, shifted clock) and AEDAT 2.0: tonic's
  frames transposed (orientation='spikingjelly') equal bntt_jax.data.dvs's default ones,
  and the seeded split is the same."""
  fx.write_cifar10dvs(tmp_path, aedat2_root=tmp_path / 'aedat2', per_class=5)
  for method in ('area', 'floor'):
    ds = _load('cifar10dvs', tmp_path, timesteps=5, size=42, orientation='spikingjelly',
               method=method, train_fraction=0.6, seed=4)
    (xtr, ytr), (xte, yte) = dvs.load_dvs_cifar10(tmp_path / 'aedat2', timesteps=5, size=42,
                                                  method=method, train_fraction=0.6, seed=4)
    np.testing.assert_array_equal(ds.train.y, ytr)
    np.testing.assert_array_equal(ds.test.y, yte)
    np.testing.assert_allclose(ds.train.x, xtr, atol=1e-5)
    np.testing.assert_allclose(ds.test.x, xte, atol=1e-5)
  # As read: DV's view is the transpose of spikingjelly's.
  raw = _load('cifar10dvs', tmp_path, timesteps=5, size=42, method='floor', train_fraction=0.6,
              seed=4)
  np.testing.assert_array_equal(raw.train.x, ds.train.x.transpose(0, 1, 3, 2, 4))
  assert data.example_spec('cifar10dvs', {'timesteps': 5, 'size': 42}) == ((5, 42, 42, 2), 10)


# -- the cache ------------------------------------------------------------------


@needs_tonic
def test_cache_is_reused_keyed_by_settings_and_sources_and_loads_without_pickle(
    tmp_path, monkeypatch):
  fx.write_nmnist(tmp_path / 'd')
  cache = tmp_path / 'cache'
  first = _load('nmnist', tmp_path / 'd', timesteps=3, cache_dir=str(cache))
  names = sorted(os.listdir(cache))
  assert len([n for n in names if n.endswith('.frames.npy')]) == 2      # train, test
  for n in names:   # plain arrays only
    if n.endswith('.npz'):
      with np.load(cache / n, allow_pickle=False) as meta:
        assert all(meta[k].dtype != object for k in meta.files)
    else:
      assert np.load(cache / n, allow_pickle=False).dtype == np.float32

  def no_preprocessing(*a, **k):
    raise AssertionError('preprocessed although cached')
  monkeypatch.setattr(tonic_source, '_preprocess', no_preprocessing)
  again = _load('nmnist', tmp_path / 'd', timesteps=3, cache_dir=str(cache))
  np.testing.assert_array_equal(first.train.x, again.train.x)
  np.testing.assert_array_equal(first.test.y, again.test.y)
  monkeypatch.undo()
  # Another setting, or a changed source file: new entries.
  _load('nmnist', tmp_path / 'd', timesteps=3, split_by='count', cache_dir=str(cache))
  assert len(os.listdir(cache)) == 8
  f = tmp_path / 'd' / 'NMNIST' / 'Test' / '3' / '00000.bin'
  f.write_bytes(f.read_bytes() + fx.nmnist_bytes([1], [2], [1], [299_999]))
  changed = _load('nmnist', tmp_path / 'd', timesteps=3, cache_dir=str(cache))
  assert len(os.listdir(cache)) == 10      # the test split only
  assert changed.test.x[3].sum() == first.test.x[3].sum() + 1


# -- errors ---------------------------------------------------------------------


@needs_tonic
def test_truncated_nmnist_file_stops_with_its_name_or_is_skipped(tmp_path):
  fx.write_nmnist(tmp_path)
  bad = tmp_path / 'NMNIST' / 'Train' / '4' / '00001.bin'
  bad.write_bytes(bad.read_bytes()[:-2])
  with pytest.raises(DataError) as e:
    _load('nmnist', tmp_path, timesteps=2)
  msg = str(e.value)
  assert str(bad) in msg and 'truncated' in msg and '\n' not in msg
  with pytest.warns(RuntimeWarning, match='00001.bin'):
    ds = _load('nmnist', tmp_path, timesteps=2, on_error='skip')
  assert len(ds.train) == 19 and ds.train.y.tolist().count(4) == 1


@needs_tonic
def test_damaged_dvsgesture_and_shd_files_are_one_line_errors_naming_them(tmp_path):
  fx.write_dvsgesture(tmp_path)
  bad = tmp_path / 'DVSGesture' / 'ibmGestureTest' / 'user24_led' / '7.npy'
  bad.write_bytes(bad.read_bytes()[:40])          # cut inside the .npy header
  with pytest.raises(DataError) as e:
    _load('dvsgesture', tmp_path, timesteps=2, size=32)
  assert str(bad) in str(e.value) and '\n' not in str(e.value)
  fx.write_shd(tmp_path)
  h5 = tmp_path / 'SHD' / 'shd_train.h5'
  h5.write_bytes(b'not an hdf5 file' + h5.read_bytes()[16:])
  with pytest.raises(DataError) as e:
    _load('shd', tmp_path, timesteps=2)
  assert 'shd_train.h5' in str(e.value) and '\n' not in str(e.value)


@needs_tonic
def test_out_of_range_coordinates_name_the_file(tmp_path):
  fx.write_dvsgesture(tmp_path)
  bad = tmp_path / 'DVSGesture' / 'ibmGestureTrain' / 'user01_fluorescent' / '3.npy'
  arr = np.load(bad)
  arr[0, 0] = 128                                 # x outside the DVS128's 0..127
  np.save(bad, arr)
  with pytest.raises(DataError, match=r'3\.npy: event x spans \d+\.\.128, outside 0\.\.127'):
    _load('dvsgesture', tmp_path, timesteps=2, size=32)


@needs_tonic
def test_missing_dataset_is_a_data_error_and_downloads_only_when_asked(tmp_path, monkeypatch):
  import tonic.dataset  # pylint: disable=g-import-not-at-top  (an optional extra)
  calls = []
  monkeypatch.setattr(tonic.dataset, 'download_and_extract_archive',
                      lambda url, root, filename, md5: calls.append((url, filename, md5)))
  with pytest.raises(DataError) as e:
    _load('shd', tmp_path)
  msg = str(e.value)
  assert os.path.join(str(tmp_path), 'SHD', 'shd_train.h5') in msg
  assert 'data.download=True' in msg and not calls
  # download=True: tonic's own download (its url and md5), then the files are still absent.
  with pytest.raises(DataError):
    data.load_dataset('shd', source='tonic', data_dir=str(tmp_path), download=True)
  assert calls and calls[0][1] == 'shd_train.h5.zip' and calls[0][2] == tonic.datasets.SHD.train_md5


def test_tonic_missing_is_a_one_line_config_error(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, 'tonic', None)    # import tonic -> ImportError
  with pytest.raises(ConfigError) as e:
    _load('nmnist', tmp_path)
  assert 'bntt_jax[events]' in str(e.value) and '\n' not in str(e.value)


@pytest.mark.parametrize('options, match', [
    ({'sise': 3}, "data.options key for nmnist 'sise'"),
    ({'size': 35}, 'data.options.size 35'),
    ({'split_by': 'window'}, 'window_us'),
    ({'window_us': 5}, 'unless split_by is window'),
    ({'orientation': 'spikingjelly'}, 'data.options key for nmnist'),
    ({'first_saccade_only': 1}, 'True or False'),
])
def test_bad_options_are_config_errors(tmp_path, options, match):
  with pytest.raises(ConfigError, match=match):
    _load('nmnist', tmp_path, **options)


def test_registry_entries_take_only_the_tonic_source_and_need_a_directory():
  for name in tonic_source.NAMES:
    assert data.resolve_source(name, 'auto') == 'tonic'
    assert data.REGISTRY[name].kind == 'frames'
    with pytest.raises(ConfigError, match='data directory'):
      data.check_data_dir(name, 'tonic', '')


# -- the 1-D network ------------------------------------------------------------


def test_mlp_runs_dense_bntt_layers_over_700_channels_per_step():
  net = models.create_model('mlp', num_classes=20, num_steps=6, encoding='frames',
                            arch_kwargs={'hidden': (16, 8)}, lif_kernel='off')
  x = jax.random.uniform(jax.random.PRNGKey(0), (3, 6, 700)) * 3
  variables = net.init({'params': jax.random.PRNGKey(1)}, x, train=False)
  p = variables['params']
  assert p['fc1']['synapse']['kernel'].shape == (700, 16)
  assert p['fc2']['synapse']['kernel'].shape == (16, 8)
  assert p['fc_out']['kernel'].shape == (8, 20)
  out = net.apply(variables, x, train=False)
  assert out.logits.shape == (3, 20) and out.readout.shape == (6, 3, 20)
  # The input currents are the frames themselves: per step, the sum of |x|.
  np.testing.assert_allclose(out.input_spikes, np.abs(np.asarray(x)).sum(-1).T, rtol=1e-5)
  with pytest.raises(ConfigError, match='mlp hidden widths'):
    models.create_model('mlp', num_classes=2, num_steps=1, arch_kwargs={'hidden': ()})


# -- the configs' smoke runs ------------------------------------------------------


def _config(name, arg):
  spec = importlib.util.spec_from_file_location(f'cfg_{name}',
                                                os.path.join(ROOT, 'configs', f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


@pytest.mark.parametrize('name', ['dvs_gesture', 'nmnist', 'shd'])
def test_configs_validate_and_their_smoke_variant_keeps_the_network(name, tmp_path):
  full, smoke = _config(name, None), _config(name, 'smoke')
  for c in (full, smoke):
    c.data.dir = str(tmp_path)
    config_lib.validate(c)
  assert smoke.model.arch == full.model.arch
  assert smoke.model.arch_kwargs.to_dict() == full.model.arch_kwargs.to_dict()
  assert smoke.data.name == full.data.name and smoke.data.source == 'tonic'
  assert full.data.download is False
  with pytest.raises(ValueError, match="config variant 'bogus' is not accepted: one of smoke"):
    _config(name, 'bogus')


WRITERS = {'dvs_gesture': fx.write_dvsgesture, 'nmnist': fx.write_nmnist, 'shd': fx.write_shd}


@needs_tonic
@pytest.mark.full
@pytest.mark.parametrize('name', ['dvs_gesture', 'nmnist', 'shd'])
def test_smoke_config_trains_end_to_end_on_the_fixture_files(name, tmp_path):
  WRITERS[name](tmp_path / 'data')
  config = _config(name, 'smoke')
  config.data.dir = str(tmp_path / 'data')
  summary = train.train_and_evaluate(config, str(tmp_path / 'run'))
  n_train = {'dvs_gesture': 11, 'nmnist': 20, 'shd': 40}[name]
  assert summary['train_examples'] == n_train
  assert summary['steps'] == n_train // config.train.batch_size
  assert 0.0 <= summary['final_test_accuracy'] <= 1.0
  assert os.path.exists(tmp_path / 'run' / 'summary.json')


@needs_tonic
@needs_aedat
def test_truncated_aedat4_recording_and_unknown_class_folder_are_named(tmp_path):
  fx.write_cifar10dvs(tmp_path, per_class=3)
  bad = tmp_path / 'CIFAR10DVS' / 'automobile' / 'cifar10_automobile_1.aedat4'
  bad.write_bytes(bad.read_bytes()[:-7])           # cut inside the last packet
  with pytest.raises(DataError) as e:
    _load('cifar10dvs', tmp_path, timesteps=2, size=42)
  assert str(bad) in str(e.value) and '\n' not in str(e.value)
  with pytest.warns(RuntimeWarning, match='cifar10_automobile_1'):
    ds = _load('cifar10dvs', tmp_path, timesteps=2, size=42, on_error='skip')
  assert len(ds.train) + len(ds.test) == 5
  (tmp_path / 'CIFAR10DVS' / 'zebra').mkdir()
  (tmp_path / 'CIFAR10DVS' / 'zebra' / 'z_0.aedat4').write_bytes(b'')
  with pytest.raises(DataError, match="CIFAR10DVS.*KeyError: 'zebra'"):
    _load('cifar10dvs', tmp_path, timesteps=2, size=42)


def _main(args):
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  return subprocess.run([sys.executable, '-m', 'bntt_jax.main'] + args, cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


@needs_tonic
@pytest.mark.full
def test_main_reports_an_absent_or_damaged_dataset_in_one_line_and_exits_2(tmp_path):
  args = ['--config=configs/shd.py', f'--config.data.dir={tmp_path}',
          '--config.data.options.cache_dir=', f'--workdir={tmp_path / "run"}']
  r = _main(args)
  lines = [l for l in r.stderr.splitlines() if l.startswith('error:')]
  assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
  assert 'shd_train.h5' in lines[0] and 'data.download=True' in lines[0]
  assert 'Traceback' not in r.stderr
  fx.write_shd(tmp_path)
  h5 = tmp_path / 'SHD' / 'shd_test.h5'
  h5.write_bytes(h5.read_bytes()[:100])
  r = _main(args)
  lines = [l for l in r.stderr.splitlines() if l.startswith('error:')]
  assert r.returncode == 2 and len(lines) == 1 and 'shd_test.h5' in lines[0], r.stderr[-2000:]
  assert 'Traceback' not in r.stderr
