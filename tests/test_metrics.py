"""Metrics: spike rates (S8), JSON lines, the progress bar."""
import io
import json

import pytest

from bntt_jax import metrics


def test_spike_rates_are_spikes_per_neuron_per_inference():
  # 2 layers of 10 and 30 neurons, 4 examples: 80 and 60 spikes in total.
  total, per_layer = metrics.spike_rates([80.0, 60.0], [10, 30], 4)
  assert per_layer == [2.0, 0.5]
  assert total == pytest.approx(140 / (40 * 4))


def test_jsonl_writer_appends_and_drops_epochs_to_rerun(tmp_path):
  w = metrics.JsonlWriter(str(tmp_path / 'm.jsonl'))
  for e in range(3):
    w.write({'epoch': e, 'test_accuracy': float('nan') if e == 2 else 0.5})
  rows = metrics.read_jsonl(w.path)
  assert [r['epoch'] for r in rows] == [0, 1, 2] and rows[2]['test_accuracy'] is None
  w.keep_epochs_before(1)
  assert [r['epoch'] for r in metrics.read_jsonl(w.path)] == [0]
  metrics.write_json(str(tmp_path / 's.json'), {'a': 1.5})
  assert json.loads((tmp_path / 's.json').read_text()) == {'a': 1.5}


class _Tty(io.StringIO):
  def isatty(self):
    return True


def test_progress_bar_shows_eta_on_a_terminal_and_nothing_otherwise():
  tty = _Tty()
  bar = metrics.ProgressBar(100, stream=tty)
  bar.update(10, loss='0.5')
  bar.update(20, loss='0.4')
  bar.close()
  bar.update(30)     # a new line after close: an epoch's summary is logged between
  bar.close()
  out = tty.getvalue()
  assert '20/100' in out and 'loss=0.4' in out and out.endswith('\n')
  lines = out.split('\n')
  assert len(lines) == 3 and '30/100' in lines[1] and '30/100' not in lines[0]
  plain = io.StringIO()
  bar = metrics.ProgressBar(100, stream=plain)
  bar.update(10)
  bar.close()
  assert plain.getvalue() == ''
