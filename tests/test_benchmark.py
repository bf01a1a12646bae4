"""experiments/benchmark.py's comparison line (the timings themselves are a benchmark), and
the calibration of spike rates it times at (:mod:`bntt_jax.analysis.calibration`)."""
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
