"""Outputs that alias inputs, each other or intermediates; inputs that alias each other."""
import pytest
import torch

from aotgraph import aot_function
from eager_parity import Case, assert_parity, leaf


@pytest.mark.parametrize("view", [
    lambda x: x.view(12),
    lambda x: x[0],
    lambda x: x.t(),
    lambda x: x[:, 1:].expand(2, 3, 3),
    lambda x: x.transpose(0, 1)[1],
    lambda x: x,
])
@pytest.mark.parametrize("requires_grad", [True, False])
def test_output_view_of_input(view, requires_grad):
    assert_parity(lambda x: (view(x), x.sum()), lambda: Case((leaf(3, 4, requires_grad=requires_grad),)))


def test_returned_view_behaves_like_eager_view():
    x_eager, x_ours = torch.randn(3, 4), torch.randn(3, 4)
    x_ours.copy_(x_eager)
    fn = lambda x: x[1]  # noqa: E731
    out_eager, out_ours = fn(x_eager), aot_function(fn)(x_ours)
    assert out_ours._base is x_ours and out_eager._base is x_eager
    version = x_ours._version
    out_ours.mul_(10)
    out_eager.mul_(10)
    assert x_ours._version > version
    torch.testing.assert_close(x_ours, x_eager)


def test_returned_input_is_the_same_object():
    x = torch.randn(3)
    assert aot_function(lambda t: t)(x) is x


def test_outputs_aliasing_each_other():
    def fn(x):
        y = x * 2
        return y, y.view(-1), y[0]

    eager, ours = assert_parity(fn, lambda: Case((leaf(3, 4),)))
    out = ours.raw_outputs
    out[0].detach()[0, 0] = 100.0  # a write through one output is seen by its aliases, as in eager
    assert out[1][0].item() == 100.0 and out[2][0].item() == 100.0


def test_view_of_intermediate_and_inplace_on_it():
    def fn(x):
        y = x.sin()
        z = y[:, 0]
        z.mul_(2)
        return y, z

    assert_parity(fn, lambda: Case((leaf(3, 4),)))


def test_same_tensor_passed_twice():
    def make():
        x = leaf(3, 4)
        return Case((x, x), (x,))

    assert_parity(lambda a, b: a * b + a, make)


def test_same_tensor_passed_twice_and_mutated():
    def make():
        x = torch.randn(3)
        return Case((x, x))

    assert_parity(lambda a, b: (a.add_(1), b * 2)[1], make)


def test_two_views_of_one_base_not_mutated():
    def make():
        base = leaf(4, 4)
        return Case((base[0], base[1:3]), (base,))

    assert_parity(lambda a, b: (a * b).sum(0) + a, make)


def test_two_views_of_one_base_mutated():
    def make():
        base = torch.randn(4, 4)
        return Case((base[0:2], base[1:3], base))

    def fn(a, b, base_alias):
        a.mul_(2)
        return b + 1

    assert_parity(fn, make)


def test_output_requires_grad_and_grad_fn_like_eager():
    def fn(x, y):
        return x.detach(), y * 2, x.view(-1)

    eager, ours = assert_parity(fn, lambda: Case((leaf(3), torch.randn(3))))
    for e, c in zip(eager.raw_outputs, ours.raw_outputs):
        assert (e.grad_fn is None) == (c.grad_fn is None)


def test_two_views_of_a_base_requiring_grad_mutated():
    def make():
        root = leaf(4, 4)
        base = root * 1.0
        return Case((base[0:2], base[1:3]), (root,))

    def fn(a, b):
        a.mul_(2)
        return (b * 3).sum(), a

    assert_parity(fn, make)


def test_aliasing_seen_after_a_compile_without_aliasing():
    """An entry compiled for independent inputs must not be reused for aliased ones."""

    def fn(a, b):
        a.add_(1)
        return b * 2

    compiled = aot_function(fn)
    compiled(torch.zeros(2), torch.zeros(2))
    base_eager, base_ours = torch.zeros(3), torch.zeros(3)
    expected = fn(base_eager[0:2], base_eager[1:3])
    got = compiled(base_ours[0:2], base_ours[1:3])
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(base_ours, base_eager)


def test_aliased_inputs_of_different_dtypes_are_refused_when_mutated():
    from aotgraph import UnsupportedOp

    base = torch.zeros(4)
    with pytest.raises(UnsupportedOp, match="share memory"):
        aot_function(lambda a, b: a.add_(1) * 2 + b.float())(base, base.view(torch.int32))


def test_inputs_sharing_memory_without_a_common_base_run_when_not_mutated():
    """A tensor and its detached twin (both requiring grad) have no base aotgraph could
    pass instead; a program that mutates neither needs none, and runs as eager."""
    fn = lambda a, b: a * b + b.sin()  # noqa: E731
    compiled = aot_function(fn)
    grads = []
    for run in (fn, compiled, compiled):
        x = torch.arange(4.0, requires_grad=True)
        y = x.detach().requires_grad_()
        out = run(x, y)
        out.sum().backward()
        grads.append((out.detach(), x.grad, y.grad))
    for got in grads[1:]:
        torch.testing.assert_close(got, grads[0])
    assert len(compiled.aotgraph_entries) == 1
