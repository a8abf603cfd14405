"""Common subexpressions merged in the joint graph: duplicates go, results stay eager's.

Each case counts the joint graph's nodes of one op and compares the compiled program with
eager (outputs, gradients) through `assert_parity`.
"""
import pytest
import torch
from torch.utils.checkpoint import checkpoint

import aotgraph
from aotgraph import aot_export_joint
from aotgraph.compilers.torchinductor import inductor_decompositions
from parity import assert_parity


def _count(fn, *args, op) -> int:
    joint = aot_export_joint(fn, args)
    return sum(n.target is op for n in joint.graph_module.graph.nodes)


def twice_sin(x):
    return x.sin() * 2 + x.sin()


def cross_entropy(logits, labels):
    return torch.nn.functional.cross_entropy(logits, labels, ignore_index=1)


def test_a_repeated_computation_runs_once():
    x = torch.randn(4, 5, requires_grad=True)
    assert _count(twice_sin, x, op=torch.ops.aten.sin.default) == 1
    assert_parity(twice_sin, (x,))


def test_cross_entropys_repeated_masks_merge():
    logits, labels = torch.randn(6, 7, requires_grad=True), torch.tensor([0, 1, 2, 1, 4, 5])
    joint = aot_export_joint(cross_entropy, (logits, labels), decompositions=inductor_decompositions())
    forward_ne = [n for n in joint.graph_module.graph.nodes
                  if n.target is torch.ops.aten.ne.Scalar and not any("tangent" in a.name for a in n.all_input_nodes)]
    keys = [(n.args, tuple(n.kwargs.items())) for n in forward_ne]
    assert len(keys) == len(set(keys)) > 0  # no two identical masks left
    assert_parity(cross_entropy, (logits, labels), fw_compiler="inductor")


def two_draws(x):
    return torch.rand_like(x) - torch.rand_like(x) + x


def test_random_draws_never_merge():
    x = torch.randn(64, requires_grad=True)
    assert _count(two_draws, x, op=torch.ops.aten.rand_like.default) + \
        _count(two_draws, x, op=torch.ops.aten.rand.default) == 2
    parity = assert_parity(two_draws, (x,))
    assert (parity.compiled_out - x).abs().max() > 0  # two different draws, as eager


def int_and_float_scalars(x):
    return x * 1, x * 1.0, x + 0.0, x + -0.0


def test_scalars_of_other_types_or_signs_do_not_merge():
    x = torch.tensor([-0.0, 1.0, -2.0])
    parity = assert_parity(int_and_float_scalars, (x,), backward=False)
    i = torch.tensor([3, 4])
    parity = assert_parity(int_and_float_scalars, (i,), backward=False)
    assert parity.compiled_out[0].dtype == torch.int64 and parity.compiled_out[1].dtype == torch.float32
    signs = [torch.signbit(o) for o in int_and_float_scalars(torch.tensor([-0.0]))[2:]]
    assert signs[0].item() != signs[1].item()  # the case that catches 0.0 and -0.0 merged
    compiled_signs = [torch.signbit(o) for o in assert_parity(int_and_float_scalars, (torch.tensor([-0.0]),),
                                                             backward=False).compiled_out[2:]]
    assert compiled_signs == signs


def checkpointed(x, w):
    return checkpoint(lambda a: (a @ w).sin().cos(), x, use_reentrant=False).sum() + (x @ w).sin().sum()


def test_a_checkpoints_recomputation_is_not_merged_into_the_forward():
    x, w = torch.randn(4, 8, requires_grad=True), torch.randn(8, 8, requires_grad=True)
    joint = aot_export_joint(checkpointed, (x, w))
    nodes = list(joint.graph_module.graph.nodes)
    first_tangent_use = next(i for i, n in enumerate(nodes)
                             if any(a.name.startswith("tangents") for a in n.all_input_nodes))
    recomputed_sin = [n for n in nodes[first_tangent_use:] if n.target is torch.ops.aten.sin.default]
    assert recomputed_sin  # the backward still recomputes the checkpointed region
    assert_parity(checkpointed, (x, w))



def summed(x, a, b):
    return (x + a) + (x + b)


def test_two_gradients_computed_alike_stay_two_tensors():
    """a's and b's gradients are the same reduction of the same gradient: merged, the backward
    would return one tensor twice, and autograd would copy it at every call."""
    x, a, b = torch.randn(4, 5), torch.randn(5, requires_grad=True), torch.randn(5, requires_grad=True)
    joint = aot_export_joint(summed, (x, a, b))
    grads = [g for g in list(joint.graph_module.graph.find_nodes(op="output")[0].args[0])[joint.num_fwd_outputs:]
             if g is not None]
    assert len(grads) == 2 and grads[0] is not grads[1]
    assert_parity(summed, (x, a, b))


def clone_then_write(x):
    kept = x.clone()  # autograd copies x before sin_ too: the same clone
    x.sin_()
    return kept.view(-1)


def clone_then_clamp(x):
    kept = x.clone()
    x.clamp_(-0.5, 1.0)
    return kept.select(0, 1)


@pytest.mark.parametrize("program", [clone_then_write, clone_then_clamp])
@pytest.mark.parametrize("partition", ["default", "mincut"])
def test_a_copy_the_backward_reads_stays_apart_from_a_returned_one(program, partition):
    """Seeds 12253 and 29199: autograd's copy of x before an in-place op, merged into the
    program's own ``x.clone()`` (returned, or viewed by what is returned), made the caller's write
    into the output fail the backward ("modified by an inplace operation") where eager's
    backward reads a copy of its own."""
    def grads(fn):
        torch.manual_seed(0)
        leaf = torch.randn(4, 4, requires_grad=True)
        out = fn(leaf * 2)
        with torch.no_grad():
            out.zero_()
        out.add_(1)
        (out.sum() + 0).backward()
        return leaf.grad, out.detach()

    partition_fn = aotgraph.default_partition if partition == "default" else aotgraph.min_cut_rematerialization_partition
    compiled = aotgraph.aot_function(program, aotgraph.nop, partition_fn=partition_fn)
    for ours, theirs in zip(grads(compiled), grads(program)):
        torch.testing.assert_close(ours, theirs)


def two_sums_handed_out(x):
    return x.cumsum(1).detach(), x.cumsum(1), x.clone(), x.clone().view(-1)


def test_two_tensors_the_caller_is_handed_stay_two():
    """Seeds 34780, 22061: eager hands out two tensors computed alike; merged, they shared memory
    and a caller's write into one changed the other."""
    def after_writes(fn):
        x = torch.arange(12.0).view(3, 4).requires_grad_()
        outs = fn(x * 1)
        with torch.no_grad():
            outs[0].zero_()
            outs[2].add_(1)
        return [o.detach().clone() for o in outs]

    compiled = aotgraph.aot_function(two_sums_handed_out, aotgraph.nop)
    for ours, theirs in zip(after_writes(compiled), after_writes(two_sums_handed_out)):
        torch.testing.assert_close(ours, theirs)


def two_reshapes_of_a_transposed_tensor(x):
    y = x.t().exp()
    return y.reshape(-1), y.reshape(-1)


def test_two_reshape_copies_handed_out_stay_two():
    """Seed 70026: ``reshape`` of a non-contiguous tensor copies (a ``clone`` then
    ``_unsafe_view``, whose schema declares no alias). The two copies were merged into one
    clone, so the two outputs shared memory, and a write into one changed the other."""
    def after_write(fn):
        x = torch.arange(12.0).view(3, 4).requires_grad_()
        first, second = fn(x)
        assert first.untyped_storage().data_ptr() != second.untyped_storage().data_ptr()
        with torch.no_grad():
            first.zero_()
        return [first.detach().clone(), second.detach().clone()]

    compiled = aotgraph.aot_function(two_reshapes_of_a_transposed_tensor, aotgraph.nop)
    for ours, theirs in zip(after_write(compiled), after_write(two_reshapes_of_a_transposed_tensor)):
        torch.testing.assert_close(ours, theirs)
