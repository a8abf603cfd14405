"""Compile time of a deep model with its blocks marked by ``torch.compiler.nested_compile_region``
(issue 23), against the same model compiled flat, through ``torch.compile(backend=aotgraph...)``
(``--api backend``: modes flat (the switch ``auto_regions`` off), marked, and found: unmarked blocks
found in Dynamo's graph, capture/repeated_blocks.py); or through ``aot_module`` with its repeated blocks
found without a marker (``--api module``: modes flat, the switch ``auto_regions`` off, and auto; and held: auto on a
model that holds all the layers but calls only `HELD_CALLED` of them, the compile cost of its
parameters alone as inputs: their fakes, placeholders, swaps, the repeated-layer search).

For each depth: a fresh model and ``torch._dynamo.reset()``, then the first call through its
backward, timed (CPU process time, one torch thread), after one uncounted warm-up round; each
mode `--repeats` times, interleaved, medians reported: that time, aotgraph's own share (capture +
joint passes + partition + compile stages of its CompileLog, wall), the median step (CPU process
time) over `--steps` later steps, the bytes the forward saves for the backward (the partition's
count: a region's saved views of its operands count as bytes of their own there), and the peak
bytes one step holds (the profiler's allocation events); "compile": the first call less that median
step (the first call runs one step's compute too, which grows with depth and is no compile time).
Ratios: 48 layers over 2, per mode. Through the backend, the marked compile split: the CPU
seconds inside our backend's calls, and the rest (Dynamo's tracing of every marked block, its guards).

    PYTHONPATH=src python benchmarks/region_compile_time.py [--compiler nop|inductor] [--layers 2,12,48]
        [--api backend|module]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch._inductor.config
import torch.nn as nn
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import aotgraph


HELD_CALLED = 2  # layers called by mode "held"


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, marked: bool):
        super().__init__()
        self.heads, self.marked = heads, marked
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc, self.out = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def body(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))

    marked_body = torch.compiler.nested_compile_region(body)

    def forward(self, x):
        return self.marked_body(x) if self.marked else self.body(x)


class Decoder(nn.Module):
    """`layers` blocks, of which the first `called` (all: None) run."""

    def __init__(self, layers: int, marked: bool, vocab: int = 256, dim: int = 64, heads: int = 4,
                 called: int | None = None):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, marked) for _ in range(layers))
        self.head = nn.Linear(dim, vocab)
        self.called = layers if called is None else called

    def forward(self, idx, targets):
        x = self.tok(idx)
        for block in self.blocks[:self.called]:
            x = block(x)
        return F.cross_entropy(self.head(x).flatten(0, 1), targets.flatten())


def peak_bytes(step) -> int:
    """The peak of the bytes `step()` holds allocated above what it started with, from the
    profiler's allocation events (the CPU allocator keeps no peak of its own)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e for e in prof.events() if e.cpu_memory_usage), key=lambda e: e.time_range.start)
    held = peak = 0
    for event in events:
        held += event.cpu_memory_usage
        peak = max(peak, held)
    return peak


def measure(layers: int, mode: str, compiler: str, steps: int, dim: int = 64) -> dict:
    """First call through backward, median step and saved bytes of one fresh model in `mode`:
    flat or marked through the backend, flat or auto through aot_module."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = Decoder(layers, mode == "marked", dim=dim, called=min(layers, HELD_CALLED) if mode == "held" else None)
    idx, targets = torch.randint(0, 256, (4, 32)), torch.randint(0, 256, (4, 32))
    disabled = aotgraph.config.disabled
    inside_backend: list[float] = []  # CPU seconds of each call of our backend (capture, partition, compile)
    through_backend = mode in ("flat", "marked", "found")
    if through_backend:
        backend = aotgraph.backend(compiler=compiler)
        compiled = torch.compile(model, backend=_timed(backend, inside_backend), dynamic=False)
    else:
        compiled = aotgraph.aot_module(model, compiler)
    aotgraph.config.disabled = disabled | ({"auto_regions"} if mode in ("flat", "module flat") else set())
    try:
        start = time.process_time()
        compiled(idx, targets).backward()
        first = time.process_time() - start
    finally:
        aotgraph.config.disabled = disabled
    entries = backend.entries if through_backend else list(compiled.aotgraph_entries.values())
    ours = sum(e.log.seconds(stage) for e in entries for stage in ("capture", "joint passes", "partition", "compile"))
    times = []
    for _ in range(steps):
        start = time.process_time()
        compiled(idx, targets).backward()
        times.append(time.process_time() - start)
    saved = sum(entry.partition.saved_bytes for entry in entries)
    peak = peak_bytes(lambda: compiled(idx, targets).backward())
    step = statistics.median(times)
    return {"first": first, "compile": first - step, "ours": ours, "step": step, "saved": saved, "peak": peak,
            "in_backend": sum(inside_backend)}


def _timed(backend, seconds: list):
    """`backend`, with the CPU time of each call appended to `seconds`: the rest of a first call
    through ``torch.compile`` (less one step) is Dynamo's own work (tracing, guards)."""
    def timed_backend(graph_module, example_inputs):
        start = time.process_time()
        try:
            return backend(graph_module, example_inputs)
        finally:
            seconds.append(time.process_time() - start)
    return timed_backend


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--compiler", default="nop")
    parser.add_argument("--layers", default="2,12,48")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--api", default="backend", choices=("backend", "module"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    aotgraph.config.disk_cache = "0"  # every compile is a cold one
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp()
    torch._inductor.config.fx_graph_cache = False
    depths = [int(n) for n in args.layers.split(",")]
    print(f"torch {torch.__version__}, compiler {args.compiler}")
    print(f"{'layers':>6} {'mode':>11} {'first call s':>12} {'compile s':>9} {'aotgraph s':>10} {'step ms':>8} "
          f"{'saved MB':>8} {'peak MB':>8}")
    # Warm-up, not counted: one-time imports and setup, at another width so that no later graph
    # or kernel is found in Inductor's caches (its FX graph cache is off; its kernel cache is new).
    modes = ("flat", "marked", "found") if args.api == "backend" else ("module flat", "auto", "held")
    for mode in modes:
        measure(min(depths), mode, args.compiler, 1, dim=48)
    results = {}
    for layers in depths:
        runs = {mode: [] for mode in modes}
        for _ in range(args.repeats):  # interleaved: a burst of load on the machine hits every mode
            for mode in modes:
                runs[mode].append(measure(layers, mode, args.compiler, args.steps))
        for mode in modes:
            r = results[layers, mode] = {k: statistics.median(run[k] for run in runs[mode]) for k in runs[mode][0]}
            print(f"{layers:>6} {mode:>11} {r['first']:>12.3f} {r['compile']:>9.3f} {r['ours']:>10.3f} {r['step'] * 1e3:>8.1f} "
                  f"{r['saved'] / 2**20:>8.2f} {r['peak'] / 2**20:>8.2f}", flush=True)
    deepest, shallowest = max(depths), min(depths)
    for mode in modes:
        first = results[deepest, mode]["first"] / results[shallowest, mode]["first"]
        compile_only = results[deepest, mode]["compile"] / results[shallowest, mode]["compile"]
        ours = results[deepest, mode]["ours"] / results[shallowest, mode]["ours"]
        print(f"{mode}: {deepest}/{shallowest} layers first call {first:.2f}x, compile only {compile_only:.2f}x, "
              f"aotgraph's stages {ours:.2f}x")
    for layers in depths if args.api == "backend" else ():
        for mode in modes:
            r = results[layers, mode]
            print(f"{layers} layers {mode}: compile {r['compile']:.3f} s = in our backend {r['in_backend']:.3f} s (CPU) + "
                  f"Dynamo and the rest {r['compile'] - r['in_backend']:.3f} s")
    for layers in depths:
        flat = results[layers, modes[0]]
        for mode in modes[1:] if args.api == "backend" else modes[1:2]:
            reused = results[layers, mode]
            print(f"{layers} layers {mode}/flat: compile {reused['compile'] / flat['compile']:.3f}x, "
                  f"step {reused['step'] / flat['step']:.3f}x, saved {reused['saved'] / flat['saved']:.3f}x, "
                  f"peak {reused['peak'] / flat['peak']:.3f}x")


if __name__ == "__main__":
    main()
