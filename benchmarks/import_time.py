"""`import aotgraph` against `import torch`: median wall time of fresh processes, alternated.

Target (issue 14): ratio <= 1.3. Also names any heavy torch package that `import aotgraph`
pulls in (Inductor, Dynamo, scipy are imported when first used).

    python benchmarks/import_time.py [--runs 15]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

HEAVY = ("torch._inductor", "torch._dynamo", "scipy")


def time_import(module: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
    return time.perf_counter() - start


def heavy_modules_loaded() -> list[str]:
    probe = f"import sys, aotgraph; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    return subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    time_import("torch")  # warm the file cache for both
    times: dict[str, list[float]] = {"torch": [], "aotgraph": []}
    ratios = []
    for _ in range(args.runs):
        for module in times:
            times[module].append(time_import(module))
        ratios.append(times["aotgraph"][-1] / times["torch"][-1])
    print(f"{'module':<10} {'median s':>9} {'min s':>7}")
    for module, seconds in times.items():
        print(f"{module:<10} {statistics.median(seconds):9.3f} {min(seconds):7.3f}")
    print(f"heavy modules loaded by `import aotgraph`: {heavy_modules_loaded() or 'none'}")
    ratio = statistics.median(times["aotgraph"]) / statistics.median(times["torch"])
    print(f"import aotgraph / import torch: {ratio:.3f} (median of per-round ratios {statistics.median(ratios):.3f}; "
          f"target <= 1.3)")


if __name__ == "__main__":
    main()
