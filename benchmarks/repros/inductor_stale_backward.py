"""aotgraph + Inductor, automatic dynamic shapes: at the third size the backward compiled for the second size is
run (hubert --inductor --inductor-dynamic: 'expected size 63==47' on tangents_1 in the backward).
Pattern from HubertEncoder: positional conv (even kernel, drop last frame) + a data-dependent branch on
torch.rand([]) (graph break), then more layers. Usage: python this.py [aotgraph|torch]"""
import os, sys, tempfile
os.environ["AOTGRAPH_CACHE_DIR"] = tempfile.mkdtemp()
os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp()
import torch, torch._dynamo, copy
import aotgraph
from torch._dynamo.backends.registry import lookup_backend

class M(torch.nn.Module):
    def __init__(self, d=32):
        super().__init__()
        self.conv = torch.nn.Conv1d(d, d, 8, padding=4, groups=4)
        self.lin = torch.nn.Linear(d, d)
    def forward(self, x):
        if "noconv" in VARIANT:
            pos = x.sin()
        else:
            pos = torch.nn.functional.gelu(self.conv(x.transpose(1, 2))[:, :, :-1]).transpose(1, 2)
        x = x + pos
        if VARIANT.startswith("rand") and torch.rand([]) < 0.0:   # graph break (layerdrop check)
            x = x * 2
        return self.lin(x).sin()

VARIANT = os.environ.get("VARIANT", "rand")
which = sys.argv[1] if len(sys.argv) > 1 else "aotgraph"
torch.manual_seed(0)
m = M()
c = torch.compile(copy.deepcopy(m), backend=aotgraph.backend(os.environ.get("COMPILER", "inductor")) if which == "aotgraph" else lookup_backend("inductor"))
for t in (31, 47, 63, 79):
    x = torch.randn(2, t, 32, requires_grad=True)  # the input must require grad (here: a leaf)
    try:
        c(x).sum().backward(); m(x).sum().backward()
        err = max((a.grad - b.grad).abs().max().item() for a, b in zip(c.parameters(), m.parameters()) if b.grad is not None)
        print(which, t, "ok, max grad err", f"{err:.1e}")
    except Exception as e:
        print(which, t, type(e).__name__, ' '.join(str(e).split())[:200]); break
