"""bntt_jax.records: which directories a run may start in, and what a run that stopped before
it began leaves behind (nothing)."""
import os

import pytest

from bntt_jax import records
from bntt_jax import runlock
from bntt_jax.errors import ConfigError


def _touch(path, text=''):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)


def test_a_directory_of_other_files_is_refused_by_name(tmp_path):
  """Before, a directory without config.json was taken whatever it held (a run then wrote its
  checkpoints beside the user's files)."""
  _touch(str(tmp_path / 'mine' / 'thesis.tex'))
  os.makedirs(tmp_path / 'mine' / 'data')
  with pytest.raises(ConfigError, match=r"it holds no config.json and 2 entries no run "
                     r"writes: 'data', 'thesis.tex'\)"):
    records.check_workdir(str(tmp_path / 'mine'))


def test_new_empty_and_run_directories_are_accepted(tmp_path):
  assert records.check_workdir(str(tmp_path / 'new')) == []
  os.makedirs(tmp_path / 'empty')
  assert records.check_workdir(str(tmp_path / 'empty')) == []
  # What a run that stopped before its config.json leaves: its lock, checkpoints, event files.
  started = tmp_path / 'started'
  os.makedirs(started / 'checkpoints')
  _touch(str(started / runlock.LOCK_NAME))
  _touch(str(started / 'events.out.tfevents.1.host'))
  assert records.check_workdir(str(started)) == []
  # A run's directory holds what it holds (checked elsewhere: its records).
  _touch(str(tmp_path / 'run' / 'notes.txt'))
  _touch(str(tmp_path / 'run' / 'config.json'), '{"model": {}, "data": {}, "train": {}}')
  assert records.foreign_entries(str(tmp_path / 'run')) == ['notes.txt']


def test_lock_name_is_runlocks():
  assert records.LOCK_NAME == runlock.LOCK_NAME


def test_remove_unused_removes_only_what_a_start_makes(tmp_path):
  fresh = tmp_path / 'fresh'
  os.makedirs(fresh / 'checkpoints' / 'tmp')
  _touch(str(fresh / runlock.LOCK_NAME))
  records.remove_unused(str(fresh))
  assert not fresh.exists()
  for keep in ('config.json', 'checkpoints/1/state', 'notes.txt', 'checkpoints/.lock'):
    d = tmp_path / keep.replace('/', '_')
    os.makedirs(d / 'checkpoints')
    _touch(str(d / runlock.LOCK_NAME))
    _touch(str(d / keep))
    records.remove_unused(str(d))
    assert (d / keep).is_file() and (d / runlock.LOCK_NAME).is_file(), keep
  records.remove_unused(str(tmp_path / 'missing'))   # nothing there: nothing done
