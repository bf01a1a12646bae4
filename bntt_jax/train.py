"""Training and evaluation: small pure steps and one loop (flax-examples shape).

``train_and_evaluate(config, workdir)`` is the whole run, a short driver over named steps:
``_setup`` (data, model on the mesh, jitted steps, evaluation), ``_restore`` (the fresh or the
resumed state; what a checkpoint carries besides it is a :class:`Progress`), per epoch
``_train_epoch`` (jitted ``train_step`` with host syncs and checkpoints) and ``_end_epoch``
(``eval_step`` over the full test split, the metrics row, the epoch's checkpoint), then
``_final_evaluation`` (the Poisson draws, the summary).

Randomness, all derived from ``config.seed``: the parameters' and the Poisson draws' keys
(:mod:`bntt_jax.run_lib`; a draw is a function of seed, step, time step and example, whatever
the device count); data order and augmentation: numpy, from (seed, epoch) and (seed, step)
(:mod:`bntt_jax.data.pipeline`).

So a run killed at any point and resumed from its last checkpoint ends with
the same parameters as one that was never interrupted.

What clusters do to runs (``train_and_evaluate``): SIGTERM or SIGINT (or a
preemption notice to any host of a multi-host run) stops the run at the next
step boundary, after saving that step (:mod:`bntt_jax.preemption`); a damaged
newest checkpoint is skipped for the next older one; one run per workdir
(:mod:`bntt_jax.runlock`); a resume whose config changes the model, the data or
the optimisation stops (``config_lib.RESUMABLE``), and ``config.json`` keeps
every config the run was trained under.

Reported accuracy: ``final_test_accuracy`` is the last epoch's accuracy on the
*full* test split, averaged over ``num_keys`` Poisson draws. The reference
instead drops the last incomplete test batch and reports the best epoch
(model selection on the test set); ``best_test_accuracy`` is given for
comparison only.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from absl import logging
import flax
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from bntt_jax import checkpoint as checkpoint_lib
from bntt_jax import config_lib
from bntt_jax import data as data_lib
from bntt_jax import evaluator
from bntt_jax import metrics as metrics_lib
from bntt_jax import network
from bntt_jax import optim
from bntt_jax import preemption
from bntt_jax import records
from bntt_jax import run_lib
from bntt_jax import runlock
from bntt_jax import sharding
from bntt_jax import summary_writer
from bntt_jax.data import pipeline
from bntt_jax.data import scale as data_scale
from bntt_jax.errors import ConfigError, NonFiniteLossError, Preempted

Array = jax.Array

# Keys of the per-step training metrics that are sums over the batch.
_TRAIN_SUMS = ('loss', 'correct', 'count')
# A row per host sync (``train.log_every_steps``), beside the per-epoch ``metrics.jsonl``.
STEPS_FILE = records.STEPS_FILE


class TrainState(train_state.TrainState):
  """``step``, ``params``, ``opt_state`` and the norms' running statistics.

  ``batch_stats`` is ``{}`` for ``norm = none``.
  """
  batch_stats: Any = None


def create_learning_rate_fn(config: ml_collections.ConfigDict,
                            steps_per_epoch: int) -> optax.Schedule:
  t = config.train
  return optim.create_learning_rate_fn(
      base_lr=t.learning_rate, schedule=t.lr_schedule, epochs=t.epochs,
      steps_per_epoch=steps_per_epoch, boundaries=tuple(t.lr_boundaries), decay=t.lr_decay,
      warmup_epochs=t.warmup_epochs)


def create_optimizer(config: ml_collections.ConfigDict,
                     learning_rate_fn: optax.Schedule) -> optax.GradientTransformation:
  t = config.train
  return optim.create_optimizer(t.optimizer, learning_rate_fn, momentum=t.momentum,
                                nesterov=t.nesterov, weight_decay=t.weight_decay, b1=t.b1,
                                b2=t.b2)


def create_train_state(rng: Array, config: ml_collections.ConfigDict, model: flax.linen.Module,
                       input_shape, learning_rate_fn: optax.Schedule) -> TrainState:
  """Initial state for one example shape ``input_shape`` (no batch axis)."""
  k_params, k_poisson = jax.random.split(rng)
  variables = model.init({'params': k_params, 'poisson': k_poisson},
                         jnp.zeros((1,) + tuple(input_shape), jnp.float32), train=False)
  return TrainState.create(apply_fn=model.apply, params=variables['params'],
                           tx=create_optimizer(config, learning_rate_fn),
                           batch_stats=variables.get('batch_stats', {}))


def _spike_sums(out: network.SNNOutput, weights: Optional[Array] = None) -> Array:
  """Per hidden layer, spikes summed over steps and (weighted) examples: ``[L]``."""
  per_example = [s.sum(0) for s in out.spikes]                 # [B] each
  if weights is not None:
    per_example = [p * weights for p in per_example]
  return jnp.stack([p.sum() for p in per_example]) if per_example else jnp.zeros((0,))


def _global_size(batch: Dict[str, Array], axis_name: Optional[str]) -> int:
  """Examples in the global batch (``batch`` is one device's share with ``axis_name``)."""
  return batch['label'].shape[0] * (jax.lax.axis_size(axis_name) if axis_name else 1)


def gradients(state: TrainState, batch: Dict[str, Array], key: Array, *,
              axis_name: Optional[str] = None):
  """The mean cross-entropy over the global batch and its gradient.

  Args:
    state: the train state (replicated).
    batch: ``image [B, ...]``, ``label [B]``, ``index [B]``.
    key: the Poisson key of this step.
    axis_name: run inside ``shard_map`` (:func:`parallel_train_step`): ``batch``
      is this device's share of the global batch, split over the mesh axis
      ``axis_name``, and ``state.apply_fn``'s network was built with the same
      ``axis_name``. Each device then runs its own examples; the norms' statistics
      and the gradient are reduced over the axis (all-reduces of statistics and
      of the parameters' size, never of activations).
  Returns:
    ``(loss, out, updates, grads)``: the loss (this device's share of it with
    ``axis_name``), the network's output for ``batch``, the updated running
    statistics and the gradient of the global loss (replicated).
  """
  count = _global_size(batch, axis_name)

  def loss_fn(params):
    out, updates = state.apply_fn(
        {'params': params, 'batch_stats': state.batch_stats}, batch['image'], train=True,
        rngs={'poisson': key}, mutable=['batch_stats'], example_ids=batch['index'])
    ce = optax.softmax_cross_entropy_with_integer_labels(out.logits, batch['label'])
    return ce.sum() / count, (out, updates)

  params = state.params
  if axis_name:
    # Marked per-device before use, the parameters' cotangents stay per-device through
    # the whole backward pass and are all-reduced once, below, in their own float32:
    # not in a synapse's bfloat16 after its cast, nor step by step in the LIF loops.
    params = jax.lax.pcast(params, axis_name, to='varying')
  (loss, (out, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  if axis_name:
    grads = jax.lax.psum(grads, axis_name)
  return loss, out, updates, grads


def train_step(state: TrainState, batch: Dict[str, Array], rng: Array, *,
               learning_rate_fn: optax.Schedule, axis_name: Optional[str] = None):
  """One SGD step on a global batch.

  Args:
    state, batch, axis_name: as in :func:`gradients`.
    rng: the run's training key; the step's Poisson key is ``fold_in(rng, step)``.
  Returns:
    ``(new_state, metrics)``; metrics are sums over the global batch (``loss``,
    ``correct``, ``count``, ``spikes [L]``) and the step's ``lr``.
  """
  key = jax.random.fold_in(rng, state.step)
  loss, out, updates, grads = gradients(state, batch, key, axis_name=axis_name)
  count = _global_size(batch, axis_name)
  sums = {'loss': loss * count,
          'correct': jnp.sum(jnp.argmax(out.logits, -1) == batch['label']),
          'spikes': _spike_sums(out)}
  if axis_name:
    sums = jax.lax.psum(sums, axis_name)
  new_state = state.apply_gradients(
      grads=grads, batch_stats=updates.get('batch_stats', state.batch_stats))
  metrics = dict(sums, count=jnp.asarray(count, jnp.float32), lr=learning_rate_fn(state.step))
  return new_state, metrics


def eval_step(state: TrainState, batch: Dict[str, Array], key: Array, *,
              num_steps: Optional[int] = None, top_k: int = 5,
              axis_name: Optional[str] = None) -> Dict[str, Array]:
  """Evaluation sums over the real examples of a padded batch (``mask``).

  Returns ``loss``, ``correct``, ``correct_topk`` (label among the ``top_k``
  largest logits), ``count`` and ``spikes [L]``, each summed over the batch
  (the global batch: with ``axis_name`` as in :func:`train_step`).
  """
  out = state.apply_fn({'params': state.params, 'batch_stats': state.batch_stats},
                       batch['image'], train=False, rngs={'poisson': key},
                       num_steps=num_steps, example_ids=batch['index'])
  mask = batch['mask']
  labels = batch['label']
  ce = optax.softmax_cross_entropy_with_integer_labels(out.logits, labels)
  k = min(top_k, out.logits.shape[-1])
  _, top = jax.lax.top_k(out.logits, k)
  in_top = jnp.any(top == labels[:, None], axis=-1)
  sums = {
      'loss': jnp.sum(ce * mask),
      'correct': jnp.sum((jnp.argmax(out.logits, -1) == labels) * mask),
      'correct_topk': jnp.sum(in_top * mask),
      'count': jnp.sum(mask),
      'spikes': _spike_sums(out, mask),
  }
  return jax.lax.psum(sums, axis_name) if axis_name else sums


def parallel_train_step(mesh: jax.sharding.Mesh, learning_rate_fn: optax.Schedule) -> Callable:
  """:func:`train_step` data-parallel over ``mesh`` (``shard_map`` over its ``data``
  axis), jitted with the state donated: ``(state, global batch, rng) -> (state, metrics)``.
  The state's network must have been built with ``axis_name=sharding.DATA_AXIS``."""
  step = functools.partial(train_step, learning_rate_fn=learning_rate_fn,
                           axis_name=sharding.DATA_AXIS)
  return jax.jit(sharding.data_parallel(step, mesh, sharded_args=(1,)), donate_argnums=(0,))


def parallel_eval_step(mesh: jax.sharding.Mesh, num_steps: Optional[int] = None) -> Callable:
  """:func:`eval_step` data-parallel over ``mesh``, jitted (:func:`evaluator.compile_step`):
  ``(state, global batch, key) -> sums``."""
  return evaluator.compile_step(eval_step, mesh, num_steps=num_steps,
                                axis_name=sharding.DATA_AXIS)


def evaluate(eval_fn: Callable, state: TrainState, split: data_lib.Split, key: Array, *,
             global_batch: int, mean, std, mesh, neurons) -> Dict[str, Any]:
  """Accuracy (fractions), loss and spike rates over every example of ``split``
  (:func:`evaluator.sums` of ``eval_fn``, a :func:`parallel_eval_step`)."""
  totals = evaluator.sums(eval_fn, state, split.x, split.y, key, global_batch=global_batch,
                          mesh=mesh, mean=mean, std=std)
  n = float(totals['count'])
  rate, per_layer = metrics_lib.spike_rates(totals['spikes'], neurons, n)
  return {'accuracy': float(totals['correct']) / n, 'top5_accuracy': float(totals['correct_topk']) / n,
          'loss': float(totals['loss']) / n, 'spike_rate': rate, 'spike_rate_per_layer': per_layer,
          'examples': int(n)}


def _read_record(workdir: str) -> Optional[Dict[str, Any]]:
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    return None
  return config_lib.read_run_record(path, 'restore it from a copy, or start the run in a new '
                                    'workdir')


def summarize(finals, config: ml_collections.ConfigDict, meta: Dict[str, Any],
              layer_names, *, steps: int, train_examples: int,
              wall_seconds: float, kernels: Dict[str, str], num_classes: int = 0,
              classes_inferred: bool = False) -> Dict[str, Any]:
  """``summary.json``: the final evaluations (one per Poisson key) and the run's facts
  (``kernels``: what ran the CPU-kernel ops, :func:`config_lib.kernels_in_use`;
  ``classes_inferred``: the dataset's classes were counted from its labels, not known)."""
  accs = np.asarray([f['accuracy'] for f in finals])
  summary = {
      'final_test_accuracy': float(accs.mean()),
      'final_test_accuracy_std': float(accs.std()),
      'final_test_accuracies': accs.tolist(),
      'best_test_accuracy': meta['best_test_accuracy'],
      'best_epoch': meta['best_epoch'],
      'epochs': config.train.epochs,
      'steps': steps,
      'timesteps': config.model.timesteps,
      'eval_timesteps': config.eval.timesteps or config.model.timesteps,
      'seed': config.seed,
      'wall_seconds': wall_seconds,
      'dataset': config.data.name,
      'train_examples': train_examples,
      'test_examples': finals[0]['examples'],
      'num_classes': num_classes,
      'classes_inferred': classes_inferred,
      'model': config.model.arch,
      'norm': config.model.norm,
      'kernels': kernels,
      'spike_rate': float(np.mean([f['spike_rate'] for f in finals])),
      'spike_rate_per_layer': dict(zip(layer_names, np.mean(
          [f['spike_rate_per_layer'] for f in finals], axis=0).tolist())),
      'evaluation': ('final_test_accuracy: last-epoch parameters on the full test split, mean '
                     f'(std) over {len(finals)} Poisson draws; best_test_accuracy: the best '
                     'per-epoch test accuracy (one draw), the reference\'s (test-set model '
                     'selection, last incomplete test batch dropped) figure, for comparison'),
  }
  if config.eval.top5:
    top5 = np.asarray([f['top5_accuracy'] for f in finals])
    summary['final_test_top5_accuracy'] = float(top5.mean())
    summary['final_test_top5_accuracy_std'] = float(top5.std())
  return summary


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Train, evaluate every epoch, checkpoint, resume; returns the summary.

  Writes (process 0) ``workdir/config.json``, ``metrics.jsonl`` (a row per epoch),
  ``steps.jsonl`` (a row per ``train.log_every_steps``), TensorBoard event files of the same
  scalars (``events.out.tfevents.*``) and ``summary.json``; every process takes part in
  ``workdir/checkpoints``. Without a terminal a log line per ``log_every_steps`` shows the
  progress (with one, a tqdm bar).
  Process 0 holds ``workdir/.lock`` throughout; SIGTERM and SIGINT are handled
  throughout (see the module docstring).

  Raises:
    ConfigError: a value that is not accepted (before anything compiles), a
      workdir another run holds, a resume with a config that changes the
      model, the data or the optimisation, a workdir whose checkpoints cannot
      be read.
    NonFiniteLossError: a non-finite training loss; the newest checkpoint is
      the last one with a finite loss.
    CheckpointError: a checkpoint could not be written (a full disk).
    Preempted: SIGTERM, SIGINT or a preemption notice; the state after the
      last step is saved (see ``Preempted.step``).
  """
  start_time = time.time()
  config_lib.validate(config, jax.device_count())
  workdir = os.path.abspath(workdir)
  if sharding.is_main_process():
    os.makedirs(workdir, exist_ok=True)
  # The checkpointer only after the lock: opening it clears its directory's unfinished
  # saves, which may be those of a run still writing there.
  with runlock.hold_for_run(workdir), preemption.Monitor() as preempt, contextlib.closing(
      checkpoint_lib.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                  keep=config.train.keep_checkpoints)) as ckpt:
    return _train_and_evaluate(config, workdir, ckpt, preempt, start_time)


@dataclasses.dataclass
class Progress:
  """What a checkpoint carries besides the state (its ``meta``), so that a resumed run
  continues where it stopped: the epoch in progress (``epoch``; a checkpoint saved on
  preemption after an epoch's last step still has that epoch's evaluation to do) with its
  training sums and spike counts so far, the last synced step's learning rate (for that
  epoch's row), the best test accuracy and its epoch, the wall time before this process."""
  epoch_sums: Dict[str, float] = dataclasses.field(
      default_factory=lambda: {k: 0.0 for k in _TRAIN_SUMS})
  epoch_spikes: Optional[List[float]] = None
  best_test_accuracy: Optional[float] = None
  best_epoch: Optional[int] = None
  wall_seconds: float = 0.0
  epoch: Optional[int] = None
  lr: Optional[float] = None

  @classmethod
  def from_meta(cls, meta: Dict[str, Any]) -> 'Progress':
    """From a checkpoint's meta (older checkpoints lack some fields: their defaults)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in meta.items() if k in fields})


@dataclasses.dataclass
class _Run:
  """One run's fixed parts, set up once: where it writes, what stops it, its data, model,
  steps and evaluation."""
  config: ml_collections.ConfigDict
  workdir: str
  ckpt: checkpoint_lib.Checkpointer
  preempt: preemption.Monitor
  start_time: float
  progress: Progress = dataclasses.field(default_factory=Progress)
  wall_before: float = 0.0
  # Set by _setup.
  ds: Any = None
  epoch_test: Any = None   # the split of the per-epoch evaluation (eval.epoch_examples)
  tensorboard: Any = None   # TensorBoard event files in the workdir (process 0)
  train_data: Any = None
  mesh: Any = None
  model: Any = None
  neurons: Tuple[int, ...] = ()
  layer_names: Tuple[str, ...] = ()
  kernels: Dict[str, str] = dataclasses.field(default_factory=dict)
  learning_rate_fn: Any = None
  train_step: Any = None
  run_eval: Any = None
  eval_keys: List[Array] = dataclasses.field(default_factory=list)
  train_key: Any = None

  @property
  def is_main(self) -> bool:
    return sharding.is_main_process()

  def wall(self) -> float:
    return self.wall_before + time.time() - self.start_time

  def stop_if_preempted(self, step: int, saved: Optional[int] = None) -> None:
    """Raise ``Preempted`` if a stop was asked for by ``step`` (``saved``: the step just saved
    for it)."""
    if saved is None and not self.preempt.reached(step):
      return
    newest = self.ckpt.latest_step()
    if saved is not None:
      what = f'saved the checkpoint of step {saved} in {self.ckpt.directory}'
    elif newest is not None:
      what = (f'stopped; the checkpoint of step {newest} in {self.ckpt.directory} holds the '
              'run so far')
    else:
      what = 'stopped before the first checkpoint'
    raise Preempted(f'{self.preempt.reason}: {what}; rerun the same command to '
                    f'{"resume" if newest is not None else "start again"}', newest)

  def save(self, step: int, state, sums, spikes, epoch: int, lr: float) -> None:
    p = self.progress
    p.epoch_sums, p.epoch_spikes = dict(sums), None if spikes is None else list(spikes)
    p.wall_seconds, p.epoch, p.lr = self.wall(), epoch, lr
    self.ckpt.save(step, state, dataclasses.asdict(p))


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                        ckpt: checkpoint_lib.Checkpointer, preempt: preemption.Monitor,
                        start_time: float) -> Dict[str, Any]:
  run = _Run(config, workdir, ckpt, preempt, start_time)
  # A resume with a config that changes the model or the data stops before the data load.
  record = _read_record(workdir)
  latest = ckpt.latest_step()
  if latest is not None and record is not None:
    config_lib.check_resume(config_lib.config_in_force(record, latest), config, latest)
  run.stop_if_preempted(latest or 0)
  _setup(run)
  run.stop_if_preempted(latest or 0)
  state, start_step, start_epoch = _restore(run, record, latest)
  run.stop_if_preempted(start_step)

  last_eval = None
  bar = metrics_lib.ProgressBar(config.train.epochs * run.train_data.steps_per_epoch,
                                initial=start_step, enabled=None if run.is_main else False)
  try:
    for epoch in range(start_epoch, config.train.epochs):
      state, trained = _train_epoch(run, state, epoch, start_step, bar)
      last_eval = _end_epoch(run, state, epoch, trained, bar)
  finally:
    bar.close()
    ckpt.close()   # also when training stops early (a non-finite loss, an interrupt)
  return _final_evaluation(run, state, last_eval)


def _setup(run: _Run) -> None:
  """The data, the model on the mesh, the jitted steps and the evaluation."""
  config = run.config
  ds, mean, std = run_lib.load_data(config)
  global_batch = config.train.batch_size
  if global_batch > len(ds.train):
    raise ConfigError('batch size', global_batch,
                      f'an integer in 1..{len(ds.train)} (the training examples)')
  d = config.data
  run.ds = ds
  if run.is_main:
    run.tensorboard = summary_writer.SummaryWriter(run.workdir)
  run.epoch_test = ds.test
  if config.eval.epoch_examples:
    idx = data_scale.class_balanced(ds.test.y, config.eval.epoch_examples, config.seed,
                                    'eval.epoch_examples')
    run.epoch_test = data_lib.Split(ds.test.x[idx], ds.test.y[idx])
  run.train_data = pipeline.TrainPipeline(
      ds.train.x, ds.train.y, global_batch=global_batch, seed=config.seed, augment=d.augment,
      crop_padding=d.crop_padding, mean=mean, std=std, process_index=jax.process_index(),
      process_count=jax.process_count())
  run.mesh = sharding.create_mesh()
  run.model = config_lib.create_model(config, ds.info.num_classes, devices=run.mesh.devices.flat,
                                      axis_name=sharding.DATA_AXIS)
  run.neurons = tuple(int(np.prod(s))
                      for s in run.model.neuron_shapes(run.model.step_shape(ds.info.shape)))
  run.layer_names = network.default_names(run.model.layers)
  run.kernels = config_lib.kernels_in_use(run.model)
  logging.info('CPU kernels: %s', ', '.join(f'{k}: {v}' for k, v in run.kernels.items()))
  run.learning_rate_fn = create_learning_rate_fn(config, run.train_data.steps_per_epoch)
  run.train_step = parallel_train_step(run.mesh, run.learning_rate_fn)
  run.run_eval = functools.partial(
      evaluate, parallel_eval_step(run.mesh, config.eval.timesteps),
      global_batch=config.eval.batch_size, mean=mean, std=std, mesh=run.mesh,
      neurons=run.neurons)
  run.eval_keys = run_lib.eval_keys(config.seed, config.eval.num_keys)
  run.train_key = run_lib.run_keys(config.seed)[1]


def _restore(run: _Run, record: Optional[Dict[str, Any]], latest: Optional[int]):
  """The first state (fresh, or the newest readable checkpoint's), its step and its epoch;
  writes ``config.json`` and trims ``metrics.jsonl`` to the epochs before that one."""
  config, ckpt = run.config, run.ckpt
  init_key = run_lib.run_keys(config.seed)[0]
  state = jax.jit(functools.partial(create_train_state, config=config, model=run.model,
                                    input_shape=run.ds.info.shape,
                                    learning_rate_fn=run.learning_rate_fn),
                  out_shardings=sharding.replicated(run.mesh))(init_key)
  try:
    restored = ckpt.restore_newest(state, os.path.join(run.workdir, 'checkpoints_damaged'))
  except checkpoint_lib.ModelMismatchError as e:
    raise ConfigError('workdir', run.workdir,
                      f'a new directory, or one holding a run of this config (its checkpoint '
                      f'at step {latest} does not fit: {e})') from None
  if restored is not None:
    state, meta, resumed = restored
    run.progress = Progress.from_meta(meta)
    logging.info('Resuming from the checkpoint at step %d in %s', resumed, ckpt.directory)
    if resumed != latest and record is not None:   # fell back past a damaged checkpoint
      config_lib.check_resume(config_lib.config_in_force(record, resumed), config, resumed)
  run.wall_before = float(run.progress.wall_seconds)
  start_step = int(jax.device_get(state.step))
  start_epoch = (int(run.progress.epoch) if run.progress.epoch is not None
                 else start_step // run.train_data.steps_per_epoch)
  if run.is_main:
    metrics_lib.write_json(os.path.join(run.workdir, 'config.json'), config_lib.config_record(
        record if restored is not None else None, config, start_step))
    metrics_lib.JsonlWriter(os.path.join(run.workdir, 'metrics.jsonl')).keep_epochs_before(
        start_epoch)
    metrics_lib.JsonlWriter(os.path.join(run.workdir, STEPS_FILE)).keep_steps_upto(start_step)
  return state, start_step, start_epoch


@dataclasses.dataclass
class _Trained:
  """An epoch's training totals: summed loss, correct and count, spikes per layer, the last
  learning rate, images per second."""
  sums: Dict[str, float]
  spikes: Optional[np.ndarray]
  lr: float
  img_per_s: float


def _train_epoch(run: _Run, state, epoch: int, start_step: int, bar) -> Tuple[Any, _Trained]:
  """The training steps of ``epoch`` (from ``start_step`` when the run resumed inside it),
  with the host syncs that check the loss, the checkpoints within the epoch and the stop at
  a preemption notice."""
  config, p = run.config, run.progress
  steps_per_epoch = run.train_data.steps_per_epoch
  first = max(start_step, epoch * steps_per_epoch)
  last = (epoch + 1) * steps_per_epoch
  resumed_mid_epoch = first == start_step and first > epoch * steps_per_epoch
  sums = dict(p.epoch_sums) if resumed_mid_epoch else {k: 0.0 for k in _TRAIN_SUMS}
  spikes = (np.asarray(p.epoch_spikes, np.float64)
            if resumed_mid_epoch and p.epoch_spikes is not None else None)
  lr = float(p.lr) if resumed_mid_epoch and p.lr is not None else float('nan')
  log_every, ckpt_every = config.train.log_every_steps, config.train.checkpoint_every_steps
  pending = []
  t_first = t_end = None
  t_epoch = t_sync = time.perf_counter()
  synced = first
  batches = run.train_data.iterate(first, last, prefetch=config.data.prefetch)
  for step, local in zip(range(first, last), batches):
    state, m = run.train_step(state, sharding.global_batch(local, run.mesh), run.train_key)
    pending.append((step, m))
    done = step + 1
    # The state after this step, saved on every process at the same step.
    preempted = run.preempt.reached(done)
    save_now = (ckpt_every and done % ckpt_every == 0 and done != last) or preempted
    if done % log_every == 0 or done == last or save_now:
      # Host sync: check the losses before anything is saved.
      interval = {k: 0.0 for k in _TRAIN_SUMS}
      interval_spikes = 0.0
      for s, host_m in jax.device_get(pending):
        if not np.isfinite(host_m['loss']):
          good = run.ckpt.latest_step()
          raise NonFiniteLossError(
              f'non-finite training loss {float(host_m["loss"]) / host_m["count"]} at step '
              f'{s} (epoch {epoch}); training stopped; the last good checkpoint is '
              + (f'step {good} in {run.ckpt.directory}' if good is not None else
                 'none (no checkpoint was saved before this step)'))
        for k in _TRAIN_SUMS:
          sums[k] += float(host_m[k])
          interval[k] += float(host_m[k])
        interval_spikes += float(np.sum(host_m['spikes'], dtype=np.float64))
        spikes = host_m['spikes'].astype(np.float64) + (0 if spikes is None else spikes)
        lr = float(host_m['lr'])
      pending = []
      now = time.perf_counter()
      _log_steps(run, state, epoch, done, interval, interval_spikes, lr,
                 (done - synced) * config.train.batch_size / max(now - t_sync, 1e-9),
                 quiet=bar.enabled)
      t_sync, synced = now, done
      if t_first is None:
        t_first = (time.perf_counter(), done - first)   # the first sync includes compilation
      t_end = (time.perf_counter(), done - first)
      bar.update(done, epoch=f'{epoch + 1}/{config.train.epochs}',
                 loss=f'{sums["loss"] / max(sums["count"], 1):.4f}')
    if save_now:
      run.save(done, state, sums, spikes, epoch, lr)
    if preempted:
      run.stop_if_preempted(done, saved=done)
  # Throughput after the first host sync (which waits for compilation), or over the whole
  # epoch when it had one sync only.
  global_batch = config.train.batch_size
  if t_end is not None and t_end[1] > t_first[1]:
    img_per_s = (t_end[1] - t_first[1]) * global_batch / (t_end[0] - t_first[0])
  elif t_end is not None:
    img_per_s = t_end[1] * global_batch / (t_end[0] - t_epoch)
  else:
    img_per_s = float('nan')
  return state, _Trained(sums, spikes, lr, img_per_s)


def step_gammas(params, layer_names: Sequence[str]) -> Dict[str, List[float]]:
  """Per hidden layer with a per-step scale (BNTT's ``gamma [T, C]``), its mean over channels
  at each time step (``[T]``); other norms have none."""
  out = {}
  for name in layer_names:
    scale = params.get(name, {}).get('norm_layer', {}).get('scale')
    if scale is not None and np.ndim(scale) == 2:
      out[name] = np.asarray(jax.device_get(scale), np.float64).mean(axis=1).tolist()
  return out


def _log_steps(run: _Run, state, epoch: int, step: int, interval: Dict[str, float],
               spikes: float, lr: float, img_per_s: float, quiet: bool) -> None:
  """A row of ``steps.jsonl`` per host sync (every ``log_every_steps``): the training loss,
  accuracy, spikes per image over the steps since the last sync, the learning rate, images/s
  and BNTT's mean gamma per layer and time step; and a log line where no bar is drawn."""
  config = run.config
  n = max(interval['count'], 1.0)
  total = config.train.epochs * run.train_data.steps_per_epoch
  eta = (total - step) * config.train.batch_size / max(img_per_s, 1e-9)
  row = {'step': step, 'epoch': epoch, 'lr': lr, 'train_loss': interval['loss'] / n,
         'train_accuracy': interval['correct'] / n, 'spikes_per_image': spikes / n,
         'img_per_s': img_per_s, 'wall_seconds': run.wall()}
  gammas = step_gammas(state.params, run.layer_names)
  if gammas:
    row['gamma_per_layer'] = gammas
    row['mean_gamma'] = np.mean(list(gammas.values()), axis=0).tolist()
  if run.is_main:
    metrics_lib.JsonlWriter(os.path.join(run.workdir, STEPS_FILE)).write(row)
    scalars = {f'train/{k}': row[k] for k in ('train_loss', 'train_accuracy', 'lr',
                                              'spikes_per_image', 'img_per_s')}
    scalars.update({f'gamma/t{t + 1:02d}': g for t, g in enumerate(row.get('mean_gamma', ()))})
    run.tensorboard.scalars(step, scalars)
  if not quiet:
    logging.info('step %d/%d epoch %d/%d loss %.4f acc %.4f lr %.4g %.1f img/s ETA %s', step,
                 total, epoch + 1, config.train.epochs, row['train_loss'],
                 row['train_accuracy'], lr, img_per_s, metrics_lib.hms(eta))


def _end_epoch(run: _Run, state, epoch: int, trained: _Trained, bar) -> Dict[str, Any]:
  """Evaluate the epoch's parameters, log and write its row, checkpoint its end."""
  config, p = run.config, run.progress
  last = (epoch + 1) * run.train_data.steps_per_epoch
  ev = run.run_eval(state, run.epoch_test, run.eval_keys[0])
  if p.best_test_accuracy is None or ev['accuracy'] > p.best_test_accuracy:
    p.best_test_accuracy, p.best_epoch = ev['accuracy'], epoch
  sums, n = trained.sums, max(trained.sums['count'], 1.0)
  train_rate, _ = metrics_lib.spike_rates(
      trained.spikes if trained.spikes is not None else [0.0] * len(run.neurons), run.neurons, n)
  row = {'epoch': epoch, 'step': last, 'lr': trained.lr, 'train_loss': sums['loss'] / n,
         'train_accuracy': sums['correct'] / n, 'test_loss': ev['loss'],
         'test_accuracy': ev['accuracy'], 'img_per_s': trained.img_per_s,
         'spike_rate': ev['spike_rate'], 'train_spike_rate': train_rate,
         'spike_rate_per_layer': dict(zip(run.layer_names, ev['spike_rate_per_layer'])),
         'wall_seconds': run.wall()}
  if config.eval.top5:
    row['test_top5_accuracy'] = ev['top5_accuracy']
  bar.close()
  logging.info('epoch %d/%d step %d lr %.4g train_loss %.4f train_acc %.4f test_acc %.4f '
               'spike_rate %.3f %.0f img/s', epoch + 1, config.train.epochs, last, trained.lr,
               row['train_loss'], row['train_accuracy'], ev['accuracy'], ev['spike_rate'],
               trained.img_per_s)
  if run.is_main:
    metrics_lib.JsonlWriter(os.path.join(run.workdir, 'metrics.jsonl')).write(row)
    run.tensorboard.scalars(last, {'test/accuracy': row['test_accuracy'],
                                      'test/loss': row['test_loss'],
                                      'test/spike_rate': row['spike_rate'],
                                      'train/epoch_loss': row['train_loss'],
                                      'train/epoch_accuracy': row['train_accuracy']})
  # Resumed from a preemption checkpoint of this epoch's last step: its state is this one,
  # and a rerun from it repeats this evaluation and row exactly.
  if run.ckpt.latest_step() != last:
    run.save(last, state, {k: 0.0 for k in _TRAIN_SUMS}, None, epoch + 1, trained.lr)
  run.stop_if_preempted(last)
  return ev


def _final_evaluation(run: _Run, state, last_eval: Optional[Dict[str, Any]]) -> Dict[str, Any]:
  """The last parameters on the full test split, ``eval.num_keys`` Poisson draws; the
  summary."""
  config = run.config
  finals = [last_eval] if last_eval is not None and run.epoch_test is run.ds.test else [
      run.run_eval(state, run.ds.test, run.eval_keys[0])]
  final_step = int(jax.device_get(state.step))
  for k in run.eval_keys[1:]:
    # The last checkpoint holds the final state: a rerun evaluates it.
    run.stop_if_preempted(final_step)
    finals.append(run.run_eval(state, run.ds.test, k))
  summary = summarize(finals, config, dataclasses.asdict(run.progress), run.layer_names,
                      steps=config.train.epochs * run.train_data.steps_per_epoch,
                      train_examples=len(run.ds.train), wall_seconds=run.wall(),
                      kernels=run.kernels, num_classes=run.ds.info.num_classes,
                      classes_inferred=run.ds.info.classes_inferred)
  if run.is_main:
    metrics_lib.write_json(os.path.join(run.workdir, 'summary.json'), summary)
  logging.info('final test accuracy %.4f +- %.4f (%d draws), best %.4f, %.1f s',
               summary['final_test_accuracy'], summary['final_test_accuracy_std'], len(finals),
               summary['best_test_accuracy'], summary['wall_seconds'])
  return summary
