"""GPT-2 small trained over 10 sequence lengths (128...512) on the GPU: total compile time and
step time, torch.compile(model) vs torch.compile(model, backend=aotgraph.backend()) (issue 17:
ours must cost less total compile time than torch.compile's, with a step time <= torch.compile's
dynamic step).

Both with torch.compile's default dynamic behaviour (``dynamic=None``: the first length
compiles static, the first change of length recompiles with that dimension dynamic). Model:
transformers GPT2LMHeadModel(GPT2Config()), random weights, dropout 0, batch 8, bf16
autocast, SGD. Each configuration runs in a process of its own (Inductor's caches cold: its
own cache directories, FX graph and AOT autograd caches off, aotgraph's disk cache empty) and
trains `--steps` steps at each length in turn (same seed, same batches). Per configuration:
graphs compiled, total compile time (the steps in which a graph compiled, less the median
step at that length), median step time at each length (steps after the first at that length),
losses. Then, "settled": aotgraph's background C++-wrapper builds waited for (the steps above
ran beside them, which take the interpreter; torch has none) and `--settled-steps` steps at
each length again, the step time of a run that goes on. The table comes last; full logs and
JSON under $OUT (default ./out).

Run (repo root, no aotgraph install needed):  PYTHONPATH=src python benchmarks/gpu_dynamic.py
CPU smoke test (tiny GPT-2, short lengths):   PYTHONPATH=src python benchmarks/gpu_dynamic.py --smoke
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_train import Log, LossOfLM, fresh_compile_state, synchronize, torch_compile_phases  # noqa: E402

CONFIGS = ("inductor", "aotgraph")
LENGTHS = (128, 168, 216, 256, 296, 344, 384, 424, 472, 512)
SMOKE_LENGTHS = (16, 24, 32, 40, 48)


def build_model(device: torch.device, smoke: bool):
    """(model returning its LM loss, description)."""
    torch.manual_seed(0)
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        if not smoke:
            raise
        from aotgraph.models import GPT

        return GPT(vocab=512, seq=64, dim=64, heads=2, layers=2).to(device), "aotgraph.models.GPT (no transformers)"
    sizes = dict(n_layer=2, n_embd=64, n_head=2, vocab_size=512, n_positions=64) if smoke else {}
    config = GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **sizes)
    model = LossOfLM(GPT2LMHeadModel(config)).to(device)
    return model, f"GPT2LMHeadModel({'tiny' if smoke else 'GPT2Config()'})"


def batch_for(model, length: int, batch: int, device: torch.device, step: int) -> tuple:
    """The inputs of one step: token ids (and targets for aotgraph's own GPT), the same in every
    configuration."""
    generator = torch.Generator().manual_seed(1000 * length + step)
    vocab = model.model.config.vocab_size if isinstance(model, LossOfLM) else model.tok.num_embeddings
    ids = torch.randint(0, vocab, (batch, length), generator=generator).to(device)
    return (ids,) if isinstance(model, LossOfLM) else (ids, ids)


def compile_model(model, config: str, compiler: str):
    """(compiled model, aotgraph backend or None), both with torch.compile's default dynamic."""
    if config == "inductor":
        return torch.compile(model, backend="inductor" if compiler == "inductor" else "aot_eager"), None
    import aotgraph

    backend = aotgraph.backend(compiler=compiler)
    return torch.compile(model, backend=backend), backend


def graphs_compiled(backend) -> int:
    """Graphs Dynamo has compiled in this process (ours: the backend's entries, which count
    symbolic recompiles too)."""
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    return max(graphs, len(backend.entries)) if backend is not None else graphs


def timed_step(compiled, optimizer, inputs: tuple, device: torch.device) -> tuple[float, float]:
    """(seconds, loss) of one bf16-autocast training step, the device synchronized around it."""
    synchronize(device)
    begin = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16):
        loss = compiled(*inputs)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    synchronize(device)
    return time.perf_counter() - begin, float(loss.detach())


def run_config(config: str, args, log: Log) -> dict:
    """Train over the lengths; the figures of one configuration."""
    device = torch.device("cpu" if args.smoke else "cuda")
    fresh_compile_state(tempfile.mkdtemp(prefix="aotgraph_gpu_dynamic_"), config)
    model, what = build_model(device, args.smoke)
    compiled, backend = compile_model(model, config, args.compiler)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    start = time.perf_counter()
    per_length, losses = [], []
    for length in args.lengths:
        if time.perf_counter() - start > args.budget_s:
            log(f"  {config}: stopped before length {length} (past --budget-s {args.budget_s:.0f})")
            break
        step_s, compiled_at = [], []
        for step in range(args.steps):
            graphs_before = graphs_compiled(backend)
            seconds, loss = timed_step(compiled, optimizer, batch_for(model, length, args.batch, device, step), device)
            step_s.append(seconds)
            losses.append(loss)
            if graphs_compiled(backend) > graphs_before:
                compiled_at.append(step)
        steady = [s for k, s in enumerate(step_s) if k > 0 and k not in compiled_at] or step_s[-1:]
        median_s = statistics.median(steady)
        compile_s = sum(step_s[k] - median_s for k in compiled_at)
        per_length.append(dict(length=length, median_step_ms=median_s * 1e3, compile_s=compile_s,
                               compiled_at=compiled_at, step_s=step_s))
        log(f"  {config} length {length}: median step {median_s * 1e3:.2f} ms, compiled at steps {compiled_at} "
            f"({compile_s:.1f} s), losses {[round(l, 4) for l in losses[-args.steps:]]}")
        result = dict(config=config, what=what, compiler=args.compiler, graphs=graphs_compiled(backend),
                      compile_s=sum(p["compile_s"] for p in per_length), total_s=time.perf_counter() - start,
                      per_length=per_length, losses=losses, dynamo_compile_times=torch_compile_phases())
        write_json(args.json, result)  # so far: what comes back if the process is killed
    if args.settled_steps and per_length:
        result.update(settled_steps(compiled, model, optimizer, backend, args, device, log, start))
        write_json(args.json, result)
    if backend is not None:
        result["entries"] = [entry.log.format() for entry in backend.entries]
        for k, text in enumerate(result["entries"]):
            log(f"  aotgraph entry {k}:\n{text}")
    return result


def settled_steps(compiled, model, optimizer, backend, args, device, log: Log, start: float) -> dict:
    """After the lengths: aotgraph's background C++-wrapper builds waited for (torch has none),
    then `args.settled_steps` steps at each length again; the steps of the lengths above ran
    while those builds took the interpreter. Median step per length, and when the builds were
    ready (seconds from the first step)."""
    if backend is not None:
        from aotgraph.compilers.background_builds import wait_for_background_builds

        wait_for_background_builds()
    ready_s = time.perf_counter() - start
    graphs_before, per_length = graphs_compiled(backend), {}
    for length in args.lengths:
        step_s = []
        for step in range(args.settled_steps):
            step_s.append(timed_step(compiled, optimizer, batch_for(model, length, args.batch, device, step), device)[0])
        per_length[length] = statistics.median(step_s[1:] or step_s) * 1e3
    log(f"  settled (builds ready at {ready_s:.0f} s, {graphs_compiled(backend) - graphs_before} graphs compiled): " +
        " ".join(f"{n}:{ms:.1f}" for n, ms in per_length.items()))
    return dict(settled_ready_s=ready_s, settled_step_ms=per_length)


def write_json(path: str, result: dict) -> None:
    with open(path + ".part", "w") as f:
        json.dump(result, f, indent=1, default=str)
    os.replace(path + ".part", path)


def run_child(config: str, args, out_dir: str, log: Log) -> dict:
    """`config` in a process of its own; its result (or the error)."""
    json_path = os.path.join(out_dir, f"gpu_dynamic_{config}.json")
    command = [sys.executable, os.path.abspath(__file__), "--one", config, "--json", json_path,
               "--compiler", args.compiler, "--steps", str(args.steps), "--batch", str(args.batch),
               "--budget-s", str(args.budget_s), "--settled-steps", str(args.settled_steps), "--lengths", *map(str, args.lengths)] + (["--smoke"] if args.smoke else [])
    log(f"== {config}: {' '.join(command[2:])}")
    begin = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.child_timeout_s)
        output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as error:
        output = (error.stdout or b"").decode() if isinstance(error.stdout, bytes) else (error.stdout or "")
        code = f"killed after {args.child_timeout_s:.0f} s"
    with open(os.path.join(out_dir, f"gpu_dynamic_{config}.log"), "w") as f:
        f.write(output)
    log(f"   process {config}: exit {code} after {time.perf_counter() - begin:.0f} s; last lines:\n" +
        "\n".join(output.strip().splitlines()[-4:]))
    if os.path.exists(json_path):  # a killed process: the lengths it finished
        with open(json_path) as f:
            result = json.load(f)
        return result if code == 0 else dict(result, config=f"{config}*", partial=f"exit {code}")
    return dict(config=config, error=f"exit {code}")


def format_table(results: list[dict]) -> str:
    base = next((r for r in results if r["config"].rstrip("*") == "inductor" and "error" not in r), None)
    header = (f"{'config':<9} {'graphs':>6} {'compile s':>9} {'total s':>8} {'geomean step ms':>15} "
              f"{'loss first':>10} {'loss last':>9}  vs torch.compile (compile, step geomean; step per length)")
    lines = [header, "-" * len(header)]
    for r in results:
        if "error" in r:
            lines.append(f"{r['config']:<9} {r['error']}")
            continue
        steps = [p["median_step_ms"] for p in r["per_length"]]
        geomean = statistics.geometric_mean(steps) if steps else float("nan")
        ratios = ""
        if base is not None and r is not base and steps:
            theirs = {p["length"]: p["median_step_ms"] for p in base["per_length"]}
            per_length = [(p["length"], p["median_step_ms"] / theirs[p["length"]]) for p in r["per_length"]
                          if p["length"] in theirs]
            step_ratio = statistics.geometric_mean([q for _, q in per_length]) if per_length else float("nan")
            ratios = (f"  {r['compile_s'] / base['compile_s'] if base['compile_s'] else float('nan'):.3f}x, "
                      f"{step_ratio:.3f}x; " + " ".join(f"{n}:{q:.2f}" for n, q in per_length))
        lines.append(f"{r['config']:<9} {r['graphs']:6} {r['compile_s']:9.1f} {r['total_s']:8.1f} {geomean:15.2f} "
                     f"{r['losses'][0]:10.4f} {r['losses'][-1]:9.4f}{ratios}")
    settled = [r for r in results if "error" not in r and r.get("settled_step_ms")]
    for r in settled:
        steps = {int(n): ms for n, ms in r["settled_step_ms"].items()}
        ratio = ""
        if base is not None and r is not base and base.get("settled_step_ms"):
            theirs = {int(n): ms for n, ms in base["settled_step_ms"].items()}
            ratio = f", {statistics.geometric_mean([steps[n] / theirs[n] for n in steps if n in theirs]):.3f}x torch.compile's"
        lines.append(f"settled step geomean {r['config']}: {statistics.geometric_mean(list(steps.values())):.2f} ms"
                     f"{ratio} (after builds ready at {r['settled_ready_s']:.0f} s)")
    if any("partial" in r for r in results):
        lines.append("* killed before the last length (--child-timeout-s): the lengths it finished")
    lengths = sorted({p["length"] for r in results if "error" not in r for p in r["per_length"]})
    lines.append("median step ms per length: " + ", ".join(
        f"{r['config']} " + " ".join(f"{p['length']}:{p['median_step_ms']:.1f}" for p in r["per_length"])
        for r in results if "error" not in r) + f" (lengths {lengths})")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny GPT-2 on the CPU, short lengths, to test this script")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--compiler", choices=("inductor", "eager"), default="inductor",
                        help="eager: aot_eager vs aotgraph's eager compiler (a quick check of the script)")
    parser.add_argument("--lengths", nargs="+", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="steps at each length")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--settled-steps", type=int, default=8,
                        help="after the lengths, background builds waited for, steps at each length again (0: none)")
    parser.add_argument("--budget-s", type=float, default=180.0, help="a configuration starts no length after this")
    parser.add_argument("--child-timeout-s", type=float, default=None,
                        help="a configuration's process is killed after this (default 230 s; --smoke 1200 s)")
    parser.add_argument("--one", choices=CONFIGS, help=argparse.SUPPRESS)  # run in the child process
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.lengths = args.lengths or list(SMOKE_LENGTHS if args.smoke else LENGTHS)
    args.steps = args.steps or (2 if args.smoke else 16)  # host-bound steps: medians of 3 moved 20-30 % run to run
    args.batch = args.batch or (2 if args.smoke else 8)
    args.child_timeout_s = args.child_timeout_s or (1200.0 if args.smoke else 230.0)
    out_dir = os.environ.get("OUT", "./out")
    os.makedirs(out_dir, exist_ok=True)

    if args.one:
        log = Log(os.path.join(out_dir, f"gpu_dynamic_{args.one}_steps.log"))
        write_json(args.json, run_config(args.one, args, log))
        return 0

    log = Log(os.path.join(out_dir, "gpu_dynamic.log"))
    card = torch.cuda.get_device_name() if torch.cuda.is_available() and not args.smoke else "cpu"
    log("gpu_dynamic:", json.dumps({"torch": torch.__version__, "card": card}), f"lengths {args.lengths}, "
        f"batch {args.batch}, {args.steps} steps each, compiler {args.compiler}")
    results = [run_child(config, args, out_dir, log) for config in args.configs]
    with open(os.path.join(out_dir, "gpu_dynamic.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    log(format_table(results))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
