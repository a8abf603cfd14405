"""Why a region is compiled inline: attention without dropout is no reason (its backward
included), and a marked region that is refused says why."""
from __future__ import annotations

import pytest
import torch
import torch.fx as fx
import torch.nn.functional as F

import aotgraph
from aotgraph.graph.ops import is_random, unsafe_to_recompute

pytestmark = pytest.mark.usefixtures("fresh_dynamo")

aten = torch.ops.aten


def _attention_node(op, dropout_p: float) -> fx.Node:
    """A node calling `op` with `dropout_p` at its schema's position (other arguments None)."""
    names = [a.name for a in op._schema.arguments]
    graph = fx.Graph()
    x = graph.placeholder("x")
    args = [x if k < 4 else None for k in range(len(names))]
    args[names.index("dropout_p")] = dropout_p
    return graph.call_function(op, tuple(args))


# The backwards that carry torch's random tag (they replay the forward's draws from its seed):
# on CUDA the partition and region capture meet them where the CPU meets the forwards alone.
TAGGED_ATTENTION = [aten._scaled_dot_product_efficient_attention_backward.default,
                    aten._scaled_dot_product_cudnn_attention_backward.default,
                    aten._scaled_dot_product_cudnn_attention.default,
                    aten._scaled_dot_product_flash_attention.default]


@pytest.mark.parametrize("op", TAGGED_ATTENTION, ids=lambda op: op.name())
def test_attention_without_dropout_is_safe_to_recompute(op):
    assert torch.Tag.nondeterministic_seeded in op.tags  # else this test tests nothing
    assert unsafe_to_recompute(_attention_node(op, 0.0)) is None
    assert not is_random(_attention_node(op, 0.0))
    assert "random" in unsafe_to_recompute(_attention_node(op, 0.1))
    assert is_random(_attention_node(op, 0.1))


class DropoutBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)

    @torch.compiler.nested_compile_region
    def forward(self, x):
        return F.dropout(self.lin(x).relu(), 0.5, training=True)


def test_a_marked_region_compiled_inline_says_why():
    blocks = torch.nn.Sequential(DropoutBlock(), DropoutBlock())
    x = torch.randn(4, 8, requires_grad=True)
    compiled = torch.compile(blocks, backend=aotgraph.backend(compiler="eager"))
    with pytest.warns(UserWarning, match=r"compiled inline at each occurrence, not once: .*random"):
        torch.manual_seed(0)
        out = compiled(x)
    torch.manual_seed(0)
    torch.testing.assert_close(out, blocks(x))


class InputWritingBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)

    @torch.compiler.nested_compile_region
    def forward(self, x):
        x.mul_(0.5)
        return torch.tanh(self.lin(x))


def test_a_marked_region_writing_an_input_that_needs_a_gradient_says_why():
    torch.manual_seed(0)
    blocks = torch.nn.Sequential(torch.nn.Linear(8, 8), InputWritingBlock(), torch.nn.Linear(8, 8), InputWritingBlock())
    x = torch.randn(4, 8)
    compiled = torch.compile(blocks, backend=aotgraph.backend(compiler="eager"))
    with pytest.warns(UserWarning, match=r"compiled inline at each occurrence, not once: its capture on its own"):
        out = compiled(x)
    torch.testing.assert_close(out, blocks(x))
