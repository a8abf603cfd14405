"""The backward materializes no zero gradients for outputs that get none (autograd would make
one per output, mutated buffers' new values included: a kernel each on a GPU)."""
import collections

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from aotgraph import aot_function, aot_module


class OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func] += 1
        return func(*args, **(kwargs or {}))


def test_no_zero_gradients_for_batch_norm_statistics():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    reference = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    reference.load_state_dict(model.state_dict())
    x = torch.randn(8, 4)
    loss = aot_module(model)(x).sum()
    with OpCounter() as counter:
        loss.backward()
    assert counter.ops[torch.ops.aten.zeros.default] == 0
    reference(x).sum().backward()
    for ours, theirs in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(ours.grad, theirs.grad)


def test_an_unused_differentiable_output_still_gets_a_zero_gradient():
    def fn(x, buf):
        buf.add_(1)
        return x.sin(), x.cos() * 2

    x = torch.randn(5, requires_grad=True)
    first, _ = aot_function(fn)(x, torch.zeros(5))
    (grad,) = torch.autograd.grad(first.sum(), x)
    torch.testing.assert_close(grad, x.detach().cos())
