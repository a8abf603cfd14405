"""Where the host's time per training step goes: torch.compile(inductor) vs the aotgraph
backend, compiled once each, then timed and profiled (cProfile) in alternation so a drifting
host affects both alike. Prints median host ms per step (time to issue a step, before
waiting for the GPU) and each configuration's top functions by own time.

    PYTHONPATH=src python benchmarks/gpu_host.py [--models resnet50] [--configs inductor aotgraph aotgraph_lean]
"""
from __future__ import annotations

import argparse
import cProfile
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_train import MODELS, compile_model, fresh_compile_state  # noqa: E402
from profile_report import write_profile  # noqa: E402

CACHE_ROOT = tempfile.mkdtemp(prefix="gpu_host_inductor_")


def prepared_step(model_name: str, config: str):
    # Own Inductor cache per configuration: aotgraph and aotgraph_stock_reuse compile the same
    # graphs, which Inductor's FX graph cache would otherwise hand from one to the other.
    fresh_compile_state(CACHE_ROOT, f"{model_name}_{config}")
    torch.manual_seed(0)
    model, inputs, _ = MODELS[model_name](torch.device("cuda"), smoke=False)
    compiled, _ = compile_model(model, config, "mincut")
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = compiled(*inputs)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    return step


def allocations_per_step(step) -> int:
    """Device allocations the caching allocator serves during one step."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_stats()["allocation.all.allocated"]
    step()
    torch.cuda.synchronize()
    return torch.cuda.memory_stats()["allocation.all.allocated"] - before


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["resnet50"])
    parser.add_argument("--configs", nargs="+", default=["inductor", "aotgraph"])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    out_dir = os.environ.get("OUT", "./out")
    os.makedirs(out_dir, exist_ok=True)
    summary = []
    for model_name in args.models:
        steps = {config: prepared_step(model_name, config) for config in args.configs}
        host = {config: [] for config in steps}
        allocations = {config: allocations_per_step(step) for config, step in steps.items()}
        profiles = {config: cProfile.Profile() for config in steps}
        for r in range(args.rounds):
            for config, step in steps.items():
                for _ in range(3):
                    begin = time.perf_counter()
                    step()
                    host[config].append((time.perf_counter() - begin) * 1e3)
                    torch.cuda.synchronize()
                profiles[config].enable()
                step()
                profiles[config].disable()
                torch.cuda.synchronize()
        for config in steps:
            stats = write_profile(profiles[config], os.path.join(out_dir, f"host_{model_name}_{config}.txt"))
            summary.append(f"{model_name:<11} {config:<16} host {statistics.median(host[config]):7.2f} ms/step "
                           f"(median of {len(host[config])}), {allocations[config]} allocations/step, profiled calls per step "
                           f"{stats.total_calls / args.rounds:.0f}, profiled s per step {stats.total_tt / args.rounds:.4f}")
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
