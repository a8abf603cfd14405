"""Issue 16 item 4: FSDP's storage resizes on the inputs of a compiled program, against eager.

A parameter arrives freed (a storage of 0 bytes), the program gives it its memory back
(``untyped_storage().resize_`` or ``inductor.resize_storage_bytes_``), fills it, uses it and frees
it again; or an input that holds its memory is freed at the end. After each call the inputs hold
what eager leaves them: storage sizes, values (where they have memory), gradients. The refusals
(what torch's AOTAutograd does not capture either, and what would make eager touch freed memory)
are in tests/capture/test_storage_changes.py.
"""
from __future__ import annotations

import pytest
import torch

import aotgraph
from aotgraph.errors import UnsupportedOp


def _full_bytes(t):
    return t.numel() * t.element_size()


def _freed(t):
    t.untyped_storage().resize_(0)
    return t


def fsdp_all_gather(w, full, x):  # FSDP2's forward: reallocate, fill, use, free
    w.untyped_storage().resize_(_full_bytes(w))
    with torch.no_grad():
        w.copy_(full)
    out = (x * w).sum(0) + w * 3
    w.untyped_storage().resize_(0)
    return out


def fsdp_copy_op(w, full, x):  # with FSDP's own copy op and the resize op Dynamo records
    torch.ops.inductor.resize_storage_bytes_(w, _full_bytes(w))
    with torch.no_grad():
        torch.ops.fsdp.copy_(w, full)
    out = x @ w.t() + w.sum()
    torch.ops.inductor.resize_storage_bytes_(w, 0)
    return out


def reallocate_and_keep(w, full, x):  # arrives freed, leaves holding the written values
    w.untyped_storage().resize_(_full_bytes(w))
    with torch.no_grad():
        w.copy_(full)
    return x + w


def free_at_the_end(w, full, x):  # arrives holding memory, leaves freed (its values gone)
    out = full * 2 + x
    w.add_(1)
    w.untyped_storage().resize_(0)
    return out


def free_and_reallocate(w, full, x):  # the program: to 0 and back, then filled
    w.untyped_storage().resize_(0)
    w.untyped_storage().resize_(_full_bytes(w))
    w.copy_(full)
    return w * 2 + x


def typed_storage_free(w, full, x):  # FSDP1's _free_storage
    out = x + full
    w._typed_storage()._resize_(0)
    return out


ARRIVES_FREED = {fsdp_all_gather, fsdp_copy_op, reallocate_and_keep}
PROGRAMS = [fsdp_all_gather, fsdp_copy_op, reallocate_and_keep, free_at_the_end, free_and_reallocate,
            typed_storage_free]


def _inputs(program, grad):
    torch.manual_seed(0)
    w = torch.randn(4, 4).requires_grad_(grad and program in ARRIVES_FREED)  # a parameter
    if program in ARRIVES_FREED:
        _freed(w)
    full = torch.randn(4, 4, requires_grad=grad)
    # Eager's backward would read w's freed memory for x's gradient (FSDP reallocates w before the backward)
    x = torch.randn(4, 4, requires_grad=grad and program not in ARRIVES_FREED)
    return w, full, x


def _run(program, compiled, grad):
    inputs = _inputs(program, grad)
    out = compiled(*inputs)
    if grad:
        out.sum().backward()
    return out, inputs


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("compiler", [None, "inductor"], ids=["eager", "inductor"])
@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.__name__)
def test_storage_resizes_of_inputs_match_eager(program, compiler, grad):
    if compiler == "inductor" and program in (typed_storage_free, free_and_reallocate):
        pytest.skip("the same runtime path as the other programs; one Inductor compile each is enough")
    compiled = aotgraph.aot_function(program, compiler)
    with torch.set_grad_enabled(grad):
        for _ in range(2):  # the second call reuses the compiled entry
            expected, eager_inputs = _run(program, program, grad)
            got, our_inputs = _run(program, compiled, grad)
            torch.testing.assert_close(got, expected)
            assert got.requires_grad == expected.requires_grad
            for ours, eager in zip(our_inputs, eager_inputs):
                assert ours.untyped_storage().nbytes() == eager.untyped_storage().nbytes()
                if eager.untyped_storage().nbytes():
                    torch.testing.assert_close(ours.detach(), eager.detach())
                assert (ours.requires_grad, ours.is_leaf) == (eager.requires_grad, eager.is_leaf)
                if eager.is_leaf and eager.grad is not None:
                    torch.testing.assert_close(ours.grad, eager.grad)


def test_an_input_compiled_holding_memory_and_called_freed_is_refused_at_run_time():
    """The cache key does not see storage sizes: an entry compiled for an input with memory that
    it reads, called with that input freed, says so instead of reading freed memory."""
    compiled = aotgraph.aot_function(free_at_the_end)
    compiled(*_inputs(free_at_the_end, False))
    w, full, x = _inputs(free_at_the_end, False)
    with pytest.raises(UnsupportedOp,
                       match=r"(?s)input at flat position 0 arrives with its storage freed.*\(run stage\)"):
        compiled(_freed(w), full, x)


def test_storage_resizes_under_dynamo_match_eager():
    """Dynamo records ``untyped_storage().resize_`` as ``inductor.resize_storage_bytes_``: the same capture."""
    compiled = torch.compile(fsdp_all_gather, backend=aotgraph.backend(compiler="eager"), fullgraph=True)
    for _ in range(2):
        expected, eager_inputs = _run(fsdp_all_gather, fsdp_all_gather, True)
        got, our_inputs = _run(fsdp_all_gather, compiled, True)
        torch.testing.assert_close(got, expected)
        assert our_inputs[0].untyped_storage().nbytes() == 0
        torch.testing.assert_close(our_inputs[0].grad, eager_inputs[0].grad)
