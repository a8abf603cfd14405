"""How long a loop of small torch ops (each lets go of the interpreter and takes it back) takes
beside a thread that runs pure Python (as a background C++-wrapper build runs Inductor's
compile), at several of Python's switch intervals; the reason for the switch
``builds_share_interpreter`` (compilers/background_builds.py). CPU, one torch thread; medians
of `--repeats` rounds of 20 loops.

    python benchmarks/gil_contention.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

import torch

INTERVALS_S = (0.005, 0.001, 0.0002)


def loop_ms(x: torch.Tensor, loops: int = 20) -> float:
    start = time.perf_counter()
    for _ in range(loops):
        y = x
        for _ in range(300):
            y = torch.add(y, 1.0)
    return (time.perf_counter() - start) / loops * 1e3


def busy(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(i * i for i in range(2000))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = torch.randn(64, 64)
    default = sys.getswitchinterval()
    alone = statistics.median(loop_ms(x) for _ in range(args.repeats))
    rows = []
    for interval in INTERVALS_S:
        sys.setswitchinterval(interval)
        stop = threading.Event()
        thread = threading.Thread(target=busy, args=(stop,))
        thread.start()
        time.sleep(0.05)
        rows.append((interval, statistics.median(loop_ms(x) for _ in range(args.repeats))))
        stop.set()
        thread.join()
    sys.setswitchinterval(default)
    print(f"alone: {alone:.2f} ms a loop of 300 ops")
    for interval, ms in rows:
        print(f"beside a busy thread, switch interval {interval * 1e3:.1f} ms: {ms:.2f} ms ({ms / alone:.0f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
