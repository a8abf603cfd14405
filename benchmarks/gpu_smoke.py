"""GPU smoke test: every zoo model, eager vs aotgraph (eager compiler) on CUDA, fp32 and bf16
autocast; prints one line per case. Run: PYTHONPATH=src python benchmarks/gpu_smoke.py"""
import copy
import sys
import time
import traceback

import torch

import aotgraph
from aotgraph.models import MODELS


def parity(name, factory, autocast):
    torch.manual_seed(0)
    model, args = factory()
    model, args = model.cuda(), tuple(a.cuda() for a in args)
    reference = copy.deepcopy(model)
    compiled = aotgraph.aot_module(model)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        start = time.perf_counter()
        out = compiled(*args)
        out.float().sum().backward()
        torch.cuda.synchronize()
        first = time.perf_counter() - start
        expected = reference(*args)
        expected.float().sum().backward()
    tol = dict(rtol=2e-2, atol=2e-2) if autocast else dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out, expected, **tol)
    for (pname, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, **tol, msg=lambda m: f"grad {pname}: {m}")
    for a, b in zip(model.buffers(), reference.buffers()):
        torch.testing.assert_close(a, b, **tol)
    return first


def main():
    print(torch.__version__, torch.cuda.get_device_name(), flush=True)
    failures = 0
    for name, factory in MODELS.items():
        for autocast in (False, True):
            try:
                seconds = parity(name, factory, autocast)
                print(f"OK   {name:<14} autocast={autocast!s:<5} first call+backward {seconds:.2f} s", flush=True)
            except Exception:
                failures += 1
                print(f"FAIL {name:<14} autocast={autocast!s:<5}", flush=True)
                traceback.print_exc()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
