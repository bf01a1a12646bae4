"""experiments/benchmark.py's comparison line (the timings themselves are a benchmark), and
the calibration of spike rates it times at (:mod:`bntt_jax.analysis.calibration`)."""
import json

import pytest

from bntt_jax.analysis import calibration
from experiments import benchmark


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


def _refused(capsys, arg: str) -> str:
  """benchmark.main([arg]) exits with argparse's usage error (code 2); its stderr."""
  try:
    benchmark.main([arg])
  except SystemExit as e:
    assert e.code == 2
  else:
    raise AssertionError(f'{arg} accepted')
  return capsys.readouterr().err


def test_repeats_below_one_is_refused(capsys):
  assert '--repeats=0: must be at least 1' in _refused(capsys, '--repeats=0')


def test_a_bad_choice_is_refused_by_name(capsys):
  for arg, message in (('--schedule=scan', "schedule 'scan' is not one of layer, step"),
                       ('--sparse-conv=on', "sparse-conv 'on' is not one of auto, off"),
                       ('--kernel-isa=sse', "kernel-isa 'sse' is not one of auto, avx512, avx2, "
                                            "generic")):
    assert message in _refused(capsys, arg)


def test_kernel_isa_sets_the_variant_of_our_runs_only(monkeypatch, capsys):
  """--kernel-isa=avx512,avx2 runs ours once per variant ($BNTT_KERNEL_ISA in the child's
  environment; 'auto' leaves it as it is); a variant this CPU lacks is refused by name."""
  env = {'PATH': '/bin', 'BNTT_KERNEL_ISA': 'generic'}
  assert benchmark.kernel_isa_env(env, 'avx2') == {'PATH': '/bin', 'BNTT_KERNEL_ISA': 'avx2'}
  assert benchmark.kernel_isa_env(env, 'auto') is env
  monkeypatch.setattr(benchmark.build, 'cpu_flags', lambda: frozenset({'avx', 'avx2', 'fma'}))
  assert "kernel-isa 'avx512': this CPU has no avx512f" in _refused(capsys,
                                                                    '--kernel-isa=avx2,avx512')


def test_strongest_is_the_peer_with_the_highest_median():
  ours = [_ours(6.0, 1200)]
  lines = [benchmark.ratio_record(ours, [dict(_peer(r, 2000), peer=name)])
           for name, r in (('snntorch', 4.0), ('torch-multistep-eager', 5.0),
                           ('torch-multistep-compile', 4.8))]
  got = benchmark.strongest_record(lines)
  assert got['strongest'] == 'torch-multistep-eager'
  assert got['ratio'] == 'bntt_jax/torch-multistep-eager (strongest)'
  assert got['img_per_s_ratio'] == 1.2
  assert got['peers_compared'] == ['snntorch', 'torch-multistep-eager', 'torch-multistep-compile']
  assert benchmark.strongest_record([None]) is None


def test_peer_commands_name_the_script_mode_and_gammas():
  cmd = benchmark.peer_command('py', 'spikingjelly', 16, 25, 3, 'float32', [0.5, 0.25])
  assert cmd[0] == 'py' and cmd[1].endswith('peer_multistep.py')
  assert cmd[2:] == ['16', '25', '3', 'float32', 'sj', 'gamma=0.5,0.25']
  cmd = benchmark.peer_command('py', 'snntorch', 32, 25, 3, 'bfloat16')
  assert cmd[1].endswith('peer_snntorch.py') and cmd[2:] == ['32', '25', '3', 'bfloat16']


def test_spike_rates_parse_and_refuse_by_value(capsys):
  assert benchmark._rates('untrained,0.1,0.02') == [None, 0.1, 0.02]
  for bad in ('0.7', 'x', '0'):
    assert f"spike rate '{bad}' is not accepted" in _refused(capsys, f'--spike-rate={bad}')


def test_unknown_peer_is_refused_by_name(capsys):
  assert "peer 'pytorch' is not one of snntorch, multistep-eager" in _refused(capsys,
                                                                              '--peer=pytorch')


def test_with_gammas_sets_every_step_of_each_layer():
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  params = {'conv1': {'norm_layer': {'scale': jnp.ones((3, 4))}, 'synapse': {'kernel': 1}},
            'fc1': {'norm_layer': {'scale': jnp.ones((3, 2))}}}
  got = calibration.with_gammas(params, ['conv1', 'fc1'], [0.5, 2.0])
  assert (got['conv1']['norm_layer']['scale'] == 0.5).all() and got['conv1']['synapse'] == params[
      'conv1']['synapse']
  assert (got['fc1']['norm_layer']['scale'] == 2.0).all()
  assert (params['conv1']['norm_layer']['scale'] == 1).all()   # the input is not changed


@pytest.mark.full
def test_calibrated_gammas_make_every_layer_fire_at_the_target():
  """calibration.calibrate_gammas: VGG9 at T 3 reaches 5 % per step in every hidden layer (the
  untrained network fires at ~20 %), in the training-mode pass the timed steps run."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from bntt_jax import models  # pylint: disable=g-import-not-at-top
  model = models.vgg9(num_steps=3)
  x, _ = benchmark.benchmark_batch(4)
  variables = model.init({'params': jax.random.PRNGKey(0), 'poisson': jax.random.PRNGKey(0)}, x,
                         train=False)
  gammas, rates = calibration.calibrate_gammas(model, variables, x, jax.random.PRNGKey(1), 0.05)
  assert gammas.shape == rates.shape == (8,)
  np.testing.assert_allclose(rates, 0.05, atol=0.005)
  assert (gammas < 1).all()      # fewer spikes than at the initial gamma 1


def test_table_rows_take_medians_the_strongest_peer_and_each_repeats_ratio(tmp_path):
  """experiments/benchmark_table.py: one row per batch, rate and variant of ours, from the
  records alone (ratio and calibration lines are ignored)."""
  from experiments import benchmark_table  # pylint: disable=g-import-not-at-top
  def ours(v, img, peak, lo, hi):
    return {'impl': 'bntt_jax', 'batch': 16, 'spike_rate': 0.05, 'img_per_s': img,
            'peak_mem_mb': peak, 'winograd': f'kernel ({v})', 'spike_rate_timed_range': [lo, hi]}
  def peer(name, img, peak):
    return {'peer': name, 'batch': 16, 'spike_rate': 0.05, 'img_per_s': img, 'peak_mem_mb': peak}
  recs = [{'calibration': 0.05, 'gamma': [0.5]},
          peer('snntorch', 3.0, 2400), peer('torch-multistep-eager', 2.0, 1800),
          ours('avx512', 12.0, 1300, 0.046, 0.05), ours('avx2', 9.0, 1310, 0.047, 0.051),
          peer('snntorch', 4.0, 2500), peer('torch-multistep-eager', 2.2, 1700),
          ours('avx512', 10.0, 1290, 0.045, 0.05), ours('avx2', 10.0, 1320, 0.046, 0.05),
          {'ratio': 'bntt_jax/snntorch', 'batch': 16, 'spike_rate': 0.05, 'img_per_s': 99.0},
          {'impl': 'bntt_jax', 'batch': 16, 'spike_rate': 'untrained', 'img_per_s': 5.0,
           'peak_mem_mb': 1400, 'winograd': 'xla (not a Linux CPU backend)'}]
  path = tmp_path / 'run.jsonl'
  path.write_text('\n'.join(json.dumps(r) for r in recs) + '\nbenchmark: a log line\n')
  table = benchmark_table.rows(benchmark_table.read(str(path)))
  assert [(r['spike_rate'], r['variant']) for r in table] == [
      ('untrained', 'xla'), (0.05, 'avx512'), (0.05, 'avx2')]
  avx512, avx2 = table[1], table[2]
  assert avx512['strongest'] == 'snntorch' and avx512['peers'] == {
      'snntorch': 3.5, 'torch-multistep-eager': 2.1}
  assert avx512['img_per_s'] == 11.0 and avx512['ratio'] == pytest.approx(11.0 / 3.5)
  assert avx512['ratio_per_repeat'] == pytest.approx([4.0, 2.5])
  assert avx2['ratio_per_repeat'] == pytest.approx([3.0, 2.5])
  assert (avx2['peak_mem_mb'], avx2['strongest_peak_mem_mb']) == (1320, 2500)
  assert avx2['timed_range'] == [0.046, 0.051]
  assert table[0]['strongest'] is None   # no peer ran untrained
  text = benchmark_table.markdown(table)
  assert '| 16 | 5 % (4.6-5.1 %) | avx2 | 9.50 | 3.50 | 2.10 | **2.71x** (3.00, 2.50; snntorch) ' \
         '| 1320 | 2500 |' in text


def test_table_of_a_file_without_records_is_one_line_error(tmp_path, capsys):
  from experiments import benchmark_table  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'run.jsonl'
  path.write_text('benchmark: failed\n')
  assert benchmark_table.main([str(path)]) == 2
  assert capsys.readouterr().err == (f'error: {path}: no benchmark record (JSON lines of '
                                     'experiments/benchmark.py) in it\n')
  assert benchmark_table.main([str(tmp_path / 'none.jsonl')]) == 2
  assert 'none.jsonl: cannot be read' in capsys.readouterr().err


def test_cpu_isa_avx2_limits_ours_and_the_peers(capsys):
  """--cpu-isa=avx2: our kernels' avx2 variant and XLA's AVX2 code generation (the user's XLA
  flags kept), the peers' PyTorch, oneDNN and MKL at AVX2; 'native' changes nothing."""
  env = {'PATH': '/bin', 'XLA_FLAGS': '--xla_dump_to=/tmp/x'}
  assert benchmark.cpu_isa_env(env, 'native') == (env, env)
  ours, peers = benchmark.cpu_isa_env(env, 'avx2')
  assert ours == {'PATH': '/bin', 'BNTT_KERNEL_ISA': 'avx2',
                  'XLA_FLAGS': '--xla_dump_to=/tmp/x --xla_cpu_max_isa=AVX2'}
  assert peers == {'PATH': '/bin', 'XLA_FLAGS': '--xla_dump_to=/tmp/x',
                   'ATEN_CPU_CAPABILITY': 'avx2', 'ONEDNN_MAX_CPU_ISA': 'AVX2',
                   'MKL_ENABLE_INSTRUCTIONS': 'AVX2'}
  try:
    benchmark.main(['--cpu-isa=avx2', '--kernel-isa=avx512,avx2'])
  except SystemExit as e:
    assert e.code == 2
  assert '--cpu-isa=avx2 runs our avx2 kernels: --kernel-isa=avx512,avx2 is not accepted' in (
      capsys.readouterr().err)
