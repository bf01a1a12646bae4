"""bntt_jax.files: whole files or none."""
import os

import pytest

from bntt_jax import files


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
  path = str(tmp_path / 'summary.json')
  files.atomic_write(path, lambda f: f.write('old'))

  def half(f):
    f.write('ne')
    raise OSError('No space left on device')

  with pytest.raises(OSError, match='No space'):
    files.atomic_write(path, half)
  assert open(path).read() == 'old'
  assert os.listdir(tmp_path) == ['summary.json']
  files.atomic_write(path, lambda f: f.write(b'new'), binary=True)
  assert open(path).read() == 'new' and os.listdir(tmp_path) == ['summary.json']


def test_a_path_written_by_another_program_is_renamed_into_place(tmp_path):
  path = str(tmp_path / 'lib.so')
  with files.atomic_path(path) as tmp:
    assert os.path.dirname(tmp) == str(tmp_path) and not os.path.exists(path)
    with open(tmp, 'w') as f:
      f.write('built')
  assert open(path).read() == 'built' and os.listdir(tmp_path) == ['lib.so']
