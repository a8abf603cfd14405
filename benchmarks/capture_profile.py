"""Where our capture's time goes on a real model: the aotgraph backend with Inductor's
decompositions (as with ``compiler="inductor"``) but the eager compiler, so only capture and
partition run; bf16 autocast as in `gpu_train.py`. Prints capture ms per repeat and writes a
cProfile of the last one to $OUT/capture_<model>.txt.

    PYTHONPATH=src python benchmarks/capture_profile.py [--models resnet50 gpt2_small] [--repeats 3]
"""
from __future__ import annotations

import argparse
import cProfile
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_train import MODELS  # noqa: E402
from profile_report import write_profile  # noqa: E402

import aotgraph  # noqa: E402
from aotgraph.compilers.torchinductor import inductor_decompositions  # noqa: E402


def captured(model_name: str, device: torch.device, smoke: bool, profile: cProfile.Profile | None):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model, inputs, _ = MODELS[model_name](device, smoke)
    backend = aotgraph.backend(compiler="eager", decompositions=inductor_decompositions())
    compiled = torch.compile(model, backend=backend, dynamic=False)
    if profile is not None:
        profile.enable()
    with torch.autocast(device.type, dtype=torch.bfloat16):
        compiled(*inputs)
    if profile is not None:
        profile.disable()
    return backend.entries


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--no-meta", action="store_true", help="fake outputs of misses from the fake mode only (no meta kernels)")
    args = parser.parse_args()
    if args.no_meta:
        from aotgraph.capture import fake_outputs

        fake_outputs._on_meta_kernel = lambda func: False
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out_dir = os.environ.get("OUT", "./out")
    os.makedirs(out_dir, exist_ok=True)
    lines = []
    for model_name in args.models:
        seconds = {"capture": [], "partition": []}
        profile = cProfile.Profile()
        for r in range(args.repeats):
            entries = captured(model_name, device, args.smoke, profile if r == args.repeats - 1 else None)
            for stage in seconds:
                seconds[stage].append(sum(e.log.seconds(stage) for e in entries))
        write_profile(profile, os.path.join(out_dir, f"capture_{model_name}{'_nometa' if args.no_meta else ''}.txt"),
                      own=40, cumulative=60)
        nodes = sum(len(e.joint.graph_module.graph.nodes) for e in entries)
        lines.append(f"{model_name:<11} {device.type}{' no-meta' if args.no_meta else ''} {nodes} joint nodes  capture ms "
                     f"{[round(s * 1e3) for s in seconds['capture']]} (median {statistics.median(seconds['capture']) * 1e3:.0f})  "
                     f"partition ms {[round(s * 1e3) for s in seconds['partition']]}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
