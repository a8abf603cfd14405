"""aotgraph + Inductor, dynamic shapes: KeyError: 'm' on the second compile of the same graph.
(qwen2_moe --inductor --inductor-dynamic: `KeyError: 'attention_mask'` from load_balancing_loss_func.)

A graph handed to Inductor gets a SymInt placeholder `mul` = 2*s0 (from repeat_interleave's output size) while
s0 itself is bound by no SymInt placeholder. Inductor's FX graph cache stores guards_expr
"L['t0'] == 2*L['m'].size()[1]" -- ShapeGuardPythonPrinter falls back to Dynamo's var_to_sources -- and the
next lookup of that key (evaluate_guards_expression binds only t0..tn) raises KeyError.
torch's own inductor stores "L['t1'] == 2*L['t0'] ..." (s0 is a placeholder) and works.
Usage: python this.py [aotgraph|torch]"""
import os, sys, tempfile, glob, pickle
os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp()   # fresh Inductor cache; FX graph cache on (default)
os.environ["AOTGRAPH_CACHE"] = "0"                          # so the second compile reaches Inductor
import torch, torch._dynamo
import aotgraph
from torch._dynamo.backends.registry import lookup_backend

def f(g, m):
    return (torch.softmax(g, -1) * m.reshape(-1).float().repeat_interleave(2).view(-1, 2)[:, :1]).sum()

which = sys.argv[1] if len(sys.argv) > 1 else "aotgraph"
for attempt in range(2):      # attempt 1 compiles the same graphs again -> FX-graph-cache lookup
    torch._dynamo.reset()
    compiled = torch.compile(f, backend=aotgraph.backend("inductor") if which == "aotgraph" else lookup_backend("inductor"))
    try:
        errs = []
        for s in (8, 12):     # automatic dynamic: s symbolic from the second call
            m, g = torch.ones(2, s, dtype=torch.long), torch.randn(2 * s, 4, requires_grad=True)
            compiled(g, m).backward()
            ref = g.detach().clone().requires_grad_(); f(ref, m).backward()
            errs.append((g.grad - ref.grad).abs().max().item())
        print(which, f"attempt {attempt}: ok, max grad errors {errs}")
    except Exception as e:
        print(which, f"attempt {attempt}: {type(e).__name__}: {' '.join(str(e).split())[:200]}")
for p in glob.glob(os.environ["TORCHINDUCTOR_CACHE_DIR"] + "/fxgraph/*/*/*"):
    g = getattr(pickle.load(open(p, "rb")), "guards_expr", None)
    if g: print("stored guards_expr:", g)
