"""What the runtime asserts on unbacked values cost per call (issue 17).

The programs of tests/capture/test_runtime_asserts.py (training calls: forward and backward),
under torch.compile with Dynamo's capture_scalar_outputs and capture_dynamic_output_shape_ops
on: aotgraph's eager compiler with its asserts, the same with the switch ``runtime_asserts``
off, and torch's own ``aot_eager`` backend (whose graphs carry torch's asserts). Prints the
median time per call over repeats, and the ratios asserts on / off and ours / aot_eager.

    PYTHONPATH=src python benchmarks/runtime_asserts.py [--calls 200] [--repeats 7]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

import aotgraph
from aotgraph import config

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "capture"))
import test_runtime_asserts as programs  # noqa: E402


def per_call_ms(program, backend, calls: int, repeats: int) -> float:
    torch._dynamo.reset()
    compiled = torch.compile(program, backend=backend)
    x, w = programs._inputs(0, program)
    times = []
    for _ in range(repeats + 1):  # the first round compiles and warms up
        start = time.perf_counter()
        for _ in range(calls):
            compiled(x, w).sum().backward()
        times.append((time.perf_counter() - start) / calls * 1e3)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch._dynamo.config.capture_scalar_outputs = True
    torch._dynamo.config.capture_dynamic_output_shape_ops = True
    print(f"torch {torch.__version__}; median ms per training call over {args.repeats} x {args.calls} calls")
    print(f"{'program':<20} {'asserts':>8} {'off':>8} {'aot_eager':>10} {'on/off':>7} {'on/aot_eager':>13}")
    for program in programs.PROGRAMS:
        on = per_call_ms(program, aotgraph.backend(compiler="eager"), args.calls, args.repeats)
        config.disabled = config.disabled | {"runtime_asserts"}
        off = per_call_ms(program, aotgraph.backend(compiler="eager"), args.calls, args.repeats)
        config.disabled = config.disabled - {"runtime_asserts"}
        torch_time = per_call_ms(program, "aot_eager", args.calls, args.repeats)
        print(f"{program.__name__:<20} {on:8.3f} {off:8.3f} {torch_time:10.3f} {on / off:7.3f} {on / torch_time:13.3f}")


if __name__ == "__main__":
    main()
