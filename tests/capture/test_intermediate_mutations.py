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
