"""Compile time, ours vs torch's AOTAutograd, side by side in one process.

For each model: time from the first call of a freshly compiled module to the end of its
backward, with the ``nop`` compilers, for ours (``aotgraph.aot_module``) and torch's
(``functorch.compile.aot_module``), alternating, on a fresh copy of the module each time.
Reported: medians of ``--repeats`` compiles, with the default and the min-cut partitioner,
and the ratio ours/torch (target <= 0.2). ``eager`` is the first forward+backward of the
uncompiled module: the compute every column includes.

Times are this process's CPU time (``time.process_time``, one torch thread): on a shared
machine it is far steadier than wall time; the wall-time ratio is given too. "compile only": each
variant's first call less the median of its next ``STEPS`` calls (forward+backward), the ratio of
those between ours and torch's default: the compile alone, without the first call's compute (which
is most of a 124M-parameter GPT-2's first call on this CPU).
One warm-up round per model (both pipelines) is not counted: it pays one-time setup.

``--switch-off NAME`` adds ours with switch NAME off (``AOTGRAPH_DISABLE``'s names) to the same
rounds, with its ratios: a before/after of one fast path measured side by side.

Torch's FakeTensorMode dispatch cache is class-level (shared by both pipelines); it is
cleared before every compile unless ``--warm-fake-cache``. Our own caches are per compiled
function, so a fresh ``aot_module`` starts empty.

    PYTHONPATH=src python benchmarks/compile_time.py [--repeats 3] [--models mlp,resnet] [--switch-off NAME]
"""
from __future__ import annotations

import argparse
import copy
import gc
import statistics
import time

import torch
from functorch.compile import aot_function as torch_aot_function
from functorch.compile import aot_module as torch_aot_module
from functorch.compile import default_partition as torch_default_partition
from functorch.compile import min_cut_rematerialization_partition as torch_min_cut
from functorch.compile import nop as torch_nop
from torch._subclasses.fake_tensor import FakeTensorMode

import aotgraph
from aotgraph import models

try:
    from aotgraph import min_cut_rematerialization_partition as our_min_cut
except ImportError:
    our_min_cut = None

MODELS = {
    "mlp32": lambda: models.mlp(layers=32),
    "transformer12": lambda: models.transformer_stack(layers=12, dim=64, heads=4, ffn=256),
    # Batch 1, sequence 16: the real forward+backward of 124M parameters, which both pipelines
    # pay inside the timed first call, is still ~0.56 s of CPU (0.94 s at the zoo's default 64).
    "gpt2_small": lambda: models.gpt2_small(batch=1, seq=16),
    "resnet": models.resnet,
    "unet": models.unet,
    "moe": models.moe,
}


def has_tied_weights(module: torch.nn.Module) -> bool:
    return len(dict(module.named_parameters(remove_duplicate=False))) != len(list(module.parameters()))


def torch_aot_module_untied(module, **kwargs):
    """torch's ``aot_module`` as it is written, except ``functional_call(tie_weights=False)``:
    torch's own refuses modules with tied weights (GPT-2's tied LM head)."""
    named = dict(module.named_parameters(remove_duplicate=False))
    named.update(module.named_buffers(remove_duplicate=False))

    def call(state, *args):
        return torch.func.functional_call(module, state, args, tie_weights=False)

    compiled = torch_aot_function(call, num_params_buffers=len(named), **kwargs)
    return lambda *args: compiled(named, *args)


def compile_ours(module, partitioner):
    return aotgraph.aot_module(module, aotgraph.nop, aotgraph.nop, partition_fn=partitioner)


def compile_torch(module, partitioner):
    kwargs = dict(fw_compiler=torch_nop, bw_compiler=torch_nop, partition_fn=partitioner)
    if has_tied_weights(module):
        return torch_aot_module_untied(module, **kwargs)
    return torch_aot_module(module, **kwargs)


STEPS = 3  # later calls timed per compile, for the "compile only" column


def backward_of(out) -> None:
    (out if out.dim() == 0 else out.sum()).backward()


def time_first_call(module, inputs, make=None, clear_fake_cache=True) -> tuple[float, float, object, float]:
    """(CPU seconds, wall seconds) from the first call (compile included) to the end of its backward,
    the compiled module, and the median CPU seconds of `STEPS` calls after it."""
    fresh = copy.deepcopy(module)
    if clear_fake_cache:
        FakeTensorMode.cache_clear()
    gc.collect()
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    compiled = make(fresh) if make else fresh
    backward_of(compiled(*inputs))
    first_cpu, first_wall = time.process_time() - start_cpu, time.perf_counter() - start_wall
    steps = []
    for _ in range(STEPS):
        for parameter in fresh.parameters():  # as before the first call: no gradient to accumulate into
            parameter.grad = None
        start = time.process_time()
        backward_of(compiled(*inputs))
        steps.append(time.process_time() - start)
    return first_cpu, first_wall, compiled, statistics.median(steps)


def switched_off(switch: str, make):
    """`make` run with aotgraph's `switch` off (the compile happens in the first call, inside)."""
    def compile_and_call_with_switch_off(module):
        compiled = make(module)

        def call(*args):
            disabled = aotgraph.config.disabled
            aotgraph.config.disabled = disabled | {switch}
            try:
                return compiled(*args)
            finally:
                aotgraph.config.disabled = disabled
        call.aotgraph_entries = compiled.aotgraph_entries
        return call
    return compile_and_call_with_switch_off


def measure(name: str, repeats: int, clear: bool, switch_off: str | None = None) -> dict:
    torch.manual_seed(0)
    module, inputs = MODELS[name]()
    ours_min_cut = our_min_cut or aotgraph.default_partition
    variants = {
        "eager": None,
        "ours default": lambda m: compile_ours(m, aotgraph.default_partition),
        "torch default": lambda m: compile_torch(m, torch_default_partition),
        "ours min-cut": lambda m: compile_ours(m, ours_min_cut),
        "torch min-cut": lambda m: compile_torch(m, torch_min_cut),
    }
    if switch_off:
        variants["ours default, switch off"] = switched_off(switch_off, variants["ours default"])
        variants["ours min-cut, switch off"] = switched_off(switch_off, variants["ours min-cut"])
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    wall: dict[str, list[float]] = {v: [] for v in variants}
    compile_only: dict[str, list[float]] = {v: [] for v in variants}
    log = None
    for round_index in range(repeats + 1):
        for variant, make in variants.items():
            cpu_seconds, wall_seconds, compiled, step = time_first_call(module, inputs, make, clear)
            if round_index == 0:
                continue  # warm-up round
            cpu[variant].append(cpu_seconds)
            wall[variant].append(wall_seconds)
            compile_only[variant].append(cpu_seconds - step)
            if variant == "ours default":
                log = next(iter(compiled.aotgraph_entries.values())).log
    return {"medians": {v: statistics.median(t) for v, t in cpu.items()},
            "wall": {v: statistics.median(t) for v, t in wall.items()},
            "compile only": {v: statistics.median(t) for v, t in compile_only.items()}, "log": log}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--warm-fake-cache", action="store_true")
    parser.add_argument("--switch-off", choices=sorted(aotgraph.config.SWITCHES),
                        help="also time ours with this switch off, in the same rounds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    # Compile every pipeline once on a tiny program so imports and one-time setup are not timed.
    warm_module, warm_inputs = models.mlp(layers=2)
    for make in (lambda m: compile_ours(m, aotgraph.default_partition),
                 lambda m: compile_torch(m, torch_default_partition)):
        time_first_call(warm_module, warm_inputs, make)

    print(f"torch {torch.__version__}; CPU seconds, medians of {args.repeats} fresh compiles, nop compilers; "
          f"fake-tensor cache {'warm' if args.warm_fake_cache else 'cleared before each compile'}")
    if our_min_cut is None:
        print("aotgraph.min_cut_rematerialization_partition is not available: 'ours min-cut' runs the default partition")
    header = (f"{'model':<14}{'eager':>8}{'ours def':>10}{'torch def':>11}{'ratio':>7}"
              f"{'ours mc':>10}{'torch mc':>10}{'ratio':>7}{'ratio-eager':>13}{'wall ratio':>12}"
              f"{'compile only: ours def':>24}{'torch def':>11}{'ratio':>7}{'mc ratio':>10}"
              + (f"  ratios with {args.switch_off} off: def, mc" if args.switch_off else ""))
    print(header)
    logs = {}
    for name in args.models.split(","):
        result = measure(name, args.repeats, not args.warm_fake_cache, args.switch_off)
        m, w, c = result["medians"], result["wall"], result["compile only"]
        logs[name] = result["log"]
        ratio_default = m["ours default"] / m["torch default"]
        ratio_min_cut = m["ours min-cut"] / m["torch min-cut"]
        # The same ratio with the eager compute taken out of both sides: compile overhead alone.
        overhead_ratio = (m["ours default"] - m["eager"]) / (m["torch default"] - m["eager"])
        print(f"{name:<14}{m['eager']:8.3f}{m['ours default']:10.3f}{m['torch default']:11.3f}{ratio_default:7.2f}"
              f"{m['ours min-cut']:10.3f}{m['torch min-cut']:10.3f}{ratio_min_cut:7.2f}{overhead_ratio:13.2f}"
              f"{w['ours default'] / w['torch default']:12.2f}"
              f"{c['ours default']:24.3f}{c['torch default']:11.3f}{c['ours default'] / c['torch default']:7.2f}"
              f"{c['ours min-cut'] / c['torch min-cut']:10.2f}"
              + (f"{m['ours default, switch off'] / m['torch default']:>12.2f}"
                 f"{m['ours min-cut, switch off'] / m['torch min-cut']:>6.2f}" if args.switch_off else ""),
              flush=True)
    for name, log in logs.items():
        print(f"\nour stages, {name} (last default compile):\n{log.format()}")


if __name__ == "__main__":
    main()
