"""Sweep PyTorch's operator database through aotgraph and through torch's AOTAutograd.

For every OpInfo in ``torch.testing._internal.common_methods_invocations.op_db`` that
supports autograd and float32 on CPU, each sample input runs eagerly, through
``aotgraph.aot_function`` and through ``functorch.compile.aot_function`` (the baseline,
nop compilers, default partition), and outputs and gradients (random cotangents, same
seed everywhere) are compared with eager. Per system, each op ends up:

  passed      every sample matches eager
  error       some sample raised (an explicit failure), none mismatched
  mismatch    some sample returned a wrong output or gradient without raising (silent)
  skipped     no float32 / no autograd / no sample that eager itself can run / out of budget

Random ops are compared with the RNG seeded before the call (the OpInfos' own reseeding
inside the op is removed unless --reseed-inside), including the global RNG state after it.

Usage: python benchmarks/opinfo_sweep.py [--ops add,mul] [--limit N] [--samples K]
       [--budget SECONDS] [--json out.json] [--reseed-inside]
"""
from __future__ import annotations

import argparse
import collections
import re
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

SYSTEMS = ("aotgraph", "torch")


@dataclass
class OpResult:
    status: dict = field(default_factory=dict)  # system -> passed/error/mismatch/skipped
    detail: dict = field(default_factory=dict)  # system -> first error or mismatch message


class SampleTimeout(Exception):
    pass


def compile_with(system: str, fn):
    if system == "aotgraph":
        import aotgraph

        return aotgraph.aot_function(fn)
    from functorch.compile import aot_function, nop

    return aot_function(fn, nop, nop)


def split_sample(sample):
    """(tensor leaves, function of those tensors calling the op with the sample's other args)."""
    flat, spec = tree_flatten(((sample.input, *sample.args), sample.kwargs))
    positions = [i for i, v in enumerate(flat) if isinstance(v, torch.Tensor)]

    def rebuild(tensors):
        values = list(flat)
        for p, t in zip(positions, tensors):
            values[p] = t
        return tree_unflatten(values, spec)

    return [flat[p] for p in positions], rebuild


def fresh_copies(tensors):
    return [t.detach().clone().requires_grad_(t.requires_grad) for t in tensors]


def run_once(call, tensors, output_process):
    """(outputs then the inputs' values after the call, gradients (None: unused), RNG state after)."""
    torch.manual_seed(1234)
    out = call(*tensors)
    rng_after = torch.get_rng_state()
    flat_out, _ = tree_flatten(out)
    processed, _ = tree_flatten(output_process(out))
    diff_outs = [o for o in processed if isinstance(o, torch.Tensor) and o.requires_grad and o.is_floating_point()]
    diff_ins = [t for t in tensors if t.requires_grad]
    grads = []
    if diff_outs and diff_ins:
        generator = torch.Generator().manual_seed(99)
        cotangents = [torch.randn(o.shape, dtype=o.dtype, generator=generator).to(o.device) for o in diff_outs]
        grads = list(torch.autograd.grad(diff_outs, diff_ins, cotangents, allow_unused=True))
    outputs = [o.detach() if isinstance(o, torch.Tensor) else o for o in flat_out]
    inputs_after = [t.detach() for t in tensors]  # ops with out=/in-place semantics write inputs
    return outputs + inputs_after, grads, rng_after


def compare(expected, actual, what):
    exp_out, exp_grads, exp_rng = expected
    act_out, act_grads, act_rng = actual
    if not torch.equal(exp_rng, act_rng):
        return "global RNG state after the call differs from eager"
    if len(exp_out) != len(act_out):
        return f"{what}: {len(act_out)} outputs, eager has {len(exp_out)}"
    for k, (e, a) in enumerate(zip(exp_out, act_out)):
        message = _differs(e, a)
        if message:
            return f"output {k}: {message}"
    for k, (e, a) in enumerate(zip(exp_grads, act_grads)):
        if e is None and a is None:
            continue
        e = torch.zeros_like(a) if e is None else e
        a = torch.zeros_like(e) if a is None else a
        message = _differs(e, a)
        if message:
            return f"grad {k}: {message}"
    return None


def _differs(e, a):
    if isinstance(e, torch.Tensor) != isinstance(a, torch.Tensor):
        return f"{type(a).__name__} instead of {type(e).__name__}"
    if not isinstance(e, torch.Tensor):
        return None if e == a or (e != e and a != a) else f"{a!r} instead of {e!r}"
    try:
        torch.testing.assert_close(a, e, equal_nan=True, check_stride=False)
    except AssertionError as error:
        return " ".join(str(error).split())[:200]
    return None


def run_op(op, systems, samples_per_op, sample_timeout):
    result = OpResult()
    try:
        samples = list(op.sample_inputs("cpu", torch.float32, requires_grad=True))
        samples = samples[:samples_per_op] if samples_per_op else samples
    except Exception as error:  # noqa: BLE001 - a broken OpInfo is skipped, not ours to judge
        for system in systems:
            result.status[system], result.detail[system] = "skipped", f"sample_inputs failed: {error}"
        return result
    per_system = {s: [] for s in systems}
    for sample in samples:
        tensors, rebuild = split_sample(sample)

        def call(*ts, _rebuild=rebuild):
            args, kwargs = _rebuild(ts)
            return op.op(*args, **kwargs)

        try:
            with _alarm(sample_timeout):
                expected = run_once(call, fresh_copies(tensors), sample.output_process_fn_grad)
        except Exception:  # noqa: BLE001 - eager itself cannot run this sample: skip it
            continue
        for system in systems:
            try:
                with _alarm(sample_timeout):
                    actual = run_once(compile_with(system, call), fresh_copies(tensors), sample.output_process_fn_grad)
            except SampleTimeout:
                per_system[system].append(("error", f"timeout after {sample_timeout}s"))
                continue
            except Exception as error:  # noqa: BLE001 - an explicit failure is what we count
                per_system[system].append(("error", f"{type(error).__name__}: {_first_line(error)}"))
                continue
            mismatch = compare(expected, actual, system)
            per_system[system].append(("mismatch", mismatch) if mismatch else ("passed", ""))
    for system, outcomes in per_system.items():
        if not outcomes:
            result.status[system], result.detail[system] = "skipped", "no sample runs in eager"
            continue
        for status in ("mismatch", "error"):
            hit = next((d for s, d in outcomes if s == status), None)
            if hit is not None:
                result.status[system], result.detail[system] = status, hit
                break
        else:
            result.status[system] = "passed"
    return result


def _first_line(error):
    text = str(error).strip().splitlines()
    return text[0][:300] if text else ""


class _alarm:
    def __init__(self, seconds):
        self.seconds = seconds

    def __enter__(self):
        def fire(signum, frame):
            raise SampleTimeout()

        self.previous = signal.signal(signal.SIGALRM, fire)
        signal.alarm(self.seconds)

    def __exit__(self, *exc):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.previous)
        return False


def select_ops(names, limit, reseed_inside=False):
    from torch.testing._internal import common_methods_invocations
    from torch.testing._internal.common_methods_invocations import op_db

    if not reseed_inside:
        # OpInfos of random ops reseed inside the op (wrapper_set_seed); without that, the
        # sweep seeds before each call and compares the random draws and the RNG state after.
        common_methods_invocations.wrapper_set_seed = lambda op, *args, **kwargs: op(*args, **kwargs)

    ops = []
    for op in op_db:
        full = op.name + (f".{op.variant_test_name}" if op.variant_test_name else "")
        if names and op.name not in names and full not in names:
            continue
        ops.append((full, op))
    return ops[:limit] if limit else ops


def sweep(names=(), limit=0, samples_per_op=4, budget=0.0, sample_timeout=60, systems=SYSTEMS, log=print,
          reseed_inside=False):
    """{op name: OpResult} for the selected ops."""
    results = {}
    start = time.perf_counter()
    for full, op in select_ops(set(names), limit, reseed_inside):
        if not op.supports_autograd or torch.float32 not in op.supported_dtypes("cpu"):
            results[full] = OpResult({s: "skipped" for s in systems}, {s: "no float32 autograd on CPU" for s in systems})
            continue
        if budget and time.perf_counter() - start > budget:
            results[full] = OpResult({s: "skipped" for s in systems}, {s: "time budget spent" for s in systems})
            continue
        op_start = time.perf_counter()
        results[full] = run_op(op, systems, samples_per_op, sample_timeout)
        log(f"{full:<40} " + "  ".join(f"{s}={results[full].status[s]}" for s in systems)
            + f"  ({time.perf_counter() - op_start:.1f}s)")
    return results


def error_class(detail: str) -> str:
    """Group errors by kind and message with numbers, names in quotes and shapes blanked."""
    text = re.sub(r"\[[^\]]*\]|\([^)]*\)|'[^']*'|\d+", "_", detail)
    return text[:120]


def summarize(results, systems=SYSTEMS) -> str:
    lines = ["| system | passed | error (explicit) | mismatch (silent) | skipped |", "|---|---|---|---|---|"]
    for s in systems:
        counts = collections.Counter(r.status[s] for r in results.values())
        lines.append(f"| {s} | {counts['passed']} | {counts['error']} | {counts['mismatch']} | {counts['skipped']} |")
    lines.append("")
    if len(systems) == 2:
        a, b = systems
        differ = [(n, r) for n, r in results.items() if r.status[a] != r.status[b]]
        lines.append(f"Ops where {a} and {b} differ ({len(differ)}):")
        lines.append("")
        for name, r in differ:
            lines.append(f"- `{name}`: {a}={r.status[a]} {b}={r.status[b]}"
                         + (f" — {a}: {r.detail.get(a, '')[:160]}" if r.status[a] != "passed" else ""))
        lines.append("")
    for s in systems:
        for status in ("mismatch", "error"):
            groups = collections.defaultdict(list)
            for name, r in results.items():
                if r.status[s] == status:
                    groups[error_class(r.detail[s])].append(name)
            if groups:
                lines.append(f"{s} {status} classes:")
                lines.append("")
                for cls, names in sorted(groups.items(), key=lambda kv: -len(kv[1])):
                    lines.append(f"- {len(names)} × {cls} — {', '.join(names[:8])}{' …' if len(names) > 8 else ''}")
                lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", default="", help="comma-separated OpInfo names (default: all)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N ops of op_db")
    parser.add_argument("--samples", type=int, default=4, help="sample inputs per op (0: all)")
    parser.add_argument("--budget", type=float, default=0.0, help="seconds; ops after it are skipped")
    parser.add_argument("--sample-timeout", type=int, default=60, help="seconds per sample and system")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--json", default="", help="write per-op results here")
    parser.add_argument("--reseed-inside", action="store_true",
                        help="keep the OpInfos' torch.manual_seed inside random ops (aotgraph refuses those)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    systems = tuple(s for s in args.systems.split(",") if s)
    names = [n for n in args.ops.split(",") if n]
    start = time.perf_counter()
    results = sweep(names, args.limit, args.samples, args.budget, args.sample_timeout, systems,
                    reseed_inside=args.reseed_inside)
    title = (f"OpInfo sweep: CPU, float32, torch {torch.__version__}, {len(results)} ops, "
             f"{args.samples} samples/op, {time.perf_counter() - start:.0f}s")
    from sweep_report import finish_sweep  # beside this script: on sys.path when it runs as one

    return finish_sweep(title, summarize(results, systems), results, args.json)


if __name__ == "__main__":
    sys.exit(main())
