"""experiments/profile_step.py's trace arithmetic (the profile itself is a benchmark)."""
from experiments import profile_step


def _x(name, ts, dur, tid=1):
  return {'ph': 'X', 'name': name, 'ts': ts, 'dur': dur, 'pid': 1, 'tid': tid}


def test_self_time_per_kind_per_step():
  events = [
      _x('while.1', 0, 100), _x('fusion.2', 10, 30), _x('fusion.3', 50, 20),   # nested in while
      _x('fusion.3', 20, 20, tid=2),                      # another thread: not nested
      _x('ThunkExecutor::Execute', 0, 1000),              # runtime span: ignored
      _x('$core.py:1 bind', 0, 5), {'ph': 'M', 'name': 'thread_name'},
      _x('copy', 200, 10), _x('copy.7', 300, 30),
  ]
  got = profile_step.summarize(events, steps=2)
  assert list(got) == ['fusion', 'while', 'copy']
  secs = {k: round(v[0] * 1e6, 6) for k, v in got.items()}   # microseconds per step
  calls = {k: v[1] for k, v in got.items()}
  assert secs == {'fusion': 35.0, 'while': 25.0, 'copy': 20.0}
  assert calls == {'fusion': 1.5, 'while': 0.5, 'copy': 1.0}


def test_op_kind():
  assert profile_step.op_kind('transpose_copy_fusion.11') == 'transpose_copy_fusion'
  assert profile_step.op_kind('while') == 'while'
