"""Mutations of inputs: data and metadata, under and outside no_grad, on inputs that require grad."""
import pytest
import torch

from eager_parity import Case, assert_parity, leaf


def plain(*shape):
    return torch.randn(*shape)


def nonleaf(*shape):
    base = leaf(*shape)
    return base * 1.0, base


@pytest.mark.parametrize("mutate", [
    lambda x, y: x.add_(1),
    lambda x, y: x.copy_(y),
    lambda x, y: x.__setitem__(0, y[1]),
    lambda x, y: x[:, 1].mul_(y[0, 1]),
    lambda x, y: x.t_(),
    lambda x, y: x.unsqueeze_(0),
])
def test_input_mutation_without_grad(mutate):
    def fn(x, y):
        mutate(x, y)
        return x * y.sum()

    assert_parity(fn, lambda: Case((plain(3, 3), leaf(3, 3))))


def test_mutation_under_no_grad_of_leaf_requiring_grad():
    def fn(x, y):
        with torch.no_grad():
            x.mul_(2)
        return x * y

    assert_parity(fn, lambda: Case((leaf(3, 4), leaf(3, 4))))


def test_mutation_of_leaf_requiring_grad_raises_like_eager():
    assert_parity(lambda x: x.add_(1) * 2, lambda: Case((leaf(3),)), eager_raises=True)


def test_mutation_of_nonleaf_requiring_grad_flows_to_its_leaf():
    def make():
        x, base = nonleaf(3, 4)
        y = leaf(3, 4)
        return Case((x, y), (base, y))

    def fn(x, y):
        x.mul_(y)
        return x.sin()

    assert_parity(fn, make)


def test_mutation_of_nonleaf_keeps_autograd_history_of_input():
    """After the call, the mutated input's own graph must include the mutation: backward
    through `x` (not through the output) reaches `y`."""

    def make():
        x, base = nonleaf(3)
        y = leaf(3)
        return Case((x, y), (base, y))

    def fn(x, y):
        x.mul_(y)
        return (x * 2).detach()

    eager, ours = assert_parity(fn, make, backward=False)
    for seen in (eager, ours):
        x = seen.case.args[0]
        x.sum().backward()
    torch.testing.assert_close(ours.case.leaves[1].grad, eager.case.leaves[1].grad)
    torch.testing.assert_close(ours.case.leaves[0].grad, eager.case.leaves[0].grad)


def test_input_not_requiring_grad_mutated_with_value_requiring_grad():
    def fn(x, y):
        x.add_(y)
        return x * 2

    def make():
        return Case((plain(3), leaf(3)))

    eager, ours = assert_parity(fn, make)
    assert ours.case.args[0].requires_grad == eager.case.args[0].requires_grad


def test_metadata_and_data_mutation_together():
    def fn(x):
        x.t_()
        x[0].add_(1)
        return x.sum(0)

    assert_parity(fn, lambda: Case((plain(2, 3),)))


def test_mutation_through_input_view_chain():
    def fn(x):
        x.view(4, 3)[1:, ::2].transpose(0, 1).mul_(3)
        return x + 1

    assert_parity(fn, lambda: Case((plain(3, 4),)))


def test_batchnorm_train_buffers_match_eager():
    from aotgraph import aot_module

    torch.manual_seed(0)
    eager_bn = torch.nn.BatchNorm1d(4)
    ours_bn = torch.nn.BatchNorm1d(4)
    compiled = aot_module(ours_bn)
    for _ in range(2):
        x = torch.randn(8, 4)
        torch.testing.assert_close(compiled(x), eager_bn(x))
    for name, buffer in eager_bn.named_buffers():
        torch.testing.assert_close(dict(ours_bn.named_buffers())[name], buffer)


def _nonleaf_and_leaf():
    root, y = leaf(3, 4), leaf(4, 3)
    return Case((root * 1.0, y), (root, y))


@pytest.mark.parametrize("fn", [
    lambda x, y: x.__setitem__(0, y[:, 0]) or x.sum(),
    lambda x, y: (x.mul_(2), x.add_(y.t()), x.exp())[2],
    lambda x, y: (x.mul_(y.t()), x[0], x.t())[1:],
], ids=["setitem_from_grad", "mutated_twice", "views_of_mutated_returned"])
def test_nonleaf_input_mutations(fn):
    assert_parity(fn, _nonleaf_and_leaf)


def test_layout_change_of_input_requiring_grad():
    """Allowed on a non-leaf (more cases: tests/runtime/test_metadata_and_backward_mutations.py);
    on a leaf requiring grad, eager raises and so do we."""
    def nonleaf_case():
        root = leaf(3, 4)
        return Case((root * 1.0,), (root,))

    assert_parity(lambda t: t.t_() * 2, nonleaf_case)
    assert_parity(lambda t: t.t_() * 2, lambda: Case((leaf(3, 4),)), eager_raises=True)


def _padded_nonleaf():
    """A non-leaf input whose rows are padded (strides of a slice), like activations handed
    between graphs at a graph break after Inductor padded a matmul."""
    base = leaf(4, 8)
    return (base * 1.0)[:, :5], base


def test_padded_nonleaf_input_gradient_matches_eager():
    def make():
        x, base = _padded_nonleaf()
        return Case((x,), (base,))

    assert_parity(lambda x: (x.float() * 3).sin(), make)
    assert_parity(lambda x: x.mul_(2).cos(), make)


def test_padded_nonleaf_input_backward_records_no_storage_sized_buffer():
    """The copy the program sees of a non-leaf input passes its gradient straight through:
    the joint graph holds no buffer the size of the input's storage (32 elements here)."""
    from aotgraph import aot_export_joint

    x, _ = _padded_nonleaf()
    joint = aot_export_joint(lambda x: (x * 3).sin(), (x,)).graph_module
    sizes = [tuple(n.meta["val"].shape) for n in joint.graph.nodes
             if n.op == "call_function" and isinstance(n.meta.get("val"), torch.Tensor)]
    assert (32,) not in sizes and not any(
        n.target is torch.ops.aten.as_strided.default for n in joint.graph.nodes), joint.graph


def _write_row_of_expanded(x, z):
    y = x.expand(3, *x.shape)
    y[1, 1].mul_(5)
    return y * z


def _write_element_of_expanded(x, z):
    y = x.expand(3, *x.shape)
    y[0, 0].add_(z[0, 0])
    return y


def _write_through_unsqueeze_and_expand(x, z):
    t = x.clone()
    e = t.unsqueeze(0).expand(4, -1, -1)
    e[2, 1].copy_(z[0])
    return e * z, t


def _write_copy_of_expanded_keeps_nan(x, z):
    y = x.expand(2, *x.shape)
    y[1, 0, 1] = 7.0
    return y.sum(0) * z


def _expanded_input_with_nan():
    x = torch.randn(2, 3)
    x[0, 0] = float("nan")
    return Case((x, leaf(2, 3)))


@pytest.mark.parametrize("fn, make", [
    (_write_row_of_expanded, lambda: Case((plain(2, 3), leaf(2, 3)))),
    (_write_element_of_expanded, lambda: Case((plain(2, 3), leaf(2, 3)))),
    (_write_element_of_expanded, lambda: Case((nonleaf(2, 3)[0], leaf(2, 3)))),
    (_write_through_unsqueeze_and_expand, lambda: Case((leaf(2, 3), leaf(2, 3)))),
    (_write_copy_of_expanded_keeps_nan, _expanded_input_with_nan),
])
def test_write_through_expanded_view(fn, make):
    """A view of an expanded tensor written in place writes the one memory location behind
    each written element: every broadcast copy reads the new value, as in eager."""
    assert_parity(fn, make)


def test_write_reaching_one_location_twice_through_expand_raises_as_eager():
    def fn(x, z):
        y = x.expand(3, *x.shape)
        y[0:3, 0].add_(5)  # three elements of the view share each memory location
        return y * z

    assert_parity(fn, lambda: Case((plain(2, 3), leaf(2, 3))), eager_raises=True)
