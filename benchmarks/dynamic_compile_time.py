"""Compile time with symbolic sizes vs the static compile of the same model, ours and torch's,
side by side in one process (issue 17: ours dynamic/static <= 1.5; torch's is reported at 2.5).

For each model and compiler: CPU time (``time.process_time``, one torch thread) from the first
call of a freshly compiled module to the end of its backward, for
- ours: ``aotgraph.aot_module(model, fw_compiler=...)`` vs ``aot_module(..., dynamic=True)``;
- torch: ``torch.compile(model, backend=...)`` with ``dynamic=False`` vs ``dynamic=True``
  (Dynamo's tracing included; backend ``aot_eager`` for the eager compiler, ``inductor``),
and the same for ours through ``torch.compile(backend=aotgraph.backend(...), dynamic=...)``
(aotgraph's disk cache off: every compile is cold, as torch's ``aot_eager``'s), with a row of
its own stages alone ("own stages": CPU time inside the backend's calls, capture, partition and
compile; the rest of that pipeline's time is Dynamo's tracing and guards, and the first run).
Medians of ``--repeats`` compiles (Dynamo reset and fresh copies each time), and the ratios
dynamic/static.

That is a compile repeated in one process, after a warm-up compile of the same model in the same
mode: sympy's caches (process-wide) then know every size expression the compile builds. A
user's first compile in a process pays for building them. ``--first-in-process`` measures that
one: each compile in a fresh process, after a warm-up compile (static and dynamic, same
pipeline) of another model (`WARM_UP`, a small transformer: imports and one-time setup paid,
the target's expressions new), `--repeats` processes per figure.

    PYTHONPATH=src python benchmarks/dynamic_compile_time.py [--repeats 3] [--inductor] [--first-in-process]
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
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


class _OwnStages:
    """aotgraph's backend, adding up the CPU seconds of its calls (`seconds`)."""

    def __init__(self, backend):
        self.backend, self.seconds = backend, 0.0

    def __call__(self, graph_module, example_inputs, **kwargs):
        start = time.process_time()
        try:
            return self.backend(graph_module, example_inputs, **kwargs)
        finally:
            self.seconds += time.process_time() - start


def _ours_backend(compiler: str, dynamic: bool):
    """``model -> torch.compile(model, backend=aotgraph.backend(compiler))``; its attribute
    `own_stages` (an `_OwnStages`) times the backend's calls."""
    own_stages = _OwnStages(aotgraph.backend(compiler=compiler))

    def make(model):
        return torch.compile(model, backend=own_stages, dynamic=dynamic)

    make.own_stages = own_stages
    return make


def _pipelines(compiler: str) -> dict:
    torch_backend = {"eager": "aot_eager", "inductor": "inductor"}[compiler]
    return {
        "ours aot_module": lambda dynamic: (lambda m: aotgraph.aot_module(m, fw_compiler=compiler, dynamic=dynamic)),
        "ours backend": lambda dynamic: _ours_backend(compiler, dynamic),
        f"torch.compile {torch_backend}": lambda dynamic: (lambda m: torch.compile(m, backend=torch_backend,
                                                                                   dynamic=dynamic)),
    }


CASES = {"mlp": models.mlp, "gpt": models.gpt, "gpt6": lambda: models.gpt(layers=6, dim=128), "resnet": models.resnet,
         "unet": models.unet, "moe": models.moe}
WARM_UP = models.transformer_stack  # --first-in-process: compiled first, in both modes


def _first_in_process(name: str, compiler: str, pipeline: str, dynamic: bool) -> dict:
    """In this fresh process: `WARM_UP` compiled static and dynamic through `pipeline`, then the
    seconds of case `name`'s first call through backward ({"first": s, "own": s or None})."""
    make = _pipelines(compiler)[pipeline]
    warm_model, warm_inputs = WARM_UP()
    for mode in (False, True):
        _first_step_seconds(make(mode), warm_model, warm_inputs)
    model, inputs = CASES[name]()
    made = make(dynamic)
    first = _first_step_seconds(made, model, inputs)
    return {"first": first, "own": made.own_stages.seconds if hasattr(made, "own_stages") else None}


def _fresh_processes(args, compilers: list) -> None:
    print(f"torch {torch.__version__}; CPU seconds of a first compile in a fresh process (after {WARM_UP.__name__}), "
          f"medians of {args.repeats} processes")
    print(f"{'model':6} {'compiler':9} {'pipeline':26} {'static':>8} {'dynamic':>8} {'dyn/static':>10}")
    environment = dict(os.environ, AOTGRAPH_CACHE="0")
    for compiler in compilers:
        for name in CASES:
            for pipeline in _pipelines(compiler):
                runs = {False: [], True: []}
                for _ in range(args.repeats):
                    for dynamic in (False, True):  # interleaved: a burst of load hits both
                        out = subprocess.run([sys.executable, __file__, "--one", name, compiler, pipeline, str(int(dynamic))],
                                             capture_output=True, text=True, env=environment, check=True).stdout
                        runs[dynamic].append(eval(out.strip().splitlines()[-1]))
                rows = [(pipeline, "first")] + ([(pipeline + ", own stages", "own")] if runs[False][0]["own"] else [])
                for label, key in rows:
                    static, dyn = (statistics.median(r[key] for r in runs[d]) for d in (False, True))
                    print(f"{name:6} {compiler:9} {label:26} {static:8.3f} {dyn:8.3f} {dyn / static:10.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--inductor", action="store_true", help="also the inductor compiler (slow on a CPU)")
    parser.add_argument("--first-in-process", action="store_true", help="each compile a fresh process's first")
    parser.add_argument("--one", nargs=4, help=argparse.SUPPRESS)  # (a --first-in-process child)
    args = parser.parse_args()
    torch.set_num_threads(1)
    # Cold compiles on both sides: aotgraph's disk cache would answer the backend's repeats.
    aotgraph.config.disk_cache = "0"
    compilers = ["eager"] + (["inductor"] if args.inductor else [])
    if args.one:
        name, compiler, pipeline, dynamic = args.one
        print(_first_in_process(name, compiler, pipeline, dynamic == "1"))
        return
    if args.first_in_process:
        _fresh_processes(args, compilers)
        return
    cases = {name: make() for name, make in CASES.items()}
    print(f"torch {torch.__version__}; CPU seconds, medians of {args.repeats}")
    print(f"{'model':6} {'compiler':9} {'pipeline':26} {'static':>8} {'dynamic':>8} {'dyn/static':>10}")
    for compiler in compilers:
        for name, (model, inputs) in cases.items():
            for pipeline, make in _pipelines(compiler).items():
                for dynamic in (False, True):  # warm-up: one-time setup of each mode (sympy's caches)
                    _first_step_seconds(make(dynamic), model, inputs)
                times, own = {}, {}
                for dynamic in (False, True):
                    totals, stages = [], []
                    for _ in range(args.repeats):
                        made = make(dynamic)
                        totals.append(_first_step_seconds(made, model, inputs))
                        if hasattr(made, "own_stages"):
                            stages.append(made.own_stages.seconds)
                    times[dynamic] = statistics.median(totals)
                    own[dynamic] = statistics.median(stages) if stages else None
                rows = [(pipeline, times)] + ([(pipeline + ", own stages", own)] if own[False] is not None else [])
                for label, seconds in rows:
                    print(f"{name:6} {compiler:9} {label:26} {seconds[False]:8.3f} {seconds[True]:8.3f} "
                          f"{seconds[True] / seconds[False]:10.2f}", flush=True)


if __name__ == "__main__":
    main()
