"""Unbacked sizes through the torch.compile backend, with Dynamo's ``capture_scalar_outputs``
and ``capture_dynamic_output_shape_ops`` on: ``.item()``, boolean masks, ``nonzero``,
``repeat_interleave`` and ``masked_select`` make symbols known only at run time; capture binds
each to the node that makes it (``meta["unbacked_bindings"]``), and training programs give
eager's outputs and gradients on both compilers."""
from __future__ import annotations

import pytest
import torch

import aotgraph


pytestmark = pytest.mark.usefixtures("data_dependent_dynamo")


def item_scaled(x, w):
    return (x @ w) * x.abs().mean().item()


def boolean_mask(x, w):
    y = x @ w
    return y[y > 0].sum() + y.sum()


def nonzero_gather(x, w):
    y = x @ w
    rows = (y.sum(1) > 0).nonzero().squeeze(1)
    return y[rows].pow(2).sum()


def repeat_rows(x, w):
    counts = (x[:, 0] > 0).long() + 1
    return (x @ w).repeat_interleave(counts, dim=0).sum(0)


def masked_select(x, w):
    y = torch.tanh(x @ w)
    return torch.masked_select(y, y > 0.1).sum()


def copy_into_buffer(x, w):
    """A copy between a slice clamped to a data-dependent length and a buffer of that length:
    layouts equal at run time that capture cannot prove equal (no guard may be asked)."""
    y = torch.cat([x, x], 1) @ w.repeat(2, 1)
    columns = (x[:, 0] > 0).sum().item()
    buffer = torch.zeros(y.shape[0], columns)
    buffer.copy_(torch.cat([y, y], 1)[:, :columns].exp())
    return buffer.sum(1)


def index_put_rows(x, w):
    """Rows chosen by ``nonzero`` written in place (``buf[rows] = ...``): whether the write's
    value has one element or the target's shape is not known without a guard."""
    y = x @ w
    rows = (y.sum(1) > 0).nonzero().squeeze(1)
    buffer = torch.zeros_like(y)
    buffer[rows] = y[rows] * 2
    return buffer.sum(1) + y.sum(1)


PROGRAMS = [item_scaled, boolean_mask, nonzero_gather, repeat_rows, masked_select, copy_into_buffer, index_put_rows]


def check_parity(program, compiler):
    backend = aotgraph.backend(compiler=compiler)
    compiled = torch.compile(program, backend=backend)
    for seed in range(3):  # different values: different unbacked sizes, one graph
        torch.manual_seed(seed)
        x, w = torch.randn(6, 4), torch.randn(4, 3, requires_grad=True)
        out = compiled(x, w)
        grad, = torch.autograd.grad(out.sum(), w)
        expected = program(x, w)
        expected_grad, = torch.autograd.grad(expected.sum(), w)
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(grad, expected_grad)
    # one graph, one entry; where Dynamo itself splits the program (torch 2.11's meta copy_ guards
    # Eq(u0, u1) in copy_into_buffer: a graph break), no more entries than its own graphs
    assert len(backend.entries) == 1 or len(backend.entries) <= _dynamo_graphs(program)
    graph_code = backend.entries[0].joint.graph_module.code
    assert "_local_scalar_dense" in graph_code or "sym_size" in graph_code  # the symbol is read in the graph


def _dynamo_graphs(program) -> int:
    """How many graphs torch.compile's "eager" backend gets for check_parity's calls."""
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(program, backend=counter)
    for seed in range(3):
        torch.manual_seed(seed)
        compiled(torch.randn(6, 4), torch.randn(4, 3, requires_grad=True))
    torch._dynamo.reset()
    return counter.frame_count


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.__name__)
def test_unbacked_sizes_eager_compiler(program):
    check_parity(program, "eager")


@pytest.mark.slow
@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.__name__)
def test_unbacked_sizes_inductor(program):
    check_parity(program, "inductor")


def numbers_out(x, w):
    """Symbolic Python numbers among the outputs: returned as the numbers eager returns."""
    y = x @ w
    return y.tanh(), y.sum().item(), (x > 0).sum().item() + 1, y.amax().item() > 0, x.size(0) * 2


@pytest.mark.parametrize("compiler", ["eager", pytest.param("inductor", marks=pytest.mark.slow)])
@pytest.mark.parametrize("dynamic", [False, True])
def test_symbolic_numbers_as_outputs(compiler, dynamic):
    backend = aotgraph.backend(compiler=compiler)
    compiled = torch.compile(numbers_out, backend=backend, dynamic=dynamic)
    for rows in (6, 7, 8):
        torch.manual_seed(rows)
        x, w = torch.randn(rows, 4), torch.randn(4, 3, requires_grad=True)
        out, expected = compiled(x, w), numbers_out(x, w)
        assert [type(o) for o in out] == [type(e) for e in expected]
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)  # the float: float32's sum, any order
        grad, = torch.autograd.grad(out[0].sum(), w)
        torch.testing.assert_close(grad, torch.autograd.grad(expected[0].sum(), w)[0])
    assert len(backend.entries) == (1 if dynamic else 3)


@pytest.mark.parametrize("compiler", ["eager", "inductor"])
def test_an_input_marked_unbacked(compiler):
    """``mark_unbacked(x, 0)``: Dynamo traces x's first size as an unbacked symbol, with no
    value for a decision to be made by (the backend raised reading its layout's hints, then
    guarding whether it held its memory). One compile over several batch sizes, eager's values
    and gradients."""
    def program(x, w):
        return (x @ w).softmax(-1) * 2

    backend = aotgraph.backend(compiler=compiler)
    compiled = torch.compile(program, backend=backend)
    w = torch.randn(2, 3, requires_grad=True)
    for batch in (4, 8, 5):
        x = torch.randn(batch, 2, requires_grad=True)
        torch._dynamo.decorators.mark_unbacked(x, 0)
        out = compiled(x, w)
        grads = torch.autograd.grad(out.pow(2).sum(), (x, w))
        expected = program(x, w)
        for got, want in zip((out, *grads), (expected, *torch.autograd.grad(expected.pow(2).sum(), (x, w)))):
            torch.testing.assert_close(got, want)
    assert len(backend.entries) == 1


def divided_by_count_plus_one(x, w):
    """The backward gets the saved size ``u0 + 1``; Inductor's kernels read ``u0`` itself."""
    y = x @ w
    return y / (torch.count_nonzero(y > 0).item() + 1)


def mask_rows_doubled(x, w):
    """A saved size ``2*u0`` (the rows of the mask, twice)."""
    rows = x[x[:, 0] > 0]
    return (torch.cat([rows, rows * 2]) @ w).tanh()


@pytest.mark.parametrize("program", [divided_by_count_plus_one, mask_rows_doubled], ids=lambda p: p.__name__)
def test_inductor_gets_the_data_dependent_symbol_of_a_saved_expression(program):
    check_parity(program, "inductor")
