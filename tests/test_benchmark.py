"""experiments/benchmark.py's comparison line (the timings themselves are a benchmark)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'experiments'))

import benchmark  # pylint: disable=g-import-not-at-top


def _ours(img_per_s, peak):
  return {'impl': 'bntt_jax', 'img_per_s': img_per_s, 'peak_mem_mb': peak}


def _peer(img_per_s, peak):
  return {'peer': 'snntorch', 'precision': 'float32', 'img_per_s': img_per_s,
          'peak_mem_mb': peak}


def test_ratio_of_medians_per_repeat_ratios_and_peak_of_maxima():
  ours = [_ours(5.0, 2300), _ours(4.0, 2400), _ours(6.0, 2350)]
  peers = [_peer(4.0, 2500), _peer(3.2, 2450), _peer(5.0, 2480)]
  got = benchmark.ratio_record(ours, peers, batch=16, timesteps=25)
  assert got['ratio'] == 'bntt_jax/snntorch'
  assert (got['batch'], got['timesteps'], got['runs'], got['peer_runs']) == (16, 25, 3, 3)
  assert (got['img_per_s'], got['peer_img_per_s']) == (5.0, 4.0)
  assert got['img_per_s_ratio'] == 1.25
  assert got['img_per_s_ratio_per_repeat'] == [1.25, 1.25, 1.2]
  assert got['peak_mem_ratio'] == round(2400 / 2500, 3)


def test_failed_runs_are_left_out_of_medians_and_pairs():
  ours = [_ours(5.0, 2300), None, _ours(3.0, 2300), _ours(4.0, 2300)]
  peers = [_peer(4.0, 2500), _peer(2.0, 2500), None, _peer(5.0, 2500)]
  got = benchmark.ratio_record(ours, peers)
  assert (got['runs'], got['peer_runs']) == (3, 3)
  assert (got['img_per_s'], got['peer_img_per_s']) == (4.0, 4.0)
  assert got['img_per_s_ratio_per_repeat'] == [1.25, 0.8]


def test_repeats_below_one_is_refused(capsys):
  try:
    benchmark.main(['--repeats=0'])
  except SystemExit as e:
    assert e.code == 2
  else:
    raise AssertionError('--repeats=0 accepted')
  assert '--repeats=0: must be at least 1' in capsys.readouterr().err


def test_a_bad_choice_is_refused_by_name(capsys):
  for arg, message in (('--schedule=scan', "schedule 'scan' is not one of layer, step"),
                       ('--sparse-conv=on', "sparse-conv 'on' is not one of auto, off")):
    try:
      benchmark.main([arg])
    except SystemExit as e:
      assert e.code == 2
    else:
      raise AssertionError(f'{arg} accepted')
    assert message in capsys.readouterr().err
