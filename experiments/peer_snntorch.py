"""(The team's peer benchmark, from shared/bench/peer_snntorch.py, kept here so that
experiments/benchmark.py can run it; changed only by this note and the optional PRECISION
argument: ``float32`` (default; on CUDA with TF32 off, i.e. true float32 like bntt_jax's
'highest' matmul precision) or ``bfloat16`` (torch.autocast, labelled in the output); and, for
``--spike-rate``, the optional ``gamma=g1,...,g8`` argument (every step's BNTT scale of each
hidden layer; experiments/peer_rates.py) and the ``spike_rate_per_layer`` field, measured after
the timed steps in one untimed training-mode forward pass.)

Peer: snnTorch (PyPI) BNTT VGG9, training-step throughput on this machine.
VGG9 per the BNTT paper: 64,64,AP,128,128,AP,256,256,256,AP,FC1024,FC(classes); BNTT after every conv and FC1;
LIF leak 0.95, threshold 1.0, soft reset; Poisson rate input; last layer accumulates membrane voltage.
Usage: python peer_snntorch.py BATCH TIMESTEPS STEPS [PRECISION]   (uses CUDA when torch sees a GPU)
"""
import sys, time, json, resource, contextlib, torch, torch.nn as nn, snntorch as snn
import peer_rates
ARGV, GAMMA = peer_rates.split_gamma(sys.argv[1:])
B, T, STEPS = (int(a) for a in ARGV[0:3])
PREC = ARGV[3] if len(ARGV) > 3 else 'float32'
if PREC not in ('float32', 'bfloat16'):
    sys.exit(f'precision {PREC!r} is not one of float32, bfloat16')
torch.manual_seed(0)
dev='cuda' if torch.cuda.is_available() else 'cpu'
torch.backends.cudnn.allow_tf32 = False; torch.backends.cuda.matmul.allow_tf32 = False
cast = (lambda: torch.autocast(dev, dtype=torch.bfloat16)) if PREC == 'bfloat16' else contextlib.nullcontext
class VGG9(nn.Module):
    def __init__(s, T, leak=0.95, nc=10):
        super().__init__()
        cfg=[64,64,'A',128,128,'A',256,256,256,'A']; s.T=T
        s.convs=nn.ModuleList(); s.bns=nn.ModuleList(); s.plan=[]; c=3
        for v in cfg:
            if v=='A': s.plan.append('A'); continue
            s.convs.append(nn.Conv2d(c,v,3,padding=1,bias=False)); s.bns.append(snn.BatchNormTT2d(v,T,eps=1e-4)); s.plan.append(len(s.convs)-1); c=v
        s.fc1=nn.Linear(256*4*4,1024,bias=False); s.bn_fc=snn.BatchNormTT1d(1024,T,eps=1e-4)
        s.fc2=nn.Linear(1024,nc,bias=False)
        s.lif=snn.Leaky(beta=leak, threshold=1.0, reset_mechanism='subtract', spike_grad=snn.surrogate.triangular())
        s.pool=nn.AvgPool2d(2)
    def forward(s,x):
        mems=[None]*(len(s.convs)+1); out=0
        for t in range(s.T):
            h=(torch.rand_like(x)<=x.abs()).float()*x.sign()
            for p in s.plan:
                if p=='A': h=s.pool(h); continue
                cur=s.bns[p][t](s.convs[p](h))
                if mems[p] is None: mems[p]=torch.zeros_like(cur)
                h,mems[p]=s.lif(cur,mems[p])
            h=h.flatten(1); cur=s.bn_fc[t](s.fc1(h))
            if mems[-1] is None: mems[-1]=torch.zeros_like(cur)
            h,mems[-1]=s.lif(cur,mems[-1])
            out=out+s.fc2(h)
        return out/s.T
m=VGG9(T).to(dev)
if GAMMA is not None: peer_rates.set_gammas(list(m.bns)+[m.bn_fc], GAMMA)
opt=torch.optim.SGD(m.parameters(),lr=0.1,momentum=0.95,weight_decay=5e-4)
x=(torch.rand(B,3,32,32)*2-1).to(dev); y=torch.randint(0,10,(B,)).to(dev)
def step():
    opt.zero_grad()
    with cast(): loss=nn.functional.cross_entropy(m(x),y)
    loss.backward(); opt.step(); return loss.item()
sync=torch.cuda.synchronize if dev=='cuda' else (lambda:None)
step(); sync()
t=time.perf_counter()
for _ in range(STEPS): step()
sync(); dt=(time.perf_counter()-t)/STEPS
rates=peer_rates.measure_rates(lambda: m(x), [m.lif], layers=len(m.convs)+1)  # untimed
peak=torch.cuda.max_memory_allocated()//2**20 if dev=='cuda' else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss//1024
print(json.dumps({"peer":"snntorch","batch":B,"T":T,"step_s":round(dt,4),"img_per_s":round(B/dt,2),"device":dev,"precision":PREC if PREC=="float32" else "bfloat16-autocast","peak_mem_mb":peak,"spike_rate_per_layer":rates,**({"gamma":GAMMA} if GAMMA else {})}))
