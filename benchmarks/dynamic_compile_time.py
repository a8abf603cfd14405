"""Compile time with symbolic sizes vs the static compile of the same model, ours and torch's,
side by side in one process (issue 17: ours dynamic/static <= 1.5; torch's is reported at 2.5).

For each model and compiler: CPU time (``time.process_time``, one torch thread) from the first
call of a freshly compiled module to the end of its backward, for
- ours: ``aotgraph.aot_module(model, fw_compiler=...)`` vs ``aot_module(..., dynamic=True)``;
- torch: ``torch.compile(model, backend=...)`` with ``dynamic=False`` vs ``dynamic=True``
  (Dynamo's tracing included; backend ``aot_eager`` for the eager compiler, ``inductor``),
and the same for ours through ``torch.compile(backend=aotgraph.backend(...), dynamic=...)``
(aotgraph's disk cache off: every compile is cold, as torch's ``aot_eager``'s).
Medians of ``--repeats`` compiles (Dynamo reset and fresh copies each time), and the ratios
dynamic/static.

    PYTHONPATH=src python benchmarks/dynamic_compile_time.py [--repeats 3] [--inductor]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

import aotgraph
from aotgraph import models


def _first_step_seconds(make_compiled, model, inputs) -> float:
    torch._dynamo.reset()
    compiled = make_compiled(copy.deepcopy(model))
    start = time.process_time()
    out = compiled(*inputs)
    (out if out.dim() == 0 else out.sum()).backward()
    return time.process_time() - start


def _pipelines(compiler: str) -> dict:
    torch_backend = {"eager": "aot_eager", "inductor": "inductor"}[compiler]
    return {
        "ours aot_module": lambda dynamic: (lambda m: aotgraph.aot_module(m, fw_compiler=compiler, dynamic=dynamic)),
        "ours backend": lambda dynamic: (lambda m: torch.compile(m, backend=aotgraph.backend(compiler=compiler),
                                                                 dynamic=dynamic)),
        f"torch.compile {torch_backend}": lambda dynamic: (lambda m: torch.compile(m, backend=torch_backend,
                                                                                   dynamic=dynamic)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--inductor", action="store_true", help="also the inductor compiler (slow on a CPU)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    # Cold compiles on both sides: aotgraph's disk cache would answer the backend's repeats.
    aotgraph.config.disk_cache = "0"
    cases = {"mlp": models.mlp(), "gpt": models.gpt(), "gpt6": models.gpt(layers=6, dim=128)}
    compilers = ["eager"] + (["inductor"] if args.inductor else [])
    print(f"torch {torch.__version__}; CPU seconds, medians of {args.repeats}")
    print(f"{'model':6} {'compiler':9} {'pipeline':26} {'static':>8} {'dynamic':>8} {'dyn/static':>10}")
    for compiler in compilers:
        for name, (model, inputs) in cases.items():
            for pipeline, make in _pipelines(compiler).items():
                _first_step_seconds(make(False), model, inputs)  # warm-up: one-time setup
                times = {dynamic: statistics.median(_first_step_seconds(make(dynamic), model, inputs)
                                                    for _ in range(args.repeats)) for dynamic in (False, True)}
                print(f"{name:6} {compiler:9} {pipeline:26} {times[False]:8.3f} {times[True]:8.3f} "
                      f"{times[True] / times[False]:10.2f}")


if __name__ == "__main__":
    main()
