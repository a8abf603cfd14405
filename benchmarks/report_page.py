"""The HTML report's cost: building the Report and its page, the page's size, and how long
headless Chromium takes to draw its joint graph (overview, and with ~1,000 or all nodes
expanded by a search), on the demo model and on a chain of 10,000 nodes.

    PYTHONPATH=src python benchmarks/report_page.py

Prints one row per graph: nodes, build s (Report), page s (HTML), page MiB, paint ms (overview,
search tanh, search "a": nearly every node), median of `--repeats` Chromium loads each.
"""
import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from aotgraph import aot_function, aot_module, default_partition, models
from aotgraph.explain import input_names
from aotgraph.report import build_report, format_html

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chain(x, w):
    for _ in range(1000):
        x = torch.tanh(x * w) + x
    return x.sum()


def paint_ms(page: Path, fragment: str) -> float:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([shutil.which("chromium"), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                               page.resolve().as_uri() + fragment], capture_output=True, text=True, timeout=120)
    return float(re.search(r'<body[^>]*data-paint-ms="([0-9.]+)"', done.stdout).group(1))


def measure(name, entry, program, inputs, names, repeats):
    start = time.perf_counter()
    report = build_report(entry, program, inputs, names)
    built = time.perf_counter() - start
    start = time.perf_counter()
    page = format_html(report)
    written = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "report.html"
        path.write_text(page)
        paints = [statistics.median(paint_ms(path, fragment) for _ in range(repeats))
                  for fragment in ("", "#search=tanh", "#search=a")] if shutil.which("chromium") else []
    print(f"| {name} | {len(report.joint.nodes)} | {built:.2f} | {written:.2f} | {len(page) / 2**20:.2f} | "
          + " / ".join(f"{p:.1f}" for p in paints) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| graph | nodes | build s | page s | page MiB | paint ms: overview / search tanh / search a |")
    print("|---|---|---|---|---|---|")
    torch.manual_seed(0)
    model, inputs = models.gpt(layers=2)
    compiled = aot_module(model)
    compiled(*inputs).backward()
    entry = next(iter(compiled.aotgraph_entries.values()))
    measure("demo GPT (2 layers), min cut", entry, model, inputs, input_names(model, inputs), args.repeats)
    compiled = aot_function(chain, partition_fn=default_partition)
    x, w = torch.randn(4, 4), torch.randn(4, 4, requires_grad=True)
    compiled(x, w).backward()
    entry = next(iter(compiled.aotgraph_entries.values()))
    measure("chain of tanh (1000 steps), default", entry, chain, (x, w), None, args.repeats)


if __name__ == "__main__":
    main()
