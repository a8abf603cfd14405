"""In-place foreach ops (``torch._foreach_mul_`` and kin): what optimizers with ``foreach=True``
(the CUDA default) and ``clip_grad_norm_`` run. Each writes every tensor of its first list.
Before: capture crashed with a raw ``AttributeError`` on every one of them."""
import copy
import operator

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


@pytest.mark.parametrize("optimizer", [
    lambda ps: torch.optim.AdamW(ps, lr=1e-2, foreach=True),
    lambda ps: torch.optim.Adam(ps, lr=1e-2, amsgrad=True, foreach=True),
    lambda ps: torch.optim.RMSprop(ps, lr=1e-2, momentum=0.5, foreach=True),
    lambda ps: torch.optim.NAdam(ps, lr=1e-2, foreach=True),
], ids=["adamw", "adam_amsgrad", "rmsprop", "nadam"])
def test_a_compiled_optimizer_step_through_inductor(optimizer):
    """``torch.compile(opt.step)``: a graph of foreach writes only, Inductor compiling it. On torch
    2.11 this failed twice: the functionalized foreach ops skipped Inductor's decomposition table
    (its ``_foreach_addcmul.Scalar`` lowering returned NotImplemented), and inlining a decomposition
    that returns a list left ``getitem`` nodes of a list (an AttributeError in Inductor's passes).
    Compiled cold (Inductor's graph cache off): the inputs a foreach op writes through its list
    are writes the graph means, not inputs to copy before the call (the optimizer's state stayed
    at its first step's, silently, where Inductor compiled the graph afresh)."""
    import torch._inductor.config as inductor_config

    with inductor_config.patch(fx_graph_cache=False):  # (not monkeypatch: pytest 9.2 deletes a config key on undo)
        _optimizer_steps_match(optimizer)


def _optimizer_steps_match(optimizer) -> None:
    results = []
    for compiled in (False, True):
        torch._dynamo.reset()
        torch.manual_seed(0)
        params = [nn.Parameter(torch.randn(8, 8) * 0.1) for _ in range(2)] + [nn.Parameter(torch.zeros(8))]
        opt = optimizer(params)
        step = torch.compile(opt.step, backend=aotgraph.backend(compiler="inductor")) if compiled else opt.step
        grads = torch.Generator().manual_seed(1)
        for _ in range(3):
            for p in params:
                p.grad = torch.randn(p.shape, generator=grads)
            with torch.no_grad():
                step()
        results.append([p.detach() for p in params])
    for ours, theirs in zip(*results[::-1]):
        torch.testing.assert_close(ours, theirs)


def test_inlining_a_decomposition_that_returns_a_list_reads_each_result_directly():
    from aotgraph.compilers.torchinductor import _inline_decomposition, inductor_decompositions

    def program(a, b, c):
        return tuple(torch.ops.aten._foreach_addcmul.Scalar([a, b], [b, c], [c, a], 0.5))

    graph_module = torch.fx.experimental.proxy_tensor.make_fx(program, tracing_mode="fake")(
        *[torch.randn(3) for _ in range(3)])
    node = next(n for n in graph_module.graph.nodes if n.target is torch.ops.aten._foreach_addcmul.Scalar)
    table = inductor_decompositions()
    if node.target not in table:
        pytest.skip("this torch's Inductor has no decomposition of _foreach_addcmul.Scalar")
    assert _inline_decomposition(node, table[node.target])
    graph_module.recompile()
    assert not any(n.op == "call_function" and isinstance(n.args[0], (list, tuple))
                   for n in graph_module.graph.nodes if n.target is operator.getitem)
    inputs = [torch.randn(3) for _ in range(3)]
    for ours, theirs in zip(graph_module(*inputs), program(*inputs)):
        torch.testing.assert_close(ours, theirs)
