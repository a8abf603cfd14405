"""Models of repeated blocks, shared by the repeated-layer tests of ``aot_module``
(tests/capture/test_repeated_layers.py) and of the torch.compile backend
(tests/capture/test_backend_repeated_layers.py): a GPT-style decoder of configurable blocks
(blocks of one configuration are one region, blocks of another, activation or hidden width,
are not), blocks no region may hold (running statistics, random draws, a buffer of their own),
and a convnet of three identical BasicBlocks."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, activation: str = "gelu", hidden: int = 4):
        super().__init__()
        self.heads, self.activation = heads, activation
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc, self.out = nn.Linear(dim, hidden * dim), nn.Linear(hidden * dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        act = F.gelu if self.activation == "gelu" else F.relu
        return x + self.out(act(self.fc(self.ln2(x))))


class Decoder(nn.Module):
    def __init__(self, blocks, vocab=64, dim=32):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(dim, vocab)

    def forward(self, idx, targets):
        x = self.tok(idx)
        for block in self.blocks:
            x = block(x)
        logits = self.head(x)
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


class NormBlock(nn.Module):
    """Updates its BatchNorm's running statistics: not a plain function of its operands."""

    def __init__(self, dim: int):
        super().__init__()
        self.lin, self.bn = nn.Linear(dim, dim), nn.BatchNorm1d(dim)

    def forward(self, x):
        return x + torch.tanh(self.bn(self.lin(x)))


class DropoutBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.lin, self.drop = nn.Linear(dim, dim), nn.Dropout(0.5)

    def forward(self, x):
        return x + self.drop(torch.tanh(self.lin(x)))


class AveragingBlock(nn.Module):
    """Updates a buffer of its own in place (not a norm or dropout the search knows)."""

    def __init__(self, dim: int):
        super().__init__()
        self.lin = nn.Sequential(nn.Linear(dim, dim))
        self.register_buffer("average", torch.zeros(dim))

    def forward(self, x):
        self.average.mul_(0.9).add_(x.detach().mean(0), alpha=0.1)
        return x + torch.tanh(self.lin(x))


class ResidualAttention(nn.Module):
    """Bloom's attention, a marked region: its output projection adds the residual it is handed,
    so its backward returns its incoming gradient unchanged as the residual's."""

    def __init__(self, dim: int):
        super().__init__()
        self.qkv, self.dense = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    @torch.compiler.nested_compile_region
    def forward(self, x, residual):
        q, k, v = self.qkv(x).chunk(3, -1)
        return self.dense(((q @ k.transpose(-1, -2)) / 6).softmax(-1) @ v) + residual


class BloomLike(nn.Module):
    """Embedding, layer norm, and blocks of Bloom's shape: attention(ln1(h), residual=h), then an
    MLP on ln2 of that, plus it."""

    def __init__(self, dim: int = 32, layers: int = 2, vocab: int = 50):
        super().__init__()
        self.emb, self.ln = nn.Embedding(vocab, dim), nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(nn.ModuleDict(dict(ln1=nn.LayerNorm(dim), attention=ResidualAttention(dim),
                                                       ln2=nn.LayerNorm(dim), up=nn.Linear(dim, 4 * dim),
                                                       down=nn.Linear(4 * dim, dim))) for _ in range(layers))

    def forward(self, ids):
        h = self.ln(self.emb(ids))
        for block in self.blocks:
            a = block["attention"](block["ln1"](h), h)
            h = block["down"](F.gelu(block["up"](block["ln2"](a)))) + a
        return h.square().mean()


class ScaledRelu(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.linear, self.scale = nn.Linear(dim, dim), nn.Parameter(torch.randn(dim))

    def forward(self, x):
        return torch.relu(self.linear(x) * self.scale + x)


class ReluStack(nn.Module):
    def __init__(self, dim: int = 16, layers: int = 3):
        super().__init__()
        self.blocks = nn.ModuleList(ScaledRelu(dim) for _ in range(layers))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x.square().mean()


def region_graphs(graph_module) -> set:
    """The region graphs `graph_module` calls (``invoke_subgraph``'s graph arguments)."""
    return {getattr(graph_module, n.args[0].target) for n in graph_module.graph.nodes
            if n.target is torch.ops.higher_order.invoke_subgraph}


def basic_block_stack(blocks: int = 3, width: int = 4, batch: int = 2, size: int = 8):
    """A convnet of `blocks` identical ResNet BasicBlocks (batch norm in training: running
    statistics written per call) between a stem and a head: a found region of `blocks` calls
    (``aotgraph.models.resnet`` has no three blocks alike), and its input."""
    from aotgraph.models import BasicBlock

    model = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), *(BasicBlock(width, 1) for _ in range(blocks)),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))
    return model, (torch.randn(batch, 3, size, size),)
