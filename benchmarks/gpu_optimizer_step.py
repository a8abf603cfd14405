"""A compiled optimizer step on the GPU: ``torch.compile(optimizer.step, backend=...)`` for AdamW
(CUDA's default, ``foreach``), ours (``aotgraph.backend(compiler="inductor")``) against
torch.compile's Inductor, and the eager step (foreach and fused). Its graph is in-place foreach
ops only: what our capture functionalizes and Inductor fuses into a few kernels.

Each configuration in a process of its own with a fresh Inductor cache; per configuration: the
first compiled call (compile), the median step over `--steps` (CUDA events), and the largest
difference of the parameters after the timed steps from an eager foreach run on the same
gradients. A short table last.

    python benchmarks/gpu_optimizer_step.py [--layers 48] [--width 1024] [--steps 50]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CONFIGS = ("eager_foreach", "eager_fused", "torch_inductor", "aotgraph")


def _params(layers: int, width: int):
    import torch
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(width, width, device="cuda") * 0.02) for _ in range(layers)]
    params += [torch.nn.Parameter(torch.zeros(width, device="cuda")) for _ in range(layers)]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    return params


def one(config: str, layers: int, width: int, steps: int) -> dict:
    import torch
    params = _params(layers, width)
    reference = [p.detach().clone().requires_grad_() for p in params]
    for r, p in zip(reference, params):
        r.grad = p.grad.clone()
    opt = torch.optim.AdamW(params, lr=1e-3, fused=config == "eager_fused", foreach=config != "eager_fused")
    ref_opt = torch.optim.AdamW(reference, lr=1e-3, foreach=True)
    step = opt.step
    if config == "torch_inductor":
        step = torch.compile(opt.step, backend="inductor")
    elif config == "aotgraph":
        import aotgraph
        step = torch.compile(opt.step, backend=aotgraph.backend(compiler="inductor"))
    torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        step()
    torch.cuda.synchronize()
    first = time.perf_counter() - start
    ref_opt.step()
    times = []
    for _ in range(steps):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        with torch.no_grad():
            step()
        end.record()
        ref_opt.step()
        torch.cuda.synchronize()
        times.append(begin.elapsed_time(end))
    error = max((p - r).abs().max().item() for p, r in zip(params, reference))
    return {"config": config, "first_s": first, "step_ms": statistics.median(times), "max_diff": error}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=48)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.layers, args.width, args.steps)))
        return
    rows = []
    out_dir = os.environ.get("OUT")
    for config in CONFIGS:
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=tempfile.mkdtemp(), AOTGRAPH_CACHE="0")
        done = subprocess.run([sys.executable, __file__, "--one", config, "--layers", str(args.layers), "--width",
                               str(args.width), "--steps", str(args.steps)], capture_output=True, text=True, env=env)
        if out_dir:
            with open(os.path.join(out_dir, f"optimizer_{config}.log"), "w") as log:
                log.write(done.stdout + done.stderr)
        if done.returncode:
            rows.append({"config": config, "error": (done.stderr.strip().splitlines() or ["?"])[-1][:200]})
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"AdamW over {2 * args.layers} tensors ({args.layers} x {args.width}^2 + biases), median of {args.steps} steps")
    print(f"{'config':16} {'first call s':>12} {'step ms':>8} {'max diff':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['config']:16} error: {r['error']}")
        else:
            print(f"{r['config']:16} {r['first_s']:12.2f} {r['step_ms']:8.3f} {r['max_diff']:9.1e}")


if __name__ == "__main__":
    main()
