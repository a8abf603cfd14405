"""``t.data = value`` inside a compiled program swaps t's memory as eager's does: the program's
later reads see the new value, the caller's tensor holds it after the call, its version counter
does not move, and gradients flow as eager's (autograd does not see the swap).

Each program runs eagerly and compiled on equal inputs, twice."""
import pytest
import torch
import torch.nn as nn

import aotgraph


class Renormalized(nn.Module):
    """Weight re-normalisation by assigning ``.data`` (WGAN-style clipping and projection code)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 3) * 3)

    def forward(self, x):
        self.w.data = self.w.data / self.w.data.norm()
        return x @ self.w


class Regrown(nn.Module):
    """A buffer given memory of another size through ``.data``."""

    def __init__(self):
        super().__init__()
        self.register_buffer("seen", torch.zeros(2))

    def forward(self, x):
        self.seen.data = torch.cat([self.seen, x.detach().sum().reshape(1)])
        return x * self.seen.numel()


def _intermediate(x):
    y = x * 2
    y.data = torch.ones_like(y)
    return y + x


@pytest.mark.parametrize("compiler", ["eager", "inductor"])
@pytest.mark.parametrize("make", [Renormalized, Regrown])
def test_a_module_assigning_data(make, compiler):
    torch.manual_seed(0)
    eager, ours = make(), make()
    ours.load_state_dict(eager.state_dict())
    compiled = aotgraph.aot_module(ours, compiler)
    for _ in range(2):
        x = torch.randn(2, 3, requires_grad=True)
        x_ours = x.detach().clone().requires_grad_()
        versions = [(a._version, b._version) for a, b in zip(eager.state_dict().values(), ours.state_dict().values())]
        expected, got = eager(x), compiled(x_ours)
        torch.testing.assert_close(got, expected)
        expected.sum().backward()
        got.sum().backward()
        torch.testing.assert_close(x_ours.grad, x.grad)
        for (name, a), b, (before_a, before_b) in zip(eager.state_dict().items(), ours.state_dict().values(),
                                                      versions):
            torch.testing.assert_close(b, a, msg=name)
            assert b._version - before_b == a._version - before_a, name
        for a, b in zip(eager.parameters(), ours.parameters()):
            torch.testing.assert_close(b.grad, a.grad)


def test_data_assigned_to_an_intermediate():
    x = torch.randn(4, requires_grad=True)
    x_ours = x.detach().clone().requires_grad_()
    expected, got = _intermediate(x), aotgraph.aot_function(_intermediate, "eager")(x_ours)
    torch.testing.assert_close(got, expected)
    expected.sum().backward()
    got.sum().backward()
    torch.testing.assert_close(x_ours.grad, x.grad)


def test_data_of_another_dtype_is_refused_clearly():
    def program(x, w):
        w.data = w.data.double()
        return x * 2

    with pytest.raises(aotgraph.AotGraphError, match=r"\.data"):
        aotgraph.aot_function(program, "eager")(torch.randn(3), torch.randn(3))
