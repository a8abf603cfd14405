"""``as_strided`` of an input that starts inside its storage, through Inductor.

torch 2.11's and 2.12's Inductor counts an explicit ``as_strided`` offset of a graph input from
the input's first element instead of its storage's start, and reads 4 elements too far for
``base[1:]`` of a 4x4 `base` (torch.compile's too); aotgraph hands those Inductors the offset
from the input's first element (switch ``as_strided_input_offsets``; torch 2.13 does it
itself). Outputs, gradients and written inputs equal eager's on every supported torch."""
from __future__ import annotations

import pytest
import torch

import aotgraph
from aotgraph.compilers import input_offsets


def read_through_as_strided(x):
    return x.as_strided((2, 2), (1, 4), 5) * -3.0


def relaid_and_written(x):
    x.as_strided_((2, 2), (1, 4), 5)
    x.mul_(-3.0)
    return x.sin()


def _inputs(seed=0):
    torch.manual_seed(seed)
    base = torch.randn(4, 4, dtype=torch.float64)
    return base, base[1:]


def test_an_as_strided_read_of_an_offset_input_equals_eager_through_inductor():
    compiled = aotgraph.aot_function(read_through_as_strided, "inductor")
    for make in (lambda: torch.randn(4, 4, dtype=torch.float64)[1:], lambda: torch.randn(3, 4, dtype=torch.float64)):
        x = make().requires_grad_()
        expected = read_through_as_strided(x)
        ours = compiled(x)
        torch.testing.assert_close(ours, expected)
        torch.testing.assert_close(torch.autograd.grad(ours.sum(), x)[0], torch.autograd.grad(expected.sum(), x)[0])


def test_an_offset_input_relaid_in_place_and_written_equals_eager_through_inductor():
    results = []
    for fn in (relaid_and_written, aotgraph.aot_function(relaid_and_written, "inductor")):
        base, x = _inputs()
        results.append((fn(x), base))
    torch.testing.assert_close(results[1], results[0])


@pytest.mark.parametrize("subtracts", [False, True])
def test_offsets_count_from_the_input_where_inductor_does_not_subtract(subtracts, monkeypatch):
    """The rewrite itself, on every torch: where Inductor subtracts the input's offset (torch
    2.13), the graph keeps storage offsets; where it does not, it gets offsets from the
    input's first element. Inductor's compile is stubbed by the graph's code: eager values."""
    from aotgraph import make_boxed_func
    from aotgraph.compilers import torchinductor

    monkeypatch.setattr(input_offsets, "_inductor_subtracts_input_offsets", lambda: subtracts)
    offsets = []

    def compile_fx_inner(graph_module, example_inputs, role, cpp_wrapper, cuda_graphs):
        offsets.extend(node.args[3] for node in graph_module.graph.nodes if node.target is torch.ops.aten.as_strided.default)
        return make_boxed_func(graph_module.forward)

    monkeypatch.setattr(torchinductor, "_compile_fx_inner", compile_fx_inner)
    _, x = _inputs()
    aotgraph.aot_function(read_through_as_strided, "inductor")(x)
    assert offsets == ([5] if subtracts else [1])
