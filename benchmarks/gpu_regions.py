"""GPT-2 small with its blocks marked by ``torch.compiler.nested_compile_region`` on the GPU:
cold first step and step time, torch.compile vs torch.compile(backend=aotgraph.backend())
(issue 23: ours cold first step <= 0.5x torch.compile's flat one and <= torch.compile's own
with the same blocks marked, at equal or better step time).

Configurations, each in a process of its own with cold caches (its own Inductor and Triton
cache directories, FX graph and AOT autograd caches off, aotgraph's disk cache empty):
- ``inductor``: torch.compile(model), the blocks unmarked (flat);
- ``inductor_regions``: torch.compile(model), each GPT2Block's forward a nested_compile_region;
- ``aotgraph``: torch.compile(model, backend=aotgraph.backend()), flat;
- ``aotgraph_regions``: the same with the blocks marked, each region compiled once by Inductor
  on its own (switch ``regions_compiled_apart``);
- ``inductor_room`` (not run unless named): ``inductor`` with its steps run beneath
  ``aotgraph.stack_room``'s frame, as our compile stages are: torch's compile then never calls
  across a chunk of CPython's frame stack, whatever this script's depth (its best case; the
  table's "vs torch flat" reads ``inductor``).
Model: transformers GPT2LMHeadModel(GPT2Config()), random weights, dropout 0, batch 8, sequence
512, bf16 autocast, SGD (as ``gpu_train.py``). Per configuration: the first step (compiles
included), the time until aotgraph's background C++-wrapper builds are ready, the median of
the timed steps (CUDA events), peak reserved memory over two steps, the first step's loss and
its gradients against eager's (the same weights, batch and autocast; the largest
``|g - g_eager| / max|g_eager|`` over the parameters). The table comes last; logs and JSON
under $OUT (default ./out).

Run (repo root):               PYTHONPATH=src python benchmarks/gpu_regions.py [--configs ...]
CPU smoke test (tiny GPT-2):   PYTHONPATH=src python benchmarks/gpu_regions.py --smoke
First steps only (all four configurations in one call): add --first-step-only
GPT-2 traced as one graph (transformers' loss warning named away): add --one-graph
Where a first step's time goes: add --profile (cProfile, $OUT/profile_<config>.txt)
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_train import Log, Timer, first_step, gpt2, sgd_step, synchronize, torch_compile_phases  # noqa: E402

CONFIGS = ("inductor", "inductor_regions", "aotgraph", "aotgraph_regions")
EXTRA_CONFIGS = ("inductor_room",)
CHILD = "--child"


def mark_blocks(model: torch.nn.Module) -> int:
    """Each GPT2Block of `model` made to run its forward as a nested_compile_region (a subclass
    per model, so other models in the process stay unmarked); the number of blocks marked."""
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block

    class MarkedGPT2Block(GPT2Block):
        forward = torch.compiler.nested_compile_region(GPT2Block.forward)

    blocks = [m for m in model.modules() if type(m) is GPT2Block]
    for block in blocks:
        block.__class__ = MarkedGPT2Block
    return len(blocks)


def gradient_error(model: torch.nn.Module, reference: torch.nn.Module) -> float:
    """The largest ``max|g - g_ref| / max|g_ref|`` over the parameters of two models."""
    worst = 0.0
    for p, q in zip(model.parameters(), reference.parameters()):
        if q.grad is None or p.grad is None:
            worst = max(worst, float(q.grad is not p.grad))
            continue
        scale = q.grad.abs().max().clamp_min(1e-12)
        worst = max(worst, float((p.grad.float() - q.grad.float()).abs().max() / scale))
    return worst


def child(config: str, args) -> None:
    """One configuration in this fresh process; its result as JSON on stdout's last line."""
    import aotgraph
    import aotgraph.stack_room

    device = torch.device("cpu" if args.smoke else "cuda")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aotgraph").setLevel(logging.INFO)  # regions found, or compiled inline and why
    torch._inductor.config.fx_graph_cache = False
    if hasattr(torch._functorch.config, "enable_autograd_cache"):
        torch._functorch.config.enable_autograd_cache = False
    torch.manual_seed(0)
    model, inputs, what = gpt2(device, args.smoke, one_graph=args.one_graph)
    marked = mark_blocks(model) if config.endswith("_regions") else 0
    reference = copy.deepcopy(model)
    backend = None
    if config.startswith("aotgraph"):
        if config.endswith("_regions"):
            aotgraph.config.opted_in = aotgraph.config.opted_in | {"regions_compiled_apart"}
        backend = aotgraph.backend(compiler="inductor")
        compiled = torch.compile(model, backend=backend, dynamic=False)
    else:
        compiled = torch.compile(model, backend="inductor", dynamic=False)

    with torch.autocast(device.type, dtype=torch.bfloat16):
        eager_loss = reference(*inputs)
    eager_loss.backward()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    step, losses = sgd_step(compiled, inputs, optimizer, device)
    if config == "inductor_room":
        step = functools.partial(aotgraph.stack_room.call_with_stack_room, step)
    optimizer.step = lambda: None  # the first step keeps its gradients for the check below
    optimizer.zero_grad, zero_grad = (lambda set_to_none=True: None), optimizer.zero_grad
    profile_to = os.path.join(os.environ.get("OUT", "./out"), f"profile_{config}.txt") if args.profile else None
    first_step_s, cpp_ready_s = first_step(step, device, wait=not args.first_step_only, profile_to=profile_to)
    grad_error = gradient_error(model, reference)
    del optimizer.step, optimizer.zero_grad
    zero_grad(set_to_none=True)
    del reference

    for _ in range(args.warmup):
        step()
    synchronize(device)
    timer, host_ms = Timer(device), []
    step_ms = [timer.time(step, host_ms) for _ in range(args.steps)] if not args.first_step_only else [float("nan")]
    host_ms = host_ms or [float("nan")]
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(2):
            step()
        synchronize(device)
    result = dict(config=config, what=what, marked_blocks=marked, first_step_s=first_step_s,
                  cpp_ready_s=cpp_ready_s, step_ms=statistics.median(step_ms), host_ms=statistics.median(host_ms),
                  peak_reserved_gib=torch.cuda.max_memory_reserved() / 2**30 if device.type == "cuda" else None,
                  first_loss=float(losses[0]), eager_loss=float(eager_loss), last_loss=float(losses[-1]),
                  grad_error=grad_error,
                  dynamo_compile_times={k: round(v, 3) for k, v in torch_compile_phases().items()},
                  entry_logs=[entry.log.format() for entry in backend.entries] if backend is not None else [],
                  regions=[[(use.name, use.occurrences) for use in entry.joint.regions] for entry in backend.entries]
                  if backend is not None else [])
    print(json.dumps(result), flush=True)


def format_table(rows: list[dict]) -> str:
    base = {r["config"]: r for r in rows if "error" not in r}
    flat = base.get("inductor")
    lines = [f"{'config':<17} {'first step s':>12} {'vs torch flat':>13} {'C++ ready s':>11} {'step ms':>8} "
             f"{'vs torch flat':>13} {'peak GiB':>8} {'loss first/eager':>18} {'grad err':>9}"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['config']:<17} {r['error']}")
            continue
        first_ratio = f"{r['first_step_s'] / flat['first_step_s']:.3f}x" if flat else "-"
        step_ratio = f"{r['step_ms'] / flat['step_ms']:.3f}x" if flat else "-"
        peak = f"{r['peak_reserved_gib']:.2f}" if r["peak_reserved_gib"] is not None else "-"
        lines.append(f"{r['config']:<17} {r['first_step_s']:12.1f} {first_ratio:>13} {r['cpp_ready_s']:11.1f} "
                     f"{r['step_ms']:8.2f} {step_ratio:>13} {peak:>8} "
                     f"{r['first_loss']:8.4f}/{r['eager_loss']:.4f} {r['grad_error']:9.2e}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny GPT-2 on the CPU, to test this script")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS + EXTRA_CONFIGS))
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--budget-s", type=float, default=560.0, help="start no configuration after this many seconds")
    parser.add_argument("--first-step-only", action="store_true",
                        help="no waiting for aotgraph's C++ builds, no timed steps (warm-up steps still run)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the first step; its top functions to $OUT/profile_<config>.txt")
    parser.add_argument("--one-graph", action="store_true",
                        help="name GPT-2's loss type: no graph break before the loss (see gpu_train.gpt2)")
    if len(sys.argv) > 2 and sys.argv[1] == CHILD:
        args = parser.parse_args(sys.argv[3:])
    else:
        args = parser.parse_args()
    args.warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 5)
    args.steps = args.steps if args.steps is not None else (3 if args.smoke else 30)
    if len(sys.argv) > 2 and sys.argv[1] == CHILD:
        child(sys.argv[2], args)
        return 0

    start = time.perf_counter()
    out_dir = os.environ.get("OUT", "./out")
    os.makedirs(out_dir, exist_ok=True)
    log = Log(os.path.join(out_dir, "gpu_regions.log"))
    log("gpu_regions:", json.dumps({"torch": torch.__version__,
                                    "card": "cpu" if args.smoke else torch.cuda.get_device_name()}))
    rows = []
    for config in args.configs:
        left = args.budget_s - (time.perf_counter() - start)
        if left < 30:
            rows.append(dict(config=config, error=f"skipped: past --budget-s {args.budget_s:.0f}"))
            continue
        root = tempfile.mkdtemp(prefix=f"aotgraph_regions_{config}_")
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=os.path.join(root, "inductor"),
                   TRITON_CACHE_DIR=os.path.join(root, "triton"), AOTGRAPH_CACHE_DIR=os.path.join(root, "aotgraph"),
                   AOTGRAPH_PROGRESS="0")
        command = [sys.executable, os.path.abspath(__file__), CHILD, config, *sys.argv[1:]]
        log(f"== {config} (t={time.perf_counter() - start:.0f} s)")
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=left)
        except subprocess.TimeoutExpired:
            rows.append(dict(config=config, error="timed out"))
            continue
        log(done.stderr[-4000:])
        if done.returncode != 0:
            log(done.stdout[-2000:])
            rows.append(dict(config=config, error=f"FAILED (exit {done.returncode})"))
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        log(json.dumps(rows[-1]))
    with open(os.path.join(out_dir, "gpu_regions.json"), "w") as f:
        json.dump(rows, f, indent=1)
    log(f"\ntotal {time.perf_counter() - start:.0f} s")
    log(format_table(rows))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
