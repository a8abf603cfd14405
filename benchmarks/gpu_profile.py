"""Where GPU step time goes: torch.compile(inductor) vs torch.compile(aotgraph) on the
gpu_train models, with torch.profiler. Prints, per model and config: kernels per step,
GPU time per step, the top kernels, GPU time per kernel family side by side, and for
aotgraph the op counts of its graphs. With ``--code``, Inductor's generated code of each
configuration (each compiled into a cold Inductor cache of its own) goes to
``$OUT/<model>_<config>_<partition>_code.tar.gz`` for diffing.

    PYTHONPATH=src python benchmarks/gpu_profile.py [--models resnet50 gpt2_small] [--code]
"""
from __future__ import annotations

import argparse
import collections
import cProfile
import gc
import io
import os
import pstats
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_train import MODELS, compile_model, fresh_compile_state  # noqa: E402

# Kernel name fragments -> family, first match wins.
FAMILIES = (("gemm", ("gemm", "nvjet", "cutlass", "sm90_", "sm80_", "cublas", "matmul")),
            ("attention", ("flash", "fmha", "attention", "efficient")),
            ("conv", ("conv", "cudnn", "implicit")),
            ("triton reduction", ("triton_red", "triton_per")),
            ("triton pointwise", ("triton_poi",)),
            ("triton other", ("triton",)),
            ("copy / memset", ("memcpy", "memset", "copy", "fill")),
            ("aten other", ("at::native", "void at::")))


def family(name: str) -> str:
    lowered = name.lower()
    for label, fragments in FAMILIES:
        if any(f in lowered for f in fragments):
            return label
    return "other"


def saved_summary(bw_module) -> str:
    """Count and bytes of the backward's non-tangent inputs: what the forward saved for it."""
    saved = [n.meta.get("val") for n in bw_module.graph.nodes
             if n.op == "placeholder" and not n.name.startswith("tangents")]
    tensors = [v for v in saved if isinstance(v, torch.Tensor)]
    return f"{len(tensors)} saved, {sum(t.numel() * t.element_size() for t in tensors) / 2**20:.1f} MiB"


def dump_torch_partitions(out_dir: str, model_name: str):
    """Wrap the partitioner torch.compile's Inductor backend calls, writing each fw/bw pair."""
    import torch._inductor.compile_fx as compile_fx

    original = compile_fx.min_cut_rematerialization_partition
    counter = [0]

    def recording(*args, **kwargs):
        fw, bw = original(*args, **kwargs)
        counter[0] += 1
        with open(os.path.join(out_dir, f"{model_name}_torch_graphs.txt"), "a") as f:
            f.write(f"##### partition {counter[0]}: fwd {len(fw.graph.nodes)} nodes, bwd {len(bw.graph.nodes)} nodes, "
                    f"{saved_summary(bw)}\n{fw.print_readable(False)}\n{bw.print_readable(False)}\n")
        print(f"  torch partition {counter[0]}: {saved_summary(bw)}", flush=True)
        return fw, bw

    compile_fx.min_cut_rematerialization_partition = recording
    return lambda: setattr(compile_fx, "min_cut_rematerialization_partition", original)


def _archive_generated_code(root: str, path: str) -> None:
    """Every Python module Inductor generated under `root` (wrappers and Triton kernels) into one tarball."""
    with tarfile.open(path, "w:gz") as archive:
        for folder, _, names in os.walk(root):
            for name in names:
                if name.endswith(".py"):
                    archive.add(os.path.join(folder, name), arcname=os.path.relpath(os.path.join(folder, name), root))


def profile(model_name: str, config: str, partition: str, out_dir: str, code: bool, steps: int = 3) -> dict:
    torch._dynamo.reset()
    torch.manual_seed(0)
    code_root = None
    if code:  # a cold Inductor cache of its own: its generated modules are this configuration's code
        code_root = tempfile.mkdtemp(prefix="aotgraph_gpu_profile_")
        fresh_compile_state(code_root, "cache")
    restore = dump_torch_partitions(out_dir, model_name) if config == "inductor" else (lambda: None)
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

    try:
        for _ in range(4):
            step()
    finally:
        restore()
        if code_root is not None:
            _archive_generated_code(code_root, os.path.join(out_dir, f"{model_name}_{config}_{partition}_code.tar.gz"))
    torch.cuda.synchronize()
    host = []
    for _ in range(10):  # host time to enqueue one step (the GPU keeps up only when the host is the bottleneck)
        begin = time.perf_counter()
        step()
        host.append((time.perf_counter() - begin) * 1e3)
        torch.cuda.synchronize()
    host_ms = statistics.median(host)
    gc.disable()
    host_nogc = []
    for _ in range(10):
        begin = time.perf_counter()
        step()
        host_nogc.append((time.perf_counter() - begin) * 1e3)
        torch.cuda.synchronize()
    gc.enable()
    profiler = cProfile.Profile()
    for _ in range(3):
        profiler.enable()
        step()
        profiler.disable()
        torch.cuda.synchronize()
    python_profile = io.StringIO()
    stats = pstats.Stats(profiler, stream=python_profile)
    stats.sort_stats("tottime").print_stats(35)
    stats.sort_stats("cumulative").print_stats(50)
    top_level = collections.Counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as cpu_prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    for e in cpu_prof.events():
        if e.cpu_parent is None or (e.cpu_parent is not None and e.cpu_parent.cpu_parent is None):
            depth = "  " if e.cpu_parent is not None else ""
            top_level[depth + e.name[:90]] += e.cpu_time_total / steps
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    by_name, counts, by_family = collections.Counter(), collections.Counter(), collections.Counter()
    for e in kernels:
        t = e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time_total
        by_name[e.name[:100]] += t / steps
        counts[e.name[:100]] += 1
        by_family[family(e.name)] += t / steps
    total = sum(by_name.values())
    with open(os.path.join(out_dir, f"{model_name}_{config}_{partition}_kernels.txt"), "w") as f:
        for name, t in sorted(by_name.items()):  # every kernel, for diffing two configurations
            f.write(f"{counts[name] // steps:5d} {t / 1e3:8.3f} ms  {name}\n")
    lines = [f"\n== {model_name} {config} {partition}: {len(kernels) / steps:.0f} kernels/step, {total / 1e3:.2f} ms GPU/step,"
             f" host {host_ms:.2f} ms/step (median of 10 unsynchronized steps; {statistics.median(host_nogc):.2f} with gc off)"]
    lines.append("  host CPU time per step, top-level events (indented: their children):")
    for name, t in top_level.most_common(25):
        lines.append(f"  {t / 1e3:8.3f} ms  {name}")
    for name, t in by_name.most_common(40):
        lines.append(f"  {t / 1e3:8.3f} ms  x{counts[name] // steps:<4d} {name}")
    if backend is not None:
        for entry in getattr(backend, "entries", []) or []:
            for role, gm in (("fwd", entry.partition.forward), ("bwd", entry.partition.backward)):
                if gm is None:
                    continue
                ops = collections.Counter(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
                lines.append(f"  {role}: {sum(ops.values())} ops; top: {ops.most_common(12)}")
            lines.append(f"  saved: {len(entry.partition.saved)} values, {entry.partition.saved_bytes / 2**20:.1f} MiB"
                         f" ({saved_summary(entry.partition.backward)})")
            with open(os.path.join(out_dir, f"{model_name}_aotgraph_{partition}_graphs.txt"), "a") as f:
                f.write(f"##### {saved_summary(entry.partition.backward)}\n{entry.partition.forward.print_readable(False)}\n"
                        f"{entry.partition.backward.print_readable(False)}\n")
    lines.append("  Python profile of 3 steps (cProfile):")
    lines.extend("    " + line for line in python_profile.getvalue().splitlines())
    text = "\n".join(lines)
    with open(os.path.join(out_dir, f"{model_name}_{config}_{partition}_profile.txt"), "w") as f:
        f.write(text + "\n")
    print("\n".join(lines[:44 + 45]), flush=True)
    return dict(by_family=by_family, kernels=len(kernels) / steps, total=total, host=host_ms)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["resnet50", "gpt2_small"])
    parser.add_argument("--code", action="store_true", help="write Inductor's output code per configuration")
    parser.add_argument("--partitions", nargs="+", default=["mincut"], help="aotgraph partitioners to profile")
    args = parser.parse_args()
    out_dir = os.environ.get("OUT", "./out")
    os.makedirs(out_dir, exist_ok=True)
    print(torch.__version__, torch.cuda.get_device_name())
    summary = []
    for model_name in args.models:
        results = {}
        for config, partition in [("inductor", "-")] + [("aotgraph", p) for p in args.partitions]:
            try:
                results[config, partition] = profile(model_name, config, partition, out_dir, args.code)
            except Exception as error:  # one failure still prints the rest
                print(f"FAILED {model_name} {config} {partition}: {type(error).__name__}: {error}", flush=True)
        theirs = results.get(("inductor", "-"))
        for (config, partition), ours in results.items():
            if theirs is None or config == "inductor":
                continue
            summary.append(f"\n{model_name} aotgraph {partition}: GPU ms/step torch.compile {theirs['total'] / 1e3:.2f} "
                           f"({theirs['kernels']:.0f} kernels), aotgraph {ours['total'] / 1e3:.2f} ({ours['kernels']:.0f}); "
                           f"host ms/step torch.compile {theirs['host']:.2f}, aotgraph {ours['host']:.2f}")
            for name in sorted(set(theirs["by_family"]) | set(ours["by_family"])):
                a, b = theirs["by_family"][name] / 1e3, ours["by_family"][name] / 1e3
                summary.append(f"  {name:<18} torch {a:7.3f}  ours {b:7.3f}  diff {b - a:+7.3f} ms")
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
