"""Where GPU step time goes: torch.compile(inductor) vs torch.compile(aotgraph) on the
gpu_train models, with torch.profiler. Prints, per model and config: kernels per step,
GPU time per step, the top kernels, and for aotgraph the op counts of its graphs.

    PYTHONPATH=src python benchmarks/gpu_profile.py [--models resnet50 gpt2_small]
"""
from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_train import MODELS, compile_model  # noqa: E402


def profile(model_name: str, config: str, partition: str, steps: int = 3) -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    device = torch.device("cuda")
    model, inputs, _ = MODELS[model_name](device, smoke=False)
    compiled, backend = compile_model(model, config, partition)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = compiled(*inputs)
        loss.backward()
        optimizer.step()

    for _ in range(4):
        step()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    total_us = sum(e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time_total for e in kernels)
    by_name = collections.Counter()
    counts = collections.Counter()
    for e in kernels:
        t = e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time_total
        by_name[e.name[:90]] += t
        counts[e.name[:90]] += 1
    print(f"\n== {model_name} {config} {partition}: {len(kernels) / steps:.0f} kernels/step, "
          f"{total_us / steps / 1e3:.2f} ms GPU/step", flush=True)
    for name, t in by_name.most_common(14):
        print(f"  {t / steps / 1e3:8.3f} ms  x{counts[name] // steps:<4d} {name}")
    if backend is not None:
        for entry in getattr(backend, "entries", []) or []:
            for role, gm in (("fwd", entry.partition.forward), ("bwd", entry.partition.backward)):
                if gm is None:
                    continue
                ops = collections.Counter(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
                print(f"  {role}: {sum(ops.values())} ops; top: {ops.most_common(8)}")
            print(f"  saved: {len(entry.partition.saved)} values, {entry.partition.saved_bytes / 2**20:.1f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["resnet50", "gpt2_small"])
    args = parser.parse_args()
    print(torch.__version__, torch.cuda.get_device_name())
    for model_name in args.models:
        for config, partition in (("inductor", "-"), ("aotgraph", "mincut")):
            try:
                profile(model_name, config, partition)
            except Exception as error:  # one failure still prints the rest
                print(f"FAILED {model_name} {config}: {type(error).__name__}: {error}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
