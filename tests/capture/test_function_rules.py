"""The torch-function rules for symbolic sizes (capture/function_rules.py): where they answer,
the captured graphs are the ones the composites give (group norm) or compute the same values
(nearest upsampling, its scale a constant), with the same size guards; compiled programs
equal eager over several sizes, including the arguments the rules decline (non-contiguous or
channels-last inputs, autocast, fractional scales, explicit sizes)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import aotgraph
from aotgraph import config, models
from aotgraph.capture import function_rules

from parity import assert_close
from symbolic_capture import codes_and_guards


def test_a_unet_captures_the_same_graphs_and_guards_with_and_without_the_rules(monkeypatch):
    torch.manual_seed(0)
    model, inputs = models.unet()
    answered = []
    for function, rule in list(function_rules.RULES.items()):
        monkeypatch.setitem(function_rules.RULES, function,
                            lambda *a, _rule=rule, **k: answered.append(_rule(*a, **k)) or answered[-1])
    codes_on, guards_on = codes_and_guards(model, inputs)
    assert sum(out is not function_rules.DECLINED for out in answered) == 14 + 3  # every group norm, upsampling
    monkeypatch.setattr(config, "disabled", config.disabled | {"symbolic_function_rules"})
    codes_off, guards_off = codes_and_guards(model, inputs)
    assert guards_on == guards_off and any("//" in g for g in guards_on)
    # group norm: the same nodes; upsampling: its scale 0.5 where the decomposition computes s/(2*s)
    assert [c.count("native_group_norm") for c in codes_on] == [c.count("native_group_norm") for c in codes_off]
    assert all("sym_float" not in c for c in codes_on) and any("sym_float" in c for c in codes_off)


class _NormUp(torch.nn.Module):
    """A convolution (its output's channel count static), group norm, nearest upsampling."""

    def __init__(self, case: str):
        super().__init__()
        self.case = case
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.norm = torch.nn.GroupNorm(4, 8, affine=case != "plain")

    def forward(self, x):
        y = self.conv(x)
        if self.case == "strided":
            y = y[..., ::2]
        if self.case == "channels_last":
            y = y.contiguous(memory_format=torch.channels_last)
        y = F.silu(self.norm(y))
        return F.interpolate(y, scale_factor=2, mode="nearest").sin()


def _answers(monkeypatch) -> list:
    """Whether each rule call answered (not DECLINED), in order."""
    answered = []
    for function, rule in list(function_rules.RULES.items()):
        monkeypatch.setitem(function_rules.RULES, function, lambda *a, _rule=rule, **k: (
            answered.append(_rule(*a, **k)) or answered[-1]))
    return answered


def _check(compiled, fn, make_args, shapes):
    """`compiled` (of `fn`) against eager `fn` at each shape: outputs and gradients. Eager runs
    once at each shape before it is compared: its first CPU call at a new shape, right after
    other test modules, sometimes differs from its own later calls by 1e-4 (seen about one run
    in ten after tests/capture/test_fake_outputs.py; the compiled program matched eager's
    second call exactly each time)."""
    for shape in shapes:
        args = make_args(shape)
        expected_args = [a.detach().clone().requires_grad_(a.requires_grad) for a in args]
        with torch.no_grad():
            fn(*[a.detach().clone() for a in args])
        expected, out = fn(*expected_args), compiled(*args)
        assert_close(out, expected, f"output at {shape}")
        grad = torch.randn_like(expected)
        expected.backward(grad)
        out.backward(grad)
        for a, e in zip(args, expected_args):
            if a.requires_grad:
                assert_close(a.grad, e.grad, f"gradient at {shape}")


@pytest.mark.parametrize("case", ["affine", "plain", "channels_last", "strided", "autocast"])
def test_group_norm_and_upsampling_equal_eager_over_sizes(case, monkeypatch):
    answered = _answers(monkeypatch)
    torch.manual_seed(0)
    model = _NormUp(case)
    eager = copy.deepcopy(model)
    if case == "autocast":
        def run(m):
            def autocast_forward(x):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return m(x)
            return autocast_forward
    else:
        def run(m):
            return m
    compiled = aotgraph.aot_module(model, aotgraph.nop, dynamic=True)
    _check(run(compiled), run(eager), lambda shape: (torch.randn(*shape, requires_grad=True),),
           [(2, 3, 6, 6), (3, 3, 4, 10), (2, 3, 7, 5)])
    for p, q in zip(model.parameters(), eager.parameters()):
        assert_close(p.grad, q.grad, "parameter gradient")
    expected = {"affine": 2, "plain": 2, "channels_last": 0, "strided": 1, "autocast": 0}[case]
    assert sum(out is not function_rules.DECLINED for out in answered) == expected
    assert len(compiled.aotgraph_entries) == 1  # (one symbolic compile served every size)


@pytest.mark.parametrize("scale, answers", [(2, True), (3, True), ((2, 3), True), (2.0, True), (1.5, False)])
def test_nearest_upsampling_equals_eager_over_sizes(scale, answers, monkeypatch):
    answered = _answers(monkeypatch)
    torch.manual_seed(0)

    def fn(x):
        return F.interpolate(x, scale_factor=scale, mode="nearest").sin()

    _check(aotgraph.aot_function(fn, aotgraph.nop, dynamic=True), fn,
           lambda shape: (torch.randn(*shape, requires_grad=True),), [(2, 3, 5, 6), (1, 2, 9, 4), (3, 3, 7, 7)])
    assert any(out is not function_rules.DECLINED for out in answered) is answers


def test_the_rules_decline_static_sizes_and_what_they_do_not_cover():
    fake_free = torch.randn(2, 8, 4, 4)
    assert function_rules._group_norm(fake_free, 4) is function_rules.DECLINED  # static sizes
    assert function_rules._interpolate(fake_free, scale_factor=2) is function_rules.DECLINED
    assert function_rules._interpolate(fake_free, size=(8, 8)) is function_rules.DECLINED


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=[2], stride=[1], dilation=2, ceil_mode=True),
    dict(kernel_size=3, stride=2, return_indices=True),
], ids=["plain", "padded", "lists_dilated_ceil", "indices"])
@pytest.mark.parametrize("batched", [True, False])
def test_max_pool1d_equals_eager_over_lengths_without_a_compile_per_length(kwargs, batched, monkeypatch):
    """Its C++ composite read the length as an int: every length compiled again (as in
    torch.compile). The rule pools in 2-d over a height of 1, as eager's kernel with gradients."""
    answered = _answers(monkeypatch)
    torch.manual_seed(0)

    def fn(x):
        out = F.max_pool1d(x.sin(), **kwargs)
        if kwargs.get("return_indices"):
            out, indices = out
            return out * indices.float().sin()
        return out

    compiled = aotgraph.aot_function(fn, aotgraph.nop, dynamic=True)
    shapes = [(2, 3, 10), (3, 3, 13), (1, 3, 8), (2, 3, 21)]
    _check(compiled, fn, lambda shape: (torch.randn(*(shape if batched else shape[1:]), requires_grad=True),), shapes)
    assert answered and all(out is not function_rules.DECLINED for out in answered)
    assert len(compiled.aotgraph_entries) <= 2  # (the batch of 1 compiles apart: sizes 0 and 1 are specialized)
