"""Storage changes inside a compiled program (FSDP's ``untyped_storage().resize_``, ``set_``):
those aotgraph does not capture are refused with an UnsupportedOp that names the operation,
never a crash or a silent difference (the captured resizes of inputs: tests/runtime/test_storage_resizes.py).

Programs that once killed the interpreter run in a subprocess, so a regression fails a test
instead of pytest. Every refused program is first run eagerly, to show it is a valid program.
"""
import subprocess
import sys
import textwrap
import threading

import pytest
import torch
import torch.utils._pytree as pytree

import aotgraph
from aotgraph.capture.storage_changes import storage_resizes_refused as _storage_resizes_refused
from aotgraph.errors import UnsupportedOp

# Each crashed with a segmentation fault before: the graph read or wrote freed memory. fsdp_step now runs.
_CRASH_CANDIDATES = textwrap.dedent("""
    import torch, aotgraph
    from aotgraph.errors import UnsupportedOp

    def fsdp_step(w, full, x):  # w arrives freed, as FSDP leaves an unsharded parameter
        w.untyped_storage().resize_(w.numel() * w.element_size())
        with torch.no_grad():
            w.copy_(full)
        out = x @ w
        w.untyped_storage().resize_(0)
        return out

    def free_after_use(x):  # frees a tensor the program closes over
        out = x + closed_over
        closed_over.untyped_storage().resize_(0)
        return out

    def freed_input_read(x, w):
        return x + w

    def freed_closure_read(x):
        return x + freed_closed_over

    def freed(t):
        t.untyped_storage().resize_(0)
        return t

    for name, run in [
        ("fsdp_step", lambda f: f(w, full, x)),
        ("free_after_use", lambda f: f(torch.randn(1000, 1000))),
        ("freed_input_read", lambda f: f(torch.randn(1000, 1000), freed(torch.randn(1000, 1000)))),
        ("freed_closure_read", lambda f: f(torch.randn(1000, 1000))),
    ]:
        closed_over, freed_closed_over = torch.randn(1000, 1000), freed(torch.randn(1000, 1000))
        if name == "fsdp_step":
            w, full, x = freed(torch.randn(64, 64)), torch.randn(64, 64), torch.randn(8, 64)
            eager = fsdp_step(w, full, x)  # eager runs it
            assert w.untyped_storage().nbytes() == 0 and torch.allclose(eager, x @ full)
        try:
            out = run(aotgraph.aot_function(globals()[name]))
            if name == "fsdp_step":
                assert torch.allclose(out, eager)
            print(name, "no error", flush=True)
        except UnsupportedOp as error:
            print(name, error, "| closed_over bytes:", closed_over.untyped_storage().nbytes(), flush=True)
""")


def test_former_crashes_are_refused_in_a_subprocess(tmp_path):
    script = tmp_path / "crash_candidates.py"  # a file, so that errors can quote its lines
    script.write_text(_CRASH_CANDIDATES)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    report = f"exit code {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr[-3000:]}"
    assert result.returncode == 0, report
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["fsdp_step"] == "no error", report
    # Refused at the resize, before it ran: the capture left the user's tensor as it was.
    assert "resizes the storage of a tensor that is not one of its inputs to 0 bytes" in lines["free_after_use"], report
    assert "closed_over.untyped_storage().resize_(0)" in lines["free_after_use"], report
    assert lines["free_after_use"].endswith("closed_over bytes: 4000000"), report
    assert ("aten.add.Tensor reads or writes the input at flat position 1 while its storage is freed"
            in lines["freed_input_read"]), report
    assert "(capture stage); give the storage its memory back first" in lines["freed_input_read"], report
    assert "reads a tensor it closes over (not an input) whose memory was freed" in lines["freed_closure_read"], report
    assert "return x + freed_closed_over" in lines["freed_closure_read"], report


def _numel_bytes(t):
    return t.numel() * t.element_size()


def resize_to_0_and_back(x, y):  # the program
    x.untyped_storage().resize_(0)
    x.untyped_storage().resize_(_numel_bytes(x))
    x.copy_(y)
    return x * 2


def resize_to_0(x, y):
    z = x * y
    x.untyped_storage().resize_(0)
    return z


def resize_larger(x, y):
    x.untyped_storage().resize_(2 * _numel_bytes(x))
    return x + y


def resize_typed_storage(x, y):  # FSDP1's _free_storage
    z = x + y
    x._typed_storage()._resize_(0)
    return z


def resize_intermediate(x, y):
    t = x * 2
    u = t + y
    t.untyped_storage().resize_(0)
    return u


def resize_intermediate_and_back(x, y):
    t = x * 2
    t.untyped_storage().resize_(0)
    t.untyped_storage().resize_(_numel_bytes(t))
    t.copy_(y)
    return t + x


def resize_storage_bytes(x, y):
    torch.ops.inductor.resize_storage_bytes_(x, 0)
    torch.ops.inductor.resize_storage_bytes_(x, _numel_bytes(x))
    x.copy_(y)
    return x * 2


def resize_storage_bytes_of_intermediate(x, y):
    t = x * 2
    u = t + y
    torch.ops.inductor.resize_storage_bytes_(t, 0)
    return u


def set_input(x, y):
    x.set_(y)
    return x * 2


def set_input_to_storage(x, y):
    x.set_(y.untyped_storage(), 0, y.shape, y.stride())
    return x * 2


def set_intermediate(x, y):  # eager writes into y through t
    t = torch.empty(0)
    t.set_(y)
    t.add_(1)
    return t * x


def shrink_input(x, y):
    x.resize_(2)
    return x + 1


def grow_input(x, y):
    x.resize_(8)
    return x[:4] + y


def resize_partly(x, y):
    x.untyped_storage().resize_(0)
    x.untyped_storage().resize_(8)
    return y * 2


def read_while_freed(x, y):
    x.untyped_storage().resize_(0)
    return x + y


def backward_reads_freed(x, y):  # the gradient of y reads x, freed by then (eager reads freed memory)
    z = x * y
    x.untyped_storage().resize_(0)
    return z


_SET = "instead of set_, or run this part eagerly"
_RESIZE = "(capture stage); resize the storage outside the compiled function"
_NOT_INPUT = "resizes the storage of a tensor that is not one of its inputs to 0 bytes"
_INPUTS_ONLY = "(capture stage); resize only the storages of the compiled function's inputs"
_FREED = "(capture stage); give the storage its memory back first"

REFUSED = [
    (resize_larger, "storage of the input at flat position 0 changes from 16 to 32 bytes", "", _RESIZE),
    (resize_partly, "resizes the storage of the input at flat position 0 to 8 bytes, fewer than its sizes need (16)",
     "x.untyped_storage().resize_(8)", "resize it to 0 bytes (freed) or to the bytes its sizes need"),
    (read_while_freed, "aten.add.Tensor reads or writes the input at flat position 0 while its storage is freed",
     "return x + y", _FREED),
    (resize_intermediate, _NOT_INPUT, "t.untyped_storage().resize_(0)", _INPUTS_ONLY),
    (resize_intermediate_and_back, _NOT_INPUT, "t.untyped_storage().resize_(0)", _INPUTS_ONLY),
    (resize_storage_bytes_of_intermediate, _NOT_INPUT, "resize_storage_bytes_(t, 0)", _INPUTS_ONLY),
    (set_input_to_storage, "aten.set_.source_Storage_storage_offset makes a tensor", "x.set_(y.untyped_storage()", _SET),
    (set_intermediate, "aten.set_.source_Tensor makes a tensor", "t.set_(y)", _SET),
    (shrink_input, "aten.resize_.default changes the shape of primals_1 in place, from (4,) to (2,)", "",
     "(capture stage); resize it outside the compiled function"),
    (grow_input, "the storage of the input at flat position 0 changed from 16 to 32 bytes", "", _RESIZE),
]


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("program, cause, line, fix", REFUSED, ids=[case[0].__name__ for case in REFUSED])
def test_storage_change_is_refused_with_its_cause(program, cause, line, fix, grad):
    if grad and program in (shrink_input, grow_input):
        pytest.skip("eager refuses to resize a tensor that requires grad")
    if not grad and program is set_intermediate:
        pytest.skip("captured: test_set_under_no_grad_and_on_intermediates_matches_eager")
    if program is read_while_freed:
        pytest.skip("eager reads freed memory (a crash): test_former_crashes_are_refused_in_a_subprocess")

    def inputs():  # x is not a leaf, so in-place ops on it are legal when it requires grad
        torch.manual_seed(0)
        return torch.randn(4, requires_grad=grad) * 1, torch.randn(4, requires_grad=grad)

    x, y = inputs()
    if program not in (read_while_freed,):
        program(x, y)  # a valid program: eager runs it
    x, y = inputs()
    x_before, y_before, x_bytes = x.detach().clone(), y.detach().clone(), x.untyped_storage().nbytes()
    with pytest.raises(UnsupportedOp) as caught:
        aotgraph.aot_function(program)(x, y)
    message = str(caught.value)
    assert cause in message and line in message and fix in message, message
    # The refusal came before anything touched the caller's tensors.
    assert x.untyped_storage().nbytes() == x_bytes
    assert torch.equal(x, x_before) and torch.equal(y, y_before)
    assert "resize_" not in torch.UntypedStorage.__dict__  # the capture's hook is gone


def set_then_write(x, y):  # the write reaches y's memory, which x now holds
    x.set_(y)
    x.add_(1)
    return x * 2


def write_then_set(x, y):  # the write reaches x's old memory (seen through its views)
    x.add_(1)
    x.set_(y)
    return x * 2


def set_to_intermediate(x, y):
    x.set_(y * 3)
    return x + 1


def set_to_other_shape(x, y):
    x.set_(y.view(2, 2))
    return x.sum(0)


def set_to_view(x, y):
    x.set_(y[1:3])
    x.mul_(2)
    return x + y[0]


def set_under_no_grad(x, w):  # FSDP's pattern: the parameter is set_ without autograd
    with torch.no_grad():
        x.set_(w.detach())
    return (x * w).sum()


def set_away_write_and_back(x, y):  # each write reaches the memory x holds at the time
    old = torch.ops.aten.alias.default(x)
    x.set_(y)
    x.add_(1)
    x.set_(old)
    x.mul_(3)
    return x + y


def set_write_then_set_shorter(x, y):  # the second set_ changes x's sizes: the write keeps the old ones
    x.set_(y)
    x.add_(1)
    x.set_(y[1:])
    return x * 2


SET_INPUT = [set_input, set_then_write, write_then_set, set_to_intermediate, set_to_other_shape, set_to_view,
             set_away_write_and_back, set_write_then_set_shorter]


def _storage_sharing(tensors):
    return [a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() for a in tensors for b in tensors]


@pytest.mark.parametrize("program", SET_INPUT + [set_under_no_grad], ids=lambda p: p.__name__)
def test_set_on_an_input_is_replayed_on_the_callers_tensor(program):
    """As eager: after ``x.set_(y)`` the caller's x holds y's memory (or the new tensor's), with its
    sizes and strides; writes before reach x's old memory, writes after reach y's."""
    def inputs():
        torch.manual_seed(0)
        x = torch.randn(4)
        y = torch.randn(4, requires_grad=program is set_under_no_grad)
        return x, y, x[1:]  # a view of x's old memory, to see the writes it took

    eager_in, ours_in = inputs(), inputs()
    expected = program(*eager_in[:2])
    got = aotgraph.aot_function(program)(*ours_in[:2])
    torch.testing.assert_close(got, expected)
    for e, c in zip(eager_in, ours_in):
        assert (c.shape, c.stride(), c.storage_offset()) == (e.shape, e.stride(), e.storage_offset())
        torch.testing.assert_close(c.detach(), e.detach())
    assert _storage_sharing(ours_in) == _storage_sharing(eager_in)
    if program is set_under_no_grad:
        got.backward()
        expected.backward()
        torch.testing.assert_close(ours_in[1].grad, eager_in[1].grad)


def test_a_backward_that_reads_a_freed_input_is_refused():
    """Eager runs the forward; its backward would read x's freed memory (a crash)."""
    x, y = torch.randn(4) * 1, torch.randn(4, requires_grad=True)
    freed_read = "(?s)aten.mul.Tensor reads or writes the input at flat position 0 while its storage is freed"
    with pytest.raises(UnsupportedOp, match=freed_read + ".*give the storage its memory back"):
        aotgraph.aot_function(backward_reads_freed)(x, y)
    assert x.untyped_storage().nbytes() == 16


def test_set_on_an_input_requiring_grad_is_refused():
    x, y = torch.randn(4, requires_grad=True) * 1, torch.randn(4)
    set_input(x, y)  # eager runs it
    x = torch.randn(4, requires_grad=True) * 1
    with pytest.raises(UnsupportedOp, match="(?s)set_.source_Tensor makes a tensor that requires grad.*x.set_"):
        aotgraph.aot_function(set_input)(x, y)


def set_requiring_grad_under_no_grad(x, y):  # x keeps its autograd history, with y's values
    b = torch.arange(4, dtype=x.dtype).view(2, 2) * y
    with torch.no_grad():
        x.set_(b.detach())
    return x * b


def set_then_source_written(x, y):  # torch's test_set__and_data_mutation_good
    with torch.no_grad():
        x.set_(y)
    y.mul_(2)
    return x + y


def set_away_and_back(x, y):  # torch's test_input_mutation_set__nop: the input ends in its own memory
    b = torch.arange(4, dtype=x.dtype)
    old = torch.ops.aten.alias.default(x)
    with torch.no_grad():
        x.set_(b)
        x.set_(old)
    return x + b.view(2, 2) + y


def set_on_intermediate(x, y):  # torch's test_set__steals_view_chain: the write reaches y's product
    a = x.mul(2)
    b = y.mul(2)
    row = b[1].view(2, 2)
    a.set_(row)
    a.view(-1).mul_(2)
    return a * row, b


def set_on_view_of_intermediate(x, y):  # the view takes y's memory; its base keeps its own
    a = x.mul(2)
    v = a[1:]
    v.set_(y[:2])
    v.add_(1)
    return a, v, y + 0


def set_on_intermediate_requiring_grad(x, y):
    a = x * 2
    with torch.no_grad():
        a.set_(y.detach() + 1)
    return a * y


SET_UNDER_NO_GRAD = [set_intermediate, set_requiring_grad_under_no_grad, set_then_source_written, set_away_and_back, set_on_intermediate,
                     set_on_view_of_intermediate, set_on_intermediate_requiring_grad]


@pytest.mark.parametrize("leaf", [True, False], ids=["leaves", "non-leaves"])
@pytest.mark.parametrize("requires_grad", [True, False], ids=["grad", "no-grad"])
@pytest.mark.parametrize("program", SET_UNDER_NO_GRAD, ids=lambda p: p.__name__)
def test_set_under_no_grad_and_on_intermediates_matches_eager(program, requires_grad, leaf):
    """``set_`` under no_grad on inputs that require grad (their gradients stay theirs, as eager's),
    and on intermediates and views (only the program sees their new memory): outputs, the
    inputs afterwards and which of them share memory, and the leaves' gradients, as eager's."""
    if program in (set_intermediate, set_on_intermediate, set_on_view_of_intermediate) and requires_grad:
        pytest.skip("eager's backward through set_ under grad mode raises: refused (test above)")

    def inputs():
        torch.manual_seed(0)
        leaves = [torch.randn(2, 2, requires_grad=requires_grad), torch.randn(3, 4, requires_grad=requires_grad)]
        if program not in (set_on_intermediate, set_on_view_of_intermediate):
            leaves[1] = torch.randn(2, 2, requires_grad=requires_grad)
        if program is set_intermediate:
            leaves = [torch.randn(4, requires_grad=requires_grad), torch.randn(4, requires_grad=requires_grad)]
        if program is set_on_view_of_intermediate:
            leaves[0] = torch.randn(3, 2, requires_grad=requires_grad)
            leaves[1] = torch.randn(2, 2, requires_grad=requires_grad)
        args = leaves if leaf or not requires_grad else [t.clone() for t in leaves]
        return leaves, args

    (eager_leaves, eager_args), (our_leaves, our_args) = inputs(), inputs()
    if leaf and requires_grad and program is set_then_source_written:
        with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
            program(*eager_args)
        return
    expected = program(*eager_args)
    got = aotgraph.aot_function(program, "eager")(*our_args)
    torch.testing.assert_close(got, expected)
    for e, c in zip(eager_args, our_args):
        assert (c.shape, c.stride(), c.storage_offset()) == (e.shape, e.stride(), e.storage_offset())
        torch.testing.assert_close(c.detach(), e.detach())
    assert _storage_sharing(our_args) == _storage_sharing(eager_args)
    if requires_grad:
        sum(t.sum() for t in pytree.tree_leaves(got) if t.requires_grad).backward()
        sum(t.sum() for t in pytree.tree_leaves(expected) if t.requires_grad).backward()
        for e, c in zip(eager_leaves, our_leaves):
            torch.testing.assert_close(c.grad, e.grad)


def test_set_on_an_intermediate_under_grad_mode_is_refused():
    x, y = torch.randn(2, 2, requires_grad=True), torch.randn(3, 4)
    with pytest.raises(UnsupportedOp, match="(?s)makes a tensor that requires grad.*under grad mode.*torch.no_grad"):
        aotgraph.aot_function(set_on_intermediate)(x, y)


def storage_size_read(x):
    return x * (x.untyped_storage().nbytes() // x.element_size())


def intermediate_grown_by_resize(x):
    t = x * 2
    t.resize_(8)
    return t[:4] + 1


def input_resized_to_its_shape(x):
    x.resize_(x.shape)
    return x.sin()


@pytest.mark.parametrize("program", [storage_size_read, intermediate_grown_by_resize, input_resized_to_its_shape])
def test_storage_reads_and_same_size_resizes_match_eager(program):
    x = torch.randn(4, 3)
    compiled = aotgraph.aot_function(program)(x.clone())
    torch.testing.assert_close(compiled, program(x.clone()))


def test_storage_reads_give_eager_gradients():
    x = torch.randn(4, 3, requires_grad=True)
    expected = torch.autograd.grad(storage_size_read(x).sum(), x)
    actual = torch.autograd.grad(aotgraph.aot_function(storage_size_read)(x).sum(), x)
    torch.testing.assert_close(actual, expected)


def test_resizes_outside_the_capture_and_on_other_threads_pass_through():
    outside = torch.randn(4)
    outside.untyped_storage().resize_(0)  # no capture running: the plain method
    assert outside.untyped_storage().nbytes() == 0
    resized_on_other_thread = []

    def resize_elsewhere():
        t = torch.randn(4)
        t.untyped_storage().resize_(0)
        resized_on_other_thread.append(t.untyped_storage().nbytes())

    with _storage_resizes_refused:
        other = threading.Thread(target=resize_elsewhere)
        other.start()
        other.join()
        with pytest.raises(UnsupportedOp, match="resizes the storage of a tensor that is not one of its inputs to 0"):
            torch.randn(4).untyped_storage().resize_(0)
    assert resized_on_other_thread == [0]
    assert "resize_" not in torch.UntypedStorage.__dict__


def test_an_empty_tensor_the_program_closes_over_is_not_taken_for_freed_memory():
    """torch makes the fake of an empty tensor by resizing its storage to 0 bytes: that resize
    is torch's, not the program's (GPT-2 under Dynamo reads such a constant)."""
    empty = torch.tensor([], dtype=torch.bfloat16)

    def f(x):
        return torch.cat([x.to(torch.bfloat16), empty]) * 2

    x = torch.randn(5, requires_grad=True)
    out = aotgraph.aot_function(f)(x)
    torch.testing.assert_close(out, f(x))
    out.float().sum().backward()
    torch.testing.assert_close(x.grad, torch.full((5,), 2.0))
