"""In-place ops that a decomposition applies to a tensor it made itself (capture/recorder.py,
switch ``in_place_on_fresh``) are recorded as their functional twins: parity with eager, no
functionalization pass for them, and the cases that must stay in-place (a view of the fresh
tensor, a twin with another dtype) still right."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import aotgraph.capture as capture_stage
from aotgraph import config
from parity import assert_module_parity, assert_parity

aten = torch.ops.aten


@pytest.fixture
def functionalize_calls(monkeypatch):
    calls = []
    original = capture_stage.functionalize

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(capture_stage, "functionalize", counting)
    return calls


@pytest.mark.parametrize("switch_on", [True, False])
def test_silu_backward_records_no_mutation(switch_on, functionalize_calls, monkeypatch):
    """SiLU's backward decomposed (C++'s ``1 - sigmoid`` is empty_like, fill_, sub_; capture records
    it whole where the device has its kernel, unless switch ``composite_kernels_kept`` is off)."""
    disabled = {"composite_kernels_kept"} | (set() if switch_on else {"in_place_on_fresh"})
    monkeypatch.setattr(config, "disabled", config.disabled | disabled)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.SiLU(), nn.Linear(16, 4), nn.SiLU())
    parity = assert_module_parity(model, (torch.randn(3, 8),))
    assert parity.grads_compared == 4
    assert bool(functionalize_calls) is not switch_on


# Written with ATen ops, as C++ composites are (a tensor method called in a decomposition goes
# through the capture's torch-function mode, which views the tensor first).
def _fill_then_add(x):
    fresh = aten.empty_like.default(x)
    aten.fill_.Scalar(fresh, 1.0)
    aten.add_.Tensor(fresh, aten.exp.default(aten.neg.default(x)))
    return aten.reciprocal.default(fresh)


def _viewed_then_filled(x):
    fresh = aten.empty_like.default(x)
    view = aten.view.default(fresh, [-1])
    aten.fill_.Scalar(fresh, 1.0)  # the view reads the filled values
    return aten.reciprocal.default(aten.add.Tensor(aten.view.default(view, list(x.shape)),
                                                   aten.exp.default(aten.neg.default(x))))


def _promoting_twin(x):
    fresh = aten.empty_like.default(x, dtype=torch.float32)
    aten.fill_.Scalar(fresh, 0.0)
    aten.add_.Tensor(fresh, aten.zeros_like.default(x))  # in place it stays float32; add would give float64
    sigmoid = aten.reciprocal.default(aten.add.Scalar(aten.exp.default(aten.neg.default(x)), 1))
    return aten.add.Tensor(sigmoid, aten._to_copy.default(fresh, dtype=x.dtype))


@pytest.mark.parametrize("body, dtype, functionalized", [
    (_fill_then_add, torch.float32, False),
    (_viewed_then_filled, torch.float32, True),
    (_promoting_twin, torch.float64, False),  # written in by copy_, itself recorded as copy
])
def test_decompositions_writing_fresh_tensors(body, dtype, functionalized, functionalize_calls):
    """A decomposition of sigmoid (given to the capture) that writes a tensor it made: recorded
    functionally where no view of it exists (a twin of another dtype: its result copied in)."""
    def program(x):
        return torch.sigmoid(x) * 3  # each body computes sigmoid

    torch.manual_seed(0)
    x = torch.randn(4, 5, dtype=dtype, requires_grad=True)
    assert_parity(program, (x,), decompositions={aten.sigmoid.default: body})
    assert bool(functionalize_calls) is functionalized


def test_program_mutations_are_still_functionalized(functionalize_calls):
    """An in-place op of the program itself (not inside a decomposition) is left to functionalization."""
    def program(x):
        y = x * 2
        y.add_(1)
        return y

    assert_parity(program, (torch.randn(3, requires_grad=True),))
    assert functionalize_calls
