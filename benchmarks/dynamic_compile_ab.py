"""Dynamic compile time with some of aotgraph's switches off and on, interleaved in one process
(issue 17): for each model and our two entries, one static compile, one dynamic compile with
``--off`` switched off for it, one dynamic compile as is, repeated; medians and the ratios to
the static compile. Interleaving keeps a shared machine's drifting load out of the comparison
that two separate runs of `dynamic_compile_time.py` would carry.

    PYTHONPATH=src python benchmarks/dynamic_compile_ab.py --off strided_builds,direct_fakes [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics

import torch

import aotgraph
from aotgraph import config, models
from dynamic_compile_time import _first_step_seconds, _pipelines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--off", required=True, help="switches (config.SWITCHES) off for the 'before' compiles")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    off = frozenset(args.off.split(","))
    if not off <= config.SWITCHES.keys():
        parser.error(f"unknown switches {sorted(off - config.SWITCHES.keys())}; known: {sorted(config.SWITCHES)}")
    torch.set_num_threads(1)
    aotgraph.config.disk_cache = "0"
    base = config.disabled
    cases = {"mlp": models.mlp(), "gpt": models.gpt(), "gpt6": models.gpt(layers=6, dim=128)}
    pipelines = {k: v for k, v in _pipelines("eager").items() if k.startswith("ours")}

    def seconds(make, model, inputs, dynamic: bool, switched_off: bool) -> float:
        config.disabled = base | off if switched_off else base
        try:
            return _first_step_seconds(make(dynamic), model, inputs)
        finally:
            config.disabled = base

    print(f"torch {torch.__version__}; CPU seconds, medians of {args.repeats}; before: {sorted(off)} off")
    print(f"{'model':6} {'pipeline':16} {'static':>7} {'dyn before':>10} {'dyn after':>9} {'ratio before':>12} "
          f"{'ratio after':>11}")
    for name, (model, inputs) in cases.items():
        for pipeline, make in pipelines.items():
            runs = [(False, False), (True, True), (True, False)]  # static, dynamic before, dynamic after
            for dynamic, switched_off in runs:  # warm-up: one-time setup
                seconds(make, model, inputs, dynamic, switched_off)
            times = [[] for _ in runs]
            for _ in range(args.repeats):
                for k, (dynamic, switched_off) in enumerate(runs):
                    times[k].append(seconds(make, model, inputs, dynamic, switched_off))
            static, before, after = (statistics.median(t) for t in times)
            print(f"{name:6} {pipeline:16} {static:7.3f} {before:10.3f} {after:9.3f} {before / static:12.2f} "
                  f"{after / static:11.2f}", flush=True)


if __name__ == "__main__":
    main()
