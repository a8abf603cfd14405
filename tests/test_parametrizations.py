"""``torch.nn.utils.parametrize.cached()`` around compiled calls: the capture computes the
parametrized weight in its graph, neither reading a real tensor the caller's block cached (a
constant requiring grad: refused) nor leaving its fake in the cache for the caller to read."""
import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

import aotgraph


class _Symmetric(nn.Module):
    def forward(self, X):
        return X.triu() + X.triu(1).transpose(-1, -2)


def _model():
    torch.manual_seed(0)
    model = nn.Linear(8, 8)
    parametrize.register_parametrization(model, "weight", _Symmetric())
    return model


@pytest.mark.parametrize("read_before_call", [False, True])
def test_a_cached_parametrization_around_compiled_steps(read_before_call):
    losses, grads = [], []
    for compiled in (False, True):
        model = _model()
        run = aotgraph.aot_module(model, "eager") if compiled else model
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        torch.manual_seed(1)
        these = []
        for _ in range(3):
            with parametrize.cached():
                penalty = model.weight.square().sum() if read_before_call else 0.0
                y = run(torch.randn(4, 8))
                weight = model.weight  # the caller reads the parametrized weight in the block
                assert type(weight) is torch.Tensor
                loss = y.square().mean() + 1e-3 * (weight.square().sum() + penalty)
                loss.backward()
            grads.append(model.parametrizations.weight.original.grad.clone())
            optimizer.step()
            optimizer.zero_grad()
            these.append(loss.detach())
        losses.append(torch.stack(these))
    torch.testing.assert_close(losses[1], losses[0])
    for got, expected in zip(grads[3:], grads[:3]):
        torch.testing.assert_close(got, expected)
