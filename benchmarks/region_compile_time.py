"""Compile time of a deep model with its blocks marked by ``torch.compiler.nested_compile_region``
(issue 23), against the same model compiled flat, through ``torch.compile(backend=aotgraph...)``.

For each depth: a fresh model and ``torch._dynamo.reset()``, then the first call through its
backward, timed (CPU process time, one torch thread), once flat and once marked, after one
uncounted warm-up round; reported:
that time, aotgraph's own share (capture + partition + compile stages of its CompileLog), then
the median step time over `--steps` later steps, and the bytes the forward saves for the
backward (the partition's count: the CPU has no allocator peak to read). Ratios: 48 layers over
2 layers, per mode.

    PYTHONPATH=src python benchmarks/region_compile_time.py [--compiler nop|inductor] [--layers 2,12,48]
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

import aotgraph


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
    def __init__(self, layers: int, marked: bool, vocab: int = 256, dim: int = 64, heads: int = 4):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, marked) for _ in range(layers))
        self.head = nn.Linear(dim, vocab)

    def forward(self, idx, targets):
        x = self.tok(idx)
        for block in self.blocks:
            x = block(x)
        return F.cross_entropy(self.head(x).flatten(0, 1), targets.flatten())


def measure(layers: int, marked: bool, compiler: str, steps: int, dim: int = 64) -> dict:
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = Decoder(layers, marked, dim=dim)
    idx, targets = torch.randint(0, 256, (4, 32)), torch.randint(0, 256, (4, 32))
    backend = aotgraph.backend(compiler=compiler)
    compiled = torch.compile(model, backend=backend, dynamic=False)
    start = time.process_time()
    compiled(idx, targets).backward()
    first = time.process_time() - start
    logs = backend.logs
    ours = sum(log.seconds(stage) for log in logs for stage in ("capture", "joint passes", "partition", "compile"))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        compiled(idx, targets).backward()
        times.append(time.perf_counter() - start)
    saved = sum(entry.partition.saved_bytes for entry in backend.entries)
    return {"first": first, "ours": ours, "step": statistics.median(times), "saved": saved}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--compiler", default="nop")
    parser.add_argument("--layers", default="2,12,48")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    aotgraph.config.disk_cache = "0"  # every compile is a cold one
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp()
    torch._inductor.config.fx_graph_cache = False
    depths = [int(n) for n in args.layers.split(",")]
    print(f"torch {torch.__version__}, compiler {args.compiler}")
    print(f"{'layers':>6} {'mode':>6} {'first call s':>12} {'aotgraph s':>10} {'step ms':>8} {'saved MB':>8}")
    # Warm-up, not counted: one-time imports and setup, at another width so that no later graph
    # or kernel is found in Inductor's caches (its FX graph cache is off; its kernel cache is new).
    measure(min(depths), True, args.compiler, 1, dim=48)
    measure(min(depths), False, args.compiler, 1, dim=48)
    results = {}
    for layers in depths:
        for marked in (False, True):
            mode = "marked" if marked else "flat"
            r = results[layers, mode] = measure(layers, marked, args.compiler, args.steps)
            print(f"{layers:>6} {mode:>6} {r['first']:>12.2f} {r['ours']:>10.2f} {r['step'] * 1e3:>8.1f} "
                  f"{r['saved'] / 2**20:>8.2f}", flush=True)
    deepest, shallowest = max(depths), min(depths)
    for mode in ("flat", "marked"):
        first = results[deepest, mode]["first"] / results[shallowest, mode]["first"]
        ours = results[deepest, mode]["ours"] / results[shallowest, mode]["ours"]
        print(f"{mode}: {deepest}/{shallowest} layers first call {first:.2f}x, aotgraph's stages {ours:.2f}x")
    for layers in depths:
        flat, marked = results[layers, "flat"], results[layers, "marked"]
        print(f"{layers} layers marked/flat: step {marked['step'] / flat['step']:.3f}x, "
              f"saved {marked['saved'] / flat['saved']:.3f}x")


if __name__ == "__main__":
    main()
