"""Random ops inside the compiled function: same draws as eager under the same seed, the
backward uses the forward's draws, and the global RNG state after the call matches eager."""
import pytest
import torch
import torch.nn.functional as F

from aotgraph import UnsupportedOp, aot_function
from eager_parity import Case, assert_parity, leaf


def _rrelu_in_place(x):
    noise = torch.ones_like(x)
    torch.ops.aten.rrelu_with_noise_(x, noise, 0.2, 0.8, True)
    return x, noise


@pytest.mark.parametrize("fn", [
    lambda x: F.dropout(x, 0.5, training=True).sin(),
    lambda x: x * torch.rand_like(x),
    lambda x: x * torch.bernoulli(torch.full_like(x, 0.3)),
    lambda x: x + torch.randn(3, 4),
    lambda x: (torch.randn(4) * 0 + F.dropout(x, 0.2)).exp(),  # two random ops, order matters
    lambda x: torch.rand(3, 4) * x.detach(),  # a draw nothing needs a gradient of
    lambda x: F.dropout(x, 1.0, training=True) + torch.rand_like(x),  # eager draws nothing for p=1
    lambda x: _rrelu_in_place(x * 1),  # an in-place draw that writes two arguments (self, noise)
], ids=["dropout", "rand_like", "bernoulli", "randn", "two_draws", "unused_grad", "dropout_p1", "rrelu_in_place"])
def test_random_ops_match_eager_draws_and_rng_state(fn):
    assert_parity(fn, lambda: Case((leaf(3, 4),)))


def test_backward_uses_forward_draws():
    """Backward of dropout must use the forward's mask: grad is zero exactly where the output is."""

    def fn(x):
        return F.dropout(x, 0.5, training=True)

    x = torch.ones(64, requires_grad=True)
    out = aot_function(fn)(x)
    out.sum().backward()
    assert torch.equal(x.grad == 0, out.detach() == 0)


def test_draws_differ_between_calls_like_eager():
    compiled = aot_function(lambda x: x * torch.rand_like(x))
    torch.manual_seed(0)
    first, second = compiled(torch.ones(5)), compiled(torch.ones(5))
    assert not torch.equal(first, second)


def test_reseeding_inside_the_function_is_replayed():
    """More cases in test_rng_seeding.py."""
    def fn(x):
        torch.manual_seed(3)
        return x * torch.rand_like(x)

    compiled = aot_function(fn)
    for seed in (0, 1):
        assert_parity(fn, lambda: Case((leaf(3, 4),)), seed=seed, compiled=compiled, atol=0, rtol=0)


def test_setting_the_rng_state_without_torch_set_rng_state_is_refused():
    def fn(x):
        torch.default_generator.manual_seed(3)
        return x * torch.rand_like(x)

    with pytest.raises(UnsupportedOp, match="global RNG"):
        aot_function(fn)(torch.ones(3))


@pytest.mark.parametrize("partitioner", ["default", "mincut"])
def test_draws_survive_a_recomputing_partitioner(partitioner):
    """A partitioner that recomputes cheap ops in the backward must not redraw random values."""
    from aotgraph import default_partition, min_cut_rematerialization_partition

    partition_fn = {"default": default_partition, "mincut": min_cut_rematerialization_partition}[partitioner]

    def fn(x, w):
        h = F.dropout((x @ w).relu(), 0.5, training=True)
        return (h * torch.rand_like(h)).sin().sum(1)

    def make():
        return Case((leaf(8, 16), leaf(16, 16)))

    assert_parity(fn, make, compiled=aot_function(fn, partition_fn=partition_fn))


@pytest.mark.parametrize("compiler", ["eager", "nop"])
def test_draws_from_a_generator_the_caller_passes(compiler):
    """``torch.randn(..., generator=g)``: the graph draws from the caller's generator object itself
    (its state advances as eager's), beside draws from the global RNG. Before: the generator
    was written into the generated code as text, a SyntaxError at compile time."""
    from aotgraph import nop

    def fn(x, g):
        mask = torch.rand(x.shape, generator=g) > 0.5
        return x * mask + torch.randn(x.shape, generator=g) + torch.randn(x.shape)

    compiled = aot_function(fn, nop if compiler == "nop" else compiler)
    for seed in (3, 3, 4):  # a new generator object each call (a compile each); the same one twice
        generators = [torch.Generator().manual_seed(seed) for _ in range(2)]
        for _ in range(2):
            results = []
            for run, g in zip((fn, compiled), generators):
                torch.manual_seed(1)
                x = torch.linspace(-1, 1, 6, requires_grad=True)
                out = run(x, g)
                out.sum().backward()
                results.append((out.detach(), x.grad, g.get_state()))
            (out, grad, state), (c_out, c_grad, c_state) = results
            torch.testing.assert_close(c_out, out)
            torch.testing.assert_close(c_grad, grad)
            assert torch.equal(c_state, state)
