"""Issue 23's Inductor check on the CPU, each way of compiling found regions side by side in one
process: the decoder of `region_compile_time.py` at several depths through ``aot_module(model,
"inductor")``, compiled
- ``flat``: no regions (switch ``auto_regions`` off);
- ``inlined``: regions found, given to Inductor inside the calling graph
  (``AOTGRAPH_DISABLE=regions_compiled_apart``; the default until session 25);
- ``apart``: regions found, each compiled once on its own with the stretches between them (the
  default since session 25).
Per depth and mode, in a fresh process with an Inductor cache of its own: the compile (first call
through backward less the median step, CPU seconds, one torch thread; Inductor's C++ builds run in
worker processes and are not in it; after an uncounted warm-up compile at another width) and the
first call's wall seconds (builds included). Then, in this process, the step in interleaved rounds (every mode's compiled model steps
`--steps` times per round, `--rounds` rounds; median of the rounds' medians), and the peak bytes
of one step (the profiler's allocation events, as `region_compile_time.peak_bytes`). Ratios:
each mode's step and peak over flat's at the same depth, and each mode's compile at the deepest
depth over its own at the shallowest (issue 23: <= 1.5x, step within 3 %, peak <=; at 2 layers
every mode compiles flat: regions are found from three repeats).

    PYTHONPATH=src python benchmarks/region_step_ab.py [--layers 2,12,48] [--rounds 15] [--steps 5]
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

import torch
import torch._inductor.config

import aotgraph
from region_compile_time import Decoder, peak_bytes

MODES = ("flat", "inlined", "apart")


def compiled_in_mode(layers: int, mode: str, dim: int = 64):
    """(step function, compile seconds) of a fresh decoder compiled in `mode`."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = Decoder(layers, False, dim=dim)
    idx, targets = torch.randint(0, 256, (4, 32)), torch.randint(0, 256, (4, 32))
    compiled = aotgraph.aot_module(model, "inductor")
    saved = aotgraph.config.disabled, aotgraph.config.opted_in
    if mode == "flat":
        aotgraph.config.disabled = saved[0] | {"auto_regions"}
    elif mode == "inlined":
        aotgraph.config.disabled = saved[0] | {"regions_compiled_apart"}
    elif mode == "apart":  # (the default; opted in for trees where it was off by default)
        aotgraph.config.opted_in = saved[1] | {"regions_compiled_apart"}
    try:
        start, wall = time.process_time(), time.perf_counter()
        compiled(idx, targets).backward()
        first, first_wall = time.process_time() - start, time.perf_counter() - wall
    finally:
        aotgraph.config.disabled, aotgraph.config.opted_in = saved

    def step():
        compiled(idx, targets).backward()

    steps = []
    for _ in range(3):
        start = time.process_time()
        step()
        steps.append(time.process_time() - start)
    return step, (first - statistics.median(steps), first_wall)


def compile_in_child(layers: int, mode: str) -> tuple:
    """(compile CPU seconds, first call wall seconds) of `mode` at `layers`, in a fresh process
    with an Inductor cache directory of its own (in one process, a mode compiled after another
    finds the kernels that one built)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), *sys.path]))
    done = subprocess.run([sys.executable, __file__, "--child", str(layers), mode], env=env, capture_output=True,
                          text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return tuple(json.loads(done.stdout.strip().splitlines()[-1]))


def _setup() -> None:
    torch.set_num_threads(1)
    aotgraph.config.disk_cache = "0"
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp()
    torch._inductor.config.fx_graph_cache = False


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        _setup()
        compiled_in_mode(3, "flat", dim=32)  # one-time imports and setup, at another width
        print(json.dumps(compiled_in_mode(int(sys.argv[2]), sys.argv[3])[1]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", default="2,12,48")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    _setup()
    depths = [int(n) for n in args.layers.split(",")]
    compiles: dict = {}
    for mode in MODES:  # warm-up, not counted: one-time imports and setup, at another width
        compiled_in_mode(3, mode, dim=32)
    print(f"torch {torch.__version__}; decoder through aot_module(model, 'inductor'), CPU, one thread")
    print(f"{'layers':>6} {'mode':>8} {'compile s':>9} {'first wall s':>12} {'step ms':>8} {'step/flat':>9} "
          f"{'peak MB':>8} {'peak/flat':>9}")
    for layers in depths:
        steps, rows = {}, {}
        for mode in MODES:
            compiles[layers, mode] = compile_in_child(layers, mode)
            steps[mode] = compiled_in_mode(layers, mode)[0]
        times = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            for mode in MODES:
                round_times = []
                for _ in range(args.steps):
                    start = time.process_time()
                    steps[mode]()
                    round_times.append(time.process_time() - start)
                times[mode].append(statistics.median(round_times))
        for mode in MODES:
            rows[mode] = statistics.median(times[mode]), peak_bytes(steps[mode])
        for mode in MODES:
            step, peak = rows[mode]
            print(f"{layers:>6} {mode:>8} {compiles[layers, mode][0]:>9.2f} {compiles[layers, mode][1]:>12.2f} "
                  f"{step * 1e3:>8.2f} "
                  f"{step / rows['flat'][0]:>9.3f} {peak / 2**20:>8.2f} {peak / rows['flat'][1]:>9.3f}")
    low, high = min(depths), max(depths)
    for mode in MODES:
        cpu, wall = (compiles[high, mode][i] / compiles[low, mode][i] for i in (0, 1))
        print(f"{mode}: {high}/{low} layers compile (CPU) {cpu:.2f}x, first call (wall) {wall:.2f}x")


if __name__ == "__main__":
    main()
