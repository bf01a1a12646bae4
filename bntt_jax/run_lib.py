"""A run as training leaves it and analysis reads it: its data, its keys, its saved state.

Shared by :mod:`bntt_jax.train` and :mod:`bntt_jax.analysis`, which do not import each other.

Randomness, all derived from ``config.seed``: ``run_keys`` gives the parameters' key, the
training Poisson key (``fold_in(train_key, step)``, with an example's index in the training
split as its id) and the evaluation key (``fold_in(eval_key, i)`` for ``i < eval.num_keys``,
the same keys at every evaluation; per-epoch evaluation uses ``i = 0``).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Tuple

from absl import logging
import jax
import ml_collections

from bntt_jax import checkpoint as checkpoint_lib
from bntt_jax import config_lib
from bntt_jax import data as data_lib
from bntt_jax import records
from bntt_jax.data import scale as data_scale
from bntt_jax.errors import DataError

Array = jax.Array


def load_data(config: ml_collections.ConfigDict):
  """``(dataset, mean, std)`` of ``config.data``: the normalisation is the
  config's ``data.mean``/``data.std`` where given, else the dataset's (``None``
  for frames, used as they are)."""
  d = config.data
  # The labels are checked against the classes the config states, else the dataset's.
  ds = data_lib.load_dataset(d.name, source=d.source, data_dir=d.dir, download=d.download,
                             split_seed=d.split_seed, options=d.options.to_dict(),
                             num_classes=config.model.num_classes)
  if ds.info.classes_inferred and not config.model.num_classes:
    logging.warning('%s: %d classes, inferred from the data (not known beforehand); '
                    '--config.model.num_classes=N states them', d.name, ds.info.num_classes)
  ds = data_scale.reduce(ds, image_size=d.get('image_size', 0),
                         train_examples=d.get('train_examples', 0),
                         test_examples=d.get('test_examples', 0), seed=d.split_seed)
  return ds, tuple(d.mean) or ds.info.mean, tuple(d.std) or ds.info.std


def run_keys(seed: int) -> Tuple[Array, Array, Array]:
  """``(init_key, train_key, eval_key)`` of a run (module docstring)."""
  return tuple(jax.random.split(jax.random.PRNGKey(seed), 3))


def eval_keys(seed: int, n: int) -> List[Array]:
  """The ``n`` evaluation Poisson keys of a run; key 0 is every epoch's."""
  return [jax.random.fold_in(run_keys(seed)[2], i) for i in range(n)]


def load_run(workdir: str) -> Tuple[ml_collections.ConfigDict, Dict[str, Any]]:
  """A run's config and the variables of its newest checkpoint (an older one where the
  newest cannot be read).

  Returns:
    ``(config, {'params': ..., 'batch_stats': ...})``: the config from
    ``workdir/config.json`` (tuples come back as lists) and numpy arrays
    (``batch_stats`` is ``{}`` for ``norm = none``).

  Raises:
    ConfigError, DataError: as :func:`bntt_jax.records.check_run`; ``DataError`` where no
      checkpoint can be read.
  """
  config = config_lib.read_run_config(records.check_run(workdir))
  try:
    state = checkpoint_lib.load_state(workdir)
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f'the checkpoints in {os.path.join(workdir, "checkpoints")!r} cannot be '
                    f'read ({checkpoint_lib.one_line(e)}): restore them from a copy') from None
  return config, {'params': state['params'], 'batch_stats': state.get('batch_stats') or {}}
