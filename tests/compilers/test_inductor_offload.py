"""Offload plans (partition policies that return Decision.OFFLOAD) compiled by Inductor.

On the CPU the host copies are ``aten._to_copy`` nodes that the partition adds after capture;
Inductor gets them in its decomposed form and trains at parity with eager. CUDA offload's
copies call Python on a side stream, which Inductor cannot compile: that is a CompilerError
naming the offload and what to do, raised before any compile work."""
from __future__ import annotations

import pytest
import torch

from aotgraph import aot_function, aot_module, models
from aotgraph.compilers import GraphRole, InductorCompiler
from aotgraph.compilers import torchinductor
from aotgraph.errors import CompilerError
from aotgraph.partition import offload_early, offload_large, partition_for
from backend_training import assert_close, assert_training_parity
from test_inductor import SCALE, TINY

aten = torch.ops.aten
POLICIES = {"offload_large": offload_large(0), "offload_early": offload_early(0, before=0.5)}


def program(x, w1, w2):
    h = (x @ w1).sin()
    return (torch.nn.functional.gelu(h @ w2) * h.sum(-1, keepdim=True)).sum()


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_offload_plans_compile_with_inductor_at_parity_with_eager(policy):
    torch.manual_seed(0)
    x = torch.randn(8, 16, requires_grad=True)
    w1, w2 = torch.randn(16, 32, requires_grad=True), torch.randn(32, 32, requires_grad=True)
    compiled = aot_function(program, "inductor", partition_fn=partition_for(policy=POLICIES[policy]))
    copies = [t.detach().clone().requires_grad_() for t in (x, w1, w2)]
    compiled_out = compiled(*copies)
    compiled_out.backward()
    eager_out = program(x, w1, w2)
    eager_out.backward()
    assert_close(compiled_out, eager_out, "output", SCALE)
    for name, got, expected in zip(("x", "w1", "w2"), copies, (x, w1, w2)):
        assert_close(got.grad, expected.grad, f"{name}.grad", SCALE)
    entry = next(iter(compiled.aotgraph_entries.values()))
    assert entry.partition.plan.offloaded  # the plan did offload
    host_copies = [n for n in entry.partition.forward.graph.nodes if n.target is aten._to_copy.default]
    assert host_copies  # the partition keeps its copies; only Inductor's private graph is decomposed
    for graph in (entry.compiled.forward, entry.compiled.backward):
        assert type(graph).__module__.startswith("torch._inductor")


def test_an_offloading_model_trains_with_inductor_at_parity_with_eager():
    torch.manual_seed(0)
    model, first = models.mlp(**TINY["mlp"])
    inputs = [first, tuple(torch.randn_like(a) for a in first)]
    offload = partition_for(policy=offload_large(64))
    compiled = assert_training_parity(model, inputs, lambda m: aot_module(m, "inductor", partition_fn=offload),
                                      scale=SCALE)
    entries = list(compiled.aotgraph_entries.values())
    assert entries and all(e.partition.plan.offloaded for e in entries)


def _fake_cuda_offload_forward() -> tuple[torch.fx.GraphModule, list]:
    """A forward on fake CUDA tensors (no GPU needed) whose saved value ``a`` is offloaded."""
    from torch._subclasses import FakeTensorMode

    from aotgraph.partition.offload import offload_saved

    with FakeTensorMode():
        x = torch.empty(1024, device="cuda")
    forward, backward = torch.fx.Graph(), torch.fx.Graph()
    primal = forward.placeholder("primals_1")
    primal.meta["val"] = x
    a = forward.call_function(aten.sin.default, (primal,))
    a.meta["val"], a.name = x.sin(), "a"
    b = forward.call_function(aten.cos.default, (a,))
    b.meta["val"] = x.cos()
    forward.output((b, a))
    saved, tangent = backward.placeholder("a"), backward.placeholder("tangents_1")
    saved.meta["val"], tangent.meta["val"] = x.sin(), x.sin()
    gradient = backward.call_function(aten.mul.Tensor, (tangent, saved))
    gradient.meta["val"] = x.sin()
    backward.output((gradient,))
    forward, backward = torch.fx.GraphModule({}, forward), torch.fx.GraphModule({}, backward)
    offload_saved(forward, backward, ["a"], 1)
    return forward, [x]


def test_cuda_offload_with_inductor_is_refused_before_any_compile_work(monkeypatch):
    def compiled(*args, **kwargs):
        raise AssertionError("Inductor was called")

    monkeypatch.setattr(torchinductor, "_compiled", compiled)
    forward, example_inputs = _fake_cuda_offload_forward()
    with pytest.raises(CompilerError) as caught:
        InductorCompiler()(forward, example_inputs, GraphRole("forward", 1, 0))
    message = str(caught.value)
    assert "offload_to_host" in message and "(compile stage)" in message
    assert "offload_large" in message and "'eager'" in message
