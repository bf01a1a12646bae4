"""Data: readers (IDX, Tiny-ImageNet, tfds, digits), augmentation, batching."""
import gzip
import importlib.util
import os

import numpy as np
import pytest

from bntt_jax import data as data_lib
from bntt_jax.data import augment, idx, pipeline, tfds_source, tiny_imagenet
from bntt_jax.errors import ConfigError, DataError


def _write_idx(path, array):
  header = bytes([0, 0, 0x08, array.ndim]) + b''.join(
      int(s).to_bytes(4, 'big') for s in array.shape)
  payload = header + array.astype(np.uint8).tobytes()
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'wb') as f:
    f.write(payload)


@pytest.mark.parametrize('names,gz', [
    (('train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte',
      't10k-labels-idx1-ubyte'), False),
    (('train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte',
      't10k-labels-idx1-ubyte'), True),
    (('train-images.idx3-ubyte', 'train-labels.idx1-ubyte', 't10k-images.idx3-ubyte',
      't10k-labels.idx1-ubyte'), False),
])
def test_idx_reader_reads_back_what_was_written(tmp_path, names, gz):
  rng = np.random.RandomState(0)
  arrays = [rng.randint(0, 256, (5, 28, 28)), rng.randint(0, 10, 5),
            rng.randint(0, 256, (3, 28, 28)), rng.randint(0, 10, 3)]
  for name, a in zip(names, arrays):
    _write_idx(str(tmp_path / (name + ('.gz' if gz else ''))), a)
  (xtr, ytr), (xte, yte) = idx.load_idx_dir(str(tmp_path))
  assert xtr.shape == (5, 28, 28, 1) and xtr.dtype == np.uint8
  np.testing.assert_array_equal(xtr[..., 0], arrays[0])
  np.testing.assert_array_equal(ytr, arrays[1])
  np.testing.assert_array_equal(xte[..., 0], arrays[2])
  np.testing.assert_array_equal(yte, arrays[3])
  assert ytr.dtype == np.int32
  # Through the registry, as --config.data.source=idx does it.
  ds = data_lib.load_dataset('mnist', source='idx', data_dir=str(tmp_path))
  # MNIST-format sets have 10 classes (the registry's), whatever the largest label here (7).
  assert ds.info.num_classes == 10 and not ds.info.classes_inferred
  assert ds.info.shape == (28, 28, 1) and len(ds.test) == 3


def test_idx_reader_rejects_missing_files_and_bad_magic(tmp_path):
  with pytest.raises(ConfigError, match='train-images'):
    idx.load_idx_dir(str(tmp_path))
  (tmp_path / 'bad').write_bytes(b'\x01\x02\x03\x04')
  with pytest.raises(ConfigError, match='IDX magic'):
    idx.read_idx(str(tmp_path / 'bad'))


@pytest.mark.parametrize('damage,cause', [
    (lambda b: gzip.compress(b)[:-40], 'EOFError'),              # cut in the gzip stream
    (lambda b: b'not gzip at all, just text', 'BadGzipFile'),
])
def test_truncated_or_corrupt_gzipped_idx_is_a_data_error_naming_the_file(tmp_path, damage,
                                                                        cause):
  """Before: gzip's EOFError / BadGzipFile came out raw."""
  path = tmp_path / 'train-images-idx3-ubyte.gz'
  payload = bytes([0, 0, 0x08, 1, 0, 0, 0, 200]) + bytes(range(200))
  path.write_bytes(damage(payload))
  with pytest.raises(DataError) as e:
    idx.read_idx(str(path))
  message = str(e.value)
  assert message.startswith(f'IDX file {str(path)!r} is truncated or corrupt ({cause}')
  assert message.endswith('download it again') and '\n' not in message


def _tiny_imagenet_dir(root, classes=('n01443537', 'n01629819', 'n01641577'), per_class=2):
  from PIL import Image
  root.mkdir()
  (root / 'wnids.txt').write_text('\n'.join(reversed(classes)) + '\n')
  pixels = {}
  for c in classes:
    d = root / 'train' / c / 'images'
    d.mkdir(parents=True)
    (root / 'train' / c / f'{c}_boxes.txt').write_text('')
    for i in range(per_class):
      a = np.full((64, 64, 3), 40 * classes.index(c) + 10 * i, np.uint8)
      Image.fromarray(a).save(d / f'{c}_{i}.JPEG', quality=100)
      pixels[f'{c}_{i}'] = a
  (root / 'val' / 'images').mkdir(parents=True)
  lines = []
  for j, c in enumerate(classes[::-1]):
    a = np.full((64, 64), 200 - 30 * j, np.uint8)      # greyscale JPEG, as some are
    Image.fromarray(a).save(root / 'val' / 'images' / f'val_{j}.JPEG', quality=100)
    lines.append(f'val_{j}.JPEG\t{c}\t0\t0\t63\t63')
  (root / 'val' / 'val_annotations.txt').write_text('\n'.join(lines) + '\n')
  return classes


def test_tiny_imagenet_reader_on_the_standard_layout(tmp_path):
  root = tmp_path / 'tiny-imagenet-200'
  classes = _tiny_imagenet_dir(root)
  cache = tmp_path / 'cache'
  (xtr, ytr), (xva, yva), names = tiny_imagenet.load(str(root), cache_dir=str(cache))
  assert names == sorted(classes)
  assert xtr.shape == (6, 64, 64, 3) and xtr.dtype == np.uint8
  np.testing.assert_array_equal(ytr, [0, 0, 1, 1, 2, 2])
  # Flat JPEG images decode to (almost) their value; greyscale becomes 3 channels.
  assert abs(int(xtr[3, 5, 5, 0]) - 50) <= 2
  np.testing.assert_array_equal(yva, [2, 1, 0])
  assert xva.shape == (3, 64, 64, 3) and abs(int(xva[1, 0, 0, 2]) - 170) <= 2
  assert len(os.listdir(cache)) == 2
  (xtr2, _), _, _ = tiny_imagenet.load(str(root), cache_dir=str(cache))   # from the cache
  np.testing.assert_array_equal(xtr, xtr2)
  ds = data_lib.load_dataset('tiny_imagenet', data_dir=str(root))
  assert ds.info.num_classes == 3 and ds.info.shape == (64, 64, 3)


def test_tiny_imagenet_truncated_image_is_a_data_error_naming_the_file(tmp_path):
  """Before: Pillow's OSError "image file is truncated" came out of a worker thread raw."""
  root = tmp_path / 'tiny-imagenet-200'
  _tiny_imagenet_dir(root)
  bad = root / 'train' / 'n01629819' / 'images' / 'n01629819_1.JPEG'
  bad.write_bytes(bad.read_bytes()[:200])
  with pytest.raises(DataError) as e:
    tiny_imagenet.load(str(root))
  assert str(e.value).startswith(f'Tiny-ImageNet image {str(bad)!r} cannot be decoded (')
  assert 'a fresh copy' in str(e.value) and '\n' not in str(e.value)


def test_tiny_imagenet_unreadable_cache_is_rebuilt(tmp_path):
  """A cache .npy cut by a full disk or a kill is decoded again, not an error."""
  root = tmp_path / 'tiny-imagenet-200'
  _tiny_imagenet_dir(root)
  cache = tmp_path / 'cache'
  (xtr, _), _, _ = tiny_imagenet.load(str(root), cache_dir=str(cache))
  for p in cache.iterdir():
    p.write_bytes(p.read_bytes()[:100])
  (xtr2, _), _, _ = tiny_imagenet.load(str(root), cache_dir=str(cache))
  np.testing.assert_array_equal(xtr, xtr2)


def test_tiny_imagenet_reader_rejects_a_wrong_directory(tmp_path):
  with pytest.raises(ConfigError, match='tiny-imagenet-200 directory'):
    tiny_imagenet.load(str(tmp_path))


def test_digits_split_is_fixed_stratified_and_complete():
  a = data_lib.load_dataset('digits')
  b = data_lib.load_dataset('digits')
  assert len(a.train) == 1437 and len(a.test) == 360
  np.testing.assert_array_equal(a.test.x, b.test.x)
  np.testing.assert_array_equal(np.bincount(a.test.y), np.bincount(b.test.y))
  assert np.bincount(a.test.y).min() >= 35           # stratified: every class ~36 times
  assert a.train.x.dtype == np.uint8 and a.train.x.max() == 255
  assert 0.2 < a.info.mean[0] < 0.4 and 0.3 < a.info.std[0] < 0.5


def test_tfds_source_reads_every_example_of_both_splits():
  tfds = pytest.importorskip('tensorflow_datasets')
  pytest.importorskip('tensorflow')   # the mock is unprepared data: preparing needs TensorFlow
  with tfds.testing.mock_data(num_examples=11):
    ds = data_lib.load_dataset('cifar10')
  assert ds.train.x.shape == (11, 32, 32, 3) and ds.test.x.shape == (11, 32, 32, 3)
  assert ds.train.x.dtype == np.uint8 and ds.train.y.dtype == np.int32
  assert ds.info.num_classes == 10 and ds.info.mean == data_lib.CIFAR_MEAN
  assert ds.train.x.std() > 10     # real (random) pixels, not zeros


def test_tfds_prepare_without_tensorflow_says_what_to_install(monkeypatch):
  tfds = pytest.importorskip('tensorflow_datasets')
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, 'find_spec',
                      lambda name, *a: None if name == 'tensorflow' else real(name, *a))
  with tfds.testing.mock_data(num_examples=2):
    with pytest.raises(ConfigError) as e:
      tfds_source.load('cifar10')
  assert str(e.value).endswith('pip install tensorflow-cpu') and '\n' not in str(e.value)


def test_crop_flip_matches_a_per_image_reference():
  rng = np.random.RandomState(0)
  x = rng.randint(0, 256, (16, 32, 32, 3)).astype(np.uint8)
  oy, ox, flip = augment.draw_crop_flip(np.random.default_rng(1), 16, 4)
  out = augment.crop_flip(x, oy, ox, flip, 4)
  for i in range(16):
    padded = np.pad(x[i], ((4, 4), (4, 4), (0, 0)))
    ref = padded[oy[i]:oy[i] + 32, ox[i]:ox[i] + 32]
    if flip[i]:
      ref = ref[:, ::-1]
    np.testing.assert_array_equal(out[i], ref)
  assert flip.any() and not flip.all() and oy.min() >= 0 and oy.max() <= 8


def test_normalize_uses_mean_and_std_per_channel():
  x = np.array([[[[0, 255, 51]]]], np.uint8)
  out = augment.normalize(x, (0.5, 0.5, 0.2), (0.25, 0.5, 0.1))
  np.testing.assert_allclose(out[0, 0, 0], [-2.0, 1.0, 0.0], atol=1e-6)
  frames = np.random.RandomState(0).rand(2, 3).astype(np.float32)
  np.testing.assert_array_equal(augment.normalize(frames, None, None), frames)


def test_training_batches_depend_only_on_seed_and_step_and_split_over_hosts():
  rng = np.random.RandomState(0)
  x = rng.randint(0, 256, (50, 8, 8, 3)).astype(np.uint8)
  y = np.arange(50, dtype=np.int32)
  kw = dict(global_batch=8, seed=3, augment='crop_flip', crop_padding=2, mean=(.5,) * 3,
            std=(.25,) * 3)
  a = pipeline.TrainPipeline(x, y, **kw)
  assert a.steps_per_epoch == 6
  ordered = list(a.iterate(0, 14, prefetch=2))
  # A fresh pipeline started at step 9 (a resumed run) gives the same batches.
  b = pipeline.TrainPipeline(x, y, **kw)
  for s in (13, 9, 10):
    for k in ('image', 'label', 'index'):
      np.testing.assert_array_equal(b.batch(s)[k], ordered[s][k])
  # Each epoch is a permutation without repeats; epochs differ.
  epoch0 = np.concatenate([ordered[s]['index'] for s in range(6)])
  assert len(set(epoch0)) == 48
  assert not np.array_equal(epoch0, np.concatenate([ordered[s]['index'] for s in range(6, 12)]))
  np.testing.assert_array_equal(ordered[4]['label'], y[ordered[4]['index']])
  # Two hosts build the two halves of the same global batch.
  halves = [pipeline.TrainPipeline(x, y, process_index=p, process_count=2, **kw).batch(7)
            for p in range(2)]
  for k in ('image', 'label', 'index'):
    np.testing.assert_array_equal(np.concatenate([h[k] for h in halves]), ordered[7][k])


def test_evaluation_batches_cover_every_example_once():
  x = np.arange(10 * 2 * 2 * 1, dtype=np.uint8).reshape(10, 2, 2, 1)
  y = np.arange(10, dtype=np.int32)
  batches = list(pipeline.eval_batches(x, y, global_batch=4, mean=(0.,), std=(1 / 255,)))
  assert len(batches) == 3
  mask = np.concatenate([b['mask'] for b in batches])
  np.testing.assert_array_equal(mask, [1] * 10 + [0] * 2)
  labels = np.concatenate([b['label'] for b in batches])[mask > 0]
  np.testing.assert_array_equal(labels, y)
  images = np.concatenate([b['image'] for b in batches])[mask > 0]
  np.testing.assert_allclose(images, x.astype(np.float32))
  # Hosts split each global batch.
  two = [list(pipeline.eval_batches(x, y, global_batch=4, mean=(0.,), std=(1 / 255,),
                                    process_index=p, process_count=2)) for p in range(2)]
  np.testing.assert_array_equal(np.concatenate([two[0][2]['index'], two[1][2]['index']]),
                                batches[2]['index'])


def test_frames_pass_through_without_augmentation_or_normalisation():
  frames = np.random.RandomState(0).rand(6, 3, 4, 4, 2).astype(np.float32)   # [N, T, H, W, C]
  y = np.arange(6, dtype=np.int32)
  p = pipeline.TrainPipeline(frames, y, global_batch=3, seed=0)
  b = p.batch(1)
  assert b['image'].shape == (3, 3, 4, 4, 2) and b['image'].dtype == np.float32
  np.testing.assert_array_equal(b['image'], frames[b['index']])
  with pytest.raises(ValueError, match='needs images'):
    pipeline.TrainPipeline(frames, y, global_batch=3, seed=0, augment='crop_flip')
  ev = next(pipeline.eval_batches(frames, y, global_batch=4))
  np.testing.assert_array_equal(ev['image'], frames[:4])


def _unprepared_dummy(monkeypatch, error):
  tfds = pytest.importorskip('tensorflow_datasets')

  def offline(self, *a, **kw):
    raise error
  monkeypatch.setattr(tfds.testing.DummyMnist, 'download_and_prepare', offline)
  monkeypatch.setattr(tfds, 'builder', lambda name, data_dir=None, **kw:
                      tfds.testing.DummyMnist(data_dir=data_dir, **kw))


def test_tfds_unprepared_without_network_is_a_data_error_with_the_command(tmp_path,
                                                                          monkeypatch):
  """Before: the requests.exceptions.ConnectionError came out raw."""
  requests = pytest.importorskip('requests')
  pytest.importorskip('tensorflow')   # without it the load stops earlier, asking for it
  _unprepared_dummy(monkeypatch, requests.exceptions.ConnectionError('Max retries exceeded'))
  with pytest.raises(DataError) as e:
    tfds_source.load('dummy_mnist', data_dir=str(tmp_path))
  message = str(e.value)
  assert message.startswith(f"tfds dataset 'dummy_mnist' is not prepared in {str(tmp_path)!r}")
  assert 'could not be downloaded (ConnectionError: Max retries exceeded)' in message
  assert ("python -c \"import tensorflow_datasets as tfds; tfds.builder('dummy_mnist', "
          "data_dir=DIR, file_format='array_record').download_and_prepare("
          "file_format='array_record')\"") in message
  assert '\n' not in message


def test_tfds_unprepared_with_download_off_names_the_command_too(tmp_path, monkeypatch):
  _unprepared_dummy(monkeypatch, AssertionError('must not download'))
  with pytest.raises(ConfigError) as e:
    tfds_source.load('dummy_mnist', data_dir=str(tmp_path), download=False)
  assert 'config.data.download=True' in str(e.value)
  assert "tfds.builder('dummy_mnist', data_dir=DIR" in str(e.value)


def test_registry_rejects_unknown_names_and_missing_directories(tmp_path):
  with pytest.raises(ConfigError, match="dataset 'imagenet' is not accepted: one of cifar10"):
    data_lib.load_dataset('imagenet')
  with pytest.raises(ConfigError, match="data source for cifar10 'idx' is not accepted"):
    data_lib.load_dataset('cifar10', source='idx')
  with pytest.raises(ConfigError, match='data directory .* is not accepted: a directory of MNIST'):
    data_lib.load_dataset('mnist', source='idx', data_dir=str(tmp_path / 'none'))
  assert data_lib.REGISTRY['dvs_cifar10'].kind == 'frames'


def test_tfds_real_prepare_and_read_without_mocks(tmp_path, monkeypatch):
  """The unmocked path on tfds's DummyMnist (generated locally, no download):
  a new data_dir is prepared as ArrayRecord and read; one prepared earlier as
  TFRecord (an older tfds.load) is read too."""
  tfds = pytest.importorskip('tensorflow_datasets')
  pytest.importorskip('tensorflow')
  monkeypatch.setattr(tfds, 'builder', lambda name, data_dir=None, **kw:
                      tfds.testing.DummyMnist(data_dir=data_dir, **kw))
  (x, y), (xt, yt), n = tfds_source.load('dummy_mnist', data_dir=str(tmp_path / 'new'))
  assert x.shape == (20, 28, 28, 1) and xt.shape == (20, 28, 28, 1) and n == 10
  assert list((tmp_path / 'new').rglob('*.array_record*'))
  tfds.testing.DummyMnist(data_dir=str(tmp_path / 'old')).download_and_prepare()
  (x2, y2), _, _ = tfds_source.load('dummy_mnist', data_dir=str(tmp_path / 'old'))
  np.testing.assert_array_equal(np.sort(x2.reshape(20, -1), 0), np.sort(x.reshape(20, -1), 0))
  np.testing.assert_array_equal(np.sort(y2), np.sort(y))


def test_example_spec_is_what_the_loaders_return(tmp_path):
  """A plan compiles a run's steps from data.example_spec, without the data: it must agree
  with every loader (the tfds datasets through tfds's mock, whose shapes are the real ones)."""
  tfds = pytest.importorskip('tensorflow_datasets')
  pytest.importorskip('tensorflow')   # the mock is unprepared data: preparing needs TensorFlow
  loaded = {'digits': data_lib.load_dataset('digits')}
  with tfds.testing.mock_data(num_examples=2):
    for name in ('cifar10', 'cifar100', 'mnist', 'fashion_mnist'):
      loaded[name] = data_lib.load_dataset(name)
  for name, ds in loaded.items():
    assert data_lib.example_spec(name) == (ds.info.shape, ds.info.num_classes), name
  root = tmp_path / 'tiny-imagenet-200'
  _tiny_imagenet_dir(root)
  shape, classes = data_lib.example_spec('tiny_imagenet')
  ds = data_lib.load_dataset('tiny_imagenet', data_dir=str(root))
  assert shape == ds.info.shape and classes == 200   # the real release; the fixture has 3
  import dvs_fixtures  # pylint: disable=g-import-not-at-top
  dvs_root = tmp_path / 'dvs'
  dvs_fixtures.make_dataset(dvs_root)
  for options in ({}, {'timesteps': 5, 'size': 16}):
    ds = data_lib.load_dataset('dvs_cifar10', data_dir=str(dvs_root), options=options)
    assert data_lib.example_spec('dvs_cifar10', options)[0] == ds.info.shape, options
