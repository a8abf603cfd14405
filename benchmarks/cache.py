"""Cold vs warm first call through the compile caches, each in a fresh process, ours and
torch.compile's side by side, with the Inductor compiler on the CPU.

For each model of the compile-time suite (benchmarks/compile_time.py): the wall time of the
first forward+backward of ``torch.compile(model, backend=aotgraph.backend("inductor"),
dynamic=False)`` ("ours") and of ``torch.compile(model, dynamic=False)`` ("torch"), each in
a fresh process: cold (empty aotgraph cache, empty Inductor cache directory), then warm (the
same directories, now filled). ``--entry aot_module`` times ``aot_module(model, "inductor",
cache=True)`` instead of our backend (the captured graph is the key: it captures every time).
Ratios warm/cold (goal for ours: <= 0.1) and ours/torch. ``--systems ours_cpp`` adds ours with
Inductor's C++ wrapper (``options={"cpp_wrapper": True}``: what our graphs move to on CUDA).
``--breakdown`` also prints, per system, the warm processes' medians of the backend's time
(Dynamo's ``OutputGraph.call_user_compiler``: our key, entry load and runtime, or torch's
AOTAutograd and FX graph cache loads) and, for ours, our stages ``cache load``, ``first run``
and ``first backward``.

    PYTHONPATH=src python benchmarks/cache.py [--models mlp32,transformer12] [--repeats 1] [--breakdown]
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

CHILD = "--child"


def child(model_name: str, variant: str, entry: str) -> None:
    import torch

    import aotgraph
    from compile_time import MODELS

    torch.manual_seed(0)
    torch.set_num_threads(1)
    module, inputs = MODELS[model_name]()
    start = time.perf_counter()
    backend = None
    if variant == "torch":
        compiled = torch.compile(module, dynamic=False)
    elif entry == "aot_module":
        compiled = aotgraph.aot_module(module, "inductor", cache=True)
    else:
        backend = aotgraph.backend(compiler="inductor", options={"cpp_wrapper": True} if variant == "ours_cpp" else None)
        compiled = torch.compile(module, backend=backend, dynamic=False)
    out = compiled(*inputs)
    (out if out.dim() == 0 else out.sum()).backward()
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "parts": breakdown(backend, compiled)}))


def breakdown(backend, compiled) -> dict:
    """Seconds of the first call's parts: the backend (Dynamo's timer) and our stages."""
    import torch

    parts = {"backend": sum(torch._dynamo.utils.compilation_time_metrics.get("OutputGraph.call_user_compiler", ()))}
    entries = backend.entries if backend is not None else list(getattr(compiled, "aotgraph_entries", {}).values())
    for entry in entries:
        for record in entry.log.records:
            if record.stage in ("cache load", "first run", "first backward"):
                parts[record.stage] = parts.get(record.stage, 0.0) + record.seconds
    return parts


def run_child(model_name: str, variant: str, entry: str, aotgraph_dir: str, inductor_dir: str) -> dict:
    env = dict(os.environ, AOTGRAPH_CACHE_DIR=aotgraph_dir, TORCHINDUCTOR_CACHE_DIR=inductor_dir,
               AOTGRAPH_PROGRESS="0", PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), *sys.path]))
    done = subprocess.run([sys.executable, __file__, CHILD, model_name, variant, entry], env=env,
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{model_name} {variant}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(model_name: str, entry: str, repeats: int, warm_repeats: int, systems: list) -> tuple[dict, dict]:
    """({variant: (cold median, warm median)}, {variant: {part: warm median}}) over `repeats`
    fresh pairs of directories, each filled by one cold process and read by `warm_repeats` warm ones."""
    results, parts = {}, {}
    for variant in systems:
        cold, warm = [], []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as root:
                aotgraph_dir, inductor_dir = os.path.join(root, "aotgraph"), os.path.join(root, "inductor")
                cold.append(run_child(model_name, variant, entry, aotgraph_dir, inductor_dir))
                warm += [run_child(model_name, variant, entry, aotgraph_dir, inductor_dir) for _ in range(warm_repeats)]
        results[variant] = (statistics.median(r["seconds"] for r in cold), statistics.median(r["seconds"] for r in warm))
        names = {name for r in warm for name in r["parts"]}
        parts[variant] = {name: statistics.median(r["parts"].get(name, 0.0) for r in warm) for name in sorted(names)}
    return results, parts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=None, help="default: every model of benchmarks/compile_time.py")
    parser.add_argument("--entry", choices=("backend", "aot_module"), default="backend")
    parser.add_argument("--systems", default="ours,torch", help="comma-separated: ours, ours_cpp, torch")
    parser.add_argument("--repeats", type=int, default=1, help="cold processes (fresh directories) per model")
    parser.add_argument("--warm-repeats", type=int, default=3, help="warm processes per cold one")
    parser.add_argument("--breakdown", action="store_true", help="also the warm processes' parts (see the docstring)")
    args = parser.parse_args()
    import torch

    from compile_time import MODELS

    systems = args.systems.split(",")
    models = args.models.split(",") if args.models else list(MODELS)

    print(f"torch {torch.__version__}; wall seconds of the first forward+backward in a fresh process "
          f"(Inductor, CPU, 1 thread), medians of {args.repeats} cold and {args.repeats * args.warm_repeats} warm; ours = aotgraph via {args.entry}")
    print(f"{'model':<14}{'ours cold':>10}{'ours warm':>10}{'warm/cold':>10}"
          f"{'torch cold':>11}{'torch warm':>11}{'warm/cold':>10}{'warm ours/torch':>16}")
    nan = (float("nan"),) * 2
    for name in models:
        r, parts = measure(name, args.entry, args.repeats, args.warm_repeats, systems)
        (oc, ow), (tc, tw) = r.get("ours", nan), r.get("torch", nan)
        print(f"{name:<14}{oc:>10.2f}{ow:>10.2f}{ow / oc:>10.3f}{tc:>11.2f}{tw:>11.2f}{tw / tc:>10.3f}{ow / tw:>16.2f}",
              flush=True)
        for variant in systems:
            cold, warm = r[variant]
            if variant not in ("ours", "torch"):
                print(f"  {variant}: cold {cold:.2f}, warm {warm:.2f}, warm/cold {warm / cold:.3f}")
            if args.breakdown:
                print(f"  {variant} warm parts (s): " + ", ".join(f"{k} {v:.3f}" for k, v in parts[variant].items()),
                      flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        child(*sys.argv[2:5])
    else:
        main()
