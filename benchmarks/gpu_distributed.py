"""Distributed training steps on N GPUs: eager vs torch.compile(backend="inductor") vs
torch.compile(backend=aotgraph.backend(compiler="inductor")), under DDP and FSDP2.

Model: aotgraph.models.gpt sized as GPT-2 small (12 layers, d=768, 12 heads, vocab 50257, tied
head), batch 8 and sequence 512 per GPU, SGD, bf16 autocast (as benchmarks/gpu_train.py).
DDP: ``torch.compile(DistributedDataParallel(model))`` (Dynamo splits the graph at DDP's
buckets). FSDP2: ``fully_shard`` on each block and the root, then ``torch.compile(model)``
(Dynamo runs FSDP's hooks eagerly). One process per GPU (torch.multiprocessing, NCCL), one
process group and a fresh Inductor cache directory per configuration, so every compiled
configuration compiles from cold. Per configuration: the first step (compile included), the
median step time (slowest rank's median), peak memory per GPU over the timed steps (the
largest rank's), and the losses at steps 0 and 10 (rank 0's).

Run (repo root, after `pip install -e . --no-deps`):  python benchmarks/gpu_distributed.py [--world-size N]
CPU check with a tiny model, 2 gloo ranks:          python benchmarks/gpu_distributed.py --smoke
Writes $OUT/gpu_distributed.log (everything, each rank's traceback if one fails) and
$OUT/gpu_distributed.json (default OUT=./out); prints the table last.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import traceback

import torch
import torch._inductor.config
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_train import Log, sgd_step, synchronize  # noqa: E402

START = time.perf_counter()
STRATEGIES = ("ddp", "fsdp2")
CONFIGS = ("eager", "inductor", "aotgraph")
LOSS_STEPS = (0, 10)  # the steps whose losses are reported


def build_model(smoke: bool, device: torch.device, rank: int):
    """(model, (ids, targets)): the same weights on every rank, this rank's own batch."""
    from aotgraph.models import gpt

    sizes = dict(batch=2, seq=32, vocab=256, dim=64, heads=4, layers=2) if smoke else \
        dict(batch=8, seq=512, vocab=50257, dim=768, heads=12, layers=12)
    torch.manual_seed(0)
    model, _ = gpt(**sizes)
    generator = torch.Generator().manual_seed(1000 + rank)
    ids, targets = (torch.randint(0, sizes["vocab"], (sizes["batch"], sizes["seq"]), generator=generator)
                    for _ in range(2))
    return model.to(device), (ids.to(device), targets.to(device)), sizes


def wrap(model: torch.nn.Module, strategy: str, device: torch.device) -> torch.nn.Module:
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    from torch.distributed.fsdp import fully_shard

    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)
    return model


def compiled(model: torch.nn.Module, config: str):
    """(callable, aotgraph backend or None)."""
    if config == "eager":
        return model, None
    if config == "inductor":
        return torch.compile(model, backend="inductor", dynamic=False), None
    import aotgraph

    backend = aotgraph.backend(compiler="inductor")
    return torch.compile(model, backend=backend, dynamic=False), backend


def rank_main(rank: int, world_size: int, strategy: str, config: str, args, port: int, reports) -> None:
    """One rank of one configuration: its process group, model, first step, timed steps."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch._inductor.config.fx_graph_cache = False  # cold: this configuration's cache directory is new anyway
    if args.smoke:
        device = torch.device("cpu")
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // world_size))
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
    else:
        device = torch.device("cuda", rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", rank=rank, world_size=world_size, device_id=device)
    try:
        model, batch, sizes = build_model(args.smoke, device, rank)
        parallel = wrap(model, strategy, device)
        run, backend = compiled(parallel, config)
        optimizer = torch.optim.SGD(parallel.parameters(), lr=1e-4)
        step, losses = sgd_step(run, batch, optimizer, device)

        synchronize(device)
        dist.barrier()
        begin = time.perf_counter()
        step()
        synchronize(device)
        first_step_s = time.perf_counter() - begin
        for _ in range(args.warmup):
            step()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        step_ms = []
        for _ in range(max(args.steps, LOSS_STEPS[-1] + 1 - len(losses))):
            synchronize(device)
            begin = time.perf_counter()
            step()
            synchronize(device)
            step_ms.append((time.perf_counter() - begin) * 1e3)
        result = dict(rank=rank, first_step_s=first_step_s, step_ms=step_ms,
                      median_step_ms=statistics.median(step_ms),
                      peak_gib=torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
                      losses=[float(loss) for loss in losses], sizes=sizes)
        if backend is not None:
            entries = backend.entries
            result.update(graphs=len(entries),
                          aot_s=sum(entry.log.seconds(stage) for entry in entries for stage in ("capture", "partition")))
        reports.put(result)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


def run_config(strategy: str, config: str, world_size: int, args, cache_root: str, log: Log) -> dict:
    """All ranks of one configuration in fresh processes; the first rank that raises ends it
    (torch.multiprocessing terminates the others), as does the deadline."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(cache_root, f"{strategy}_{config}")  # inherited at spawn
    os.environ["TRITON_CACHE_DIR"] = os.path.join(cache_root, f"{strategy}_{config}", "triton")
    reports = mp.get_context("spawn").Queue()
    context = mp.start_processes(rank_main, args=(world_size, strategy, config, args, free_port(), reports),
                                 nprocs=world_size, join=False, start_method="spawn")
    deadline = time.monotonic() + args.timeout_s
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            raise TimeoutError(f"{strategy} {config} did not finish within {args.timeout_s:.0f} s")
    ranks = sorted((reports.get(timeout=30) for _ in range(world_size)), key=lambda r: r["rank"])
    for r in ranks:
        log(f"  rank {r['rank']}: first step {r['first_step_s']:.2f} s, median step {r['median_step_ms']:.2f} ms, "
            f"peak {r['peak_gib']} GiB, losses {[round(l, 4) for l in r['losses']]}")
    first = ranks[0]
    return dict(strategy=strategy, config=config, world_size=world_size, sizes=first["sizes"],
                first_step_s=max(r["first_step_s"] for r in ranks),
                median_step_ms=max(r["median_step_ms"] for r in ranks),
                peak_gib=max(r["peak_gib"] for r in ranks) if first["peak_gib"] is not None else None,
                losses={step: first["losses"][step] for step in LOSS_STEPS},
                graphs=first.get("graphs"), aot_s=first.get("aot_s"))


def format_table(results: list[dict]) -> str:
    header = (f"{'strategy':<8} {'config':<9} {'GPUs':>4} {'first s':>8} {'step ms':>9} {'peak GiB':>9} "
              f"{'loss[0]':>8} {'loss[10]':>8} {'graphs':>6}  vs inductor (step, peak)")
    lines = [header, "-" * len(header)]
    inductor = {r["strategy"]: r for r in results if r["config"] == "inductor" and "error" not in r}
    for r in results:
        if "error" in r:
            lines.append(f"{r['strategy']:<8} {r['config']:<9} {r['error']}")
            continue
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
        ratios = ""
        base = inductor.get(r["strategy"])
        if base is not None and r["config"] == "aotgraph":
            peak_ratio = f"{r['peak_gib'] / base['peak_gib']:.3f}x" if r["peak_gib"] else "-"
            ratios = f"  {r['median_step_ms'] / base['median_step_ms']:.3f}x, {peak_ratio}"
        graphs = r["graphs"] if r["graphs"] is not None else "-"
        lines.append(f"{r['strategy']:<8} {r['config']:<9} {r['world_size']:>4} {r['first_step_s']:8.1f} "
                     f"{r['median_step_ms']:9.2f} {peak:>9} {r['losses'][0]:8.4f} {r['losses'][10]:8.4f} "
                     f"{graphs:>6}{ratios}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny model on the CPU with gloo, to test this script")
    parser.add_argument("--world-size", type=int, default=None,
                        help="processes (GPUs); default: all visible GPUs (--smoke: 2)")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--warmup", type=int, default=None, help="steps after the first, before timing")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (at least enough to reach step 10)")
    parser.add_argument("--timeout-s", type=float, default=480.0, help="limit for one configuration")
    parser.add_argument("--budget-s", type=float, default=540.0, help="start no configuration after this many seconds")
    args = parser.parse_args()
    args.warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 3)
    args.steps = args.steps if args.steps is not None else (10 if args.smoke else 20)
    world_size = args.world_size or (2 if args.smoke else torch.cuda.device_count())
    if world_size < 1:
        parser.error("no GPU visible: pass --smoke for the CPU check")

    out_dir = os.environ.get("OUT", "./out")
    os.makedirs(out_dir, exist_ok=True)
    log = Log(os.path.join(out_dir, "gpu_distributed.log"))
    cache_root = tempfile.mkdtemp(prefix="aotgraph_gpu_distributed_")
    card = torch.cuda.get_device_name() if not args.smoke else "cpu"
    log("gpu_distributed:", json.dumps({"torch": torch.__version__, "card": card, "world_size": world_size}),
        f"warmup {args.warmup}, timed {args.steps} steps")
    results = []
    for strategy in args.strategies:
        for config in args.configs:
            if time.perf_counter() - START > args.budget_s:
                results.append(dict(strategy=strategy, config=config, error=f"skipped: past --budget-s {args.budget_s:.0f}"))
                log(f"== {strategy} {config}: skipped (time budget)")
                continue
            log(f"== {strategy} {config} on {world_size} ranks  (t={time.perf_counter() - START:.0f} s)")
            try:
                results.append(run_config(strategy, config, world_size, args, cache_root, log))
                log(json.dumps(results[-1]))
            except Exception as error:
                log(traceback.format_exc())
                message = f"{type(error).__name__}: {error}".splitlines()[0][:160]
                results.append(dict(strategy=strategy, config=config, error=f"FAILED {message}"))
    with open(os.path.join(out_dir, "gpu_distributed.json"), "w") as file:
        json.dump(results, file, indent=1)
    log(format_table(results))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
