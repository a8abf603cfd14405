"""Writes into a view whose new values read the written tensor, through Inductor.

Inductor writes such a scatter into its base's own buffer where nothing reads the base later,
and computes the new values inside the writing loop from that buffer as the loop changes it
(torch 2.11-2.13): later elements read values the loop already overwrote. torch.compile's own
Inductor gets these programs wrong; aotgraph hands Inductor the new values through a copy of
its own (switch ``scatter_sources_apart``). Outputs, gradients and written inputs equal eager's."""
from __future__ import annotations

import pytest
import torch

import aotgraph


def diagonal_twice_from_one_element(x):
    y = x * 1
    y.diagonal().copy_(x.diagonal() * 2)
    y.diagonal().copy_(y.diagonal()[1] * -1)
    return y


def diagonal_reversed(x):
    y = x * 1
    y.diagonal().mul_(2)
    y.diagonal().copy_(y.diagonal().flip(0))
    return y


def functional_diagonal_scatters(x):
    r = torch.diagonal_scatter(x * 1, x.diagonal() * 2)
    d = r.diagonal()
    return torch.diagonal_scatter(r, (d[1] * -1).expand(d.shape)).diagonal()


def strided_window_from_another(x):
    y = x * 1
    y.diagonal().mul_(2)
    y.as_strided((2,), (5,), 0).copy_(y.as_strided((2,), (5,), 5) * 3)
    return y


def rows_shifted(x):
    y = x * 1
    y[0].mul_(2)
    y[1:] = y[:-1] * 0.5
    return y


def column_reversed(x):
    y = x * 1
    y[:, 0].mul_(2)
    y[:, 1] = y[:, 1].flip(0) + y[:, 0]
    return y


PROGRAMS = [diagonal_twice_from_one_element, diagonal_reversed, functional_diagonal_scatters,
            strided_window_from_another, rows_shifted, column_reversed]


def _run(fn, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(5, 5, dtype=torch.float64, requires_grad=True)
    out = fn(x)
    cotangent = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, x, cotangent)
    return out.detach(), grad


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.__name__)
def test_a_view_written_from_its_own_tensor_equals_eager_through_inductor(program, dynamic):
    expected = _run(program)
    ours = _run(aotgraph.aot_function(program, "inductor", dynamic=dynamic))
    torch.testing.assert_close(ours, expected)  # switch off: the diagonal programs come back wrong


def test_a_written_input_whose_diagonal_is_read_equals_eager_through_inductor():
    """Fuzzer seed 1690: a diagonal taken before the input is relaid by ``as_strided_``, written
    from one of its own elements; the input comes back changed too."""
    def program(x):
        diagonal = torch.diagonal(x, 0, 1, 0)
        x.as_strided_((15,), (1,), 1)
        diagonal[0] = -3.0
        diagonal.copy_(diagonal.select(0, 1) * -1.0)
        diagonal.div_(-1.0)
        diagonal.neg_()
        return diagonal, x

    results = []
    for fn in (program, aotgraph.aot_function(program, "inductor")):
        torch.manual_seed(0)
        results.append(fn(torch.randn(4, 4)))
    torch.testing.assert_close(results[1], results[0])


def test_only_scatters_that_read_their_base_get_the_copy(monkeypatch):
    """A scatter of values computed from another tensor is handed to Inductor as it is."""
    from aotgraph import make_boxed_func
    from aotgraph.compilers import torchinductor

    copies = []

    def compile_fx_inner(graph_module, example_inputs, role, cpp_wrapper, cuda_graphs):
        copies.append(sum(str(node.target) == "aotgraph.materialized.default" for node in graph_module.graph.nodes))
        return make_boxed_func(graph_module.forward)

    monkeypatch.setattr(torchinductor, "_compile_fx_inner", compile_fx_inner)

    def from_other(x, z):
        y = x * 1
        y.diagonal().copy_(z * 2)
        return y

    x, z = torch.randn(4, 4), torch.randn(4)
    torch.testing.assert_close(aotgraph.aot_function(from_other, "inductor")(x, z), from_other(x, z))
    torch.testing.assert_close(aotgraph.aot_function(diagonal_reversed, "inductor")(x), diagonal_reversed(x))
    assert copies == [0, 1]
