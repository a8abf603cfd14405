"""In-place foreach ops (``torch._foreach_mul_`` and kin): what optimizers with ``foreach=True``
(the CUDA default) and ``clip_grad_norm_`` run. Each writes every tensor of its first list.
Before: capture crashed with a raw ``AttributeError`` on every one of them."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import aotgraph
from eager_parity import Case, assert_parity, leaf


def _tensors():
    return [torch.randn(3, 4), torch.randn(5), torch.randn(2, 2)]


@pytest.mark.parametrize("write", [
    lambda ts, c: torch._foreach_add_(ts, 1.5),
    lambda ts, c: torch._foreach_mul_(ts, c),
    lambda ts, c: torch._foreach_mul_(ts, [t * 2 for t in ts]),
    lambda ts, c: torch._foreach_div_(ts, [2.0, 3.0, 4.0]),
    lambda ts, c: torch._foreach_addcmul_(ts, ts, ts, 0.5),
    lambda ts, c: torch._foreach_lerp_(ts, [t * 0 for t in ts], 0.25),
    lambda ts, c: torch._foreach_copy_(ts, [t + 1 for t in ts]),
    lambda ts, c: torch._foreach_zero_(ts),
], ids=["add_scalar", "mul_tensor", "mul_list", "div_scalarlist", "addcmul", "lerp", "copy", "zero"])
@pytest.mark.parametrize("compiler", ["eager", "nop"])
def test_foreach_writes_into_inputs(write, compiler):
    def fn(ts, c):
        write(ts, c)
        return ts[0].sum() * c

    assert_parity(fn, lambda: Case((_tensors(), torch.tensor(0.5))),
                  compiled=aotgraph.aot_function(fn, compiler if compiler == "eager" else aotgraph.nop))


@pytest.mark.parametrize("compiler", ["eager", "nop"])
def test_foreach_writes_into_views_of_one_tensor_in_order(compiler):
    """Overlapping views, and the same tensor twice: eager's loop writes one after another."""
    def fn(base, c):
        torch._foreach_mul_([base[0:3], base[1:4], base[5:], base[5:]], c)
        torch._foreach_add_([base[0:3], base[2:6]], [base[3:6], base[0:4].clone()])
        return base * 2

    assert_parity(fn, lambda: Case((torch.randn(7), torch.tensor(3.0))),
                  compiled=aotgraph.aot_function(fn, compiler if compiler == "eager" else aotgraph.nop))


def test_foreach_writes_with_gradients():
    def fn(w, v):
        a, b = w * 2, v.sin()
        torch._foreach_mul_([a, b], [v.sum(), w.mean()])
        torch._foreach_add_([a, b], [b.sum(), a.mean()])
        return a * b.sum()

    assert_parity(fn, lambda: Case((leaf(3), leaf(3))), compiled=aotgraph.aot_function(fn, aotgraph.nop))


@pytest.mark.parametrize("compiler", ["nop", "aotgraph"])
@pytest.mark.parametrize("optimizer", [
    lambda ps: torch.optim.AdamW(ps, lr=1e-2, foreach=True),
    lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9, foreach=True),
    lambda ps: torch.optim.Adam(ps, lr=1e-2, foreach=False),
], ids=["adamw_foreach", "sgd_foreach", "adam_loop"])
def test_a_whole_training_step_compiled(compiler, optimizer):
    """Forward, backward, ``clip_grad_norm_`` and the optimizer's step in one compiled function
    (Dynamo breaks the graph at the backward; the optimizer's step is a graph of foreach writes)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager_model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))
    model = copy.deepcopy(eager_model)
    eager_opt, opt = optimizer(eager_model.parameters()), optimizer(model.parameters())

    def step(m, o, x, y):
        o.zero_grad(set_to_none=True)
        loss = F.mse_loss(m(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 0.1)
        o.step()
        return loss

    backend = aotgraph.backend(compiler="nop") if compiler == "nop" else aotgraph.backend(compiler="eager")
    compiled = torch.compile(step, backend=backend)
    for _ in range(3):
        x, y = torch.randn(5, 8), torch.randn(5, 4)
        torch.testing.assert_close(compiled(model, opt, x, y), step(eager_model, eager_opt, x, y))
    for ours, theirs in zip(model.parameters(), eager_model.parameters()):
        torch.testing.assert_close(ours, theirs)
    for ours, theirs in zip(opt.state.values(), eager_opt.state.values()):
        for key in theirs:
            torch.testing.assert_close(ours[key], theirs[key])
