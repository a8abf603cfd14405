"""Run a function on N ranks of a process group on loopback, one spawned process each,
in bounded time.

``run_ranks(worker, *args, world_size=2, timeout_s=..., backend="gloo")`` calls
``worker(rank, world_size, *args)`` in each process (a module-level function: spawn pickles it
by name) after ``init_process_group(backend)`` on a free port, and returns each rank's result,
by rank. With ``backend="nccl"`` rank r runs on GPU r (`rank_device()` says which device a
worker's tensors go to).
A rank that raises makes `run_ranks` raise `RankFailed` carrying that rank's traceback as
soon as its report arrives; the other ranks (which may be blocked in a collective) are
killed. A rank that dies without a report, or ranks that are still running at the deadline,
fail the same way. Nothing waits without a deadline.
"""
from __future__ import annotations

import os
import queue
import socket
import time
import traceback
from typing import Any, Callable

import torch.multiprocessing as mp

__all__ = ["RankFailed", "rank_device", "run_ranks"]


class RankFailed(AssertionError):
    """A rank raised, died or ran past the deadline; the message holds what it reported."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


def rank_device():
    """The device this rank's tensors live on: its GPU under NCCL, else the CPU."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _rank_main(worker: Callable, rank: int, world_size: int, port: int, backend: str, args: tuple,
               reports) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        import torch
        import torch.distributed as dist

        torch.set_num_threads(1)  # ranks share the machine's cores
        if backend == "nccl":
            torch.cuda.set_device(rank)
        dist.init_process_group(backend, rank=rank, world_size=world_size)
        try:
            result = worker(rank, world_size, *args)
        finally:
            dist.destroy_process_group()
        reports.put((rank, "ok", result))
    except BaseException:  # noqa: BLE001 - everything a rank raises is its report
        reports.put((rank, "error", traceback.format_exc()))


def run_ranks(worker: Callable, *args: Any, world_size: int = 2, timeout_s: float = 240.0,
              backend: str = "gloo") -> list:
    """``[worker(rank, world_size, *args) for rank in ranks]``, each in its own process."""
    context = mp.get_context("spawn")
    reports = context.Queue()
    port = free_port()
    processes = [context.Process(target=_rank_main, args=(worker, rank, world_size, port, backend, args, reports),
                                 daemon=True) for rank in range(world_size)]
    for process in processes:
        process.start()
    results: dict[int, Any] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(results) < world_size:
            try:
                rank, status, value = reports.get(timeout=1.0)
            except queue.Empty:
                dead = [r for r, p in enumerate(processes) if r not in results and p.exitcode is not None]
                if dead:
                    try:  # a report put just before exiting may still be on its way
                        rank, status, value = reports.get(timeout=5.0)
                    except queue.Empty:
                        raise RankFailed(f"rank {dead[0]} exited with code {processes[dead[0]].exitcode} "
                                         "without reporting") from None
                    results = _take(results, rank, status, value, processes)
                if time.monotonic() > deadline:
                    waiting = [r for r in range(world_size) if r not in results]
                    raise RankFailed(f"ranks {waiting} did not finish within {timeout_s:.0f} s") from None
                continue
            results = _take(results, rank, status, value, processes)
    finally:
        for process in processes:  # a rank that reported has nothing left to do but exit
            process.join(timeout=1.0 if len(results) == world_size else 0.0)
            if process.is_alive():
                process.kill()
                process.join(timeout=5.0)
    return [results[rank] for rank in range(world_size)]


def _take(results: dict, rank: int, status: str, value: Any, processes: list) -> dict:
    if status == "error":  # named first: ranks already dead without a report (the error may follow from that)
        dead = [f"rank {r} exited with code {p.exitcode} without reporting" for r, p in enumerate(processes)
                if r != rank and r not in results and p.exitcode not in (None, 0)]
        raise RankFailed("; ".join([*dead, f"rank {rank} failed:\n{value}"]))
    return {**results, rank: value}
