"""Sweep PyTorch's operator database and the standard torch.nn layers through Inductor: aotgraph
with ``compiler="inductor"`` and torch.compile's own inductor backend, each compared with eager.

Cases: every OpInfo of ``torch.testing._internal.common_methods_invocations.op_db`` with float32
on CPU (its first ``--samples`` samples that eager can run; forward and backward where the op
supports autograd), and the layers of `LAYERS` (parameters, buffers and inputs passed as tensors
through ``torch.func.functional_call``, so gradients and buffer updates are compared too). Each
sample runs eagerly, through ``aotgraph.aot_function(call, "inductor")`` and through
``torch.compile(call, backend="inductor")``; both with ``fallback_random`` (random ops draw from
eager's generator, seeded before the call). Compared with eager: outputs, the inputs' values after
the call, gradients under the same random cotangents, the global RNG state after the call, within
`RTOL`/`ATOL` (Inductor fuses and reorders float arithmetic). Per system, each case ends up:

  passed     every sample matches eager
  refused    raised an AotGraphError before Inductor (aotgraph only: a documented limit, such as a
             data-dependent output shape, said as such)
  capture    raised before Inductor for another reason: aotgraph's capture, partition or
             runtime; for torch, Dynamo or AOTAutograd
  inductor   raised inside Inductor: lowering, code generation, the C++ build, its compiled code
  mismatch   returned a wrong output or gradient without raising
  skipped    eager itself runs no sample

Usage: python benchmarks/inductor_sweep.py [--ops add,mul] [--layers Linear,LSTM] [--no-layers]
       [--no-ops] [--every K] [--samples N] [--systems aotgraph,torch] [--json out.json] [--dynamic]
       [--device cuda]
"""
from __future__ import annotations

import argparse
import collections
import logging
import re
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from opinfo_sweep import SampleTimeout, _alarm, fresh_copies, run_once, select_ops, split_sample  # noqa: E402

SYSTEMS = ("aotgraph", "torch")
DYNAMIC = False  # --dynamic: both systems compile with symbolic sizes
DEVICE = "cpu"  # --device cuda: the OpInfo samples on the GPU (layers stay on the CPU: --no-layers)
STATUSES = ("passed", "refused", "capture", "inductor", "mismatch", "skipped")
# Eager's float32 tolerances in tests/backend_training.py (1e-4, 1e-5) scaled by 10, as the
# Inductor tests scale them.
RTOL, ATOL = 1e-3, 1e-4

# Frames of Inductor's compile of one graph (both systems pass through them) and of its compiled code.
_INDUCTOR_FUNCTIONS = frozenset({"compile_fx_inner", "_compile_fx_inner", "fx_codegen_and_compile",
                                 "codegen_and_compile"})
_INDUCTOR_CODE = ("/torch/_inductor/output_code.py", "/torchinductor_")


@dataclass(frozen=True)
class Sample:
    """One call: ``call(*tensors)`` runs it; `output_process` picks the outputs to differentiate."""

    call: Callable
    tensors: list
    output_process: Callable = lambda out: out


@dataclass
class CaseResult:
    status: dict = field(default_factory=dict)  # system -> one of STATUSES
    detail: dict = field(default_factory=dict)  # system -> first failure


# ---- the cases ----------------------------------------------------------------------------
def op_cases(names=(), every: int = 1, start: int = 0) -> dict[str, Callable[[int], list]]:
    """{OpInfo name: samples(n) -> its first n samples}, for every `every`-th op of op_db with float32
    on CPU (in op_db's order, so the subset is the same on every run)."""
    cases = {}
    eligible = [(full, op) for full, op in select_ops(set(names), 0) if torch.float32 in op.supported_dtypes(DEVICE)]
    for full, op in eligible[start::every]:
        cases[full] = lambda n, op=op: _op_samples(op, n)
    return cases


def _op_samples(op, n: int) -> list[Sample]:
    samples = []
    for sample in op.sample_inputs(DEVICE, torch.float32, requires_grad=op.supports_autograd):
        if len(samples) == n:
            break
        tensors, rebuild = split_sample(sample)

        def call(*ts, _rebuild=rebuild, _op=op.op):
            args, kwargs = _rebuild(ts)
            return _op(*args, **kwargs)

        samples.append(Sample(call, tensors, sample.output_process_fn_grad))
    return samples


def _tokens(*shape, vocab=10, pad=0):
    tokens = torch.randint(1, vocab, shape)
    tokens.view(-1)[::3] = pad
    return tokens


def _seq(*shape):
    return torch.randn(*shape, requires_grad=True)


# name: (module factory, inputs factory, training mode). Inputs that need no gradient (indices,
# targets) are built without requires_grad.
LAYERS: dict[str, tuple[Callable, Callable, bool]] = {
    "Linear": (lambda: nn.Linear(8, 6), lambda: (_seq(4, 8),), True),
    "Conv1d": (lambda: nn.Conv1d(3, 4, 3, padding=1), lambda: (_seq(2, 3, 10),), True),
    "Conv2d": (lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), lambda: (_seq(2, 3, 8, 8),), True),
    "ConvTranspose2d": (lambda: nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1),
                        lambda: (_seq(2, 3, 5, 5),), True),
    "BatchNorm1d": (lambda: nn.BatchNorm1d(6), lambda: (_seq(4, 6),), True),
    "BatchNorm2d": (lambda: nn.BatchNorm2d(4), lambda: (_seq(2, 4, 5, 5),), True),
    "BatchNorm2d.eval": (lambda: nn.BatchNorm2d(4), lambda: (_seq(2, 4, 5, 5),), False),
    "LayerNorm": (lambda: nn.LayerNorm(8), lambda: (_seq(3, 5, 8),), True),
    "GroupNorm": (lambda: nn.GroupNorm(2, 4), lambda: (_seq(2, 4, 5, 5),), True),
    "RMSNorm": (lambda: nn.RMSNorm(8), lambda: (_seq(3, 5, 8),), True),
    "Embedding.padding_idx": (lambda: nn.Embedding(10, 6, padding_idx=0), lambda: (_tokens(3, 5),), True),
    "EmbeddingBag.mean": (lambda: nn.EmbeddingBag(10, 6, mode="mean"), lambda: (_tokens(3, 4),), True),
    "EmbeddingBag.sum.padding_idx": (lambda: nn.EmbeddingBag(10, 6, mode="sum", padding_idx=0),
                                     lambda: (_tokens(3, 4),), True),
    "MultiheadAttention": (lambda: nn.MultiheadAttention(8, 2, batch_first=True),
                           lambda: (_seq(2, 5, 8), _seq(2, 5, 8), _seq(2, 5, 8)), True),
    "TransformerEncoderLayer": (lambda: nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True),
                                lambda: (_seq(2, 5, 8),), True),
    "TransformerEncoderLayer.norm_first.gelu": (
        lambda: nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True),
        lambda: (_seq(2, 5, 8),), True),
    "TransformerDecoderLayer.norm_first": (
        lambda: nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True, norm_first=True),
        lambda: (_seq(2, 5, 8), _seq(2, 4, 8)), True),
    "LSTM": (lambda: nn.LSTM(5, 6, batch_first=True), lambda: (_seq(2, 4, 5),), True),
    "GRU": (lambda: nn.GRU(5, 6, num_layers=2), lambda: (_seq(4, 2, 5),), True),
    "MaxPool2d": (lambda: nn.MaxPool2d(2), lambda: (_seq(2, 3, 6, 6),), True),
    "AvgPool2d": (lambda: nn.AvgPool2d(3, stride=2, padding=1), lambda: (_seq(2, 3, 7, 7),), True),
    "AdaptiveAvgPool2d": (lambda: nn.AdaptiveAvgPool2d((2, 3)), lambda: (_seq(2, 3, 7, 7),), True),
    "AdaptiveMaxPool1d": (lambda: nn.AdaptiveMaxPool1d(3), lambda: (_seq(2, 3, 8),), True),
    "Dropout.eval": (lambda: nn.Dropout(0.5), lambda: (_seq(4, 6),), False),
    "ReLU": (nn.ReLU, lambda: (_seq(4, 6),), True),
    "ReLU6.inplace": (lambda: nn.Sequential(nn.Linear(6, 6), nn.ReLU6(inplace=True)), lambda: (_seq(4, 6),), True),
    "GELU.tanh": (lambda: nn.GELU(approximate="tanh"), lambda: (_seq(4, 6),), True),
    "SiLU": (nn.SiLU, lambda: (_seq(4, 6),), True),
    "Mish": (nn.Mish, lambda: (_seq(4, 6),), True),
    "Hardswish": (nn.Hardswish, lambda: (_seq(4, 6),), True),
    "LeakyReLU": (lambda: nn.LeakyReLU(0.1), lambda: (_seq(4, 6),), True),
    "ELU": (nn.ELU, lambda: (_seq(4, 6),), True),
    "PReLU": (nn.PReLU, lambda: (_seq(4, 6),), True),
    "Softplus": (lambda: nn.Softplus(beta=2.0), lambda: (_seq(4, 6),), True),
    "Tanh": (nn.Tanh, lambda: (_seq(4, 6),), True),
    "Softmax": (lambda: nn.Softmax(dim=-1), lambda: (_seq(4, 6),), True),
    "LogSoftmax": (lambda: nn.LogSoftmax(dim=1), lambda: (_seq(4, 6),), True),
    "CrossEntropyLoss.label_smoothing.ignore_index": (
        lambda: nn.CrossEntropyLoss(ignore_index=0, label_smoothing=0.1), lambda: (_seq(6, 10), _tokens(6)), True),
    "CrossEntropyLoss.probabilities": (lambda: nn.CrossEntropyLoss(label_smoothing=0.2),
                                       lambda: (_seq(4, 5), torch.softmax(torch.randn(4, 5), 1)), True),
    "NLLLoss.weight": (lambda: _WithTarget(F.nll_loss, weight=torch.rand(10)),
                       lambda: (_seq(6, 10), _tokens(6)), True),
    "MSELoss": (nn.MSELoss, lambda: (_seq(4, 6), torch.randn(4, 6)), True),
    "L1Loss": (nn.L1Loss, lambda: (_seq(4, 6), torch.randn(4, 6)), True),
    "SmoothL1Loss": (nn.SmoothL1Loss, lambda: (_seq(4, 6), torch.randn(4, 6)), True),
    "HuberLoss": (lambda: nn.HuberLoss(delta=0.5), lambda: (_seq(4, 6), torch.randn(4, 6)), True),
    "BCEWithLogitsLoss": (lambda: nn.BCEWithLogitsLoss(pos_weight=torch.rand(6)),
                          lambda: (_seq(4, 6), torch.rand(4, 6)), True),
    "KLDivLoss": (lambda: nn.KLDivLoss(reduction="batchmean", log_target=True),
                  lambda: (_seq(4, 6).log_softmax(1), torch.randn(4, 6).log_softmax(1)), True),
}


class _WithTarget(nn.Module):
    """A functional loss with a fixed tensor keyword (a buffer, so it travels as an input)."""

    def __init__(self, loss: Callable, weight: torch.Tensor):
        super().__init__()
        self.loss = loss
        self.register_buffer("weight", weight)

    def forward(self, input, target):
        return self.loss(input, target, weight=self.weight)


def layer_cases(names=()) -> dict[str, Callable[[int], list]]:
    return {f"nn.{name}": (lambda n, name=name: _layer_samples(name))
            for name in LAYERS if not names or name in names or f"nn.{name}" in names}


def _layer_samples(name: str) -> list[Sample]:
    """One sample: the layer's parameters, buffers and inputs as tensors of one function."""
    make_module, make_inputs, training = LAYERS[name]
    torch.manual_seed(0)
    module = make_module().train(training)
    inputs = [x.detach().requires_grad_(x.requires_grad) for x in make_inputs()]  # leaves
    state = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    names = list(state)

    def call(*tensors):
        return torch.func.functional_call(module, dict(zip(names, tensors[:len(names)])), tuple(tensors[len(names):]))

    return [Sample(call, [t.detach().requires_grad_(t.requires_grad) for t in state.values()] + inputs)]


# ---- running and judging ----------------------------------------------------------------------
def compiled_with(system: str, call: Callable) -> Callable:
    if system == "aotgraph":
        import aotgraph

        return aotgraph.aot_function(call, "inductor", dynamic=DYNAMIC)
    torch._dynamo.reset()
    return torch.compile(call, backend="inductor", dynamic=DYNAMIC)


def run_case(samples: Callable[[int], list], systems=SYSTEMS, num_samples: int = 1,
             sample_timeout: int = 120) -> CaseResult:
    """Each system's status on the first `num_samples` samples that eager runs."""
    from torch._inductor import config

    result = CaseResult()
    try:
        candidates = samples(num_samples * 3)
    except Exception as error:  # noqa: BLE001 - a broken OpInfo is skipped, not ours to judge
        return CaseResult({s: "skipped" for s in systems}, {s: f"sample_inputs failed: {error}" for s in systems})
    outcomes = {s: [] for s in systems}
    ran = 0
    for sample in candidates:
        if ran == num_samples:
            break
        try:
            with _alarm(sample_timeout):
                expected = run_once(sample.call, fresh_copies(sample.tensors), sample.output_process)
        except Exception:  # noqa: BLE001 - eager itself cannot run this sample: skip it
            continue
        ran += 1
        for system in systems:
            try:
                with _alarm(sample_timeout), config.patch(fallback_random=True), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    actual = run_once(compiled_with(system, sample.call), fresh_copies(sample.tensors),
                                      sample.output_process)
            except SampleTimeout:
                outcomes[system].append(("inductor", f"timeout after {sample_timeout}s"))
                continue
            except Exception as error:  # noqa: BLE001 - an explicit failure is what we count
                outcomes[system].append((failure_class(error), _first_line(error)))
                continue
            mismatch = differs(expected, actual)
            outcomes[system].append(("mismatch", mismatch) if mismatch else ("passed", ""))
    for system, seen in outcomes.items():
        if not seen:
            result.status[system], result.detail[system] = "skipped", "no sample runs in eager"
            continue
        failure = next(((s, d) for s, d in seen if s != "passed"), None)
        result.status[system], result.detail[system] = failure or ("passed", "")
    return result


def failure_class(error: BaseException) -> str:
    """refused / capture / inductor, from the exception and the frames it passed through
    (Dynamo re-raises Inductor's errors with the original as the cause)."""
    from aotgraph.errors import AotGraphError

    frames, seen = [], set()
    chained = error
    while chained is not None and id(chained) not in seen:
        seen.add(id(chained))
        frames += traceback.extract_tb(chained.__traceback__)
        chained = chained.__cause__ or chained.__context__
    if any(f.name in _INDUCTOR_FUNCTIONS or any(p in f.filename for p in _INDUCTOR_CODE) for f in frames):
        return "inductor"
    if isinstance(error, AotGraphError):
        return "refused"
    return "capture"


def differs(expected, actual) -> str | None:
    exp_out, exp_grads, exp_rng = expected
    act_out, act_grads, act_rng = actual
    if not torch.equal(exp_rng, act_rng):
        return "global RNG state after the call differs from eager"
    if len(exp_out) != len(act_out):
        return f"{len(act_out)} outputs, eager has {len(exp_out)}"
    pairs = [(f"output {k}", e, a) for k, (e, a) in enumerate(zip(exp_out, act_out))]
    for k, (e, a) in enumerate(zip(exp_grads, act_grads)):
        if e is not None or a is not None:
            pairs.append((f"grad {k}", torch.zeros_like(a) if e is None else e, torch.zeros_like(e) if a is None else a))
    for what, e, a in pairs:
        if isinstance(e, torch.Tensor) != isinstance(a, torch.Tensor):
            return f"{what}: {type(a).__name__} instead of {type(e).__name__}"
        if not isinstance(e, torch.Tensor):
            if not (e == a or (e != e and a != a)):
                return f"{what}: {a!r} instead of {e!r}"
            continue
        try:
            torch.testing.assert_close(a, e, rtol=RTOL, atol=ATOL, equal_nan=True, check_stride=False)
        except AssertionError as error:
            return f"{what}: " + " ".join(str(error).split())[:200]
    return None


def _first_line(error: BaseException) -> str:
    """``Type: first line of the message`` (AotGraphErrors' messages start with their kind)."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    text = lines[0][:300] if lines else ""
    kind = type(error).__name__
    return text if text.startswith(kind) else f"{kind}: {text}"


def sweep(cases: dict, systems=SYSTEMS, num_samples: int = 1, sample_timeout: int = 120, log=print,
          budget_s: float = float("inf")) -> dict:
    results = {}
    began = time.perf_counter()
    for name, samples in cases.items():
        if time.perf_counter() - began > budget_s:
            log(f"budget of {budget_s:.0f}s spent: {len(cases) - len(results)} cases not started")
            break
        start = time.perf_counter()
        results[name] = run_case(samples, systems, num_samples, sample_timeout)
        log(f"{name:<48} " + "  ".join(f"{s}={results[name].status[s]}" for s in systems)
            + f"  ({time.perf_counter() - start:.1f}s)")
    return results


def summarize(results: dict, systems=SYSTEMS) -> str:
    lines = ["| system | tried | passed | refused (AotGraphError) | capture error | Inductor error | mismatch | "
             "skipped (eager runs no sample) |", "|---|---|---|---|---|---|---|---|"]
    for s in systems:
        counts = collections.Counter(r.status[s] for r in results.values())
        tried = len(results) - counts["skipped"]
        lines.append(f"| {s} | {tried} | " + " | ".join(str(counts[k]) for k in STATUSES) + " |")
    lines.append("")
    if "aotgraph" in systems and "torch" in systems:
        failing = {n: r for n, r in results.items() if r.status["aotgraph"] not in ("passed", "skipped")}
        both = collections.Counter(r.status["aotgraph"] for r in failing.values() if r.status["torch"] != "passed")
        ours = collections.Counter(r.status["aotgraph"] for r in failing.values() if r.status["torch"] == "passed")
        lines.append("aotgraph failures, by whether torch.compile fails the same case: "
                     + ", ".join(f"{k} {both[k]} also in torch / {ours[k]} aotgraph only"
                                 for k in STATUSES[1:5] if both[k] or ours[k]))
        lines.append("")
        torch_only = [n for n, r in results.items() if r.status["torch"] not in ("passed", "skipped")
                      and r.status["aotgraph"] == "passed"]
        lines.append(f"Cases torch.compile fails and aotgraph passes ({len(torch_only)}): "
                     + ", ".join(f"`{n}` ({results[n].status['torch']})" for n in torch_only))
        lines.append("")
    for s in systems:
        for status in STATUSES[1:5]:
            names = [n for n, r in results.items() if r.status[s] == status]
            if names:
                lines.append(f"{s} {status} ({len(names)}):")
                lines.append("")
                for name in names:
                    other = "" if len(systems) < 2 else " [" + ", ".join(
                        f"{o}={results[name].status[o]}" for o in systems if o != s) + "]"
                    lines.append(f"- `{name}`{other}: {results[name].detail[s][:200]}")
                lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", default="", help="comma-separated OpInfo names (default: all with float32)")
    parser.add_argument("--layers", default="", help="comma-separated names of LAYERS (default: all)")
    parser.add_argument("--no-ops", action="store_true")
    parser.add_argument("--no-layers", action="store_true")
    parser.add_argument("--every", type=int, default=1, help="every K-th op of op_db's float32 ops (a fixed subset)")
    parser.add_argument("--start", type=int, default=0, help="with --every: the first op taken")
    parser.add_argument("--exclude", default="", help="a regular expression: cases whose names match are left out "
                        "(jiterator on CUDA: its kernels launch outside the dispatcher, on fake tensors too)")
    parser.add_argument("--budget-s", type=float, default=float("inf"), help="start no case after this many seconds")
    parser.add_argument("--samples", type=int, default=1, help="samples per op that eager runs")
    parser.add_argument("--sample-timeout", type=int, default=180, help="seconds per sample and system")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--json", default="", help="write per-case results here")
    parser.add_argument("--dynamic", action="store_true", help="compile with symbolic sizes (both systems)")
    parser.add_argument("--device", default="cpu", help="the OpInfo samples' device (cuda: with --no-layers)")
    args = parser.parse_args(argv)
    global DYNAMIC, DEVICE
    DYNAMIC, DEVICE = args.dynamic, args.device
    warnings.filterwarnings("ignore")
    logging.getLogger("torch._dynamo").setLevel(logging.ERROR)  # graph-break notes: the table says what matters
    systems = tuple(s for s in args.systems.split(",") if s)
    cases = {}
    if not args.no_ops:
        cases.update(op_cases([n for n in args.ops.split(",") if n], args.every, args.start))
    if not args.no_layers:
        cases.update(layer_cases([n for n in args.layers.split(",") if n]))
    if args.exclude:
        cases = {name: case for name, case in cases.items() if not re.search(args.exclude, name)}
    start = time.perf_counter()
    results = sweep(cases, systems, args.samples, args.sample_timeout, budget_s=args.budget_s)
    title = (f"Inductor sweep{' with symbolic sizes' if DYNAMIC else ''}: {DEVICE}, float32, torch {torch.__version__}, {len(results)} cases "
             f"(ops: every {args.every}th, {args.samples} sample(s) each), {time.perf_counter() - start:.0f}s")
    from sweep_report import finish_sweep  # beside this script: on sys.path when it runs as one

    return finish_sweep(title, summarize(results, systems), results, args.json)


if __name__ == "__main__":
    sys.exit(main())
