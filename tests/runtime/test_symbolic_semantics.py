"""Runtime semantics with symbolic sizes: in-place writes, layout changes and views of inputs
through ``aot_function(..., dynamic=True)``, against eager at several sizes (outputs, gradients,
inputs after the call, their layouts), and the runtime-semantics fuzzer's programs
(`tests/fuzz_semantics.py`) compiled with symbolic sizes, each of which failed once."""
from __future__ import annotations

import pytest
import torch

import aotgraph
from fuzz_semantics import compare, generate, observe


def _run(fn, make_inputs):
    """(outputs, the inputs after the call, the gradients of the inputs that require grad)."""
    inputs = make_inputs()
    leaves = [a for a in inputs if a.requires_grad]
    outputs = fn(*inputs)
    differentiable = [o for o in outputs if isinstance(o, torch.Tensor) and o.requires_grad]
    if differentiable:
        sum(o.sum() for o in differentiable).backward()
    return outputs, inputs, [leaf.grad for leaf in leaves]


def _assert_same_at_sizes(program, make_inputs, sizes, max_compiles=1):
    """`program` through ``aot_function(dynamic=True)`` equals eager at each of `sizes`
    (``make_inputs(size)`` builds fresh inputs from one seed), compiling at most `max_compiles` times."""
    compiled = aotgraph.aot_function(program, "eager", dynamic=True)
    for size in sizes:
        torch.manual_seed(size)
        expected = _run(program, lambda: make_inputs(size))
        torch.manual_seed(size)
        got = _run(compiled, lambda: make_inputs(size))
        for what, e, g in zip(("outputs", "inputs after the call", "gradients"), expected, got):
            assert len(e) == len(g), what
            for a, b in zip(e, g):
                if a is None or b is None:
                    assert a is None and b is None, what
                    continue
                assert (a.shape, a.stride(), a.storage_offset()) == (b.shape, b.stride(), b.storage_offset()), \
                    f"{what} at size {size}"
                torch.testing.assert_close(b, a, msg=f"{what} at size {size}")
    assert len(compiled.aotgraph_entries) <= max_compiles


def test_input_relaid_by_as_strided_guards_its_layout_on_entry():
    """The size guard speaks of the layout the caller passes, not the one the program leaves
    (it read the relaid fake: an IndexError in torch's guard producer)."""
    def program(x):
        x.as_strided_((8,), (2,), 0)
        return (x * 2,)

    _assert_same_at_sizes(program, lambda n: (torch.randn(n, n),), (4, 5, 6, 4))


def test_write_of_another_dtype_into_an_input():
    """The written value is cast and laid out as the input (an ``expand_copy`` with symbolic sizes
    failed in torch's own kernel)."""
    def program(x, y):
        x.add_(y)
        return (x * 2,)

    _assert_same_at_sizes(program, lambda n: (torch.randn(n, 3), torch.randn(n, 3, dtype=torch.float64)), (4, 6, 9))


@pytest.mark.parametrize("op", ["addcmul_", "addcdiv_", "lerp_"])
def test_broadcasting_in_place_ops(op):
    """``x.addcmul_(y, y)`` with y broadcast over x: the functional twin's fake kernel needs the
    Python dispatcher with symbolic sizes."""
    def program(x, y):
        if op == "lerp_":
            x.lerp_(y, 0.25)
        else:
            getattr(x, op)(y, y.abs() + 1, value=0.5)
        return (x.sin(),)

    _assert_same_at_sizes(program, lambda n: (torch.randn(2, n, 4), torch.randn(n, 4)), (3, 5, 8))


def test_view_of_an_input_written_through_a_chunk():
    """``x.chunk(2, 1)[0].relu_()[1]`` returned under no_grad: the runtime lays the output out by
    the graph's value, which now views the input's new value rather than the value written
    through the chunk (the graph returned a copy: a CompilerError at run time)."""
    def program(x):
        with torch.no_grad():
            return (x.chunk(2, 1)[0].relu_()[1],)

    _assert_same_at_sizes(program, lambda n: (torch.randn(2, n, 4),), (3, 5, 6))


def test_in_place_op_keeps_a_transposed_inputs_layout():
    """``masked_fill_`` into a transposed input: its functional twin lays the value out afresh, and
    the input's new value is put back in the input's strides, which later ops read (an output
    came back with the strides of a contiguous input)."""
    def program(x):
        x.masked_fill_(x > 0, 3.0)
        return (x.t().clone().t(), x + 1)

    _assert_same_at_sizes(program, lambda n: (torch.empty_strided((n, 3), (1, n)).copy_(torch.randn(n, 3)),), (4, 5, 7))


def test_a_tensor_the_backward_reads_only_for_its_sizes_is_saved_as_sizes():
    """``x.t().sum(0)``'s backward expands its gradient to x's sizes: saved as the sizes, as eager
    saves them, not as x, so the caller's write into the returned view ``x.t()`` before the
    backward does not fail autograd's version check (eager's backward runs)."""
    def program(x):
        transposed = x.t()
        return transposed.sum(0), transposed

    compiled = aotgraph.aot_function(program, "eager", dynamic=True)
    for n in (4, 6):
        results = []
        for fn in (program, compiled):
            x = torch.randn(n, 3, requires_grad=True)
            total, view = fn(x)
            with torch.no_grad():
                view.add_(1.0)
            total.sum().backward()
            results.append(x.grad)
        torch.testing.assert_close(results[1], results[0])
    entry = next(iter(compiled.aotgraph_entries.values()))
    assert entry.partition.num_saved_tensors == 0
    assert len(entry.partition.saved) == 2  # the two sizes


def test_views_of_one_intermediate_made_by_symbolic_view_ops_stay_views_of_it():
    """``y.flatten()`` (a view with a symbolic size) and ``y.t()``, both returned: the caller's write
    into the first reaches the second's history, as eager's, so its gradient sees the write (the
    two came back as unrelated outputs in one memory, and the gradient missed it)."""
    def program(x):
        y = x.cumsum(1)
        return y.flatten(), y.t()

    compiled = aotgraph.aot_function(program, "eager", dynamic=True)
    for n in (3, 5):
        grads = []
        for fn in (program, compiled):
            x = torch.arange(float(n * 4)).view(n, 4).clone().requires_grad_()
            flat, transposed = fn(x)
            flat.mul_(2.0)
            (transposed * torch.arange(float(n * 4)).view(4, n)).sum().backward()
            grads.append(x.grad)
        torch.testing.assert_close(grads[1], grads[0])
    assert len(compiled.aotgraph_entries) == 1


def test_a_detached_input_written_with_gradients_is_returned_in_the_inputs_memory():
    """``d = x.detach(); d.add_(y)`` returned: eager's d is x's memory with y's history; with symbolic
    sizes it came back as memory of its own (the caller's x was written, d was not x)."""
    def program(x, y):
        d = x.detach()
        d.add_(y, alpha=0.5)
        return (d,)

    compiled = aotgraph.aot_function(program, "eager", dynamic=True)
    for n in (3, 5):
        results = []
        for fn in (program, compiled):
            x, y = torch.ones(n, 2, requires_grad=True), torch.arange(2.0 * n).view(n, 2).clone().requires_grad_()
            (d,) = fn(x, y)
            d.sum().backward()
            results.append((d.data_ptr() == x.data_ptr(), d.detach().clone(), y.grad))
        assert results[1][0] and results[0][0]
        torch.testing.assert_close(results[1][1:], results[0][1:])
    assert len(compiled.aotgraph_entries) == 1


@pytest.mark.parametrize("view", ["split", "unbind", "no_grad"])
def test_writes_eager_refuses_into_views_rebuilt_at_symbolic_layouts_are_refused(view):
    """A ``split``/``unbind`` output, or a view made under no_grad, returned: eager refuses a
    caller's in-place write into it under grad mode. With symbolic sizes the runtime rebuilds it
    by ``as_strided``, which autograd took writes into (a gradient eager never gives); it is
    now marked as eager's was (`OutputInfo.creation_meta`). (The view made under no_grad was
    refused, as if the program had called requires_grad_() on it.)"""
    def program(x):
        y = x * 2
        if view == "split":
            return y.split(2)[0]
        if view == "unbind":
            return y.unbind(1)[0]
        with torch.no_grad():
            return x[1:]

    compiled = aotgraph.aot_function(program, "eager", dynamic=True)
    for n in (3, 4):  # (split(2) gives two pieces of each)
        errors = []
        for fn in (program, compiled):
            out = fn(torch.randn(n, 3, requires_grad=True))
            try:
                out.mul_(2)
                errors.append(None)
            except RuntimeError as error:
                errors.append(str(error).split(".")[0])
        assert errors[0] is not None and errors[1] == errors[0]
    assert len(compiled.aotgraph_entries) == 1


# Fuzzer seeds that failed with symbolic sizes until session 41: the relaid input's guard (71, 224,
# 247, 266, 278, 286), expand_copy of symbolic sizes (51), broadcasting addcmul_ (257), SymInt
# constants in an output's layout (140: a view of an input written through a split, the input relaid;
# a real tensor's ``as_strided`` refuses SymInts, even those a guard made numbers), an input's layout
# lost by an in-place op's twin (867), an input saved for its sizes alone (493, 823, 1020, 1621), a
# condition whose sides share a term, guarded without torch's static evaluation (2742: an AssertionError),
# a detached input written with gradients (6512), a view of an output written after (6532, 6064, 7035),
# and every output viewing such a root read from its new value (3199: two views came back apart), a
# write through an as_strided view of a view of a contiguous input of symbolic sizes (13776), views of
# inputs written through a chunk (94, 217), a narrowed view of a detached input written with gradients
# (13865: came back in memory of its own, silently; now compiled per size), a write through an
# as_strided view of an input at an offset in its memory (12504: out of bounds at run time; per size),
# a write into a chunk of an input or an intermediate, which eager refuses (17344, 17988: the view,
# rebuilt by as_strided, took it), a view returned after its base was relaid, which a first version
# of walking the program again for such views broke with symbolic sizes (1715: the second walk
# started from the first's relaid fake inputs).
SYMBOLIC_SEEDS = [51, 71, 94, 140, 217, 224, 247, 257, 266, 278, 286, 493, 823, 867, 1020, 1621, 2742, 3199, 6064, 6512, 6532, 7035,
                  1715, 12504, 13776, 13865, 17344, 17988]


# Through Inductor (session 44): a chunk of an input written in place and returned, which raised
# CompilerError (Inductor computed it in a buffer of its own; 225, 2330).
INDUCTOR_SYMBOLIC_SEEDS = [225, 2330]


@pytest.mark.parametrize("seed,compiler", [(seed, "eager") for seed in SYMBOLIC_SEEDS]
                         + [(seed, "inductor") for seed in INDUCTOR_SYMBOLIC_SEEDS])
def test_fuzzer_program_with_symbolic_sizes(seed, compiler):
    program = generate(seed)
    eager = observe(program, program.fn)
    ours = observe(program, aotgraph.aot_function(program.fn, compiler, dynamic=True))
    eager["_bf"] = ours["_bf"] = program.post["backward_first"]
    assert compare(eager, ours) == []


# Through ``torch.compile(dynamic=True)``, whose dynamic ints make view arguments symbolic: two
# views of one intermediate returned apart, a write into one missed by the other's gradient (2526).
# And a program returning a written input twice, refused symbolic sizes ("a view the runtime rebuilds"),
# whose per-size fallback then met Dynamo's float wrapped as a tensor (``.item()``: refused, 177).
# And detached aliases of an output at its symbolic layout, refused symbolic sizes the same way (213).
DYNAMO_SYMBOLIC_SEEDS = [177, 213, 2526]


@pytest.mark.parametrize("seed", DYNAMO_SYMBOLIC_SEEDS)
def test_fuzzer_program_through_dynamo_with_symbolic_sizes(seed):
    program = generate(seed)
    eager = observe(program, program.fn)
    torch._dynamo.reset()
    ours = observe(program, torch.compile(program.fn, backend=aotgraph.backend(compiler="eager"), dynamic=True))
    torch._dynamo.reset()
    eager["_bf"] = ours["_bf"] = program.post["backward_first"]
    assert compare(eager, ours) == []


def test_an_as_strided_write_whose_extent_depends_on_symbolic_ints_compiles_per_size():
    """Fuzzer seed 150 through ``torch.compile(dynamic=True)``: Dynamo makes an ``as_strided``
    view's length and offset symbolic; a write through it became an ``as_strided_scatter`` that
    torch's meta check cannot place within the memory (a raw RuntimeError at compile time). Now
    refused for symbolic sizes, and compiled per size, as eager computes it."""
    def program(x, n, offset):
        total = x.sum(0)
        v = x.detach().as_strided((n,), (1,), offset)
        v.clamp_(-0.5, 1.0)
        return total

    torch._dynamo.reset()
    compiled = torch.compile(program, backend=aotgraph.backend(compiler="eager"), dynamic=True)
    for n, offset in ((11, 5), (9, 6)):  # (within the input's own elements: 4..15)
        results = []
        for fn in (program, compiled):
            torch.manual_seed(n)
            x = (torch.randn(4, 4) * 3)[1:].requires_grad_()  # a leaf viewing a larger tensor, at an offset
            out = fn(x, n, offset)
            out.sum().backward()
            results.append((out.detach(), x.detach().clone(), x.grad))
        torch.testing.assert_close(results[1], results[0])
    torch._dynamo.reset()
