"""Inductor's vectorized C++ code for an add at computed positions (``index_put(...,
accumulate=True)``, an indexing's backward) fused with a read of a transposed operand adds wrong
values, and past the buffer (torch 2.11-2.13, torch's own Inductor too; Falcon's multi-query
attention trained with wrong gradients, and crashed with changing sizes). aotgraph compiles such
CPU graphs again without vectorized loops (switch ``scatter_graphs_scalar``); these programs match
eager, with static and with symbolic sizes, and adds outside such tiles stay vectorized."""
from __future__ import annotations

import logging
import random

import pytest
import torch

import aotgraph

RECOMPILED = "in a 2-D tile"  # what aotgraph logs when it compiles a graph again without vector loops


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


def embedded(ids, weight, scale):
    """An embedding's backward: an add at computed positions of the incoming gradient, read in order."""
    return (torch.nn.functional.embedding(ids, weight) * scale).square().sum()


@pytest.mark.parametrize("dynamic", [False, True])
def test_an_embeddings_backward_stays_vectorized_and_matches_eager(dynamic, caplog):
    """The add is vectorized outside a transposed tile (not compiled again), and right at widths
    and lengths that leave loop tails."""
    torch.manual_seed(0)
    compiled = aotgraph.aot_function(embedded, "inductor", dynamic=dynamic)
    with caplog.at_level(logging.INFO, logger="aotgraph"):
        for width, length in [(24, 17), (19, 12), (40, 33)]:
            weight = torch.randn(50, width, requires_grad=True)
            ids, scale = torch.randint(0, 50, (3, length)), torch.randn(width)
            compiled(ids, weight, scale).backward()
            ours, weight.grad = weight.grad, None
            embedded(ids, weight, scale).backward()
            torch.testing.assert_close(ours, weight.grad, rtol=1e-5, atol=1e-5)
    assert not any(RECOMPILED in record.getMessage() for record in caplog.records)


def test_an_add_in_a_2d_tile_is_compiled_again_without_vector_loops(caplog):
    a, index = torch.randn(2, 1, 16, 16), torch.tensor([4])
    with caplog.at_level(logging.INFO, logger="aotgraph"):
        aotgraph.aot_function(scattered, "inductor")(a, index)
    assert any(RECOMPILED in record.getMessage() for record in caplog.records)


def _random_add(rng: random.Random):
    """A random accumulating add (index_put, index_add or scatter_add) into a tensor, its values a
    permuted view of a product: (program, inputs, dynamic)."""
    dims = [rng.choice([1, 2, 3, 5, 8, 12, 16, 17, 24, 33]) for _ in range(4)]
    perm, axis = rng.sample(range(4), 4), rng.randrange(4)
    op, dynamic = rng.choice(["index_put", "index_add", "scatter_add"]), rng.random() < 0.4

    def program(a, w, index, positions):
        values = (a * w).permute(*perm)
        shape = list(values.shape)
        shape[axis] = 7
        zeros = values.new_zeros(shape)
        if op == "index_put":
            added = torch.ops.aten.index_put(zeros, [None] * axis + [index], values.narrow(axis, 0, len(index)), True)
        elif op == "index_add":
            added = zeros.index_add(axis, index, values.narrow(axis, 0, len(index)))
        else:
            added = zeros.scatter_add(axis, positions, values)
        return (added * 2).sum(0)

    a = torch.randn(*dims)
    index = torch.randint(0, 7, (min(rng.choice([1, 2, 3]), dims[perm[axis]]),))
    positions = torch.randint(0, 7, [dims[p] for p in perm])
    return program, (a, torch.randn(dims[-1]), index, positions), dynamic


@pytest.mark.parametrize("seed", range(12))
def test_random_accumulating_adds_match_eager(seed):
    """Differential fuzz over shapes, permutations, ops and symbolic sizes (of 50 such cases about
    a quarter compile again without vector loops; with the switch off 3 of these 12 fail)."""
    program, inputs, dynamic = _random_add(random.Random(seed))
    torch.manual_seed(seed)
    compiled = aotgraph.aot_function(program, "inductor", dynamic=dynamic)
    torch.testing.assert_close(compiled(*inputs), program(*inputs), rtol=1e-4, atol=1e-4)
