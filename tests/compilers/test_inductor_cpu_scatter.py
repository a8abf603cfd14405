"""Inductor's vectorized C++ code for an add at computed positions (``index_put(...,
accumulate=True)``, an indexing's backward) fused with a read of a transposed operand adds wrong
values, and past a loop's tail past the buffer (torch 2.11-2.13, torch's own Inductor too; Falcon's
multi-query attention trained with wrong gradients, and crashed with changing sizes). aotgraph
compiles such CPU graphs without vectorized loops (switch ``scatter_graphs_scalar``); these
programs match eager, with static and with symbolic sizes."""
from __future__ import annotations

import pytest
import torch

import aotgraph


def scattered(a, index):
    values = a.permute(0, 3, 1, 2)  # read transposed: Inductor tiles the loop in two dimensions
    zeros = a.new_zeros(2, a.shape[3], 6, a.shape[2])
    return torch.ops.aten.index_put(zeros, [None, None, index], values, True) + 1


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("width, length", [(8, 12), (12, 12), (24, 12), (16, 16), (16, 32)])
def test_an_accumulating_index_put_over_a_transposed_operand_matches_eager(width, length, dynamic):
    torch.manual_seed(0)
    a, index = torch.randn(2, 1, width, length), torch.tensor([4])
    compiled = aotgraph.aot_function(scattered, "inductor", dynamic=dynamic)
    torch.testing.assert_close(compiled(a, index), scattered(a, index))


def multi_query_heads(x, weight):
    """Falcon's split of a fused projection: the query heads a slice, the one key and value head
    picked by index lists (their backward: accumulating index_puts into one zero gradient)."""
    qkv = (x @ weight).view(2, 12, 6, 16)
    q, k, v = qkv[..., :-2, :], qkv[..., [-2], :], qkv[..., [-1], :]
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    scores = (q @ k.transpose(-1, -2)).softmax(-1)
    return (scores @ v).transpose(1, 2).reshape(2, 12, 64).square().sum()


def test_a_multi_query_attention_trains_like_eager():
    torch.manual_seed(0)
    x = torch.randn(2, 12, 64)
    weight = (torch.randn(64, 96) * 0.1).requires_grad_()
    compiled = aotgraph.aot_function(multi_query_heads, "inductor")
    compiled(x, weight).backward()
    ours = weight.grad
    weight.grad = None
    multi_query_heads(x, weight).backward()
    scale = weight.grad.abs().max().item()
    torch.testing.assert_close(ours, weight.grad, rtol=1e-4, atol=1e-5 * scale)  # (switch off: far off)
