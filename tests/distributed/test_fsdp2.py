"""FSDP2 (``fully_shard`` on each block and the root) on 2 gloo ranks: the GPT-style decoder
trained 5 SGD steps through ``torch.compile(model, backend=aotgraph.backend(...))`` (Dynamo
runs FSDP's hooks eagerly and hands the blocks' graphs with plain, unsharded parameters) and
with each block an ``aot_module`` under ``fully_shard`` (the hooks around the compiled block),
against eager FSDP2: same losses, same local shards of the final weights. Where the torch
version lets Dynamo trace through FSDP2's hooks (``torch._dynamo.config.skip_fsdp_hooks``,
gone by torch 2.13, whose hooks always run eagerly), the same training with the hooks traced:
the graphs then hold the all-gathers and the parameters' storage resizes."""
import copy

import pytest
import torch
from torch.distributed.fsdp import fully_shard

import aotgraph
from ranks import run_ranks
from training import assert_same_training, local_state, model_and_batches, train


def _sharded(model: torch.nn.Module) -> torch.nn.Module:
    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)
    return model


def _fsdp2_worker(rank: int, world_size: int, compiler: str) -> tuple[int, int]:
    """Eager, torch.compile, aot_module blocks: same training. Returns how many graphs each
    compiled way compiled."""
    model, batches, expected, backend = _compiled_training(rank, compiler, "torch.compile(FSDP2)")
    blocks_compiled = copy.deepcopy(model)
    for index, block in enumerate(blocks_compiled.blocks):
        blocks_compiled.blocks[index] = aotgraph.aot_module(block, fw_compiler=compiler)
    actual = train(_sharded(blocks_compiled), blocks_compiled.parameters(), batches)
    state = {name.replace("orig_module.", ""): value for name, value in local_state(blocks_compiled).items()}
    assert_same_training(expected, (actual, state), f"rank {rank}: fully_shard(aot_module(block)) with {compiler}")
    return len(backend.entries), sum(len(block.aotgraph_entries) for block in blocks_compiled.blocks)


def _fsdp2_traced_hooks_worker(rank: int, world_size: int, compiler: str) -> int:
    """torch.compile of the sharded decoder with Dynamo tracing FSDP2's hooks: eager's training."""
    torch._dynamo.config.skip_fsdp_hooks = False
    backend = _compiled_training(rank, compiler, "torch.compile(FSDP2) tracing the hooks")[-1]
    return len(backend.entries)


def _compiled_training(rank: int, compiler: str, what: str) -> tuple:
    """Eager FSDP2 training, then ``torch.compile`` of the sharded model with aotgraph's backend,
    checked against it: (model, batches, eager's (losses, state), the backend)."""
    model, batches = model_and_batches("gpt", rank)
    eager = _sharded(copy.deepcopy(model))
    expected = train(eager, eager.parameters(), batches), local_state(eager)
    backend = aotgraph.backend(compiler=compiler)
    compiled = _sharded(copy.deepcopy(model))
    actual = train(torch.compile(compiled, backend=backend, dynamic=False), compiled.parameters(), batches)
    assert_same_training(expected, (actual, local_state(compiled)), f"rank {rank}: {what} with {compiler}")
    return model, batches, expected, backend


TRACED_HOOKS = pytest.mark.skipif(not hasattr(torch._dynamo.config, "skip_fsdp_hooks"),
                                  reason="this torch always runs FSDP2's hooks eagerly")


@TRACED_HOOKS
def test_fsdp2_traced_hooks_trains_as_eager_eager_compiler():
    assert all(graphs >= 1 for graphs in run_ranks(_fsdp2_traced_hooks_worker, "eager"))


def test_fsdp2_trains_as_eager_eager_compiler():
    for compiled_graphs, block_entries in run_ranks(_fsdp2_worker, "eager"):
        assert compiled_graphs >= 1 and block_entries == 2


@pytest.mark.slow
def test_fsdp2_trains_as_eager_inductor():
    for compiled_graphs, block_entries in run_ranks(_fsdp2_worker, "inductor", timeout_s=900):
        assert compiled_graphs >= 1 and block_entries == 2
