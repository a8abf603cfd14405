"""Compiled functions called from programs that are themselves traced: an `aot_function` or
`aot_module` met while another capture (or make_fx) runs the outer program on fakes runs its
program inlined in the outer trace, as torch.compile inlines a compiled function it meets. Its
compiled code would run on fake tensors (Inductor's kernels read their memory: a segfault)."""
import pytest
import torch
import torch.nn as nn

import aotgraph


def _inner(x):
    return (x * x).sum(-1, keepdim=True) + x.sin()


def _values_and_grads(fn):
    torch.manual_seed(0)
    x, w = torch.randn(3, 4, requires_grad=True), torch.randn(4, 5, requires_grad=True)
    out = fn(x, w)
    out.sum().backward()
    return out.detach(), x.grad, w.grad


@pytest.mark.parametrize("inner_compiler", ["eager", "inductor"])
@pytest.mark.parametrize("inner_ran_first", [False, True])
def test_an_aot_function_inside_another_runs_inlined(inner_compiler, inner_ran_first):
    inner = aotgraph.aot_function(_inner, inner_compiler)
    if inner_ran_first:  # its compiled entry matches the outer capture's fakes' sizes
        inner(torch.randn(3, 5))
    outer = aotgraph.aot_function(lambda x, w: inner(x @ w).cos(), "eager")
    expected = _values_and_grads(lambda x, w: _inner(x @ w).cos())
    for got, want in zip(_values_and_grads(outer), expected):
        torch.testing.assert_close(got, want)


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return torch.tanh(self.lin(x))


class _Outer(nn.Module):
    def __init__(self, wrap):
        super().__init__()
        self.block = wrap(_Block())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.block(x))


@pytest.mark.parametrize("wrap", ["aot_module", "torch.compile"])
def test_a_compiled_child_inside_an_aot_module(wrap):
    """A child wrapped by `aot_module` or by torch.compile (whose module keeps no ``training``
    in its own dict: repeated-layer search read it there) inside an `aot_module` parent."""
    wrapper = {"aot_module": lambda m: aotgraph.aot_module(m, "eager"),
               "torch.compile": lambda m: torch.compile(m, backend="aot_eager")}[wrap]
    torch.manual_seed(0)
    eager = _Outer(lambda m: m)
    torch.manual_seed(0)
    model = _Outer(wrapper)
    compiled = aotgraph.aot_module(model, "eager")
    x = torch.randn(3, 4)
    for run, module in ((eager, eager), (compiled, model)):
        run(x).square().sum().backward()
    torch.testing.assert_close(compiled(x), eager(x))
    for (name, p), q in zip(model.named_parameters(), eager.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_make_fx_of_a_program_calling_an_aot_function_records_its_ops():
    from torch.fx.experimental.proxy_tensor import make_fx

    inner = aotgraph.aot_function(_inner, "eager")
    inner(torch.randn(3, 4))
    graph = make_fx(lambda x: inner(x) * 2)(torch.randn(3, 4))
    targets = {str(n.target) for n in graph.graph.nodes if n.op == "call_function"}
    assert "aten.sin.default" in targets and "aten.mul.Tensor" in targets
    torch.testing.assert_close(graph(torch.ones(3, 4)), _inner(torch.ones(3, 4)) * 2)
