"""PyTorch's own per-op AOTAutograd checker over the whole op database, run through torch's
AOTAutograd and through aotgraph.

The checker is ``torch.testing._internal.optests.aot_autograd.aot_autograd_check``: it compiles
the op with ``compiled_function(fn, nop, nop, partition_fn=min_cut_rematerialization_partition,
keep_inference_input_mutations=True, dynamic=...)`` (names it imports from functorch.compile),
runs eager and compiled under ``wrapper_set_seed``, compares outputs and the gradients of
``sum(out.sum().abs())`` with ``assert_equals_fn``, then reruns on randomized inputs to catch data
baked into the trace. For aotgraph the shim swaps the checker module's ``compiled_function``,
``nop``, ``default_partition`` and ``min_cut_rematerialization_partition`` for aotgraph's, so no
part of torch's AOTAutograd runs. Ops and arguments follow torch's test
(test/functorch/test_aotdispatch.py, ``_test_aot_autograd_helper``): every OpInfo of ``op_db``
with float32 on CPU, samples with ``requires_grad=True`` where the op supports autograd,
``dynamic=False`` (``--dynamic``: symbolic sizes, so data-dependent output shapes are unbacked
sizes instead of refusals), ``TestCase.assertEqual`` as the comparison, data specialization checked except
for max_unpool, ``skip_correctness_check=op.skip_correctness_check_compile_vs_eager`` (and for the ops of
`UNINITIALIZED`, which torch's test skips). Differences: the first ``--samples`` samples per op (seeded, so the same on every run), and
``check_gradients="auto"`` (gradients are checked wherever an input and an output require grad,
so ops with integer outputs are checked forward only instead of failing in eager).

Per system, each op ends up (its worst sample decides; order below, worst last):

  passed     every sample passes the checker
  refused    a clear error: aotgraph raised an AotGraphError (a documented limit, said as such);
             torch raised DynamicOutputShapeException / GuardOnDataDependentSymNode (torch's test
             skips the op for those) or DataDependentOutputException (the same limit: a value read)
  failed     another exception (including the per-op time limit)
  mismatch   the checker's assert_equals failed: values differ without an error (silent)

Usage: python benchmarks/optests_sweep.py [--every K] [--ops add,mul] [--samples N] [--dynamic]
       [--systems torch,aotgraph] [--timeout S] [--json out.json]
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field

import torch

SYSTEMS = ("torch", "aotgraph")
STATUSES = ("passed", "refused", "failed", "mismatch")
# torch's test turns off the data-specialization check for these (random inputs break them).
CANT_CHECK_DATA_SPECIALIZATION = {"nn.functional.max_unpool1d", "nn.functional.max_unpool2d",
                                  "nn.functional.max_unpool3d"}
# Ops that return uninitialized memory: no defined value to compare (torch's test skips them), so
# the checker runs them with skip_correctness_check=True (compiled and run, values not compared).
UNINITIALIZED = {"empty", "empty_like", "empty_permuted", "empty_strided", "new_empty", "new_empty_strided"}


@dataclass
class OpResult:
    status: dict = field(default_factory=dict)  # system -> one of STATUSES
    detail: dict = field(default_factory=dict)  # system -> the worst sample's message


class OpTimeout(Exception):
    pass


class SilentMismatch(AssertionError):
    """The checker's assert_equals failed (raised through our comparison, so it is told apart)."""


@contextlib.contextmanager
def _alarm(seconds: int):
    def fire(signum, frame):
        raise OpTimeout(f"timed out after {seconds}s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def checker_for(system: str):
    """The checker module with its compile entry points swapped for `system`'s (torch: as is)."""
    from torch.testing._internal.optests import aot_autograd as checker

    names = ("compiled_function", "nop", "default_partition", "min_cut_rematerialization_partition")
    saved = {name: getattr(checker, name) for name in names}
    if system == "aotgraph":
        import aotgraph

        checker.compiled_function = aotgraph.aot_function
        checker.nop = aotgraph.nop
        checker.default_partition = aotgraph.default_partition
        checker.min_cut_rematerialization_partition = aotgraph.min_cut_rematerialization_partition
    try:
        yield checker
    finally:
        for name, value in saved.items():
            setattr(checker, name, value)


_test_case = None


def assert_equals(actual, expected, msg=None):
    """torch's test's comparison (TestCase.assertEqual); a failure is re-raised as SilentMismatch."""
    global _test_case
    if _test_case is None:
        from torch.testing._internal.common_utils import TestCase

        _test_case = TestCase()
    try:
        _test_case.assertEqual(actual, expected)
    except AssertionError as error:
        raise SilentMismatch(" ".join(str(error).split())[:300]) from None


def op_name(op) -> str:
    return op.name + (f".{op.variant_test_name}" if op.variant_test_name else "")


def select_ops(names=(), every: int = 1) -> list:
    """Every `every`-th OpInfo of op_db with float32 on CPU, in op_db's order (deterministic)."""
    from torch.testing._internal.common_methods_invocations import op_db

    eligible = [op for op in op_db if torch.float32 in op.supported_dtypes("cpu")]
    if names:
        eligible = [op for op in eligible if op.name in names or op_name(op) in names]
    return eligible[::every]


def _samples(op, num_samples: int) -> list:
    torch.manual_seed(0)
    samples = []
    for sample in op.sample_inputs("cpu", torch.float32, requires_grad=op.supports_autograd):
        if len(samples) == num_samples:
            break
        samples.append(sample)
    return samples


def _is_refusal(system: str, error: BaseException) -> bool:
    if system == "aotgraph":
        from aotgraph import AotGraphError

        clear = (AotGraphError,)
    else:
        from torch._subclasses.fake_tensor import DataDependentOutputException, DynamicOutputShapeException
        from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

        clear = (DataDependentOutputException, DynamicOutputShapeException, GuardOnDataDependentSymNode)
    while error is not None:
        if isinstance(error, clear):
            return True
        error = error.__cause__
    return False


def _outcome(system: str, error: BaseException | None) -> tuple[str, str]:
    if error is None:
        return "passed", ""
    if isinstance(error, SilentMismatch) or isinstance(error.__cause__, SilentMismatch):
        what = "outputs" if "Outputs" in str(error) else "gradients" if "Gradients" in str(error) else "values"
        return "mismatch", f"{what}: {error.__cause__ or error}"
    status = "refused" if _is_refusal(system, error) else "failed"
    lines = str(error).strip().splitlines()
    return status, f"{type(error).__name__}: {lines[0][:300] if lines else ''}"


def run_op(op, system: str, num_samples: int = 3, timeout: int = 120, dynamic: bool = False) -> tuple[str, str]:
    """(status, detail) of `op` under `system`: the worst of its first `num_samples` samples."""
    outcomes = []
    try:
        with _alarm(timeout), checker_for(system) as checker, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for index, sample in enumerate(_samples(op, num_samples)):
                try:
                    checker.aot_autograd_check(
                        op.op, [sample.input, *sample.args], sample.kwargs, dynamic,
                        checker.assert_raises_regex, assert_equals, check_gradients="auto",
                        try_check_data_specialization=op.name not in CANT_CHECK_DATA_SPECIALIZATION,
                        skip_correctness_check=op.skip_correctness_check_compile_vs_eager or op.name in UNINITIALIZED)
                    error = None
                except OpTimeout:
                    raise
                except Exception as caught:  # noqa: BLE001 - every exception is classified
                    error = caught
                status, detail = _outcome(system, error)
                outcomes.append((status, f"sample {index}: {detail}" if detail else ""))
    except OpTimeout as error:
        outcomes.append(("failed", f"OpTimeout: {error}"))
    except Exception as error:  # noqa: BLE001 - sample_inputs itself failed
        outcomes.append(("failed", f"sample_inputs: {type(error).__name__}: {error}"))
    if not outcomes:
        return "passed", "no sample"
    return max(outcomes, key=lambda o: STATUSES.index(o[0]))


def sweep(ops, systems=SYSTEMS, num_samples=3, timeout=120, log=print, dynamic=False) -> dict[str, OpResult]:
    results = {}
    for op in ops:
        name, result, start = op_name(op), OpResult(), time.perf_counter()
        for system in systems:
            result.status[system], result.detail[system] = run_op(op, system, num_samples, timeout, dynamic)
        results[name] = result
        log(f"{name:<45} " + "  ".join(f"{s}={result.status[s]}" for s in systems)
            + f"  ({time.perf_counter() - start:.1f}s)")
    return results


def summarize(results: dict[str, OpResult], systems=SYSTEMS) -> str:
    lines = ["| system | " + " | ".join(STATUSES) + " |", "|---|" + "---|" * len(STATUSES)]
    for s in systems:
        counts = collections.Counter(r.status[s] for r in results.values())
        lines.append(f"| {s} | " + " | ".join(str(counts[k]) for k in STATUSES) + " |")
    lines.append("")
    if "torch" in systems and "aotgraph" in systems:
        behind = {n: r for n, r in results.items()
                  if r.status["torch"] == "passed" and r.status["aotgraph"] != "passed"}
        lines.append(f"Ops torch passes and aotgraph does not ({len(behind)}):")
        for name, r in behind.items():
            lines.append(f"- `{name}` aotgraph={r.status['aotgraph']}: {r.detail['aotgraph'][:240]}")
        lines.append("")
    for s in systems:
        mismatches = {n: r for n, r in results.items() if r.status[s] == "mismatch"}
        lines.append(f"Silent mismatches, {s} ({len(mismatches)}):")
        for name, r in mismatches.items():
            lines.append(f"- `{name}`: {r.detail[s][:300]}")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=1, help="every K-th eligible op (a deterministic subset)")
    parser.add_argument("--ops", default="", help="comma-separated OpInfo names (default: all)")
    parser.add_argument("--samples", type=int, default=3, help="samples per op")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--timeout", type=int, default=120, help="seconds per op and system")
    parser.add_argument("--json", default="", help="write per-op results here")
    parser.add_argument("--dynamic", action="store_true", help="compile with symbolic sizes (dynamic=True)")
    args = parser.parse_args(argv)
    systems = tuple(s for s in args.systems.split(",") if s)
    ops = select_ops({n for n in args.ops.split(",") if n}, args.every)
    start = time.perf_counter()
    results = sweep(ops, systems, args.samples, args.timeout, dynamic=args.dynamic)
    title = (f"optests sweep{' (dynamic=True)' if args.dynamic else ''}: aot_autograd_check, CPU, float32, "
             f"torch {torch.__version__}, {len(results)} ops "
             f"(every {args.every}), {args.samples} samples/op, {time.perf_counter() - start:.0f}s")
    from sweep_report import finish_sweep  # beside this script: on sys.path when it runs as one

    return finish_sweep(title, summarize(results, systems), results, args.json)


if __name__ == "__main__":
    sys.exit(main())
