"""Runtime asserts on unbacked values (`capture.runtime_asserts`), through the torch.compile
backend with Dynamo's ``capture_scalar_outputs`` and ``capture_dynamic_output_shape_ops`` on: a
call whose values satisfy what torch assumed gives eager's outputs and gradients; a call that
breaks an assumption raises as eager does (a RuntimeError) instead of running on; the asserts
stay in the forward graph through the partition; a program without unbacked values gets none."""
from __future__ import annotations

import pytest
import torch

import aotgraph

_ASSERT = torch.ops.aten._assert_scalar.default


pytestmark = pytest.mark.usefixtures("data_dependent_dynamo")


def checked_item(x, w):
    """The program's own torch._check on an .item() value."""
    n = (x[:, 0] > 0).sum().item()
    torch._check(n >= 1)
    torch._check(n < x.size(0))
    return (x @ w)[:n].sum(0) * n


def mask_then_narrow(x, w):
    """A boolean mask, then narrow by a length from .item(): narrow's meta function assumes
    the length fits the masked rows."""
    y = x @ w
    kept = y[y.sum(1) > 0]
    n = x[0, 0].abs().ceil().int().item()
    return kept.narrow(0, 0, n).tanh().sum(0)


def new_zeros_of_item(x, w):
    """x.new_zeros(n) assumes n >= 0."""
    n = x[0, 0].round().int().item()
    return (x @ w).sum() + x.new_zeros(n).sum()


def size_checked(x, w):
    """torch._check_is_size, then slicing by the size."""
    n = x[:, 0].round().int().sum().item()
    torch._check_is_size(n)
    torch._check(n <= x.size(0))
    return (x @ w)[:n].sum(0)


def _inputs(seed, program):
    torch.manual_seed(seed)
    x = torch.randn(6, 4)
    if program is checked_item:
        x[:, 0] = x[:, 0].abs() + 0.1
        x[seed + 1:, 0] *= -1  # seed + 1 positive rows
    elif program is mask_then_narrow:
        x[0, 0] = 1.5  # length 2: at least two rows pass the mask below
        x[1:3] = x[1:3].abs() + 1
    elif program is new_zeros_of_item:
        x[0, 0] = float(seed + 1)
    elif program is size_checked:
        x[:, 0] = torch.tensor([1.0, 0, 1, 0, 1, 0]) * (seed % 2)
    return x, torch.randn(4, 3).abs().requires_grad_()


def _violating(program):
    """Inputs that break one of `program`'s assumptions (eager raises on them)."""
    x, w = _inputs(0, program)
    if program is checked_item:
        x[:, 0] = -1.0  # n == 0: torch._check(n >= 1) fails
    elif program is mask_then_narrow:
        x[0, 0] = 100.0  # more rows than the mask keeps
    elif program is new_zeros_of_item:
        x[0, 0] = -3.0  # a negative size
    elif program is size_checked:
        x[:, 0] = -1.0  # a negative size
    return x, w


PROGRAMS = [checked_item, mask_then_narrow, new_zeros_of_item, size_checked]


def check_asserts(program, compiler, partition="mincut"):
    backend = aotgraph.backend(compiler=compiler, partition=partition)
    compiled = torch.compile(program, backend=backend)
    for seed in range(3):
        x, w = _inputs(seed, program)
        out = compiled(x, w)
        expected = program(x, w)
        torch.testing.assert_close(out, expected)
        grad, = torch.autograd.grad(out.sum(), w)
        expected_grad, = torch.autograd.grad(expected.sum(), w)
        torch.testing.assert_close(grad, expected_grad)
    assert len(backend.entries) == 1
    forward = backend.entries[0].partition.forward.graph
    assert forward.find_nodes(op="call_function", target=_ASSERT)  # kept by the partition
    x, w = _violating(program)
    with pytest.raises(RuntimeError):
        program(x, w)
    with pytest.raises(RuntimeError) as failure:
        compiled(x, w)
    return str(failure.value)


@pytest.mark.parametrize("partition", ["mincut", "default"])
@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.__name__)
def test_runtime_asserts_eager_compiler(program, partition):
    message = check_asserts(program, "eager", partition)
    assert "Runtime assertion failed for expression" in message


@pytest.mark.slow
@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.__name__)
def test_runtime_asserts_inductor(program):
    check_asserts(program, "inductor")


def _dynamo_keeps_the_check_lines(dynamic=False) -> bool:
    """Whether Dynamo's graph of `checked_item` gives its asserts the torch._check lines (torch
    2.13); torch 2.11's Dynamo puts the asserts it deferred right after the ``.item()``, with its
    line, and the program's torch._check lines are in no node's stack trace."""
    traces = []

    def keep(graph_module, example_inputs):
        traces.extend(node.meta.get("stack_trace") or "" for node in graph_module.graph.nodes)
        return graph_module

    torch._dynamo.reset()
    torch.compile(checked_item, backend=keep, dynamic=dynamic)(*_inputs(0, checked_item))
    torch._dynamo.reset()
    return any("torch._check(n" in trace for trace in traces)


def test_message_names_the_condition_and_the_lines():
    lines_kept = _dynamo_keeps_the_check_lines()
    backend = aotgraph.backend(compiler="eager")
    compiled = torch.compile(checked_item, backend=backend)
    compiled(*_inputs(0, checked_item))
    with pytest.raises(RuntimeError) as failure:
        compiled(*_violating(checked_item))
    message = str(failure.value)
    assert ">= 1" in message or "1 <=" in message
    assert "torch._check(n >= 1)" in message or not lines_kept  # where the program assumed it
    assert "n = (x[:, 0] > 0).sum().item()" in message  # where the value comes from


def test_inference_graph_checks_too():
    backend = aotgraph.backend(compiler="eager")
    compiled = torch.compile(checked_item, backend=backend)
    x, w = _inputs(0, checked_item)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, w), checked_item(x, w))
        with pytest.raises(RuntimeError, match="Runtime assertion failed"):
            compiled(*_violating(checked_item))
    assert backend.entries[0].joint.is_inference


def test_no_unbacked_values_no_asserts():
    def program(x, w):
        return torch.tanh(x @ w).sum(0)

    backend = aotgraph.backend(compiler="eager")
    compiled = torch.compile(program, backend=backend, dynamic=True)
    for rows in (3, 5):
        x, w = torch.randn(rows, 4), torch.randn(4, 3, requires_grad=True)
        torch.testing.assert_close(compiled(x, w), program(x, w))
    for entry in backend.entries:
        assert not entry.joint.graph_module.graph.find_nodes(op="call_function", target=_ASSERT)


def test_aot_function_with_symbolic_sizes_checks_too():
    """aot_function(dynamic=True): a shape environment of aotgraph's own, no Dynamo."""
    compiled = aotgraph.aot_function(checked_item, "eager", dynamic=True)
    for seed in range(2):
        x, w = _inputs(seed, checked_item)
        out = compiled(x, w)
        expected = checked_item(x, w)
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(torch.autograd.grad(out.sum(), w), torch.autograd.grad(expected.sum(), w))
    with pytest.raises(RuntimeError, match="torch._check"):
        compiled(*_violating(checked_item))


def test_report_shows_the_asserts():
    """The report of a program with unbacked sizes counts their bytes at the assumed hint."""
    backend = aotgraph.backend(compiler="eager")
    compiled = torch.compile(mask_then_narrow, backend=backend)
    compiled(*_inputs(0, mask_then_narrow))
    assert "_assert_scalar" in backend.reports()[0].to_json()


def test_assert_over_a_symbolic_input_size():
    """torch._check(n < x.size(0)) with the size symbolic: the assert reads it from the input."""
    where = "torch._check.n < x.size.0.." if _dynamo_keeps_the_check_lines(dynamic=True) else "u[0-9]+ < s[0-9]+"
    backend = aotgraph.backend(compiler="eager")
    compiled = torch.compile(checked_item, backend=backend, dynamic=True)
    for rows in (6, 9):
        x, w = _inputs(0, checked_item)
        x = torch.cat([x, x.abs()])[:rows]
        torch.testing.assert_close(compiled(x, w), checked_item(x, w))
    x[:, 0] = 1.0  # n == x.size(0)
    with pytest.raises(RuntimeError):
        checked_item(x, w)
    with pytest.raises(RuntimeError, match=where):
        compiled(x, w)
    assert [e.reason for e in backend.entries] == ["symbolic sizes"]
