"""(The team's second peer benchmark, from shared/bench/peer_multistep.py, kept here so that
experiments/benchmark.py can run it. Changed only by this note and, for ``--spike-rate``, the
optional ``gamma=g1,...,g8`` argument (every step's BNTT scale of each hidden layer, set after
initialisation; experiments/peer_rates.py) and the ``spike_rate_per_layer`` field: the rates this
network fired at, measured after the timed steps in one untimed training-mode forward pass.)

Peer 2: time-batched ("multi-step") PyTorch BNTT VGG9, training-step throughput on this machine.

The snnTorch peer (peer_snntorch.py) runs the whole network once per time step. A PyTorch user who
wants speed on CPU writes it time-batched instead, as SpikingJelly's multi-step mode does
(step_mode='m', layer.SeqToANNContainer): every synaptic op runs once over all T*B samples (oneDNN
convolutions / GEMMs), the BNTT statistics are taken per step, and only the elementwise LIF
recurrence loops over time. That is this peer. Its per-step math is bntt_jax's:

  VGG9   conv 64, 64, AP2, 128, 128, AP2, 256, 256, 256, AP2, FC 1024, FC 10; no biases;
         xavier-uniform, gain 2
  input  Poisson rate code, a fresh draw per step: (2 * U[0,1) <= |x|) * sign(x)   (rescale 2)
  BNTT   T separate BatchNorms per layer (eps 1e-4, momentum 0.1, bias None: a per-step gamma,
         no beta), batch statistics of step t over (B, H, W); running stats updated per step
  LIF    u = 0.95 u + I_t;  s = (u > 1);  u = u - 1 * s   (reset carries no gradient);
         dS/du = 0.3 * max(0, 1 - |u/theta - 1|) / theta   (torch.autograd.Function)
  out    sum_t fc2(s_t) / T;  cross-entropy;  SGD lr 0.1, momentum 0.9, weight decay 1e-4

Usage: python peer_multistep.py BATCH TIMESTEPS STEPS [MODE] [PRECISION] [LAYOUT]
       (the last three in any order; e.g. `16 25 3 compile float32`)
  MODE       eager (default) | compile (torch.compile of the whole forward + loss; AOTAutograd
             compiles the backward) | compile-lif (torch.compile of each layer's BNTT + LIF
             recurrence only; convolutions stay eager oneDNN) | sj (SpikingJelly's own multi-step
             modules: SeqToANNContainer, BatchNormThroughTime2d/1d, LIFNode(step_mode='m'))
  PRECISION  float32 (default; TF32 off on CUDA) | bfloat16 (torch.autocast; membranes and BNTT in
             float32, as bntt_jax does)
  LAYOUT     nchw (default) | nhwc (channels_last activations and weights; eager/compile modes)
python peer_multistep.py check [MODE...]   -- float64, batch 2, T 3, the same parameters and
  Poisson draws: each mode's loss, every gradient (absolute, and relative to each tensor's largest
  gradient) and the running statistics equal those of the straightforward per-step model (the
  whole network once per time step, a Python loop over t) to 1e-5; one JSON line per mode
  (default modes: eager eager-nhwc compile compile-lif sj); exit status 1 if any differs.

Measurement protocol: that of peer_snntorch.py, unchanged -- its own process, one warm-up step
(for the compile modes this is where compilation happens; reported as warmup_s), then the mean of
STEPS timed steps (zero_grad, forward with fresh Poisson draws, loss, backward, SGD step,
loss.item()) on one fixed random batch uniform in [-1, 1] with random labels; peak_mem_mb is the
process's peak resident set on CPU (ru_maxrss; for compile it includes compile-time memory in
this process), torch.cuda.max_memory_allocated on CUDA. One JSON line, in the snnTorch peer's
format ("peer" names the implementation, as experiments/benchmark.py's ratio_record reads it;
"impl" repeats it) plus a few extra fields. Where it differs from peer_snntorch.py, it follows
bntt_jax (experiments/benchmark.py): Poisson rescale 2 (the snnTorch peer fires with probability
|x|, this one |x|/2), SGD momentum 0.9 and weight decay 1e-4 (not 0.95, 5e-4), and under bfloat16
the BNTT and the membranes stay float32. None of these changes the work done per step.

Environment: python3 -m venv .venv-peer && .venv-peer/bin/pip install torch==2.13.0 numpy
(+ for mode sj: .venv-peer/bin/pip install --no-deps spikingjelly loguru tqdm packaging).
Full size, as the snnTorch peer is run (benchmark.py runs its peer with glibc's huge-page tunable):
  GLIBC_TUNABLES=glibc.malloc.hugetlb=1 .venv-peer/bin/python peer_multistep.py 16 25 3 eager
  GLIBC_TUNABLES=glibc.malloc.hugetlb=1 .venv-peer/bin/python peer_multistep.py 16 25 3 compile
Compilation happens in the warm-up step, which is not timed; at T 25 the graphs are ~12x those of
T 2 (whole-model compile there: ~30 s of CPU), so expect minutes of warm-up.

SpikingJelly (pip install --no-deps spikingjelly loguru tqdm packaging; spikingjelly's declared
dependencies would replace torch 2.13.0+cpu by a CUDA build of a newer torch): its LIFNode with
tau=20, decay_input=False, v_reset=None, detach_reset=True has the same recurrence but fires at
u >= theta (not u > theta), computes the leak as v - v/tau (0.95 v up to rounding), and has no
built-in triangle surrogate; on CPU every LIFNode path is a Python loop over t (no fused kernel).
So the primary modes use the exact loop written here; mode sj passes LIFNode this file's exact
spike function as its surrogate (which routes it through SpikingJelly's Torch reference loop),
making its math equal to the rest up to the leak's rounding (the check includes it).
"""
import contextlib
import copy
import importlib
import json
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import peer_rates

LEAK, THETA, ALPHA, RESCALE = 0.95, 1.0, 0.3, 2.0
EPS, MOMENTUM = 1e-4, 0.1
LR, SGD_MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 1e-4
CFG = [64, 64, 'A', 128, 128, 'A', 256, 256, 256, 'A']
MODES = ('eager', 'compile', 'compile-lif', 'sj')
LOW = (torch.float16, torch.bfloat16)


class SpikeFn(torch.autograd.Function):
  """Heaviside u > theta with the triangle surrogate 0.3 * max(0, 1 - |u/theta - 1|) / theta."""

  @staticmethod
  def forward(ctx, u):
    ctx.save_for_backward(u)
    return (u > THETA).to(u.dtype)

  @staticmethod
  def backward(ctx, g):
    (u,) = ctx.saved_tensors
    return g * ((ALPHA / THETA) * torch.clamp(1.0 - torch.abs(u / THETA - 1.0), min=0.0))


def lif_step(u, i):
  """One LIF step from membrane u (None: zero) and input current i -> (u_next, spikes)."""
  u = i if u is None else torch.add(i, u, alpha=LEAK)   # leak * u + i  (0.95 * 0 + i = i)
  s = SpikeFn.apply(u)
  return torch.sub(u, s.detach(), alpha=THETA), s       # soft reset, no gradient through it


def stack_time(steps, channels_last):
  """[B, ...] per step -> [T, B, ...]; channels_last slices stay channels_last (no copy later)."""
  if channels_last and steps[0].dim() == 4:
    return torch.stack([s.permute(0, 2, 3, 1) for s in steps]).permute(0, 1, 4, 2, 3)
  return torch.stack(steps)


def encode(x, u):
  """Poisson rate code of x [B, ...] with uniforms u [..., B, ...]: (2u <= |x|) sign(x)."""
  return (RESCALE * u <= x.abs()).to(x.dtype) * x.sign()


def reference_init(model):
  for m in model.modules():
    if isinstance(m, (nn.Conv2d, nn.Linear)):
      nn.init.xavier_uniform_(m.weight, gain=2.0)


class SpikingLayer(nn.Module):
  """synapse (no bias) -> BNTT (T BatchNorms, bias None) -> LIF (-> AvgPool2d(2))."""

  def __init__(self, synapse, features, num_steps, bn_type, pool):
    super().__init__()
    self.synapse, self.pool, self.channels_last = synapse, pool, False
    self.bns = nn.ModuleList(bn_type(features, eps=EPS, momentum=MOMENTUM)
                             for _ in range(num_steps))
    for bn in self.bns:
      bn.bias = None
    self.dynamics = self.bntt_lif   # compile-lif replaces this by its compiled version

  def norm(self, x, t):
    """BNTT of step t: batch statistics over (B, H, W), gamma[t], no beta (in >= float32)."""
    bn = self.bns[t]
    x = x.float() if x.dtype in LOW else x
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, None, self.training,
                        MOMENTUM, EPS)

  def bntt_lif(self, c):
    """Synaptic input of every step [T, B, ...] -> spikes [T, B, ...] (the time loop)."""
    u, out = None, []
    for t in range(c.shape[0]):
      u, s = lif_step(u, self.norm(c[t], t))
      out.append(s)
    return stack_time(out, self.channels_last)

  def forward(self, h):
    """Multi-step: [T, B, ...] -> [T, B, ...]; the synapse runs once over T*B samples."""
    T, B = h.shape[:2]
    c = self.synapse(h.flatten(0, 1))
    s = self.dynamics(c.unflatten(0, (T, B)))
    if self.pool:
      s = F.avg_pool2d(s.flatten(0, 1), 2).unflatten(0, (T, B))
    return s

  def step(self, u, h, t):
    """Single step t (the per-step model): membrane u, input [B, ...] -> (u, output)."""
    u, s = lif_step(u, self.norm(self.synapse(h), t))
    return u, (F.avg_pool2d(s, 2) if self.pool else s)


class VGG9(nn.Module):
  """BNTT VGG9, time-batched (forward) and per-step (forward_perstep) on the same parameters."""

  def __init__(self, num_steps, num_classes=10, channels_last=False):
    super().__init__()
    self.T, self.channels_last = num_steps, channels_last
    layers, c = [], 3
    for i, v in enumerate(CFG):
      if v == 'A':
        continue
      pool = i + 1 < len(CFG) and CFG[i + 1] == 'A'
      layers.append(SpikingLayer(nn.Conv2d(c, v, 3, padding=1, bias=False), v, num_steps,
                                 nn.BatchNorm2d, pool))
      c = v
    self.convs = nn.ModuleList(layers)
    self.fc1 = SpikingLayer(nn.Linear(256 * 4 * 4, 1024, bias=False), 1024, num_steps,
                            nn.BatchNorm1d, False)
    self.fc2 = nn.Linear(1024, num_classes, bias=False)
    reference_init(self)
    if channels_last:
      for layer in self.convs:
        layer.channels_last = True
      self.to(memory_format=torch.channels_last)

  def forward(self, x, u=None):
    T, B = self.T, x.shape[0]
    if u is None:   # fresh Poisson draws every forward, as the snnTorch peer draws them
      u = torch.rand((T,) + x.shape, dtype=x.dtype, device=x.device)
    h = encode(x, u)                                             # [T, B, 3, 32, 32]
    if self.channels_last:
      h = h.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (T, B))
    for layer in self.convs:
      h = layer(h)
    h = self.fc1(h.reshape(T, B, -1))                            # flatten (C, H, W)
    out = self.fc2(h.flatten(0, 1))
    out = out.to(torch.promote_types(out.dtype, torch.float32))
    return out.unflatten(0, (T, B)).sum(0) / T

  def forward_perstep(self, x, u):
    """The straightforward model: the whole network once per time step (the check's reference)."""
    mem, out = [None] * (len(self.convs) + 1), 0
    for t in range(self.T):
      h = encode(x, u[t])
      for k, layer in enumerate(self.convs):
        mem[k], h = layer.step(mem[k], h, t)
      mem[-1], h = self.fc1.step(mem[-1], h.flatten(1), t)
      o = self.fc2(h)
      out = out + o.to(torch.promote_types(o.dtype, torch.float32))
    return out / self.T


class SJVGG9(nn.Module):
  """The same network from SpikingJelly's multi-step modules (mode sj)."""

  def __init__(self, num_steps, num_classes=10):
    super().__init__()
    from spikingjelly.activation_based import functional as sf  # pylint: disable=import-outside-toplevel
    from spikingjelly.activation_based import layer as sl  # pylint: disable=import-outside-toplevel
    from spikingjelly.activation_based import neuron as sn  # pylint: disable=import-outside-toplevel
    self.T, self._reset = num_steps, sf.reset_net

    def lif():   # tau 20, no input decay: v <- v - v/20 + x = 0.95 v + x; soft reset, detached
      return sn.LIFNode(tau=20.0, decay_input=False, v_threshold=THETA, v_reset=None,
                        surrogate_function=sj_spike, detach_reset=True, step_mode='m')

    mods, c = [], 3
    for v in CFG:
      if v == 'A':
        mods.append(sl.SeqToANNContainer(nn.AvgPool2d(2)))
        continue
      mods += [sl.SeqToANNContainer(nn.Conv2d(c, v, 3, padding=1, bias=False), ToFloat()),
               sl.BatchNormThroughTime2d(num_steps, v, eps=EPS, momentum=MOMENTUM, step_mode='m'),
               lif()]
      c = v
    mods += [sl.SeqToANNContainer(nn.Flatten(), nn.Linear(256 * 4 * 4, 1024, bias=False),
                                  ToFloat()),
             sl.BatchNormThroughTime1d(num_steps, 1024, eps=EPS, momentum=MOMENTUM,
                                       step_mode='m'),
             lif()]
    self.body = nn.Sequential(*mods)
    self.fc2 = sl.SeqToANNContainer(nn.Linear(1024, num_classes, bias=False))
    reference_init(self)

  def forward(self, x, u=None):
    self._reset(self.body)   # membranes and the BNTT step counters
    if u is None:
      u = torch.rand((self.T,) + x.shape, dtype=x.dtype, device=x.device)
    out = self.fc2(self.body(encode(x, u)))
    return out.to(torch.promote_types(out.dtype, torch.float32)).sum(0) / self.T


class ToFloat(nn.Module):
  def forward(self, x):
    return x.float() if x.dtype in LOW else x


class SJSpikeFn(torch.autograd.Function):
  """LIFNode's surrogate_function, called on x = h - theta: SpikeFn's spike (x > 0) and
  surrogate 0.3 * max(0, 1 - |x|) -- equal to SpikeFn's for theta = 1 (x = u/theta - 1)."""

  @staticmethod
  def forward(ctx, x):
    ctx.save_for_backward(x)
    return (x > 0).to(x.dtype)

  @staticmethod
  def backward(ctx, g):
    (x,) = ctx.saved_tensors
    return g * (ALPHA * torch.clamp(1.0 - torch.abs(x), min=0.0))


def sj_spike(x):
  assert THETA == 1.0, 'SJSpikeFn is SpikeFn for theta = 1 only'
  return SJSpikeFn.apply(x)


def build(mode, T, layout, dev):
  """(model, loss_fn(x, y, u=None)) for a mode; the compile modes compile at the first call."""
  if mode == 'sj':
    model = SJVGG9(T).to(dev)
  else:
    model = VGG9(T, channels_last=layout == 'nhwc').to(dev)

  def loss_fn(x, y, u=None):
    return F.cross_entropy(model(x, u), y)

  if mode == 'compile':
    _dynamo_limits()
    loss_fn = torch.compile(loss_fn, dynamic=False)
  elif mode == 'compile-lif':
    _dynamo_limits()
    for layer in list(model.convs) + [model.fc1]:
      layer.dynamics = torch.compile(layer.bntt_lif, dynamic=False)
  return model, loss_fn


def _dynamo_limits():
  # compile-lif compiles one bound method per layer (8 layers, 8 shapes): one cache entry each.
  config = importlib.import_module('torch._dynamo').config
  for name in ('recompile_limit', 'cache_size_limit', 'accumulated_recompile_limit',
               'accumulated_cache_size_limit'):
    if hasattr(config, name):
      setattr(config, name, max(getattr(config, name), 256))


def impl_name(mode, layout):
  name = 'spikingjelly-multistep' if mode == 'sj' else f'torch-multistep-{mode}'
  return name + ('-nhwc' if layout == 'nhwc' and mode != 'sj' else '')


def hidden_layers(model):
  """Per hidden layer: (its module whose output is its spikes or their average pool, its T
  per-step BatchNorms)."""
  if isinstance(model, SJVGG9):
    lifs = [m for m in model.body if type(m).__name__ == 'LIFNode']
    norms = [m.bn_list for m in model.body if hasattr(m, 'bn_list')]
    return list(zip(lifs, norms))
  return [(layer, layer.bns) for layer in list(model.convs) + [model.fc1]]


def bench(argv):
  argv, gammas = peer_rates.split_gamma(argv)
  B, T, STEPS = (int(a) for a in argv[:3])
  # MODE, PRECISION, LAYOUT are told apart by value, so experiments/benchmark.py's peer call
  # (BATCH T STEPS PRECISION) works too.
  opts = {'mode': 'eager', 'precision': 'float32', 'layout': 'nchw'}
  kinds = {**{m: 'mode' for m in MODES}, 'float32': 'precision', 'bfloat16': 'precision',
           'nchw': 'layout', 'nhwc': 'layout'}
  for a in argv[3:]:
    if a not in kinds:
      sys.exit(f'{a!r} is not a mode ({", ".join(MODES)}), a precision (float32, bfloat16) '
               'or a layout (nchw, nhwc)')
    opts[kinds[a]] = a
  MODE, PREC, LAYOUT = opts['mode'], opts['precision'], opts['layout']
  if MODE == 'sj' and LAYOUT != 'nchw':
    sys.exit('mode sj runs layout nchw only')
  torch.manual_seed(0)
  dev = 'cuda' if torch.cuda.is_available() else 'cpu'
  torch.backends.cudnn.allow_tf32 = False
  torch.backends.cuda.matmul.allow_tf32 = False
  cast = ((lambda: torch.autocast(dev, dtype=torch.bfloat16)) if PREC == 'bfloat16'
          else contextlib.nullcontext)
  x = (torch.rand(B, 3, 32, 32) * 2 - 1).to(dev)
  y = torch.randint(0, 10, (B,)).to(dev)
  sync = torch.cuda.synchronize if dev == 'cuda' else (lambda: None)

  def make(mode):
    torch.manual_seed(0)
    model, loss_fn = build(mode, T, LAYOUT, dev)
    if gammas is not None:
      peer_rates.set_gammas([bns for _, bns in hidden_layers(model)], gammas)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=SGD_MOMENTUM,
                          weight_decay=WEIGHT_DECAY)
    # Same Poisson draws in every mode whose draws are eager (eager, compile-lif, sj; importing
    # torch._dynamo moves the global generator). Mode compile draws inside the compiled graph,
    # from inductor's own generator.
    torch.manual_seed(1)

    def step():
      opt.zero_grad()
      with cast():
        loss = loss_fn(x, y)
      loss.backward()
      opt.step()
      return loss.item()
    return step, model

  ran, fallback = MODE, None
  step, model = make(MODE)
  t0 = time.perf_counter()
  try:
    loss = step()
    sync()
  except Exception as e:  # pylint: disable=broad-except
    if not MODE.startswith('compile'):
      raise
    first = (str(e).strip().splitlines() or [''])[0][:400]
    fallback = f'{type(e).__name__}: {first}'
    print(f'peer_multistep: torch.compile ({MODE}) failed on this machine -- {fallback}\n'
          f'peer_multistep: falling back to eager; the JSON line reports impl '
          f'{impl_name("eager", LAYOUT)!r} with compile_fallback set', file=sys.stderr)
    importlib.import_module('torch._dynamo').reset()
    ran = 'eager'
    step, model = make('eager')
    t0 = time.perf_counter()
    loss = step()
    sync()
  warmup, loss_first = time.perf_counter() - t0, loss
  t = time.perf_counter()
  for _ in range(STEPS):
    loss = step()
  sync()
  dt = (time.perf_counter() - t) / STEPS
  peak = (torch.cuda.max_memory_allocated() // 2**20 if dev == 'cuda'
          else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
  # Untimed: the rates this network fired at (training mode: batch statistics).
  rates = peer_rates.measure_rates(lambda: model(x), [m for m, _ in hidden_layers(model)])
  name = impl_name(ran, LAYOUT)
  rec = {"peer": name, "batch": B, "T": T, "step_s": round(dt, 4), "img_per_s": round(B / dt, 2),
         "device": dev, "precision": PREC if PREC == "float32" else "bfloat16-autocast",
         "peak_mem_mb": peak, "impl": name, "mode": ran, "layout": LAYOUT,
         "warmup_s": round(warmup, 2), "loss_first": round(loss_first, 4), "loss": round(loss, 4),
         "torch": torch.__version__,
         "threads": torch.get_num_threads(), "spike_rate_per_layer": rates}
  if gammas is not None:
    rec["gamma"] = gammas
  if fallback:
    rec["mode_requested"], rec["compile_fallback"] = MODE, fallback
  print(json.dumps(rec))


def check(argv):
  """Each mode's loss, gradients and running statistics against the per-step model (float64)."""
  B, T, TOL = 2, 3, 1e-5
  modes = argv or ['eager', 'eager-nhwc', 'compile', 'compile-lif', 'sj']
  torch.manual_seed(0)
  x = torch.rand(B, 3, 32, 32, dtype=torch.float64) * 2 - 1
  y = torch.randint(0, 10, (B,))
  u = torch.rand(T, B, 3, 32, 32, dtype=torch.float64)
  base = VGG9(T).double()

  ref = copy.deepcopy(base)
  loss_ref = F.cross_entropy(ref.forward_perstep(x, u), y)
  loss_ref.backward()
  grads_ref = [p.grad for p in ref.parameters()]
  stats_ref = [b for n, b in ref.named_buffers() if 'running' in n]
  ok_all = True
  for tag in modes:
    mode, layout = (tag[:-5], 'nhwc') if tag.endswith('-nhwc') else (tag, 'nchw')
    rec = {"check": tag, "batch": B, "T": T, "dtype": "float64", "tol": TOL,
           "loss_perstep": float(loss_ref.detach())}
    try:
      torch.manual_seed(0)
      model, loss_fn = build(mode, T, layout, 'cpu')
      model = model.double()
      # The same parameters (and initial running statistics) as the per-step model.
      with torch.no_grad():
        src, dst = list(base.parameters()), list(model.parameters())
        assert [p.shape for p in src] == [p.shape for p in dst], 'parameter layouts differ'
        for p, q in zip(src, dst):
          q.copy_(p)
      t0 = time.perf_counter()
      loss = loss_fn(x, y, u)
      loss.backward()
      rec["run_s"] = round(time.perf_counter() - t0, 2)
      grads = [p.grad for p in model.parameters()]
      missing = [n for (n, _), g in zip(model.named_parameters(), grads) if g is None]
      assert not missing, f'no gradient for {missing[:3]}'
      stats = [b for n, b in model.named_buffers() if 'running' in n]
      assert len(stats) == len(stats_ref), (len(stats), len(stats_ref))
      gdiff = max(float((g - r).abs().max()) for g, r in zip(grads, grads_ref))
      # Per tensor, relative to that tensor's largest gradient (some are small in absolute terms).
      grel = max(float((g - r).abs().max() / r.abs().max()) for g, r in zip(grads, grads_ref))
      gscale = max(float(r.abs().max()) for r in grads_ref)
      loss = float(loss.detach())
      rec.update(loss=loss, loss_abs_diff=abs(loss - rec["loss_perstep"]),
                 grad_max_abs_diff=gdiff, grad_max_rel_diff_per_tensor=grel, grad_max_abs=gscale,
                 # > 0: every parameter tensor (each layer's conv/fc and each step's gamma) gets
                 # a gradient, so the comparison is not of zeros.
                 grad_min_over_tensors_of_max_abs=min(float(r.abs().max()) for r in grads_ref),
                 n_param_tensors=len(grads),
                 n_grad_elems=sum(g.numel() for g in grads),
                 running_stats_max_abs_diff=max(float((s - r).abs().max())
                                                for s, r in zip(stats, stats_ref)))
      rec["ok"] = (rec["loss_abs_diff"] <= TOL and gdiff <= TOL and grel <= TOL
                   and rec["running_stats_max_abs_diff"] <= TOL)
    except Exception as e:  # pylint: disable=broad-except
      rec.update(ok=False, error=f'{type(e).__name__}: {str(e).strip().splitlines()[:1]}')
    ok_all &= rec["ok"]
    print(json.dumps(rec), flush=True)
  return 0 if ok_all else 1


if __name__ == '__main__':
  if sys.argv[1:2] == ['check']:
    sys.exit(check(sys.argv[2:]))
  if len(sys.argv) < 4:
    sys.exit(__doc__)
  bench(sys.argv[1:])
