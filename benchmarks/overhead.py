"""Steady-state per-call overhead, ours vs torch's ``aot_function``, eager and a minimal
hand-written ``autograd.Function``, in one process.

Cases: (a) one ``add`` of two tensors that require grad, forward only; (b) the same with
backward; (c) a function of 13 tensor inputs (12 adds), forward only; (d) a 4-layer MLP
step (forward + backward); (e) two overlapping views of one base, one written in place
(both compile against the base; ours takes the key path on such calls, not the fast path). Per-call times are medians over ``--repeats`` timeit runs.
"ours" and "torch" both use their ``nop`` compiler (the graphs' fx code); "ours eager"
is our default compiler, which runs the same ATen ops from its own generated code.
Targets: (a) ours <= 1.5x the hand-written Function; every case ours <= 0.3x torch.

    PYTHONPATH=src python benchmarks/overhead.py [--repeats 15]
"""
from __future__ import annotations

import argparse
import copy
import functools
import operator
import statistics
import timeit

import torch
from functorch.compile import aot_function as torch_aot_function
from functorch.compile import aot_module as torch_aot_module
from functorch.compile import nop as torch_nop

import aotgraph
from aotgraph import models

aten = torch.ops.aten


class HandWrittenAdd(torch.autograd.Function):
    """The floor for a runtime built on autograd.Function: the ops, nothing else."""

    @staticmethod
    def forward(ctx, *tensors):
        ctx.num_inputs = len(tensors)
        return functools.reduce(aten.add.Tensor, tensors)

    @staticmethod
    def backward(ctx, grad):
        return (grad,) * ctx.num_inputs


def add(x, y):
    return x + y


def add_all(*xs):
    return functools.reduce(operator.add, xs)


def scale_first(a, b):
    a.mul_(1.0)
    return b + 1


def calibrated_timer(call, seconds_per_sample: float = 0.02) -> tuple[timeit.Timer, int]:
    timer = timeit.Timer(call)
    number, elapsed = timer.autorange()
    return timer, max(1, int(number * seconds_per_sample / elapsed))


def cases():
    """name -> {variant: zero-argument callable}."""
    x, y = torch.randn(4, requires_grad=True), torch.randn(4, requires_grad=True)
    xs = [torch.randn(4, requires_grad=True) for _ in range(13)]
    grad = torch.ones(4)
    ours_add, torch_add = aotgraph.aot_function(add, aotgraph.nop), torch_aot_function(add, torch_nop)
    ours_all, torch_all = aotgraph.aot_function(add_all, aotgraph.nop), torch_aot_function(add_all, torch_nop)
    eager_add, eager_all = aotgraph.aot_function(add), aotgraph.aot_function(add_all)

    def with_backward(f):
        return lambda: f(x, y).backward(grad)

    torch.manual_seed(0)
    module, (batch,) = models.mlp(layers=4)
    ours_mlp = aotgraph.aot_module(copy.deepcopy(module), aotgraph.nop)
    eager_mlp = aotgraph.aot_module(copy.deepcopy(module))
    torch_mlp = torch_aot_module(copy.deepcopy(module), torch_nop)

    def step(m):
        return lambda: m(batch).sum().backward()

    base = torch.randn(64)
    first, second = base[0:40], base[20:60]
    ours_views, torch_views = aotgraph.aot_function(scale_first, aotgraph.nop), torch_aot_function(scale_first, torch_nop)
    eager_views = aotgraph.aot_function(scale_first)

    return {
        "(a) add, forward": {"ours": lambda: ours_add(x, y), "ours eager": lambda: eager_add(x, y),
                             "torch": lambda: torch_add(x, y), "eager": lambda: add(x, y),
                             "hand Function": lambda: HandWrittenAdd.apply(x, y)},
        "(b) add, fwd+bwd": {"ours": with_backward(ours_add), "ours eager": with_backward(eager_add),
                             "torch": with_backward(torch_add), "eager": with_backward(add),
                             "hand Function": with_backward(HandWrittenAdd.apply)},
        "(c) 13 inputs, forward": {"ours": lambda: ours_all(*xs), "ours eager": lambda: eager_all(*xs),
                                   "torch": lambda: torch_all(*xs), "eager": lambda: add_all(*xs),
                                   "hand Function": lambda: HandWrittenAdd.apply(*xs)},
        "(d) 4-layer MLP step": {"ours": step(ours_mlp), "ours eager": step(eager_mlp), "torch": step(torch_mlp),
                                 "eager": step(module)},
        "(e) aliased views, mul_": {"ours": lambda: ours_views(first, second),
                                    "ours eager": lambda: eager_views(first, second),
                                    "torch": lambda: torch_views(first, second), "eager": lambda: scale_first(first, second)},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    all_cases = cases()
    for variants in all_cases.values():
        for call in variants.values():  # compile and warm up outside the timing
            for _ in range(3):
                call()
    print(f"torch {torch.__version__}; per-call medians of {args.repeats} timeit runs (microseconds)")
    print(f"{'case':<24}{'ours':>8}{'ours eager':>11}{'torch':>8}{'eager':>8}{'hand Fn':>9}"
          f"{'ours/torch':>12}{'ours/hand':>11}{'eager/torch':>13}{'eager/hand':>12}")
    for name, variants in all_cases.items():
        timers = {variant: calibrated_timer(call) for variant, call in variants.items()}
        # Interleave the variants repeat by repeat so drift on a shared machine hits all alike.
        samples: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.repeats):
            for variant, (timer, number) in timers.items():
                samples[variant].append(timer.timeit(number) / number)
        us = {v: statistics.median(s) * 1e6 for v, s in samples.items()}
        hand = us.get("hand Function", float("nan"))
        ours, ours_eager = us["ours"], us["ours eager"]
        print(f"{name:<24}{ours:8.1f}{ours_eager:11.1f}{us['torch']:8.1f}{us['eager']:8.1f}{hand:9.1f}"
              f"{ours / us['torch']:12.2f}{ours / hand:11.2f}{ours_eager / us['torch']:13.2f}{ours_eager / hand:12.2f}",
              flush=True)


if __name__ == "__main__":
    main()
