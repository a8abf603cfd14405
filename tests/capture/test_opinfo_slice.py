"""A fast, representative slice of benchmarks/opinfo_sweep.py: OpInfo samples through
aot_function, outputs, gradients, inputs after the call and RNG state compared with eager.
Every op here must pass; ops aotgraph cannot capture must fail with an AotGraphError."""
import importlib.util
import pathlib
import sys

import pytest
import torch

_SWEEP = pathlib.Path(__file__).parents[2] / "benchmarks" / "opinfo_sweep.py"
_spec = importlib.util.spec_from_file_location("opinfo_sweep", _SWEEP)
sweep = sys.modules.setdefault("opinfo_sweep", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(sweep)

PASSING = [
    # elementwise, broadcasting, type promotion
    "abs", "sin", "exp", "log1p", "sigmoid", "add", "mul", "div.floor_rounding", "pow", "atan2", "lerp", "addcmul", "clamp",
    "where", "masked_fill", "nn.functional.gelu", "nn.functional.silu",
    # reductions
    "sum", "mean", "std", "amax", "logsumexp", "cumsum", "cumprod", "sort", "topk", "max.reduction_with_dim",
    "nanquantile",
    # views and layout
    "view", "reshape", "transpose", "permute", "expand", "squeeze", "unsqueeze", "narrow_copy", "split", "unbind",
    "chunk", "diagonal", "as_strided", "flip", "roll", "contiguous", "view_as_complex", "real", "t", "movedim",
    # indexing and scatter
    "index_select", "gather", "scatter", "scatter_add", "index_add", "index_copy", "take_along_dim", "tril",
    # linear algebra and nn
    "mm", "bmm", "addmm", "matmul", "einsum", "linalg.solve", "nn.functional.linear", "nn.functional.conv2d",
    "nn.functional.layer_norm", "nn.functional.batch_norm", "_batch_norm_with_update", "softmax",
    "nn.functional.cross_entropy", "nn.functional.embedding", "nn.functional.max_pool2d",
    "nn.functional.interpolate.bilinear", "cat", "stack", "stft",
    # randomness (seeded outside the op; draws and RNG state must match eager)
    "bernoulli", "normal", "nn.functional.dropout", "nn.functional.rrelu", "nn.functional.scaled_dot_product_attention",
    # out= overloads used internally
    "nn.functional.linear_cross_entropy.chunked_none",
]

REFUSED = ["masked_select"]
# Data-dependent in some torch versions only (both trace and match eager on torch 2.14):
# either it matches eager or it is refused clearly, never a silent mismatch.
VERSION_DEPENDENT = ["narrow", "combinations"]

_OPS = dict(sweep.select_ops(set(PASSING + REFUSED + VERSION_DEPENDENT), 0))


def _differentiable(op) -> bool:
    try:
        op(torch.ones(3, requires_grad=True)).sum().backward()
        return True
    except RuntimeError:  # "derivative for aten::... is not implemented"
        return False


def _reads_a_value(fn) -> bool:
    """Whether eager's `fn` runs aten.equal (a tensor's value read in C++)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Spy(TorchDispatchMode):
        seen = False

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Spy.seen |= func is torch.ops.aten.equal.default
            return func(*args, **(kwargs or {}))

    with Spy():
        fn()
    return Spy.seen


# Ops of PASSING that older torch cannot run as torch 2.13 does: (torch's behaviour there, whether
# this torch has it)
_TORCH_LIMITS = {
    "narrow_copy": ("no derivative for aten::narrow_copy (torch 2.11): eager runs no sample",
                    lambda: not _differentiable(lambda t: torch.narrow_copy(t, 0, 1, 2))),
    "nn.functional.linear_cross_entropy.chunked_none": (
        "no torch.nn.functional.linear_cross_entropy (torch 2.11)",
        lambda: not hasattr(torch.nn.functional, "linear_cross_entropy")),
}
# Ops of PASSING data-dependent in older torch: either they match eager or are refused clearly
_DATA_DEPENDENT_IN_OLDER_TORCH = {
    # torch 2.11's nanquantile checks q's range with aten.equal, even a Python float's
    # (torch.compile's fullgraph refuses it too); torch 2.13 checks the float itself
    "nanquantile": lambda: _reads_a_value(lambda: torch.nanquantile(torch.randn(3), 0.5)),
}


@pytest.mark.parametrize("name", PASSING)
def test_op_matches_eager(name):
    if name in _TORCH_LIMITS and _TORCH_LIMITS[name][1]():
        pytest.skip(f"torch {torch.__version__} has {_TORCH_LIMITS[name][0]}")
    result = sweep.run_op(_OPS[name], ("aotgraph",), samples_per_op=3, sample_timeout=60)
    if name in _DATA_DEPENDENT_IN_OLDER_TORCH and _DATA_DEPENDENT_IN_OLDER_TORCH[name]():
        _matches_or_is_refused_clearly(result)
        return
    assert result.status["aotgraph"] == "passed", result.detail["aotgraph"]


@pytest.mark.parametrize("name", REFUSED)
def test_op_refused_with_a_clear_error(name):
    result = sweep.run_op(_OPS[name], ("aotgraph",), samples_per_op=3, sample_timeout=60)
    assert result.status["aotgraph"] == "error"
    assert any(kind in result.detail["aotgraph"] for kind in ("UnsupportedOp", "DataDependentControlFlow"))


@pytest.mark.parametrize("name", VERSION_DEPENDENT)
def test_op_matches_eager_or_is_refused_clearly(name):
    _matches_or_is_refused_clearly(sweep.run_op(_OPS[name], ("aotgraph",), samples_per_op=3, sample_timeout=60))


def _matches_or_is_refused_clearly(result):
    status, detail = result.status["aotgraph"], result.detail.get("aotgraph", "")
    assert status in ("passed", "error"), detail
    if status == "error":
        assert any(kind in detail for kind in ("UnsupportedOp", "DataDependentControlFlow")), detail
