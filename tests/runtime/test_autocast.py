"""Autocast: around the compiled call and entered inside the function."""
import torch

from aotgraph import aot_function
from eager_parity import Case, assert_parity, leaf

BF16 = dict(atol=2e-2, rtol=2e-2)


def mlp(x, w1, w2):
    return torch.relu(x @ w1).matmul(w2).softmax(-1)


def make():
    return Case((leaf(8, 16), leaf(16, 32), leaf(32, 4)))


def test_function_called_under_autocast():
    compiled = aot_function(mlp)

    def under_autocast(fn):
        def call(*args):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return fn(*args)
        return call

    eager, ours = assert_parity(under_autocast(mlp), make, compiled=under_autocast(compiled), **BF16)
    assert ours.raw_outputs.dtype == eager.raw_outputs.dtype
    assert [g.dtype for g in ours.grads] == [g.dtype for g in eager.grads]


def test_autocast_entered_inside_the_function():
    def fn(x, w1, w2):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = x @ w1
        return h.float().tanh() @ w2, h

    eager, ours = assert_parity(fn, make, **BF16)
    assert [o.dtype for o in ours.raw_outputs] == [torch.float32, torch.bfloat16]


def test_compiled_graph_runs_without_autocast_casting_twice():
    """The graph already holds autocast's casts; the runtime must not let autocast recast
    its ops (a bf16 matmul on fp32 inputs the graph meant to keep in fp32)."""

    def fn(x, w):
        with torch.autocast("cpu", enabled=False):
            return x @ w

    compiled = aot_function(fn)
    x, w = torch.randn(8, 8), torch.randn(8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = compiled(x, w)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, x @ w)


def test_cache_key_includes_autocast_state():
    compiled = aot_function(lambda x, w: x @ w)
    x, w = torch.randn(4, 4), torch.randn(4, 4)
    assert compiled(x, w).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert compiled(x, w).dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.float16):
        assert compiled(x, w).dtype == torch.float16
    assert compiled(x, w).dtype == torch.float32
    assert len(compiled.aotgraph_entries) == 3


def _nesting() -> int:
    level = torch.autocast_increment_nesting() - 1
    torch.autocast_decrement_nesting()
    return level


def test_a_compile_leaves_autocasts_nesting_and_cache_as_eager_does():
    """A Dynamo graph enters autocast inside a checkpoint; capture's recompute stops early, inside
    the region: the nesting count must not stay up, or autocast never clears its cache of casts
    again and later eager code reads weights from before an optimizer step."""
    import aotgraph
    from torch.utils.checkpoint import checkpoint

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(16, 16)

        def body(self, x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.linear(x).relu()

        def forward(self, x):
            return checkpoint(self.body, x, use_reentrant=False).float().sum(-1)

    torch._dynamo.reset()
    compiled = torch.compile(Block(), backend=aotgraph.backend(compiler="eager"))  # (an empty disk cache per test)
    compiled(torch.randn(4, 16)).sum().backward()
    assert _nesting() == 0
    linear, x = torch.nn.Linear(16, 16), torch.randn(4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        linear(x)
    with torch.no_grad():
        linear.weight.add_(1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = linear(x)
    torch.testing.assert_close(y, torch.nn.functional.linear(x.bfloat16(), linear.weight.bfloat16(),
                                                             linear.bias.bfloat16()))
