"""bntt_jax.data.scale: the reduced scale of a dataset (area downsampling, class-balanced
subsets) and the config keys that set it."""
import numpy as np
import pytest

from bntt_jax import data as data_lib
from bntt_jax import default_config
from bntt_jax import run_lib
from bntt_jax.data import scale
from bntt_jax.errors import ConfigError


def test_area_downsampling_is_the_rounded_block_mean():
  x = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1) * 7
  y = scale.area_downsample(x, 2)
  assert y.shape == (2, 2, 2, 1) and y.dtype == np.uint8
  blocks = x.astype(np.float64).reshape(2, 2, 2, 2, 2, 1)
  np.testing.assert_array_equal(y, np.round(blocks.mean(axis=(2, 4))).astype(np.uint8))
  assert y[0, 0, 0, 0] == round((0 + 7 + 28 + 35) / 4)   # pixels (0,0) (0,1) (1,0) (1,1)
  np.testing.assert_array_equal(scale.area_downsample(x, 4), x)


@pytest.mark.parametrize('size', [3, 0, 5])
def test_area_downsampling_needs_a_divisor_of_the_side(size):
  with pytest.raises(ConfigError, match=f'data.image_size {size} is not accepted: a divisor'):
    scale.area_downsample(np.zeros((1, 4, 4, 1), np.uint8), size)


def test_the_subset_is_class_balanced_seeded_and_in_split_order():
  labels = np.repeat(np.arange(10), [50, 60, 70, 80, 90, 100, 110, 120, 130, 140])   # 950
  idx = scale.class_balanced(labels, 105, seed=3)
  counts = np.bincount(labels[idx], minlength=10)
  assert counts.sum() == 105 and counts.max() - counts.min() <= 1
  assert np.all(np.diff(idx) > 0)
  np.testing.assert_array_equal(idx, scale.class_balanced(labels, 105, seed=3))
  assert not np.array_equal(idx, scale.class_balanced(labels, 105, seed=4))
  # Fewer examples than classes: one each of the first classes in the seeded order.
  assert len(set(labels[scale.class_balanced(labels, 4, seed=0)])) == 4
  with pytest.raises(ConfigError, match=r'examples 951 is not accepted: an integer in 1..950 '):
    scale.class_balanced(labels, 951, seed=0)


def test_load_data_applies_the_configs_scale_to_both_splits():
  config = default_config.get_config()     # digits: 8x8 images, 1437 + 360
  config.data.image_size = 4
  config.data.train_examples = 100
  config.data.test_examples = 30
  ds, _, _ = run_lib.load_data(config)
  full = data_lib.load_dataset('digits')
  assert ds.train.x.shape == (100, 4, 4, 1) and ds.test.x.shape == (30, 4, 4, 1)
  assert ds.info.shape == (4, 4, 1)
  assert np.bincount(ds.train.y, minlength=10).min() == 10
  # The subset's images are the originals' block means.
  first = int(scale.class_balanced(full.train.y, 100, 0)[0])
  np.testing.assert_array_equal(ds.train.x[0], scale.area_downsample(full.train.x[first:first + 1],
                                                                     4)[0])
