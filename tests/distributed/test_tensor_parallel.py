"""Tensor parallelism on a 2-rank CPU mesh (gloo): each block's MLP split column-wise then
row-wise (``parallelize_module`` with ColwiseParallel/RowwiseParallel), so its weights are
DTensors and its forward and backward all-reduce. Trained 5 SGD steps through
``torch.compile(model, backend=aotgraph.backend(...))`` and ``aot_module(model)``: DTensor
parameters are flattened to their local shards for capture (the graphs hold the collectives)
and rebuilt at the boundary; same losses and local shards as eager."""
import copy

import pytest
import torch
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

import aotgraph
from ranks import rank_device, run_ranks
from training import assert_same_training, local_state, model_and_batches, train


def _parallel(model: torch.nn.Module, mesh) -> torch.nn.Module:
    plan = {}
    for index in range(len(model.blocks)):
        plan[f"blocks.{index}.mlp.0"] = ColwiseParallel()
        plan[f"blocks.{index}.mlp.2"] = RowwiseParallel()
    return parallelize_module(model, mesh, plan)


def _tensor_parallel_worker(rank: int, world_size: int, compiler: str) -> tuple[int, int]:
    mesh = init_device_mesh(rank_device().type, (world_size,))
    model, batches = model_and_batches("gpt", rank=0)  # tensor parallel ranks read the same batch
    eager = _parallel(copy.deepcopy(model), mesh)
    assert isinstance(eager.blocks[0].mlp[0].weight, DTensor)
    expected = train(eager, eager.parameters(), batches), local_state(eager)

    backend = aotgraph.backend(compiler=compiler)
    compiled = _parallel(copy.deepcopy(model), mesh)
    actual = train(torch.compile(compiled, backend=backend, dynamic=False), compiled.parameters(), batches)
    assert_same_training(expected, (actual, local_state(compiled)), f"rank {rank}: torch.compile(TP) with {compiler}")

    inner = _parallel(copy.deepcopy(model), mesh)
    aot_model = aotgraph.aot_module(inner, fw_compiler=compiler)
    actual = train(aot_model, inner.parameters(), batches)
    assert_same_training(expected, (actual, local_state(inner)), f"rank {rank}: aot_module(TP) with {compiler}")
    _assert_gradient_in_another_layout(mesh, compiler)
    (entry,) = aot_model.aotgraph_entries.values()
    graph = entry.joint.graph_module.graph
    collectives = sum("c10d_functional" in str(node.target) for node in graph.nodes)
    plain = all(type(node.meta["val"]) is not DTensor for node in graph.find_nodes(op="placeholder"))
    return len(backend.entries), collectives, plain


def _scaled_sin(w, x):
    return (w * x).sin()


def _assert_gradient_in_another_layout(mesh, compiler: str) -> None:
    """A DTensor output sharded on dim 0 whose gradient arrives replicated: the compiled backward,
    which was captured for a tangent sharded as the output, gets it redistributed (eager's
    gradients of the sharded inputs, whatever layout the incoming gradient had)."""
    torch.manual_seed(0)
    values = tuple(torch.randn(8, 4).to(rank_device()) for _ in range(3))
    grads = []
    for run in (_scaled_sin, aotgraph.aot_function(_scaled_sin, fw_compiler=compiler)):
        w, x = (distribute_tensor(v, mesh, [Shard(0)]).requires_grad_() for v in values[:2])
        out = run(w, x)
        assert out.placements == (Shard(0),)
        out.backward(distribute_tensor(values[2], mesh, [Replicate()]))
        grads.append([w.grad.full_tensor(), x.grad.full_tensor()])
    for actual, expected in zip(grads[1], grads[0]):
        torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize("compiler", ["eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_tensor_parallel_trains_as_eager(compiler):
    for graphs, collectives, plain in run_ranks(_tensor_parallel_worker, compiler, timeout_s=900):
        assert graphs == 1 and plain
        assert collectives >= 2 * 2, "each block's row-wise output and column-wise input gradient all-reduce"
