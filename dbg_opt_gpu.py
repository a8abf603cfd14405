import torch, aotgraph, sys, traceback
import torch._inductor.fx_passes.reinplace as rp
orig = rp.reinplace_inplaceable_ops_core
def wrapped(graph):
    try:
        return orig(graph)
    except Exception:
        print(graph.python_code("self").src)
        raise
rp.reinplace_inplaceable_ops_core = wrapped
torch.manual_seed(0)
dev = sys.argv[1]
params = [torch.nn.Parameter(torch.randn(64, 64, device=dev) * 0.02) for _ in range(2)] + [torch.nn.Parameter(torch.zeros(64, device=dev)) for _ in range(2)]
for p in params: p.grad = torch.randn_like(p) * 1e-3
opt = torch.optim.AdamW(params, lr=1e-3, foreach=True)
step = torch.compile(opt.step, backend=aotgraph.backend(compiler="inductor"))
try:
    with torch.no_grad():
        step(); step()
    print("ok")
except Exception:
    traceback.print_exc(limit=2)
