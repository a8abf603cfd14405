"""Every partitioner, budget and policy gives eager's outputs, gradients and buffer updates."""
import copy
import functools

import pytest
import torch

from aotgraph import aot_module, default_partition, min_cut_rematerialization_partition, models
from aotgraph.partition import offload_early, offload_large, partition_for, save_matmuls, save_nothing, save_tagged

PARTITIONERS = {
    "default": default_partition,
    "mincut": min_cut_rematerialization_partition,
    # functorch's spelling binds its calling-convention keywords with partial
    "mincut_functorch_keywords": functools.partial(min_cut_rematerialization_partition, compiler="inductor",
                                                   static_lifetime_input_indices=None),
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


class _Attention(torch.nn.Module):
    """Pre-norm causal self-attention through SDPA."""

    def __init__(self):
        super().__init__()
        self.norm, self.qkv, self.out = torch.nn.LayerNorm(16), torch.nn.Linear(16, 48), torch.nn.Linear(16, 16)

    def forward(self, x):
        q, k, v = self.qkv(self.norm(x)).view(2, 8, 3, 2, 8).permute(2, 0, 3, 1, 4)
        attended = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return x + self.out(attended.transpose(1, 2).reshape(2, 8, 16))


class _UpsamplingConv(torch.nn.Module):
    """Convolution, GroupNorm, SiLU, then a transposed convolution."""

    def __init__(self):
        super().__init__()
        self.conv, self.norm = torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.GroupNorm(2, 6)
        self.up = torch.nn.ConvTranspose2d(6, 3, 2, stride=2)

    def forward(self, x):
        return self.up(torch.nn.functional.silu(self.norm(self.conv(x)))).mean(dim=(2, 3))


class _WritesIntoViews(torch.nn.Module):
    """In-place writes into a view of an activation and into the activation itself."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)

    def forward(self, x):
        y = self.a(x)
        y[:, :2].mul_(3)
        y = torch.nn.functional.gelu(y)
        y += self.b(x).sigmoid()
        return y.cumsum(1).logsumexp(1)


class _LstmHead(torch.nn.Module):
    """An LSTM read at its last step (on the CPU, torch's LSTM decomposition would take
    oneDNN's inference kernel for an input that needs no gradient)."""

    def __init__(self):
        super().__init__()
        self.lstm, self.head = torch.nn.LSTM(8, 12, batch_first=True), torch.nn.Linear(12, 3)

    def forward(self, x):
        return self.head(self.lstm(x)[0][:, -1])


MORE_MODELS = {
    "attention": lambda: (_Attention(), (torch.randn(2, 8, 16),)),
    "upsampling_conv": lambda: (_UpsamplingConv(), (torch.randn(2, 3, 8, 8),)),
    "embedding_bag": lambda: (torch.nn.EmbeddingBag(20, 8, mode="mean"), (torch.randint(0, 20, (4, 5)),)),
    "writes_into_views": lambda: (_WritesIntoViews(), (torch.randn(4, 8),)),
    "lstm_on_data": lambda: (_LstmHead(), (torch.randn(3, 5, 8),)),
}


@pytest.mark.parametrize("partitioner", ["mincut", "budget_0.5", "recompute_0.0", "save_nothing", "offload_all"])
@pytest.mark.parametrize("model", sorted(MORE_MODELS))
def test_parity_on_more_kinds_of_layers(model, partitioner):
    """Two training steps of layers the zoo above lacks, whose inputs need no gradient."""
    assert_matches_eager(MORE_MODELS[model], PARTITIONERS[partitioner], steps=2)


@pytest.mark.parametrize("partitioner", [
    "mincut", *(pytest.param(name, marks=pytest.mark.slow) for name in ["budget_0.5", "save_nothing", "offload_all"])])
def test_gpt2_small_parity(partitioner):
    """GPT-2-small shape (12 layers, d=768), one step at batch 1, sequence 16."""
    assert_matches_eager(lambda: models.gpt2_small(batch=1, seq=16), PARTITIONERS[partitioner])


def test_mincut_saves_less_than_default_and_recomputes():
    entry = assert_matches_eager(MODELS["gpt"], min_cut_rematerialization_partition)
    plan = entry.partition.plan
    default = assert_matches_eager(MODELS["gpt"], default_partition).partition
    assert plan.recomputed and plan.saved_bytes < _activation_bytes(default)


def _activation_bytes(partition):
    return sum(v.nbytes for v in partition.saved if v.producer != "input")
