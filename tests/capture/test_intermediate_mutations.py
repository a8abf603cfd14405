"""In-place ops on intermediates and their views, including in-place layout changes."""
import pytest
import torch

from eager_parity import Case, assert_parity, leaf


def relu_inplace_residual(x, w):
    out = (x @ w) * 2
    out += x
    return torch.relu_(out)


def write_through_view(x, w):
    y = x @ w
    y[:, 0].mul_(2)
    return y.tanh()


def layout_change_after_inplace(x, w):
    y = (x @ w)[:, :1] + 1
    y.mul_(x[:, :1])  # the same tensor is the producer's and the in-place op's value...
    y.squeeze_(-1)  # ...until its layout changes: both must keep the (4, 1) layout they had
    return y * 3


def unsqueeze_then_write(x, w):
    y = x.sum(1)
    y.unsqueeze_(0)
    y[0, 1:].zero_()
    return y @ torch.ones(4, 2)


@pytest.mark.parametrize("fn", [relu_inplace_residual, write_through_view, layout_change_after_inplace,
                                unsqueeze_then_write])
def test_intermediate_mutation(fn):
    assert_parity(fn, lambda: Case((leaf(4, 4), leaf(4, 4))))


# Writes through views whose write-back needs the parent's sizes, compiled with symbolic sizes: the
# write-back's nodes read those sizes from the graph (a raw SymInt argument named an undefined symbol).
def scaled_scores(q, k, w):
    scores = q @ k.transpose(-1, -2)  # a 4-d matmul: an _unsafe_view of a bmm...
    scores /= 4.0  # ...written in place (Falcon's attention)
    return scores.softmax(-1) @ k @ w


def flat_write(q, k, w):
    y = (q * k).view(-1)
    y.mul_(2)
    return y.view(q.shape) @ w


def split_write(q, k, w):
    y = q.detach() * 2
    first, _ = y.split(y.shape[-2] // 2, dim=-2)  # a symbolic split size: the write-back's offsets
    first.mul_(3)
    return (y + k) @ w


@pytest.mark.parametrize("fn", [scaled_scores, flat_write, split_write])
def test_write_back_with_symbolic_sizes(fn):
    import aotgraph

    _assert_parity_across_lengths(fn, aotgraph.aot_function(fn, dynamic=True))


def test_write_back_with_dynamo_sizes():
    """The same through torch.compile: Dynamo hands the sizes as SymInt inputs of its graph."""
    import aotgraph

    torch._dynamo.reset()
    _assert_parity_across_lengths(scaled_scores, torch.compile(scaled_scores, backend=aotgraph.backend(compiler="eager")))


def _assert_parity_across_lengths(fn, compiled):
    """`compiled` against `fn` (outputs and gradients) on inputs of three sequence lengths."""
    for seq in (4, 6, 8):
        torch.manual_seed(seq)
        inputs = [torch.randn(2, 3, seq, 4, requires_grad=True), torch.randn(2, 3, seq, 4, requires_grad=True),
                  torch.randn(4, 5, requires_grad=True)]
        copies = [t.detach().clone().requires_grad_() for t in inputs]
        expected, actual = fn(*inputs), compiled(*copies)
        expected.sum().backward()
        actual.sum().backward()
        torch.testing.assert_close(actual, expected)
        for got, want in zip(copies, inputs):
            torch.testing.assert_close(got.grad, want.grad)
