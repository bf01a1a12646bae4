"""Checkpoints: a full disk keeps the previous checkpoint; a damaged one is skipped."""
import errno
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from bntt_jax import checkpoint
from bntt_jax.errors import CheckpointError


class _State:
  """What Checkpointer saves of a TrainState (its fields; ``replace`` for restore)."""

  def __init__(self, step, scale=1.0):
    self.step = jnp.asarray(step)
    self.params = {'w': jnp.full((64, 32), scale, jnp.float32)}
    self.batch_stats = {'mean': jnp.zeros((3,))}
    self.opt_state = {'mu': jnp.full((64, 32), 2 * scale, jnp.float32)}

  def replace(self, **fields):
    new = _State(0)
    new.__dict__.update(self.__dict__)
    new.__dict__.update(fields)
    return new


def test_a_save_that_hits_a_full_disk_is_one_line_and_the_previous_checkpoint_restores(
    tmp_path, monkeypatch):
  """Before: orbax's exception (and its threads' tracebacks) came out raw."""
  ckpt = checkpoint.Checkpointer(str(tmp_path / 'checkpoints'))
  ckpt.save(10, _State(10, 1.0), {'epoch': 0})

  def full(self, *a, **kw):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / 'checkpoints'))
  monkeypatch.setattr(ocp.JsonCheckpointHandler, 'async_save', full)
  with pytest.raises(CheckpointError) as e:
    ckpt.save(20, _State(20, 3.0), {'epoch': 0})
  message = str(e.value)
  needed = 2 * 64 * 32 * 4 + 3 * 4 + 4
  assert message.startswith(f'checkpoint of step 20 could not be written to '
                            f'{tmp_path / "checkpoints"}: no space left on device')
  assert f'needs about {needed:,} bytes' in message and '\n' not in message
  assert 'the previous checkpoint, step 10, is intact' in message
  monkeypatch.undo()
  assert ckpt.latest_step() == 10
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['10']    # the partial save removed
  state, meta = ckpt.restore(10, _State(0, 0.0))
  np.testing.assert_array_equal(state.params['w'], np.ones((64, 32)))
  assert meta == {'epoch': 0}
  ckpt.close()


def _truncate_biggest(step_dir):
  files = [os.path.join(d, f) for d, _, fs in os.walk(step_dir) for f in fs]
  with open(max(files, key=os.path.getsize), 'r+b') as f:
    f.truncate(100)


def test_restore_newest_skips_a_damaged_checkpoint_and_moves_it_aside(tmp_path, caplog):
  directory = tmp_path / 'checkpoints'
  ckpt = checkpoint.Checkpointer(str(directory), keep=3)
  for step, scale in ((10, 1.0), (20, 2.0)):
    ckpt.save(step, _State(step, scale), {'step': step})
  _truncate_biggest(directory / '20')
  state, meta, step = ckpt.restore_newest(_State(0, 0.0),
                                          damaged_dir=str(tmp_path / 'checkpoints_damaged'))
  assert step == 10 and meta == {'step': 10}
  np.testing.assert_array_equal(state.params['w'], np.ones((64, 32)))
  lines = [r.getMessage() for r in caplog.records if 'cannot be read' in r.getMessage()]
  assert len(lines) == 1 and 'checkpoint of step 20' in lines[0] and '\n' not in lines[0]
  assert (tmp_path / 'checkpoints_damaged' / '20').is_dir()
  assert ckpt.latest_step() == 10
  ckpt.save(20, _State(20, 5.0), {'step': 20})     # the step can be saved again
  assert ckpt.latest_step() == 20
  ckpt.close()


@pytest.mark.parametrize('damage', ['same_size_change', 'truncated_without_manifest'])
def test_damage_the_manifest_cannot_see_or_a_checkpoint_without_one_is_skipped_too(
    tmp_path, caplog, damage):
  """The manifest's SHA-256 catches a changed file of the same size (before: with one byte
  of the largest array data file flipped, orbax restored this checkpoint without an error);
  without a manifest (an older run's checkpoint) orbax's read error decides."""
  directory = tmp_path / 'checkpoints'
  ckpt = checkpoint.Checkpointer(str(directory), keep=3)
  for step, scale in ((10, 1.0), (20, 2.0)):
    ckpt.save(step, _State(step, scale), {'step': step})
  assert ckpt.verify(10) is None and ckpt.verify(20) is None
  if damage == 'same_size_change':
    big = max((p for p in (directory / '20').rglob('*') if p.is_file() and p.parent.name == 'd'),
              key=lambda p: p.stat().st_size)     # an array data file
    data = bytearray(big.read_bytes())
    data[len(data) // 2] ^= 0xFF
    big.write_bytes(bytes(data))
    assert 'has changed since it was written' in ckpt.verify(20)
  else:
    (directory / '20' / checkpoint.MANIFEST).unlink()
    _truncate_biggest(directory / '20')
    assert ckpt.verify(20) is None
  _, meta, step = ckpt.restore_newest(_State(0, 0.0),
                                      damaged_dir=str(tmp_path / 'checkpoints_damaged'))
  assert step == 10 and meta == {'step': 10}
  lines = [r.getMessage() for r in caplog.records if 'cannot be read' in r.getMessage()]
  assert len(lines) == 1 and 'checkpoint of step 20' in lines[0]
  ckpt.close()


def test_restore_newest_of_an_empty_directory_is_none(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path / 'checkpoints'))
  assert ckpt.restore_newest(_State(0), damaged_dir=str(tmp_path / 'd')) is None
  ckpt.close()


def test_unfinished_saves_of_a_killed_run_are_removed_when_the_checkpointer_opens(tmp_path):
  """Synchronously. Before: orbax's own cleanup ran in a background thread; right after
  opening (and after close) the unfinished save was still there, and a run stopping early
  (a data error right after the start) left that thread running at exit, where it printed
  a traceback."""
  directory = tmp_path / 'checkpoints'
  ckpt = checkpoint.Checkpointer(str(directory))
  ckpt.save(10, _State(10), {'epoch': 0})
  ckpt.close()
  (directory / '20.orbax-checkpoint-tmp-1700000000' / 'state').mkdir(parents=True)
  ckpt = checkpoint.Checkpointer(str(directory))
  assert sorted(os.listdir(directory)) == ['10'] and ckpt.latest_step() == 10
  ckpt.close()
