"""DVS-CIFAR10 data: AEDAT 2.0 reader, binning, cache, errors, split (spec section 4)."""
import os
import struct

import numpy as np
import pytest

import dvs_fixtures as fx
from bntt_jax.data import dvs

# The hand-built recording: (raw x, raw y, raw polarity bit, t in us), plus one
# sync event. With the default orientation x = 127 - raw y, y = 127 - raw x,
# p = 1 - raw bit (raw 0 is ON). t0 = 1000, t_last = 2000, so with T = 5 the
# edges are 1000, 1200, 1400, 1600, 1800, 2000.
HAND_EVENTS = [
    (127, 127, 0, 1000),   # x 0,   y 0,  ON,  bin 0 (first event)
    (124, 123, 1, 1199),   # x 4,   y 3,  OFF, bin 0 (just before the edge)
    (124, 123, 1, 1200),   # x 4,   y 3,  OFF, bin 1 (exactly on the edge)
    (0, 0, 0, 1700),       # x 127, y 127, ON, bin 3
    (63, 42, 1, 1999),     # x 85,  y 64, OFF, bin 4
    (63, 42, 1, 2000),     # x 85,  y 64, OFF, bin 4 (the last event)
    (127, 127, 0, 1000),   # x 0,   y 0,  ON,  bin 0 (same time as the first)
]
SYNC_WORD = (fx.SYNC_BIT, 1500)


def hand_recording(path):
  words = [(fx.dvs128_address(x, y, p), t) for x, y, p, t in HAND_EVENTS[:3]]
  words.append(SYNC_WORD)
  words += [(fx.dvs128_address(x, y, p), t) for x, y, p, t in HAND_EVENTS[3:]]
  return fx.write_recording(path, words)


def test_reader_decodes_hand_built_dvs128_words(tmp_path):
  path = hand_recording(tmp_path / 'rec.aedat')
  ev = dvs.read_aedat(path)
  assert ev.dtype == dvs.EVENT_DTYPE
  # The sync event is dropped; the rest keep file order.
  np.testing.assert_array_equal(ev['t'], [1000, 1199, 1200, 1700, 1999, 2000, 1000])
  np.testing.assert_array_equal(ev['x'], [0, 4, 4, 127, 85, 85, 0])
  np.testing.assert_array_equal(ev['y'], [0, 3, 3, 127, 64, 64, 0])
  np.testing.assert_array_equal(ev['p'], [1, 0, 0, 1, 0, 0, 1])
  # jAER's own view: x = 127 - raw x, y = raw y.
  ev = dvs.read_aedat(path, orientation='jaer')
  np.testing.assert_array_equal(ev['x'], [0, 3, 3, 127, 64, 64, 0])
  np.testing.assert_array_equal(ev['y'], [127, 123, 123, 0, 42, 42, 127])


def test_reader_reads_a_file_with_only_the_version_line_and_unwraps_timestamps(tmp_path):
  a = fx.dvs128_address(1, 2, 0)
  words = [(a, 2**32 - 100), (a, 2**32 - 1), (a, 5), (a, 50)]
  path = fx.write_recording(tmp_path / 'wrap.aedat', words, header=(b'#!AER-DAT2.0\r\n',))
  np.testing.assert_array_equal(dvs.read_aedat(path)['t'],
                                [2**32 - 100, 2**32 - 1, 2**32 + 5, 2**32 + 50])


def test_floor_binning_counts_exact_per_bin_pixel_and_polarity(tmp_path):
  ev = dvs.read_aedat(hand_recording(tmp_path / 'rec.aedat'))
  frames = dvs.events_to_frames(ev, 5, 42, 'time', 128, method='floor')
  assert frames.shape == (5, 42, 42, 2) and frames.dtype == np.float32
  # floor(c * 42 / 128): 0 -> 0, 3 -> 0, 4 -> 1, 64 -> 21, 85 -> 27, 127 -> 41.
  expected = np.zeros((5, 42, 42, 2), np.float32)
  expected[0, 0, 0, 1] = 2      # first event and its twin at t0
  expected[0, 0, 1, 0] = 1      # t = 1199
  expected[1, 0, 1, 0] = 1      # t = 1200, on the edge: next bin
  expected[3, 41, 41, 1] = 1
  expected[4, 21, 27, 0] = 2    # t = 1999 and the last event t = 2000
  np.testing.assert_array_equal(frames, expected)


def test_area_binning_shares_each_event_by_overlap(tmp_path):
  ev = dvs.read_aedat(hand_recording(tmp_path / 'rec.aedat'))
  frames = dvs.events_to_frames(ev, 5, 42, 'time', 128, method='area')
  # Sensor coordinate c spans [42c, 42c + 42) and output k spans [128k, 128k + 128),
  # in units of 1/42 sensor pixel; the weight is the overlap / 42.
  w = {0: {0: 1.0}, 3: {0: 2 / 42, 1: 40 / 42}, 4: {1: 1.0}, 64: {21: 1.0},
       85: {27: 14 / 42, 28: 28 / 42}, 127: {41: 1.0}}
  bins = [0, 0, 1, 3, 4, 4, 0]
  expected = np.zeros((5, 42, 42, 2))
  for b, x, y, p in zip(bins, ev['x'], ev['y'], ev['p']):
    for row, wy in w[int(y)].items():
      for col, wx in w[int(x)].items():
        expected[b, row, col, p] += wy * wx
  np.testing.assert_allclose(frames, expected, rtol=1e-6, atol=1e-7)
  # Counts per bin and polarity are kept.
  np.testing.assert_allclose(frames.sum((1, 2)), [[1, 2], [1, 0], [0, 0], [0, 1], [2, 0]],
                             rtol=1e-6)


def test_area_weights_cover_every_sensor_pixel_once():
  a = dvs.area_weights(128, 42)
  np.testing.assert_allclose(a.sum(0), 1.0)
  np.testing.assert_allclose(a.sum(1), 128 / 42)


def test_count_split_gives_equal_counts_in_time_order():
  # Seven events in file order out of time order; each on its own pixel.
  t = np.array([70, 10, 30, 20, 60, 40, 50])
  ev = np.zeros(7, dvs.EVENT_DTYPE)
  ev['t'], ev['x'], ev['y'], ev['p'] = t, np.arange(7), 0, 1
  frames = dvs.events_to_frames(ev, 3, 128, 'count', 128, method='floor')
  # Time order 10,20,30 | 40,50 | 60,70: sizes 3, 2, 2 (7 * b // 3 boundaries).
  np.testing.assert_array_equal(frames.sum((1, 2, 3)), [3, 2, 2])
  np.testing.assert_array_equal(np.flatnonzero(frames[0, 0, :, 1]), [1, 2, 3])
  np.testing.assert_array_equal(np.flatnonzero(frames[1, 0, :, 1]), [5, 6])
  np.testing.assert_array_equal(np.flatnonzero(frames[2, 0, :, 1]), [0, 4])


def test_time_split_of_one_timestamp_puts_everything_in_bin_0():
  np.testing.assert_array_equal(dvs.time_bins(np.full(4, 7), 20, 'time'), 0)


def test_bad_settings_and_coordinates_are_refused():
  ev = np.zeros(1, dvs.EVENT_DTYPE)
  with pytest.raises(ValueError, match='split_by'):
    dvs.events_to_frames(ev, 20, 42, 'frames', 128)
  with pytest.raises(ValueError, match='method'):
    dvs.events_to_frames(ev, 20, 42, 'time', 128, method='bicubic')
  ev['x'] = 128
  with pytest.raises(ValueError, match='outside'):
    dvs.events_to_frames(ev, 20, 42, 'time', 128)


def good_bytes():
  return fx.aedat2_bytes([(fx.dvs128_address(x, y, p), t) for x, y, p, t in HAND_EVENTS])


@pytest.mark.parametrize('content, match', [
    (lambda: good_bytes()[:-3], 'truncated AEDAT 2.0 data'),
    (lambda: b'#!AER-DAT2.0\r\n# cut in the head', 'truncated in the AEDAT header'),
    (lambda: b'#!AER-DAT3.1\r\n' + struct.pack('>II', 2, 3), 'AEDAT 3.1 is not read'),
    (lambda: fx.aedat2_bytes([(1 << 20, 5)]), 'bits a DVS128 never sets'),
])
def test_corrupt_recording_error_is_one_line_naming_the_file(tmp_path, content, match):
  path = tmp_path / 'cifar10_cat_7.aedat'
  path.write_bytes(content())
  with pytest.raises(dvs.RecordingError, match=match) as err:
    dvs.read_aedat(path)
  assert 'cifar10_cat_7.aedat' in str(err.value) and '\n' not in str(err.value)


def truncate(path, nbytes=3):
  data = open(path, 'rb').read()
  with open(path, 'wb') as f:
    f.write(data[:-nbytes])


def test_loader_shapes_labels_and_missing_root(tmp_path):
  made = fx.make_dataset(tmp_path / 'data', per_class=3)
  (xtr, ytr), (xte, yte) = dvs.load_dvs_cifar10(tmp_path / 'data', timesteps=6, size=42)
  assert xtr.shape[1:] == (6, 42, 42, 2) and xtr.dtype == np.float32
  assert ytr.dtype == np.int32 and yte.dtype == np.int32
  assert len(xtr) + len(xte) == len(made) == 6
  # Class index = sorted folder names; every event counted once (area keeps counts).
  totals = {round(float(f.sum())): int(y) for f, y in zip(np.concatenate([xtr, xte]),
                                                           np.concatenate([ytr, yte]))}
  assert totals == {n: c for c, n in made.values()}
  missing = tmp_path / 'nowhere'
  with pytest.raises(ValueError, match='nowhere') as err:
    dvs.load_dvs_cifar10(missing)
  assert '\n' not in str(err.value)


def test_truncated_recording_stops_the_run_or_is_skipped_with_a_warning(tmp_path):
  fx.make_dataset(tmp_path, per_class=3)
  truncate(tmp_path / 'automobile' / 'cifar10_automobile_1.aedat')
  with pytest.raises(dvs.RecordingError, match='cifar10_automobile_1.aedat') as err:
    dvs.load_dvs_cifar10(tmp_path, timesteps=4)
  assert '\n' not in str(err.value)
  with pytest.warns(RuntimeWarning, match='cifar10_automobile_1.aedat'):
    (xtr, ytr), (xte, yte) = dvs.load_dvs_cifar10(tmp_path, timesteps=4, on_error='skip')
  assert len(xtr) + len(xte) == 5
  assert np.concatenate([ytr, yte]).tolist().count(1) == 2


def test_recording_without_events_is_an_error_not_zeros(tmp_path):
  fx.make_dataset(tmp_path, per_class=2)
  fx.write_recording(tmp_path / 'airplane' / 'cifar10_airplane_5.aedat', [])
  with pytest.raises(dvs.RecordingError, match='cifar10_airplane_5.aedat: holds no DVS events'):
    dvs.load_dvs_cifar10(tmp_path, timesteps=4)
  with pytest.warns(RuntimeWarning, match='cifar10_airplane_5.aedat'):
    (xtr, _), (xte, _) = dvs.load_dvs_cifar10(tmp_path, timesteps=4, on_error='skip')
  assert len(xtr) + len(xte) == 4


def test_cache_is_reused_without_parsing_and_holds_no_pickles(tmp_path, monkeypatch):
  fx.make_dataset(tmp_path / 'data', per_class=3)
  cache = tmp_path / 'cache'
  first = dvs.load_dvs_cifar10(tmp_path / 'data', timesteps=5, cache_dir=cache)
  names = sorted(os.listdir(cache))
  assert [n.rsplit('.', 2)[-2:] for n in names] == [['frames', 'npy'], ['meta', 'npz']]
  np.load(cache / names[0], allow_pickle=False)
  with np.load(cache / names[1], allow_pickle=False) as meta:
    assert meta['labels'].tolist() == [0, 0, 0, 1, 1, 1]

  def no_parse(*a, **k):
    raise AssertionError('the cache was not used')

  monkeypatch.setattr(dvs, 'read_aedat', no_parse)
  again = dvs.load_dvs_cifar10(tmp_path / 'data', timesteps=5, cache_dir=cache)
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
  # The split is applied after the cache: another seed or fraction re-uses it.
  dvs.load_dvs_cifar10(tmp_path / 'data', timesteps=5, cache_dir=cache, seed=3,
                       train_fraction=0.5)


def test_cache_is_rebuilt_when_settings_or_sources_change(tmp_path, monkeypatch):
  fx.make_dataset(tmp_path / 'data', per_class=2)
  cache = tmp_path / 'cache'
  calls = []
  real = dvs.read_aedat

  def counting(path, **k):
    calls.append(os.path.basename(path))
    return real(path, **k)

  monkeypatch.setattr(dvs, 'read_aedat', counting)

  def load(**kw):
    del calls[:]
    dvs.load_dvs_cifar10(tmp_path / 'data', cache_dir=cache, **kw)
    return len(calls)

  assert load(timesteps=5) == 4
  assert load(timesteps=5) == 0
  assert load(timesteps=6) == 4
  assert load(timesteps=5, split_by='count') == 4
  assert load(timesteps=5, size=21) == 4
  assert load(timesteps=5) == 0
  # A source file changes size: everything is read again.
  fx.write_recording(tmp_path / 'data' / 'airplane' / 'cifar10_airplane_0.aedat',
                     [(fx.dvs128_address(5, 5, 0), 10), (fx.dvs128_address(6, 6, 1), 20)])
  assert load(timesteps=5) == 4
  # A recording is added.
  fx.write_recording(tmp_path / 'data' / 'airplane' / 'cifar10_airplane_9.aedat',
                     [(fx.dvs128_address(5, 5, 0), 10)])
  assert load(timesteps=5) == 5
  # Each setting has its own cache.
  assert len([n for n in os.listdir(cache) if n.endswith('.npy')]) == 6


def test_cache_write_is_atomic(tmp_path, monkeypatch):
  fx.make_dataset(tmp_path / 'data', per_class=2)
  cache = tmp_path / 'cache'

  def broken(*a, **k):
    raise OSError('disk full')

  monkeypatch.setattr(np, 'savez', broken)
  with pytest.raises(OSError, match='disk full'):
    dvs.load_dvs_cifar10(tmp_path / 'data', timesteps=3, cache_dir=cache)
  # The meta file (written last) is absent and no temporary file is left.
  assert [n for n in os.listdir(cache) if n.endswith('.npz') or n.endswith('.tmp')] == []
  monkeypatch.undo()
  (xtr, _), _ = dvs.load_dvs_cifar10(tmp_path / 'data', timesteps=3, cache_dir=cache)
  assert xtr.shape[1] == 3


def test_skipped_file_in_cache_still_stops_a_strict_run(tmp_path):
  fx.make_dataset(tmp_path / 'data', per_class=2)
  truncate(tmp_path / 'data' / 'airplane' / 'cifar10_airplane_1.aedat')
  with pytest.warns(RuntimeWarning, match='cifar10_airplane_1'):
    dvs.load_dvs_cifar10(tmp_path / 'data', timesteps=3, cache_dir=tmp_path / 'c',
                         on_error='skip')
  with pytest.raises(dvs.RecordingError, match='cifar10_airplane_1'):
    dvs.load_dvs_cifar10(tmp_path / 'data', timesteps=3, cache_dir=tmp_path / 'c')


def test_split_is_per_class_seeded_and_disjoint(tmp_path):
  made = fx.make_dataset(tmp_path, per_class=10, base_events=20)
  count_to_rel = {n: rel for rel, (_, n) in made.items()}

  def split(seed, fraction=0.9):
    (xtr, ytr), (xte, yte) = dvs.load_dvs_cifar10(tmp_path, timesteps=2, seed=seed,
                                                   train_fraction=fraction)
    tr = {count_to_rel[round(float(f.sum()))] for f in xtr}
    te = {count_to_rel[round(float(f.sum()))] for f in xte}
    return tr, te, np.bincount(ytr), np.bincount(yte)

  tr, te, ntr, nte = split(0)
  assert tr.isdisjoint(te) and tr | te == set(made)
  assert ntr.tolist() == [9, 9] and nte.tolist() == [1, 1]
  assert split(0)[:2] == (tr, te)
  assert any(split(s)[1] != te for s in (1, 2, 3))
  tr7, te7, ntr7, nte7 = split(0, 0.7)
  assert ntr7.tolist() == [7, 7] and nte7.tolist() == [3, 3] and tr7.isdisjoint(te7)


def test_split_train_test_counts_and_class_independence():
  labels = np.repeat(np.arange(10), 1000)
  mask = dvs.split_train_test(labels, 0.9, seed=0)
  np.testing.assert_array_equal(np.bincount(labels[mask]), 900)
  # A class's draw does not depend on the other classes.
  a = dvs.split_train_test(np.zeros(10, int), 0.9, seed=4)
  b = dvs.split_train_test(np.r_[np.zeros(10, int), np.ones(5, int)], 0.9, seed=4)
  np.testing.assert_array_equal(a, b[:10])
  # Small classes keep one recording on each side.
  np.testing.assert_array_equal(dvs.split_train_test(np.zeros(3, int), 0.9, 0).sum(), 2)
  with pytest.raises(ValueError, match='train_fraction'):
    dvs.split_train_test(labels, 1.5, 0)


def test_method_and_orientation_reach_the_loader_from_the_config_options(tmp_path):
  """``data.options.method`` / ``orientation`` (the DVS config's keys) change the frames as
  read_aedat and events_to_frames define them; bad values are one line naming them."""
  from bntt_jax import data  # pylint: disable=g-import-not-at-top
  from bntt_jax.errors import DataError  # pylint: disable=g-import-not-at-top
  fx.make_dataset(tmp_path / 'data', per_class=2)

  def frames(**options):
    ds = data.load_dataset('dvs_cifar10', source='directory', data_dir=str(tmp_path / 'data'),
                           download=False, split_seed=0,
                           options={'timesteps': 4, 'size': 42, 'train_fraction': 0.5, **options})
    return np.concatenate([ds.train.x, ds.test.x])

  area, floor = frames(), frames(method='floor')
  jaer = frames(method='floor', orientation='jaer')
  # Both keep every event; floor puts each in one pixel, area shares some over two.
  np.testing.assert_allclose(area.sum(), floor.sum(), rtol=1e-6)
  assert not np.array_equal(area, floor) and set(np.unique(floor)) <= set(range(100))
  # jAER's axes against SpikingJelly's (x = 127 - raw y, y = 127 - raw x): the frames
  # transposed and flipped, bin by bin (floor(c * 42 / 128) of c and 127 - c differ by one
  # row where 42 does not divide, so compare the totals per frame and polarity).
  np.testing.assert_allclose(jaer.sum((2, 3)), floor.sum((2, 3)), rtol=1e-6)
  assert not np.array_equal(jaer, floor)
  for bad, match in (({'method': 'bicubic'}, "method 'bicubic'"),
                     ({'orientation': 'upside'}, "orientation 'upside'")):
    with pytest.raises(DataError, match=match) as err:
      frames(**bad)
    assert '\n' not in str(err.value)
