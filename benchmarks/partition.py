"""Our min-cut partitioner vs torch's min_cut_rematerialization_partition, same joint graphs.

For each model: saved bytes (distinct storages outside the inputs), recompute FLOPs
(backward ops that read no tangent; pointwise ops count one FLOP per element) and partition
time (median), ours / torch; our plan at torch's saved bytes (budget = torch's bytes); our
zero-recompute plan (``recompute_budget=0``: only views and getitems recomputed); our default
plan's recompute FLOPs counted like torch's FlopCounterMode (matmul, convolution, attention
only); eager autograd's saved bytes. Then a 10-budget
sweep on the GPT-2-small-shaped decoder and the time to partition a ~10,000-node joint graph.

    PYTHONPATH=src python benchmarks/partition.py [--quick]
"""
from __future__ import annotations

import argparse
import copy
import gc
import statistics
import time

import torch
from torch._functorch.partitioners import min_cut_rematerialization_partition as torch_min_cut

from aotgraph import aot_export_joint, models
from aotgraph.graph.ops import FLOP_RULES, flops_of
from aotgraph.partition.budget import TIE_BREAK_LAM
from aotgraph.partition.mincut import JointNetwork, split_with_plan
from aotgraph.report.saved import eager_saved_tensors, recompute_flops, saved_storage_bytes

try:
    from torch.fx._lazy_graph_module import _use_lazy_graph_module
except ImportError:  # pragma: no cover
    _use_lazy_graph_module = None

MODELS = {
    "mlp": lambda: models.mlp(),
    "transformer": lambda: models.transformer_stack(),
    "gpt": lambda: models.gpt(layers=2),
    "gpt2_small": lambda: models.gpt2_small(batch=1, seq=64),
    "resnet": lambda: models.resnet(),
}


def joint_of(model, inputs):
    params = {**dict(model.named_parameters()), **dict(model.named_buffers())}

    def program(state, *args):
        return torch.func.functional_call(model, state, args)

    return aot_export_joint(program, (params, *inputs))


def run_torch(joint):
    """Torch's partitioner on a private copy (it edits the graph it is given)."""
    module = copy.deepcopy(joint.graph_module)
    inputs = [n.meta["val"] for n in module.graph.find_nodes(op="placeholder")]
    start = time.perf_counter()
    forward, backward = torch_min_cut(module, inputs, num_fwd_outputs=joint.num_fwd_outputs)
    return time.perf_counter() - start, forward, backward


def run_ours(joint, **options):
    """(seconds, forward, backward, plan) of our min cut, called as the pipeline calls it."""
    start = time.perf_counter()
    forward, backward, plan = split_with_plan(joint.graph_module, num_fwd_outputs=joint.num_fwd_outputs, **options)
    return time.perf_counter() - start, forward, backward, plan


def measure(joint, forward, backward):
    return saved_storage_bytes(forward, joint.num_fwd_outputs), sum(f for _, _, f in recompute_flops(backward))


def matmul_flops(backward):
    """Recompute FLOPs as FlopCounterMode counts them: matmul, convolution and attention only."""
    return sum(f for _, op, f in recompute_flops(backward) if op in FLOP_RULES)


def median_time(fn, repeats, full_collect=False):
    """Median of `repeats` timed calls. The collector is off during each call and the young
    generations are collected after it, outside the timing, so that no call pays for
    collecting another's garbage (torch's and ours alternate in this process). With
    `full_collect`, a full collection precedes each call instead: it also empties CPython's
    free lists, which charges the next call a fixed ~0.5 ms here on the CPU (an empty
    GraphModule costs 0.18 ms after one, 0.035 ms otherwise) whatever the partitioner does.
    """
    times = []
    for _ in range(repeats):
        if full_collect:
            gc.collect()
        gc.disable()
        try:
            times.append(fn()[0])
        finally:
            gc.enable()
        gc.collect(1)
    return statistics.median(times)


def compare(name, repeats):
    torch.manual_seed(0)
    model, inputs = MODELS[name]()
    model.train()
    joint = joint_of(model, inputs)
    _, t_fw, t_bw = run_torch(joint)
    _, o_fw, o_bw, _ = run_ours(joint)
    t_bytes, t_flops = measure(joint, t_fw, t_bw)
    o_bytes, o_flops = measure(joint, o_fw, o_bw)
    _, b_fw, b_bw, _ = run_ours(joint, memory_budget=max(t_bytes, 2))
    b_bytes, b_flops = measure(joint, b_fw, b_bw)
    _, z_fw, z_bw, _ = run_ours(joint, recompute_budget=0)
    z_bytes, z_flops = measure(joint, z_fw, z_bw)
    t_time = median_time(lambda: run_torch(joint), repeats)
    o_time = median_time(lambda: run_ours(joint), repeats)
    t_full = median_time(lambda: run_torch(joint), repeats, full_collect=True)
    o_full = median_time(lambda: run_ours(joint), repeats, full_collect=True)
    lazy = ""
    if _use_lazy_graph_module is not None:
        with _use_lazy_graph_module(True):
            t_lazy = median_time(lambda: run_torch(joint), repeats)
            o_lazy = median_time(lambda: run_ours(joint), repeats)
        lazy = f"{o_lazy / t_lazy:10.3f}"
    _, eager_bytes = eager_saved_tensors(model, inputs)
    forward_flops = sum(flops_of(n) for n in JointNetwork(joint.graph_module, joint.num_fwd_outputs, None).fwd_required)
    nodes = len(joint.graph_module.graph.nodes)
    print(f"{name:<12}{nodes:>6} {t_bytes:>11} {o_bytes:>11} {o_bytes / t_bytes:6.2f} "
          f"{t_flops:>11.3g} {o_flops:>11.3g} {_ratio(o_flops, t_flops):>7} "
          f"{b_bytes / t_bytes:8.2f} {_ratio(b_flops, t_flops):>7} "
          f"{t_time:8.3f} {o_time:8.3f} {o_time / t_time:7.3f}{o_full / t_full:7.3f}{lazy} {eager_bytes:>11} {o_bytes / eager_bytes:6.2f} "
          f"{o_flops / forward_flops:9.2e} {matmul_flops(o_bw):>8.3g} {z_bytes / t_bytes:7.2f} {z_flops:>7.3g}")


def _ratio(a, b):
    return f"{a / b:.2f}" if b else ("1.00" if a == b else "inf")


def budget_sweep():
    torch.manual_seed(0)
    model, inputs = models.gpt2_small(batch=1, seq=64)
    joint = joint_of(model, inputs)
    print("\nbudget sweep, GPT-2-small-shaped decoder (batch 1, seq 64); budget = fraction of default's saved bytes")
    print(f"{'budget':>7} {'budget B':>11} {'saved B':>11} {'recompute FLOPs':>16} {'time s':>7}")
    previous = None
    for fraction in [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]:
        seconds, _, _, plan = run_ours(joint, memory_budget=fraction)
        monotone = previous is None or plan.saved_bytes <= previous
        previous = plan.saved_bytes
        print(f"{fraction:>7.1f} {plan.budget:>11} {plan.saved_bytes:>11} {plan.recompute_flops:>16.4g} {seconds:>7.2f}"
              f"{'' if monotone else '  NOT MONOTONE'} {plan.note}")


def big_graph(layers):
    torch.manual_seed(0)
    model, inputs = models.gpt(layers=layers, dim=32, heads=2, seq=16, vocab=64, batch=1)
    joint = joint_of(model, inputs)
    nodes = len(joint.graph_module.graph.nodes)
    t_time = median_time(lambda: run_torch(joint), 1)
    o_time = median_time(lambda: run_ours(joint), 3)
    solve = median_time(lambda: _solve_only(joint), 3)
    print(f"\n{nodes}-node joint graph ({layers} layers): ours {o_time:.3f} s, torch {t_time:.3f} s, "
          f"ratio {o_time / t_time:.3f}; of ours, network + max-flow + plan {solve:.3f} s, "
          "the rest is copying fx nodes (our graph modules generate their Python lazily)")


def _solve_only(joint):
    start = time.perf_counter()
    network = JointNetwork(joint.graph_module, joint.num_fwd_outputs, None)
    network.plan(network.cut(TIE_BREAK_LAM))
    return time.perf_counter() - start, None, None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small models only, no sweep, no big graph")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    names = ["mlp", "gpt", "resnet"] if args.quick else list(MODELS)
    print("saved bytes: distinct storages outside inputs; FLOPs: backward ops reading no tangent; "
          "'@torch B': our plan with budget = torch's saved bytes; FLOP/fwd: our recompute FLOPs / forward FLOPs; "
          "mm FLOP: ours counted like FlopCounterMode (matmul/conv/attention only); "
          "'rb=0 B', FLOP: recompute_budget=0 plan, bytes / torch's and FLOPs; "
          "times: median of "
          f"{args.repeats}, young generations collected between calls; full: a full collection before each call "
          "(empties CPython's free lists: a fixed ~0.5 ms more per call); lazy: both with torch's lazy codegen")
    print(f"{'model':<12}{'nodes':>6} {'torch B':>11} {'ours B':>11} {'ratio':>6} {'torch FLOP':>11} {'ours FLOP':>11} "
          f"{'ratio':>7} {'@torch B':>8} {'FLOP':>7} {'torch s':>8} {'ours s':>8} {'ratio':>7}{'full':>7}{'lazy':>10} "
          f"{'eager B':>11} {'/eager':>6} {'FLOP/fwd':>9} {'mm FLOP':>8} {'rb=0 B':>7} {'FLOP':>7}")
    for name in names:
        compare(name, args.repeats)
    if not args.quick:
        budget_sweep()
        big_graph(layers=84)


if __name__ == "__main__":
    main()
