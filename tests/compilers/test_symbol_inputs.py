"""Symbols of a graph's input sizes passed to Inductor as SymInt inputs of their own
(`compilers/symbol_inputs.py`), so that Inductor's FX graph cache guards on them: before, a
backward Inductor had specialized to one size was handed to the next size (HuBERT), and a
second compile of a graph with a saved ``2*s0`` failed with ``KeyError`` (Qwen2-MoE)."""
from __future__ import annotations

import copy

import pytest
import torch

import aotgraph
from backend_training import assert_repeated_mask_trains, repeated_mask
from aotgraph.compilers.symbol_inputs import SymbolReading, unbound_symbol_readings
from aotgraph.torch_private.symbolic import new_symbolic_fake_mode, symbolic_fake

pytestmark = pytest.mark.usefixtures("fresh_dynamo")


@pytest.fixture
def fresh_inductor_cache(tmp_path, monkeypatch):
    """Inductor's FX graph cache on, empty; aotgraph's own cache off, so compiles reach Inductor."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    monkeypatch.setenv("AOTGRAPH_CACHE", "0")
    from torch._inductor import config

    with config.patch(fx_graph_cache=True):
        yield


def symbolic_fakes(*shapes):
    """Fake tensors of `shapes` with every size a symbol of one shape environment (no duck sizing)."""
    mode = new_symbolic_fake_mode()
    return [symbolic_fake(mode, torch.empty(shape), f"t{i}") for i, shape in enumerate(shapes)]


def test_readings_prefer_an_exact_size_and_skip_bound_symbols():
    a, b = symbolic_fakes((2, 7, 4), (6, 3))
    readings = unbound_symbol_readings([a, b, *b.shape])  # b's sizes bound by SymInt inputs: a's are read
    assert [(r.index, r.what, r.dim, r.scale, r.offset) for r in readings] == [(0, "size", d, 1, 0) for d in range(3)]
    assert [r.value([torch.empty(2, 9, 4), torch.empty(5, 3), 5, 3]) for r in readings] == [2, 9, 4]


def test_a_symbol_only_in_an_expression_is_solved_from_it():
    (a,) = symbolic_fakes((5,))
    n = a.shape[0]
    readings = unbound_symbol_readings([a.new_empty(()), n * 2 + 1])
    assert [(r.index, r.what, r.scale, r.offset) for r in readings] == [(1, "int", 2, 1)]
    assert readings[0].value([None, 2 * 11 + 1]) == 11
    contiguous = a.new_empty((3, n))  # n read from the size, not from the first stride
    assert [(r.what, r.dim) for r in unbound_symbol_readings([contiguous])] == [("size", 1)]
    assert unbound_symbol_readings([a.new_empty(()), n // 3]) is None  # not linear: no reading


def test_a_reading_is_plain_data():
    reading = SymbolReading("s0", 1, "stride", 0, 32, 0)
    assert reading.value([None, torch.empty(5, 32)]) == 1
    assert copy.deepcopy(reading) == reading


class ConvThenBreak(torch.nn.Module):
    """HuBERT's positional convolution (grouped, even kernel, last frame dropped), a graph break
    on a random draw (its layer drop) and a linear layer. Inductor's lowering of the grouped
    convolution's backward specializes the length."""

    def __init__(self, d=16):
        super().__init__()
        self.conv = torch.nn.Conv1d(d, d, 8, padding=4, groups=4)
        self.lin = torch.nn.Linear(d, d)

    def forward(self, x):
        x = x + torch.nn.functional.gelu(self.conv(x.transpose(1, 2))[:, :, :-1]).transpose(1, 2)
        if torch.rand([]) < 0.0:
            x = x * 2
        return self.lin(x).sin()


def test_a_backward_specialized_by_inductor_is_not_reused_at_another_size(fresh_inductor_cache):
    torch.manual_seed(0)
    model = ConvThenBreak()
    compiled = torch.compile(copy.deepcopy(model), backend=aotgraph.backend("inductor"))
    for length in (9, 13, 17):  # automatic dynamic from the second; the third compiles again
        x = torch.randn(2, length, 16, requires_grad=True)
        compiled(x).sum().backward()
        x_eager = x.detach().requires_grad_()
        model(x_eager).sum().backward()
        torch.testing.assert_close(x.grad, x_eager.grad, rtol=1e-4, atol=1e-5)
        for ours, eager in zip(compiled.parameters(), model.parameters()):
            torch.testing.assert_close(ours.grad, eager.grad, rtol=1e-4, atol=1e-5)


def test_a_saved_size_expression_compiles_again_from_inductors_cache(fresh_inductor_cache):
    """The backward saves ``2*s0`` (repeat_interleave's size) but not ``s0``: the second compile
    of the same graphs (a new Dynamo) is a hit of Inductor's FX graph cache, guarded on ``s0``."""
    for attempt in range(2):
        torch._dynamo.reset()
        assert_repeated_mask_trains(torch.compile(repeated_mask, backend=aotgraph.backend("inductor")), (4, 6))


def test_a_compiler_of_the_users_gets_every_symbol_as_an_input():
    """torch hands compilers graphs whose SymInt inputs bind every symbol of their tensors'
    sizes (Inductor's cache relies on it): so do we, to any compiler but the embedded two."""
    handed = []

    def compiler(graph_module, example_inputs):
        symbols = set().union(*(s.node.expr.free_symbols for v in example_inputs if isinstance(v, torch.Tensor)
                                for s in v.shape if isinstance(s, torch.SymInt)))
        bound = {v.node.expr for v in example_inputs if isinstance(v, torch.SymInt)}
        handed.append(symbols <= bound)
        return graph_module.forward

    def program(x, w):
        return (x[1:] @ w).sin().sum()

    compiled = aotgraph.aot_function(program, compiler, dynamic=True)
    for batch in (5, 7):
        x, w = torch.randn(batch, 4, requires_grad=True), torch.randn(4, 3, requires_grad=True)
        compiled(x, w).backward()
        x_eager, w_eager = x.detach().requires_grad_(), w.detach().requires_grad_()
        program(x_eager, w_eager).backward()
        torch.testing.assert_close(x.grad, x_eager.grad)
        torch.testing.assert_close(w.grad, w_eager.grad)
    assert handed == [True, True]  # one forward and one backward, for both sizes
