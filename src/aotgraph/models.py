"""Small models in plain torch used by the demo, the tests and the benchmarks.

Each factory returns ``(module, example_inputs)``; sizes default to CPU-friendly values
and scale up by argument (e.g. ``gpt(layers=12, dim=768)`` is GPT-2-small shaped).
"""
from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        batch, seq, dim = x.shape
        q, k, v = self.qkv(x).split(dim, dim=2)
        q, k, v = (t.view(batch, seq, self.heads, dim // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(batch, seq, dim))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """A GPT-style decoder: token + position embeddings, pre-norm blocks, tied LM head, loss."""

    def __init__(self, vocab: int = 256, seq: int = 32, dim: int = 64, heads: int = 4, layers: int = 2,
                 dropout: float = 0.0):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(seq, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, idx, targets):
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.tok(idx) + self.pos(positions)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def gpt(batch: int = 2, seq: int = 32, vocab: int = 256, dim: int = 64, heads: int = 4, layers: int = 2,
        dropout: float = 0.0):
    model = GPT(vocab, seq, dim, heads, layers, dropout)
    idx = torch.randint(0, vocab, (batch, seq))
    targets = torch.randint(0, vocab, (batch, seq))
    return model, (idx, targets)


def gpt2_small(batch: int = 1, seq: int = 64):
    """GPT-2-small shaped: 12 layers, d=768, 12 heads, vocab 50257 (small batch and sequence)."""
    return gpt(batch=batch, seq=seq, vocab=50257, dim=768, heads=12, layers=12)


def mlp(layers: int = 4, dim: int = 32, batch: int = 8):
    blocks = []
    for _ in range(layers - 1):
        blocks += [nn.Linear(dim, dim), nn.ReLU()]
    blocks.append(nn.Linear(dim, dim))
    return nn.Sequential(*blocks), (torch.randn(batch, dim),)


def transformer_stack(layers: int = 2, dim: int = 64, heads: int = 4, ffn: int = 256, batch: int = 4, seq: int = 16):
    layer = nn.TransformerEncoderLayer(dim, heads, ffn, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False), (torch.randn(batch, seq, dim),)


class BasicBlock(nn.Module):
    def __init__(self, channels: int, stride: int = 1):
        super().__init__()
        out = channels * stride
        self.conv1 = nn.Conv2d(channels, out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.conv2 = nn.Conv2d(out, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1:
            self.down = nn.Sequential(nn.Conv2d(channels, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        identity = x if self.down is None else self.down(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


def resnet(blocks: int = 4, width: int = 16, batch: int = 4, size: int = 32, classes: int = 10):
    """A ResNet-style convnet with BatchNorm (train mode by default), in-place ReLU and residual adds."""
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    channels = width
    for i in range(blocks):
        stride = 2 if i > 0 and i % 2 == 0 else 1
        layers.append(BasicBlock(channels, stride))
        channels *= stride
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes)]
    return nn.Sequential(*layers), (torch.randn(batch, 3, size, size),)


def convnet_eval(batch: int = 4):
    """A small convnet with BatchNorm2d, to be used in eval mode."""
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )
    return model.eval(), (torch.randn(batch, 3, 16, 16),)


class UNetBlock(nn.Module):
    """Two 3x3 convolutions, each followed by GroupNorm and SiLU."""

    def __init__(self, channels_in: int, channels_out: int, groups: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.norm1 = nn.GroupNorm(groups, channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, channels_out)

    def forward(self, x):
        x = F.silu(self.norm1(self.conv1(x)))
        return F.silu(self.norm2(self.conv2(x)))


class UNet(nn.Module):
    """A small UNet: GroupNorm blocks, max-pool down, nearest upsampling, skip concatenations."""

    def __init__(self, channels: int = 3, width: int = 16, depth: int = 3):
        super().__init__()
        widths = [width * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList(UNetBlock(c_in, c_out) for c_in, c_out in zip([channels] + widths[:-2], widths[:-1]))
        self.middle = UNetBlock(widths[-2], widths[-1])
        self.up = nn.ModuleList(UNetBlock(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth)))
        self.out = nn.Conv2d(width, channels, 1)

    def forward(self, x):
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.middle(x)
        for block in self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(torch.cat([x, skips.pop()], dim=1))
        return self.out(x)


def unet(batch: int = 2, size: int = 32, width: int = 16, depth: int = 3):
    return UNet(3, width, depth), (torch.randn(batch, 3, size, size),)


class MixtureOfExperts(nn.Module):
    """A dense mixture of experts: a router picks top-k experts per token with ``topk``; each
    expert's output is weighted by its gate (zero where not picked, through ``scatter``)."""

    def __init__(self, dim: int = 64, experts: int = 8, top_k: int = 2, hidden: int = 128):
        super().__init__()
        self.top_k = top_k
        self.router = nn.Linear(dim, experts, bias=False)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)) for _ in range(experts))

    def forward(self, x):
        scores = self.router(x).softmax(dim=-1)
        top_scores, top_index = scores.topk(self.top_k, dim=-1)
        gates = torch.zeros_like(scores).scatter(-1, top_index, top_scores / top_scores.sum(-1, keepdim=True))
        expert_outputs = torch.stack([expert(x) for expert in self.experts], dim=-2)
        return x + (gates.unsqueeze(-1) * expert_outputs).sum(dim=-2)


def moe(batch: int = 4, seq: int = 16, dim: int = 64, experts: int = 8, layers: int = 4):
    model = nn.Sequential(*(nn.Sequential(nn.LayerNorm(dim), MixtureOfExperts(dim, experts)) for _ in range(layers)))
    return model, (torch.randn(batch, seq, dim),)


MODELS = {
    "mlp": mlp,
    "transformer": transformer_stack,
    "gpt": gpt,
    "resnet": resnet,
    "convnet_eval": convnet_eval,
    "unet": unet,
    "moe": moe,
}
