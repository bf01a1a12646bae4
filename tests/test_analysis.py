"""Analyses on hand-built tiny networks: Table S1, S7 FLOPs, S8 spike rates, the
SNN/ANN energy convention, accuracy after k steps, the exit rule, dynamic exit,
attack gradients, batching."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bntt_jax import blocks, evaluator, models, network, neurons, sharding
from bntt_jax.analysis import early_exit, energy, evaluation, pipeline, report, robustness

NO_ROBUSTNESS = dict(noise_sigmas=(), fgsm_epsilons=(), pgd_epsilons=())


def test_truenorth_reproduces_table_s1():
  # Table S1 (CIFAR-10, VGG9): conversion T=1000 419.30e4 spikes is the reference.
  ref = (419.30e4, 1000)
  surrogate = energy.normalised_truenorth(141.96e4, 100, *ref)
  bntt = energy.normalised_truenorth(13.106e4, 25, *ref)
  # By hand: (567840 + 60) / (1677200 + 600) and (52424 + 15) / 1677800.
  assert surrogate == pytest.approx(567900 / 1677800, rel=1e-12)
  assert bntt == pytest.approx(52439 / 1677800, rel=1e-12)
  # The spec quotes 0.33848 and 0.031254 (to ~1e-6).
  assert surrogate == pytest.approx(0.33848, abs=2e-6) and bntt == pytest.approx(0.031254, abs=2e-6)
  # The table truncates to 4 decimals.
  assert math.floor(surrogate * 1e4) / 1e4 == 0.3384
  assert math.floor(bntt * 1e4) / 1e4 == 0.0312
  assert energy.normalised_truenorth(*ref, *ref) == 1.0
  assert energy.truenorth_energy(10, 5, e_dyn=0.4, e_sta=0.6) == pytest.approx(7.0)


def test_s7_flops_of_a_tiny_net_and_vgg9_by_hand():
  m = network.SpikingNetwork(layers=(blocks.LayerSpec('conv', 4, pool=2),
                                     blocks.LayerSpec('dense', 5)), num_classes=3, num_steps=2)
  costs = energy.layer_costs(m, (6, 6, 2))
  assert [c.name for c in costs] == ['conv1', 'fc1', 'fc_out']
  # conv: k^2 O^2 C_in C_out = 9*36*2*4; pooled 3x3x4 = 36 inputs to fc1; fc_out 5 -> 3.
  assert [c.flops for c in costs] == [9 * 36 * 2 * 4, 36 * 5, 5 * 3]
  assert costs[1].in_shape == (3, 3, 4) and costs[0].out_shape == (6, 6, 4)
  v = [c.flops for c in energy.layer_costs(models.vgg9(num_steps=2), (32, 32, 3))]
  assert v == [9 * 32 * 32 * 3 * 64, 9 * 32 * 32 * 64 * 64, 9 * 16 * 16 * 64 * 128,
               9 * 16 * 16 * 128 * 128, 9 * 8 * 8 * 128 * 256, 9 * 8 * 8 * 256 * 256,
               9 * 8 * 8 * 256 * 256, 4 * 4 * 256 * 1024, 1024 * 10]
  # VGG11 ends in a global pool: fc1 sees 512 inputs.
  v11 = energy.layer_costs(models.vgg11(num_steps=2), (64, 64, 3))
  assert v11[-2].in_shape == (512,) and v11[-2].flops == 512 * 4096


def _hand_net(encoding):
  """Dense 3 LIF (leak 0.9, theta 1) on 4 inputs, readout 2 classes, T = 3, no norm.

  The currents are [0.75, 1.0, 0.125] at every step (see test_network's hand
  trajectory): spikes per step [0, 2, 2] (neurons a and b fire at steps 2, 3).
  """
  m = network.SpikingNetwork(
      layers=(blocks.LayerSpec('dense', 3),), num_classes=2, num_steps=3, norm='none',
      neuron=neurons.LIFParams(leak=0.9, threshold=1.0), encoding=encoding)
  w1 = np.zeros((4, 3), np.float32)
  w1[0] = [0.75, 1.0, 0.125]
  w2 = np.asarray([[1.0, -1.0], [0.5, 2.0], [3.0, 3.0]], np.float32)
  return m, {'params': {'fc1': {'synapse': {'kernel': jnp.asarray(w1)}},
                        'fc_out': {'kernel': jnp.asarray(w2)}}}


def test_spike_rates_and_energy_equal_hand_counts_poisson():
  m, v = _hand_net('poisson')
  # |x| >= rescale (2) always spikes, 0 never: input spikes [1, -1, 0, 0] at every step,
  # so the current is row 0 of W1 (row 1 is zero). Example 2 is silent.
  x = np.asarray([[2.5, -3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
  y = np.asarray([1, 0])
  rep = pipeline.analyze(m, v, x, y, key=jax.random.PRNGKey(0), batch_size=2,
                         settings=pipeline.Settings(**NO_ROBUSTNESS))
  s = rep['spike_rates']
  # Example 1: 4 spikes on 3 neurons; example 2: none. Mean S8 rate 2/3 per neuron.
  assert s['rate'] == pytest.approx([2 / 3])
  assert s['rate_per_step'][0] == pytest.approx([0.0, 1 / 3, 1 / 3])
  assert s['spikes_per_layer'] == pytest.approx([2.0]) and s['total_spikes'] == pytest.approx(2.0)
  # Input: 2 spikes of 4 elements per step for example 1 -> 0.25 per step on average.
  assert s['input_rate_per_step'] == pytest.approx([0.25] * 3)
  assert s['input_rate'] == pytest.approx(0.75)
  e = rep['energy']
  assert e['flops'] == [12, 6]
  # E_SNN = FLOPs * R_in * E_AC: fc1 12 * 0.75 * 0.9, fc_out 6 * (2/3) * 0.9.
  assert e['snn_pj'] == pytest.approx([12 * 0.75 * 0.9, 6 * (2 / 3) * 0.9])
  assert e['ann_pj'] == pytest.approx([12 * 4.6, 6 * 4.6])
  assert e['ann_total_pj'] / e['snn_total_pj'] == pytest.approx(e['ann_over_snn'])
  tn = e['truenorth']
  assert tn['num_spikes'] == pytest.approx(2.0) and tn['energy'] == pytest.approx(2 * 0.4 + 3 * 0.6)
  assert not tn['includes_input_spikes'] and tn['normalised'] is None
  # Input spikes counted (a documented choice): 2 + 6 / 2 per example; a reference normalises.
  rep2 = pipeline.analyze(m, v, x, y, key=jax.random.PRNGKey(0), batch_size=2,
                          settings=pipeline.Settings(truenorth_include_input=True,
                                                     truenorth_reference=(100.0, 10),
                                                     **NO_ROBUSTNESS))
  tn2 = rep2['energy']['truenorth']
  assert tn2['num_spikes'] == pytest.approx(5.0)
  assert tn2['normalised'] == pytest.approx((5 * 0.4 + 3 * 0.6) / (100 * 0.4 + 10 * 0.6))
  # Readout after k steps: [0, 0], [1.5, 1], [1.5, 1] -> class 0 wins from step 2 (ties -> 0).
  assert rep['early_exit']['accuracy_after_k'] == pytest.approx([0.5, 0.5, 0.5])
  assert rep['early_exit']['spikes_after_k'] == pytest.approx([0.0, 1.0, 2.0])


def test_first_layer_does_macs_on_real_valued_input():
  m, v = _hand_net('direct')
  x = np.asarray([[1.0, 0.5, 0.0, 0.0]], np.float32)   # current [0.75, 1.0, 0.125] again
  rep = pipeline.analyze(m, v, x, np.asarray([0]), key=jax.random.PRNGKey(0), batch_size=1,
                         settings=pipeline.Settings(**NO_ROBUSTNESS))
  assert rep['spike_rates']['rate'] == pytest.approx([4 / 3])
  assert not rep['spike_rates']['input_is_spikes']
  # fc1: FLOPs * T MACs on real values; fc_out: 6 FLOPs * R_in (4/3) * E_AC.
  assert rep['energy']['snn_pj'] == pytest.approx([12 * 3 * 4.6, 6 * (4 / 3) * 0.9])


def test_the_evaluator_pads_without_dropping_or_double_counting():
  """10 examples in batches of 4: three calls of one shape (one compilation); the per-example
  outputs are the 10 examples in order, the masked sums count each once and no padded row."""
  x = np.arange(10.0).reshape(10, 1)
  y = np.arange(10, dtype=np.int32) + 1
  mesh = sharding.create_mesh()
  seen = []

  def rows(_, batch):
    seen.append(batch['image'].shape[0])   # at tracing: the one batch shape
    return {'x': batch['image'][:, 0], 'ids': batch['index'], 'label': batch['label']}

  def totals(_, batch):
    m = batch['mask']
    return jax.lax.psum({'count': m.sum(), 'labels': (batch['label'] * m).sum(),
                         'unmasked': jnp.float32(batch['label'].shape[0])}, sharding.DATA_AXIS)

  calls = []
  step = evaluator.compile_step(rows, mesh, per_example_out=True)
  out = evaluator.per_example(lambda *a: calls.append(1) or step(*a), None, x, y,
                              batch_size=4, mesh=mesh)
  assert seen == [4] and len(calls) == 3
  np.testing.assert_array_equal(out['x'], x[:, 0])
  np.testing.assert_array_equal(out['ids'], np.arange(10))
  np.testing.assert_array_equal(out['label'], y)
  s = evaluator.sums(evaluator.compile_step(totals, mesh), None, x, y, global_batch=4,
                     mesh=mesh)
  assert (s['count'], s['labels'], s['unmasked']) == (10, y.sum(), 12)   # 2 padded rows


def _tiny(num_steps, norm='bntt'):
  """conv 4 (AP2) -> dense 16 -> 10 classes; running statistics = last batch's (momentum 1)."""
  return network.SpikingNetwork(
      layers=(blocks.LayerSpec('conv', 4, pool=2), blocks.LayerSpec('dense', 16)),
      num_classes=10, num_steps=num_steps, norm=norm, norm_kwargs=(('momentum', 1.0),))


def _init(m, x):
  return jax.jit(lambda x: m.init({'params': jax.random.PRNGKey(1),
                                   'poisson': jax.random.PRNGKey(2)}, x, train=False))(x)


@functools.partial(jax.jit, static_argnums=0)
def _trained_stats(m, x):
  """Initial parameters, running statistics of one training pass on ``x``."""
  v = m.init({'params': jax.random.PRNGKey(1), 'poisson': jax.random.PRNGKey(2)}, x, train=False)
  _, upd = m.apply(v, x, train=True, rngs={'poisson': jax.random.PRNGKey(5)},
                   mutable=['batch_stats'])
  return {'params': v['params'], **upd}


@pytest.mark.full
def test_accuracy_after_k_from_one_pass_equals_evaluations_of_k_steps():
  with jax.enable_x64(True):
    rng = np.random.RandomState(0)
    x = rng.randn(10, 8, 8, 1)
    y = rng.randint(0, 10, 10)
    # Dense layers compile fastest; the one-pass logic does not depend on the layer kind.
    m = network.SpikingNetwork(
        layers=(blocks.LayerSpec('dense', 32), blocks.LayerSpec('dense', 16)), num_classes=10,
        num_steps=3, norm_kwargs=(('momentum', 1.0),))
    v = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64),
                               _trained_stats(m, jnp.asarray(x, jnp.float32)))
    key = jax.random.PRNGKey(7)
    # Batches of 4: the last one is padded; ids are global, so draws match the full batch.
    res = evaluation.evaluation_pass(m, v, x, y, key=key, batch_size=4)
    # Separate evaluations of k = 1..3 steps, on the whole batch at once.
    outs = jax.jit(lambda v, x: [
        m.apply(v, x, train=False, num_steps=k, rngs={'poisson': key},
                example_ids=jnp.arange(10)) for k in range(1, 4)])(v, jnp.asarray(x))
    for k, out in enumerate(outs, 1):
      np.testing.assert_array_equal(res.predictions[k - 1], np.argmax(out.logits, -1))
    acc_k = early_exit.accuracy_after_k(res.predictions, y)
    assert acc_k[-1] == res.accuracy == np.mean(np.argmax(out.logits, -1) == y)
    np.testing.assert_array_equal(res.spikes, np.stack(out.spikes))
    np.testing.assert_array_equal(res.input_spikes, out.input_spikes)
    assert res.neurons == out.neurons and res.layer_names == out.layer_names
    # Not vacuous: predictions change with k.
    assert not np.array_equal(res.predictions[0], res.predictions[-1])


def _planted(model, x, per_step_means):
  """Variables whose BNTT gammas have the planted per-step means (layers differ)."""
  v = _init(model, x)
  params = jax.tree_util.tree_map(lambda a: a, v['params'])
  names = network.default_names(model.layers)
  g = np.asarray(per_step_means)
  offsets = np.linspace(-0.05, 0.05, len(names))   # mean over layers is g
  for name, off in zip(names, offsets):
    c = params[name]['norm_layer']['scale'].shape[1]
    ramp = np.linspace(-1, 1, c) * 0.02   # mean over channels is 0
    params[name]['norm_layer']['scale'] = jnp.asarray(g[:, None] + off + ramp[None])
  return {'params': params, 'batch_stats': v['batch_stats']}


def test_exit_step_obeys_its_rule_on_planted_gammas():
  g = [1.0, 0.5, 0.3, 0.05, 0.2, 0.02]
  m = _tiny(6)
  x = jnp.zeros((2, 8, 8, 1))
  v = _planted(m, x, g)
  per_layer, mean = early_exit.mean_gamma(early_exit.model_gammas(m, v))
  assert per_layer.shape == (2, 6)
  np.testing.assert_allclose(mean, g, atol=1e-7)
  # The tail below 0.1 starts after step 5 (0.2 at step 5 is not below).
  assert early_exit.exit_step(mean, 0.1) == 5
  assert early_exit.exit_step(mean, 0.25) == 3
  assert early_exit.exit_step(mean, 0.015) == 6   # the last step is not below: never exit
  assert early_exit.exit_step(mean, 2.0) == 1     # all below: one step still runs
  assert early_exit.exit_step(np.asarray([0.05, 0.5, 0.05]), 0.1) == 2   # "stays below"
  rep = pipeline.analyze(m, v, np.random.RandomState(0).randn(4, 8, 8, 1).astype(np.float32),
                         np.arange(4), key=jax.random.PRNGKey(0), batch_size=4,
                         settings=pipeline.Settings(exit_threshold=0.1, **NO_ROBUSTNESS))
  ee = rep['early_exit']
  assert ee['exit_step'] == 5
  assert ee['accuracy_at_exit'] == ee['accuracy_after_k'][4]
  assert ee['gamma']['layers'] == ['conv1', 'fc1']
  # Norms without per-step gamma have no exit step.
  mbn = _tiny(3, norm='bn')
  assert early_exit.model_gammas(mbn, _init(mbn, x)) == {}


def test_dynamic_exit_always_and_never_confident():
  m = _tiny(5)
  x = np.random.RandomState(1).randn(6, 8, 8, 1).astype(np.float32)
  y = np.arange(6)
  v = _trained_stats(m, jnp.asarray(x))
  res = evaluation.evaluation_pass(m, v, x, y, key=jax.random.PRNGKey(3), batch_size=6)
  for rule in early_exit.RULES:
    conf = res.confidence(rule)
    steps, pred = early_exit.dynamic_exit(conf, res.predictions, -np.inf)
    np.testing.assert_array_equal(steps, 1)
    np.testing.assert_array_equal(pred, res.predictions[0])
    steps, pred = early_exit.dynamic_exit(conf, res.predictions, np.inf)
    np.testing.assert_array_equal(steps, 5)
    np.testing.assert_array_equal(pred, res.predictions[-1])
  # max_prob >= 0 always holds: one step; a probability never reaches 1.1: all T.
  curve = early_exit.dynamic_curve(res.max_prob, res.predictions, y, [0.0, 1.1],
                                   spikes=res.spikes.sum(0))
  assert curve['mean_steps'] == [1.0, 5.0]
  assert curve['accuracy'][1] == res.accuracy
  assert curve['mean_spikes'][1] == pytest.approx(res.spikes.sum(axis=(0, 1)).mean())
  # A planted confidence: sample 0 confident from step 3, sample 1 never.
  conf = np.asarray([[0.1, 0.2], [0.5, 0.3], [0.95, 0.1], [0.99, 0.2]])
  preds = np.asarray([[1, 1], [2, 2], [3, 3], [4, 4]])
  steps, pred = early_exit.dynamic_exit(conf, preds, 0.9)
  np.testing.assert_array_equal(steps, [3, 4])
  np.testing.assert_array_equal(pred, [3, 4])
  np.testing.assert_array_equal(early_exit.dynamic_exit(conf, preds, 0.0, min_steps=2)[0], [2, 2])


def test_attack_gradient_flows_through_the_poisson_coder():
  m = _tiny(3)
  x = jnp.asarray(np.random.RandomState(2).randn(4, 8, 8, 1).astype(np.float32))
  y = jnp.arange(4)
  v = _trained_stats(m, x)
  ids, key = jnp.arange(4), jax.random.PRNGKey(0)
  space = robustness.InputSpace((0.3,), (0.4,))

  @jax.jit
  def attacks(x, eps):   # one compilation for every check below
    pgd = functools.partial(robustness.pgd, m, v, x, y, ids, key, space=space, steps=4,
                            step_ratio=0.5, start_key=jax.random.PRNGKey(9))
    logits = m.apply(v, x, train=False, rngs={'poisson': key}, example_ids=ids).logits
    return (robustness.input_gradient(m, v, x, y, ids, key), logits,
            robustness.fgsm(m, v, x, y, ids, key, eps, space),
            robustness.fgsm(m, v, x, y, ids, key, 0.0, space), pgd(0.0), pgd(eps))

  g, logits, adv, adv0, (x0, broken), (xp, _) = jax.device_get(attacks(x, 0.04))
  x = np.asarray(x)
  assert g.shape == x.shape
  per_example = np.abs(g).reshape(4, -1).sum(1)
  assert np.all(per_example > 0), per_example
  # Outside the coder's linear range (|x| >= rescale) the straight-through slope is 0.
  assert np.all(g[np.abs(x) >= 2.0] == 0)
  # FGSM moves every pixel with a gradient by epsilon / std inside the bounds.
  d = np.abs(adv - x)
  lo, hi = (0 - 0.3) / 0.4, (1 - 0.3) / 0.4
  assert d.max() == pytest.approx(0.1, rel=1e-5)
  inside = (g != 0) & (x > lo + 0.1) & (x < hi - 0.1)
  np.testing.assert_allclose(d[inside], 0.1, rtol=1e-5)
  # Epsilon 0 leaves the input as it is, even where it lies outside the pixel bounds
  # (a random PGD start in a ball of radius 0 is x).
  np.testing.assert_array_equal(adv0, x)
  np.testing.assert_array_equal(x0, x)
  np.testing.assert_array_equal(broken, np.argmax(logits, -1) != np.asarray(y))
  # PGD stays in the ball and the bounds (widened to hold the clean input).
  assert np.abs(xp - x).max() <= 0.04 / 0.4 + 1e-6
  assert np.all(xp >= np.minimum(lo, x) - 1e-6) and np.all(xp <= np.maximum(hi, x) + 1e-6)


def test_settings_reject_unknown_keys_and_bad_rules():
  with pytest.raises(ValueError, match=r"\['fgsm_eps'\] are not among"):
    pipeline.Settings.from_dict({'fgsm_eps': [0.1]})
  s = pipeline.Settings.from_dict({'fgsm_epsilons': [0.1, 0.2]})
  assert s.fgsm_epsilons == (0.1, 0.2)
  with pytest.raises(ValueError,
                     match="dynamic_rule 'entropy' is not accepted: one of max_prob, margin"):
    pipeline.Settings(dynamic_rule='entropy')


def test_ann_twin_reports_ann_energy_and_no_spikes(tmp_path):
  snn = _tiny(4)
  ann = pipeline.ann_twin(snn)
  assert ann.neuron == 'relu' and ann.num_steps == 1 and ann.encoding == 'direct'
  x = np.random.RandomState(3).randn(5, 8, 8, 1).astype(np.float32)
  v = _init(ann, jnp.asarray(x))
  rep = pipeline.analyze(ann, v, x, np.arange(5), key=jax.random.PRNGKey(0), batch_size=8,
                         settings=pipeline.Settings(noise_sigmas=(0.0,), fgsm_epsilons=(0.0,),
                                                    pgd_epsilons=()))
  assert rep['spike_rates'] is None and rep['energy']['snn_pj'] is None
  flops = [c.flops for c in energy.layer_costs(snn, (8, 8, 1))]
  assert rep['energy']['flops'] == flops
  assert rep['energy']['ann_total_pj'] == pytest.approx(sum(flops) * 4.6)
  assert rep['early_exit']['exit_step'] is None and len(rep['early_exit']['accuracy_after_k']) == 1
  r = rep['robustness']
  assert r['gaussian']['accuracy'] == [rep['accuracy']['clean']] == r['fgsm']['accuracy']
  assert rep['early_exit']['spikes_after_k'] is None
  paths = report.write_report(rep, str(tmp_path))
  with open(paths['md']) as f:
    assert 'ANN (ReLU): no spikes.' in f.read()


def test_bad_analysis_settings_are_one_line_errors_naming_the_value():
  with pytest.raises(ValueError, match=r'^pgd_steps 0 is not accepted: an integer >= 1$'):
    pipeline.Settings(pgd_steps=0)
  with pytest.raises(ValueError, match=r'truenorth_reference \(1, 2, 3\) is not accepted: a pair'):
    pipeline.Settings(truenorth_reference=(1, 2, 3))
