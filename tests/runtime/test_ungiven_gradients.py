"""An input that the loss reaches only through outputs it does not use gets no gradient (.grad
stays None), as in eager, not zeros: the runtime's backward returns None for each gradient whose
tangents autograd all gave none (`runtime._without_ungiven`): a leaf returned as itself is one
(the caller holds the leaf, never the Function's output for it). An optimizer skips a None
gradient, and steps (momentum, weight decay, Adam's moments) on a zero one."""
import pytest
import torch
import torch.nn as nn

import aotgraph


def two_outputs(x, w):
    return x * 2, w * 3


def shared(x, w):
    return x * w, w * 3


ENTRIES = {
    "eager": lambda fn: aotgraph.aot_function(fn, "eager"),
    "nop": lambda fn: aotgraph.aot_function(fn, aotgraph.nop),
    "backend": lambda fn: torch.compile(fn, backend=aotgraph.backend(compiler="eager")),
}


def _grads(fn, use):
    torch.manual_seed(0)
    x, w = torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)
    out = fn(x, w)
    sum(out[k].sum() * (k + 1) for k in use).backward()
    return x.grad, w.grad


@pytest.mark.parametrize("entry", sorted(ENTRIES))
@pytest.mark.parametrize("program", [two_outputs, shared])
@pytest.mark.parametrize("use", [(0,), (1,), (0, 1)])
def test_gradients_are_none_where_eager_gives_none(entry, program, use):
    torch._dynamo.reset()
    expected = _grads(program, use)
    got = _grads(ENTRIES[entry](program), use)
    for e, g in zip(expected, got):
        assert (g is None) == (e is None), (e, g)
        if e is not None:
            torch.testing.assert_close(g, e)


def test_a_heads_parameters_stay_without_grad_when_its_loss_is_skipped():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2), nn.Linear(4, 2)

        def forward(self, x):
            h = self.body(x).relu()
            return self.a(h), self.b(h)

    torch.manual_seed(0)
    model = TwoHeads()
    compiled = aotgraph.aot_module(model, "eager")
    a, _ = compiled(torch.randn(3, 4))
    a.sum().backward()
    assert model.b.weight.grad is None and model.b.bias.grad is None
    assert model.a.weight.grad is not None and model.body.weight.grad is not None


def test_a_leaf_passed_with_its_detached_twin_and_unused_gets_none():
    def fn(x, xd, y):
        xd.zero_()
        return y * 2

    x, y = torch.randn(4, requires_grad=True), torch.randn(4, requires_grad=True)
    aotgraph.aot_function(fn, "eager")(x, x.detach(), y).sum().backward()
    assert x.grad is None and torch.equal(x.detach(), torch.zeros(4))
    torch.testing.assert_close(y.grad, torch.full((4,), 2.0))


def zeroed(x, w):
    y = x.clone()
    y.zero_()
    return y, w * 3


def filled_and_returned_twice(x, w):
    y = x.diagonal().clone()
    y.fill_(2.0)
    return y, y, w * x


@pytest.mark.parametrize("compiler", ["inductor", "eager"])
@pytest.mark.parametrize("program, use", [(zeroed, (0,)), (zeroed, (1,)), (filled_and_returned_twice, (0,)),
                                          (filled_and_returned_twice, (0, 1))])
def test_an_input_whose_gradient_is_all_zeros_gets_zeros(compiler, program, use):
    """Eager gives a gradient of zeros where a used output's history reaches the input through a
    write of constants; Inductor's decompositions fold that path into a constant that reads no
    tangent (seed 6815: .grad came back None). The runtime also asks capture's autograd graph."""
    def grads(fn):
        torch.manual_seed(0)
        x, w = torch.randn(3, 3, requires_grad=True), torch.randn(3, 3, requires_grad=True)
        out = fn(x, w)
        sum(out[k].sum() * (k + 1) for k in use).backward()
        return x.grad, w.grad

    expected, got = grads(program), grads(aotgraph.aot_function(program, compiler))
    for e, g in zip(expected, got):
        assert (g is None) == (e is None), (e, g)
        if e is not None:
            torch.testing.assert_close(g, e)
