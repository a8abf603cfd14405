"""Every partitioner, budget and policy gives eager's outputs, gradients and buffer updates."""
import copy

import pytest
import torch

from aotgraph import aot_module, default_partition, min_cut_rematerialization_partition, models
from aotgraph.partition import offload_early, offload_large, partition_for, save_matmuls, save_nothing, save_tagged

PARTITIONERS = {
    "default": default_partition,
    "mincut": min_cut_rematerialization_partition,
    "budget_0.0": partition_for(budget=0.0),
    "budget_0.5": partition_for(budget=0.5),
    "budget_0.8": partition_for(budget=0.8),
    "budget_1.0": partition_for(budget=1.0),
    "recompute_0.0": partition_for(recompute_budget=0.0),
    "recompute_0.003": partition_for(recompute_budget=0.003),
    "save_matmuls": partition_for(policy=save_matmuls),
    "save_nothing": partition_for(policy=save_nothing),
    "save_tagged": partition_for(policy=save_tagged({"addmm", "convolution"})),
    "offload_all": partition_for(policy=offload_large(0)),
    "offload_early": partition_for(policy=offload_early(0, before=0.5)),
}

MODELS = {
    "mlp": lambda: models.mlp(),
    "transformer": lambda: models.transformer_stack(),
    "gpt": lambda: models.gpt(layers=2),
    "resnet": lambda: models.resnet(blocks=3, width=8, batch=2, size=16),
}


def _loss(output):
    return output if output.dim() == 0 else (output.float() * torch.linspace(-1, 1, output.numel()).view(output.shape)).sum()


def assert_matches_eager(make_model, partition_fn, steps: int = 1):
    torch.manual_seed(0)
    model, inputs = make_model()
    model.train()
    reference = copy.deepcopy(model)
    compiled = aot_module(model, partition_fn=partition_fn)
    for _ in range(steps):
        out = compiled(*inputs)
        expected = reference(*inputs)
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
        _loss(out).backward()
        _loss(expected).backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=lambda m: f"grad of {name}: {m}")
    for (name, b), c in zip(model.named_buffers(), reference.buffers()):
        torch.testing.assert_close(b, c, msg=lambda m: f"buffer {name}: {m}")
    entry = next(iter(compiled.aotgraph_entries.values()))
    entry.partition.forward.graph.lint()
    entry.partition.backward.graph.lint()
    return entry


@pytest.mark.parametrize("partitioner", sorted(PARTITIONERS))
@pytest.mark.parametrize("model", sorted(MODELS))
def test_parity(model, partitioner):
    assert_matches_eager(MODELS[model], PARTITIONERS[partitioner])


@pytest.mark.parametrize("partitioner", [
    "mincut", *(pytest.param(name, marks=pytest.mark.slow) for name in ["budget_0.5", "save_nothing", "offload_all"])])
def test_gpt2_small_parity(partitioner):
    """GPT-2-small shape (12 layers, d=768), one step at batch 1, sequence 16."""
    assert_matches_eager(lambda: models.gpt2_small(batch=1, seq=16), PARTITIONERS[partitioner])


def test_mincut_saves_less_than_default_and_recomputes():
    entry = assert_matches_eager(MODELS["gpt"], min_cut_rematerialization_partition)
    plan = entry.partition.forward.meta["aotgraph_plan"]
    default = assert_matches_eager(MODELS["gpt"], default_partition).partition
    assert plan.recomputed and plan.saved_bytes < _activation_bytes(default)


def _activation_bytes(partition):
    return sum(v.nbytes for v in partition.saved if v.producer != "input")
