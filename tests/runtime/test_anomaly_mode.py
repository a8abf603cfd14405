"""Under ``torch.autograd.detect_anomaly()`` a compiled function compiles and runs as eager's
does (the capture's fakes have no values to check), and a NaN its backward computes is still
caught where eager catches it."""
import pytest
import torch
import torch.nn as nn

import aotgraph


@pytest.mark.parametrize("compiler", ["eager", "inductor"])
def test_a_module_trains_under_detect_anomaly(compiler):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(3, 4)
    model(x).sum().backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with torch.autograd.detect_anomaly():
        aotgraph.aot_module(model, compiler)(x).sum().backward()
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, e)
    assert not torch.is_anomaly_enabled()


def test_a_nan_in_the_backward_is_still_caught():
    def program(x):
        return x.sqrt().sum()

    x = -torch.ones(3, requires_grad=True)  # sqrt's gradient at -1: NaN
    compiled = aotgraph.aot_function(program, "eager")
    with torch.autograd.detect_anomaly():
        with pytest.raises(RuntimeError, match="returned nan"):
            program(x).backward()
        with pytest.raises(RuntimeError, match="returned nan"):
            compiled(x).backward()
