"""Measured memory vs the partitioner's prediction, per memory budget, and CPU offload cost.

For the GPT-2-small-shaped decoder: for each partitioner (default, min cut, 10 budgets,
min cut + offload of the largest saved values) one compiled training step is measured:
activation memory held between forward and backward (allocated after forward - before),
against the plan's predicted device saved bytes; peak memory above the fixed memory
(parameters, inputs; gradients start as None) against the partition's predicted peak
(`Partition.memory`: a liveness simulation of forward and backward, gradients included);
step time (median). Then offload vs no offload: peak cut and step-time cost, as ratios.
Every partitioner's gradients are checked against eager's first. On the CPU (no allocator
statistics) held and peak memory are measured by `LiveStorageCounter` in one extra step.

    python benchmarks/gpu_partition.py                       # CUDA, GPT-2-small shape, batch 8, seq 512
    python benchmarks/gpu_partition.py --device cpu --small  # smoke test on CPU
    python benchmarks/gpu_partition.py --device cpu --predict-only [--vocab 8192]  # predictions only
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from aotgraph import aot_export_joint, aot_module, default_partition, min_cut_rematerialization_partition, models  # noqa: E402,E501
from aotgraph.partition import offload_early, offload_large, partition, partition_for  # noqa: E402
from aotgraph.report.memory import LiveStorageCounter  # noqa: E402

BUDGETS = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]


def make_model(args):
    torch.manual_seed(0)
    if args.small:
        model, inputs = models.gpt(batch=2, seq=32, layers=2)
    else:
        model, inputs = models.gpt(batch=args.batch, seq=args.seq, vocab=args.vocab, dim=768, heads=12, layers=12)
    return model.to(args.device), tuple(t.to(args.device) for t in inputs)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def allocated(device):
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else None


def counted_memory(model, compiled, inputs):
    """(held after forward, peak) of one step, counted by live storages (devices without
    allocator statistics)."""
    model.zero_grad(set_to_none=True)
    counter = LiveStorageCounter([*model.parameters(), *model.buffers(), *inputs])
    with counter:
        counter.phase = "forward"
        loss = compiled(*inputs)
        held = counter.live_bytes()
        counter.phase = "backward"
        loss.backward()
    return held, max(counter.peaks.values())


def measure(model, inputs, partition_fn, args):
    """(partition, activation bytes held after forward, peak above fixed, median step seconds)."""
    device = torch.device(args.device)
    compiled = aot_module(model, partition_fn=partition_fn)
    model.zero_grad(set_to_none=True)
    compiled(*inputs).backward()  # compile + warm up, and check the gradients against eager's
    for param, expected in zip(model.parameters(), args.reference_grads):
        torch.testing.assert_close(param.grad, expected, rtol=1e-3, atol=1e-4)
    partition = next(iter(compiled.aotgraph_entries.values())).partition
    times, held, peak = [], None, None
    for step in range(args.steps):
        model.zero_grad(set_to_none=True)
        gc.collect()
        sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        before = allocated(device)
        start = time.perf_counter()
        loss = compiled(*inputs)
        sync(device)
        after_forward = allocated(device)
        loss.backward()
        sync(device)
        times.append(time.perf_counter() - start)
        if before is not None and step == 0:
            held = after_forward - before
            peak = torch.cuda.max_memory_allocated(device) - before
        del loss
    if device.type != "cuda":
        held, peak = counted_memory(model, compiled, inputs)
    return partition, held, peak, statistics.median(times)


def largest_saved_threshold(model, inputs, args, share: float) -> int:
    """The size above which the largest saved values make up `share` of the min-cut plan's bytes."""
    compiled = aot_module(model, partition_fn=min_cut_rematerialization_partition)
    compiled(*inputs).backward()
    partition = next(iter(compiled.aotgraph_entries.values())).partition
    sizes = sorted((v.nbytes for v in partition.saved if v.producer != "input"), reverse=True)
    total, covered = sum(sizes), 0
    for size in sizes:
        covered += size
        if covered >= share * total:
            return size
    return 1


def fmt(value):
    return "-" if value is None else f"{value / 2**20:.1f}"


def ratio(measured, predicted):
    return f"{measured / predicted:10.3f}" if measured is not None and predicted else "         -"


def predict_only(model, inputs):
    """The plans' predicted saved bytes and peaks, from capture and partition alone (e.g. the
    GPU-sized model on a CPU: the joint graph is captured on fake tensors)."""
    params = dict(model.named_parameters())
    joint = aot_export_joint(lambda state, *args: torch.func.functional_call(model, state, args), (params, *inputs))
    runs = [("default", default_partition), ("mincut", min_cut_rematerialization_partition)]
    runs += [(f"budget {b:.1f}", partition_for(budget=b)) for b in BUDGETS]
    print(f"{'partitioner':<14}{'pred saved MiB':>15}{'pred fwd peak':>14}{'pred bwd peak':>14}  peak at")
    for name, partition_fn in runs:
        memory = partition(joint, partition_fn).memory
        print(f"{name:<14}{fmt(memory.saved_bytes):>15}{fmt(memory.forward_peak):>14}{fmt(memory.backward_peak):>14}"
              f"  {memory.peak_step.node}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="a 2-layer GPT instead of GPT-2 small (smoke test)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=50257,
                        help="GPT-2's 50257 makes the loss head's transients the peak; smaller shows activations")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--offload-share", type=float, default=0.7,
                        help="offload the largest saved values that make up this share of saved bytes")
    parser.add_argument("--offload-before", type=float, default=0.5,
                        help="offload_early: offload saved values produced in this first share of the forward")
    parser.add_argument("--offload-min-bytes", type=int, default=1 << 20, help="offload_early: smallest value offloaded")
    parser.add_argument("--predict-only", action="store_true",
                        help="capture and partition on --device (fake tensors), print predictions, run nothing")
    args = parser.parse_args()
    model, inputs = make_model(args)
    if args.predict_only:
        return predict_only(model, inputs)
    device = torch.device(args.device)
    model.zero_grad(set_to_none=True)
    model(*inputs).backward()
    args.reference_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    fixed = allocated(device)
    print(f"device {args.device}, torch {torch.__version__}, fixed memory (params + inputs): {fmt(fixed)} MiB")
    threshold = largest_saved_threshold(model, inputs, args, args.offload_share)
    runs = [("default", default_partition), ("mincut", min_cut_rematerialization_partition)]
    runs += [(f"budget {b:.1f}", partition_for(budget=b)) for b in BUDGETS]
    offload_runs = [(f"mincut+offload>={threshold // 1024}KiB", partition_for(policy=offload_large(threshold))),
                    (f"mincut+offload first {args.offload_before:.0%}",
                     partition_for(policy=offload_early(args.offload_min_bytes, before=args.offload_before)))]
    runs += offload_runs
    print("MiB above the fixed memory; pred = predicted (saved: the plan's device saved bytes; peak: the "
          "liveness simulation's max of forward and backward peaks)")
    print(f"{'partitioner':<26}{'pred saved':>11}{'held':>9}{'held/pred':>10}{'pred peak':>10}{'peak':>9}"
          f"{'peak/pred':>10}{'step ms':>9}{'recompute GFLOP':>16}")
    results = {}
    for name, partition_fn in runs:
        measured, held, peak, seconds = measure(model, inputs, partition_fn, args)
        plan = measured.plan
        predicted = plan.device_saved_bytes if plan else measured.memory.saved_bytes
        predicted_peak = measured.memory.peak
        flops = f"{plan.recompute_flops / 1e9:16.3f}" if plan else "               -"
        print(f"{name:<26}{fmt(predicted):>11}{fmt(held):>9}{ratio(held, predicted)}{fmt(predicted_peak):>10}"
              f"{fmt(peak):>9}{ratio(peak, predicted_peak)}{seconds * 1e3:9.1f}{flops}")
        results[name] = (held, peak, seconds, predicted_peak)
    budget_runs = [results[f"budget {b:.1f}"] for b in BUDGETS]
    if budget_runs[0][1] is not None:
        peaks = [r[1] for r in budget_runs]
        monotone = all(a >= b for a, b in zip(peaks, peaks[1:]))
        worst = max(abs(r[1] / r[3] - 1) for r in budget_runs)
        print(f"peak memory monotone over budgets: {monotone}; worst |peak / predicted peak - 1| over budgets: "
              f"{worst:.1%} ({'within' if worst <= 0.10 else 'outside'} +-10 %)")
    base = results["mincut"]
    for name, _ in offload_runs:
        offloaded = results[name]
        print(f"{name}: peak {offloaded[1] / base[1]:.3f}x of min cut's (cut {1 - offloaded[1] / base[1]:.1%}), "
              f"step time {offloaded[2] / base[2]:.3f}x")
    if args.device != "cuda":
        print(f"(on {args.device} memory is counted by live storages, and offload copies stay on the same device)")


if __name__ == "__main__":
    main()
