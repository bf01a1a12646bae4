"""The embedded default run: a BNTT SNN on scikit-learn's digits (no download).

    python -m bntt_jax.main                               # same as below
    python -m bntt_jax.main --config=configs/digits.py --workdir=runs/digits

Expected: final_test_accuracy >= 0.97 (mean over 3 Poisson evaluation draws
on the 360 held-out digits; measured 0.987 in 24 s on 2 idle CPU cores,
compilation included; see configs/digits.py). Hardware: any CPU.

This file is also the schema: every key a config may set is defined here, with
its meaning. Variants (``configs/*.py``) start from ``get_config()`` and
override a few fields; ``bntt_jax.config_lib.validate`` rejects keys that are
not defined here (except inside the free-form ``model.norm_kwargs``,
``model.arch_kwargs`` and ``data.options``).
"""
import ml_collections
from ml_collections import config_dict

from bntt_jax.errors import ConfigError


# Settings of `python -m bntt_jax.analyze`, the fields of bntt_jax.analysis.Settings and their
# defaults: the early-exit threshold on the mean BNTT gamma and the dynamic rule, energy per
# operation (pJ, 45 nm CMOS: the paper's MAC and AC), TrueNorth's (E_dyn, E_sta) (Table S1),
# noise sigmas and attack epsilons in [0, 1] pixel units. Plain data: loading a config imports
# neither JAX nor the analyses.
ANALYSIS = {
    'exit_threshold': 0.1,
    'dynamic_rule': 'max_prob',
    'dynamic_thresholds': (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999),
    'dynamic_threshold': 0.9,
    'e_mac_pj': 4.6,
    'e_ac_pj': 0.9,
    'truenorth_e_dyn': 0.4,
    'truenorth_e_sta': 0.6,
    'truenorth_include_input': False,
    'truenorth_reference': (),
    'noise_sigmas': (0.0, 0.05, 0.1, 0.2, 0.3),
    'fgsm_epsilons': (0.0, 0.02, 0.05, 0.1),
    'pgd_epsilons': (0.0, 0.02, 0.05, 0.1),
    'pgd_steps': 10,
    'pgd_step_ratio': 0.25,
    'pgd_random_start': False,
    'robustness_examples': 0,
}


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0                      # parameters, data order, augmentation, Poisson draws
  config.matmul_precision = 'highest'  # spikes flip on tiny differences: full float32

  config.data = ml_collections.ConfigDict()
  config.data.name = 'digits'          # a key of bntt_jax.data.REGISTRY
  config.data.source = 'auto'          # auto | tfds | idx | directory | sklearn (per dataset)
  config.data.dir = ''                 # idx/directory sources: the data; tfds: its data_dir
  config.data.download = True          # tfds: download and prepare when not prepared yet
  config.data.augment = 'none'         # none | crop_flip
  config.data.crop_padding = 4         # pixels of zero padding for the random crop
  config.data.mean = ()                # per-channel mean in [0, 1] units; () = the dataset's
  config.data.std = ()                 # per-channel std; () = the dataset's
  config.data.split_seed = 0           # datasets whose train/test split we draw (digits, DVS)
  # A reduced scale that keeps the data real (bntt_jax.data.scale; 0 keeps the dataset as it is):
  config.data.image_size = 0           # images area-downsampled to this side (a divisor of it)
  config.data.train_examples = 0       # a class-balanced subset of the training split
  config.data.test_examples = 0        # a class-balanced subset of the test split (smoke runs)
  config.data.prefetch = 2             # batches built ahead in a background thread
  config.data.options = ml_collections.ConfigDict()   # loader-specific keyword arguments

  # Maps 1:1 onto bntt_jax.models.create_model (timesteps -> num_steps).
  config.model = ml_collections.ConfigDict()
  config.model.arch = 'smallnet'       # vgg9 | vgg11 | dvsnet | smallnet
  config.model.num_classes = config_dict.placeholder(int)   # None: the dataset's
  config.model.timesteps = 10          # T
  config.model.norm = 'bntt'           # bntt | bn | tdbn | tebn | none
  config.model.leak = 0.95
  config.model.threshold = 1.0
  config.model.surrogate = 'triangle'  # triangle | fast_sigmoid | arctan
  config.model.surrogate_alpha = config_dict.placeholder(float)   # None: the surrogate's default
  config.model.neuron = 'lif'          # lif | relu (ANN twin)
  config.model.encoding = 'poisson'    # poisson | direct | frames
  config.model.rescale = 2.0           # Poisson: P(spike) = min(|x| / rescale, 1)
  config.model.schedule = 'layer'      # layer (time-batched, fastest on CPU) | step
  config.model.unroll = 1
  config.model.dtype = 'float32'       # float32 | bfloat16 | float16 (synaptic ops)
  # float32 synapses: float32, or exact_bf16x3 (the ops whose input is spikes or pooled spikes
  # as three bf16 products, float32 accumulation: the float32 result up to summation order, on
  # bf16 matrix units); bfloat16 = dtype bfloat16; auto: what is fastest and exact on the
  # target (exact_bf16x3 on GPUs, float32 on TPUs, whose step is bandwidth-bound, and CPUs).
  config.model.synapse_precision = 'auto'   # auto | float32 | exact_bf16x3 | bfloat16
  # remat: the backward keeps of each block only its input (int8 spikes, bf16 pooled spikes) and
  # recomputes the rest (+33 % FLOPs; with the scan VGG9 at T 25 then fits 256 per v5e chip, with
  # the TPU LIF kernels 360 without it: README).
  config.model.remat = False
  config.model.sparse_conv = 'auto'    # auto (event-driven 3x3 convs of spike inputs, CPU) | off
  # auto (the layer schedule's LIF: the CPU kernel on one CPU device, Pallas kernels on TPUs)
  # | tpu (the Pallas kernels; off on other targets) | off
  config.model.lif_kernel = 'auto'
  config.model.batch_stats = 'global'  # global (over the global batch) | per_device (DDP-style)
  config.model.norm_kwargs = ml_collections.ConfigDict()
  config.model.arch_kwargs = ml_collections.ConfigDict()

  config.train = ml_collections.ConfigDict()
  config.train.epochs = 25
  config.train.batch_size = 32         # global batch, over all devices and hosts
  config.train.optimizer = 'sgd'       # sgd | adam (both: coupled decay) | adamw (decoupled)
  config.train.learning_rate = 0.1
  config.train.lr_schedule = 'cosine'  # step (divide at lr_boundaries) | cosine | constant
  config.train.lr_boundaries = (0.5, 0.7, 0.9)   # fractions f of the epochs: drop after epoch floor(fE)
  config.train.lr_decay = 0.1
  config.train.warmup_epochs = 0.0
  config.train.momentum = 0.9
  config.train.nesterov = False
  config.train.weight_decay = 1e-4     # added to the gradient (PyTorch's coupled decay) for sgd/adam
  config.train.b1 = 0.9
  config.train.b2 = 0.999
  config.train.checkpoint_every_steps = 200   # and at every epoch end; 0: epoch ends only
  config.train.keep_checkpoints = 2
  config.train.log_every_steps = 10    # host sync: progress bar and non-finite check

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 360
  config.eval.timesteps = config_dict.placeholder(int)   # None: T; k < T is early exit
  config.eval.num_keys = 3             # Poisson draws for the final mean / std
  # Per-epoch evaluation on a class-balanced subset of this many test examples (0: the whole
  # test split); the final evaluation is always on the whole test split.
  config.eval.epoch_examples = 0
  config.eval.top5 = False

  config.analysis = ml_collections.ConfigDict(dict(ANALYSIS))
  return config


def smoke(config: ml_collections.ConfigDict, batch_size: int = 4, steps: int = 2,
          test_examples: int = 16) -> ml_collections.ConfigDict:
  """``config`` as a smoke run: the same network, data source and code path (training,
  checkpoints, per-epoch evaluation, the final Poisson draws), on ``steps`` steps of
  ``batch_size`` and ``test_examples`` test examples, one epoch: a check of a config on a CPU
  in about a minute before renting an accelerator (``--config=configs/X.py:smoke``)."""
  config.train.epochs = 1
  config.train.batch_size = batch_size
  config.train.warmup_epochs = 0.0
  config.train.log_every_steps = 1
  config.train.checkpoint_every_steps = 0
  config.data.train_examples = batch_size * steps
  config.data.test_examples = test_examples
  config.data.prefetch = 1
  config.eval.batch_size = test_examples
  config.eval.epoch_examples = 0
  return config


def variant(config: ml_collections.ConfigDict, arg, **variants) -> ml_collections.ConfigDict:
  """The variant ``arg`` of a config file's ``get_config(arg)`` (ml_collections' convention:
  ``--config=configs/X.py:arg``): none for the config as it is, one of the file's own
  ``variants`` (name -> function of the config), or ``smoke`` (:func:`smoke`) where the file
  has no ``smoke`` of its own (the event-data configs, whose smoke runs read a few fixture
  files, do)."""
  if not arg:
    return config
  if arg in variants:
    return variants[arg](config)
  if arg == 'smoke':
    return smoke(config)
  raise ConfigError('config variant', arg,
                    'one of ' + ', '.join(sorted({'smoke', *variants})) + ' (or none)')

