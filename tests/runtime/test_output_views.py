"""Returned views (issue 16, item 1): outputs that are views of intermediates, of inputs or of
other outputs come back as real views of their base, made by the program's own view ops, so
in-place writes, ``._base``, ``grad_fn`` and gradients behave as in eager."""
import contextlib

import pytest
import torch

from aotgraph import aot_function
from eager_parity import Case, assert_parity, leaf


def _view_of_intermediate(x):
    return (x * 2).view(-1)


def _two_views_of_one_intermediate(x):
    y = x * 2
    return y[0], y[1]


def _output_and_its_view(x):
    y = x * 2
    return y, y.view(-1)


def _view_before_its_base(x):
    y = x * 2
    return y.t(), y


def _view_of_a_view(x):
    y = x.sin()
    return y[1:].view(-1), y.t()[0]


def _views_of_input(x):
    return x.view(-1), x[1:], x.t()


def _view_of_intermediate_written_later(x):
    y = x * 2
    v = y.view(-1)
    y.add_(1)  # the view sees the write, in eager and here
    return v, y[0]


def _views_after_a_write(x):
    y = x.cos()
    y.mul_(3)
    return y[1], y.t(), y


# Eager regenerates a view whose base was written after the view was taken: its grad_fn becomes
# AsStridedBackward0; ours replays the view op on the written base (same values and gradients).
_REGENERATED_IN_EAGER = {_view_of_intermediate_written_later}

PROGRAMS = [_view_of_intermediate, _two_views_of_one_intermediate, _output_and_its_view, _view_before_its_base,
            _view_of_a_view, _views_of_input, _view_of_intermediate_written_later, _views_after_a_write]


def _compiled(fn, compiler):
    if compiler == "eager":
        return aot_function(fn)
    return aot_function(fn, fw_compiler=compiler, bw_compiler=compiler, inference_compiler=compiler)


def _inputs(requires_grad):
    x = torch.arange(12.0).reshape(3, 4) / 7
    return x.requires_grad_(requires_grad)


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def _base_position(out, outputs, inputs):
    """Which output or input `out._base` is (eager and ours must agree), or whether it has one."""
    base = out._base
    if base is None:
        return None
    for k, o in enumerate(outputs):
        if base is o:
            return ("output", k)
    for k, i in enumerate(inputs):
        if base is i:
            return ("input", k)
    return "intermediate"


def _observe(fn, x, grad_mode):
    with contextlib.nullcontext() if grad_mode else torch.no_grad():
        outs = _as_tuple(fn(x))
    # A fresh output's grad_fn is the compiled function's; a view's is the view op's, as in eager.
    described = [(type(o.grad_fn).__name__ if o._is_view() else None, o.requires_grad, o._is_view(), _base_position(o, outs, (x,)))
                 for o in outs]
    shared = [[i for i, p in enumerate(outs) if p.untyped_storage().data_ptr() == o.untyped_storage().data_ptr()]
              for o in outs]
    return outs, described, shared


def _write_and_backward(outs, x):
    """Write into the first output (as a user would), then differentiate through it."""
    with torch.no_grad() if x.requires_grad and outs[0]._base is x else contextlib.nullcontext():
        outs[0].mul_(3)
    after_write = [o.detach().clone() for o in outs]
    if any(o.requires_grad for o in outs):
        sum((o * (k + 1)).sum() for k, o in enumerate(outs) if o.requires_grad).backward()
    return after_write


@pytest.mark.parametrize("fn", PROGRAMS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("requires_grad", [True, False], ids=["grad", "nograd_input"])
def test_returned_views_as_eager(fn, requires_grad):
    _check(fn, "eager", requires_grad, grad_mode=True)


@pytest.mark.parametrize("fn", PROGRAMS, ids=lambda f: f.__name__)
def test_returned_views_under_no_grad(fn):
    _check(fn, "eager", True, grad_mode=False)


@pytest.mark.parametrize("fn", [_view_of_intermediate, _two_views_of_one_intermediate, _output_and_its_view],
                         ids=lambda f: f.__name__)
def test_returned_views_with_inductor(fn):
    _check(fn, "inductor", True, grad_mode=True, check_grad_fn=False)


def _check(fn, compiler, requires_grad, grad_mode, check_grad_fn=True):
    x_eager, x_ours = _inputs(requires_grad), _inputs(requires_grad)
    compiled = _compiled(fn, compiler)
    eager, eager_described, eager_shared = _observe(fn, x_eager, grad_mode)
    ours, our_described, our_shared = _observe(compiled, x_ours, grad_mode)
    for k, (e, o) in enumerate(zip(eager, ours)):
        torch.testing.assert_close(o, e, msg=f"output {k}")
        assert (o.shape, o.stride(), o.storage_offset()) == (e.shape, e.stride(), e.storage_offset())
    if not check_grad_fn or fn in _REGENERATED_IN_EAGER:
        eager_described = [d[1:] for d in eager_described]
        our_described = [d[1:] for d in our_described]
    assert our_described == eager_described
    assert our_shared == eager_shared
    if not grad_mode and requires_grad and any(o._base is x_eager for o in eager):
        return  # eager refuses in-place writes into a view of a leaf made under no_grad too
    eager_after = _write_and_backward(eager, x_eager)
    ours_after = _write_and_backward(ours, x_ours)
    for k, (e, o) in enumerate(zip(eager_after, ours_after)):
        torch.testing.assert_close(o, e, msg=f"output {k} after writing into output 0")
    torch.testing.assert_close(x_ours.detach(), x_eager.detach(), msg="input after the write")
    if x_eager.grad is not None or x_ours.grad is not None:
        torch.testing.assert_close(x_ours.grad, x_eager.grad, msg="x.grad")


def test_write_into_view_of_intermediate_then_backward():
    """The issue's program: eager allows ``out.mul_(3)`` and its gradient flows through the write."""
    x_eager, x_ours = _inputs(True), _inputs(True)
    out_eager, out_ours = _view_of_intermediate(x_eager), aot_function(_view_of_intermediate)(x_ours)
    out_eager.mul_(3)
    out_ours.mul_(3)
    assert type(out_ours.grad_fn).__name__ == type(out_eager.grad_fn).__name__
    (out_eager * torch.arange(12.0)).sum().backward()
    (out_ours * torch.arange(12.0)).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_eager.grad)


def test_write_into_one_view_is_seen_by_the_other():
    x_eager, x_ours = _inputs(True), _inputs(True)
    first_eager, second_eager = _two_views_of_one_intermediate(x_eager)
    first_ours, second_ours = aot_function(_two_views_of_one_intermediate)(x_ours)
    assert first_ours._base is second_ours._base is not None
    for first in (first_eager, first_ours):
        first.unsqueeze(0)[0, 1:3] = 100.0
    torch.testing.assert_close(second_ours, second_eager)
    (first_eager.sum() + 2 * second_eager.sum()).backward()
    (first_ours.sum() + 2 * second_ours.sum()).backward()
    torch.testing.assert_close(x_ours.grad, x_eager.grad)


def test_view_of_input_writes_into_the_input():
    fn = lambda x: x[1:]  # noqa: E731
    x_eager, x_ours = _inputs(False), _inputs(False)
    out_eager, out_ours = fn(x_eager), aot_function(fn)(x_ours)
    assert out_ours._base is x_ours
    assert type(out_ours.grad_fn).__name__ == type(out_eager.grad_fn).__name__
    out_eager.add_(1)
    out_ours.add_(1)
    torch.testing.assert_close(x_ours, x_eager)


def test_views_are_replayed_not_as_strided():
    x = _inputs(True)
    for out in (*_as_tuple(aot_function(_views_of_input)(x)), aot_function(_view_of_intermediate)(x)):
        assert type(out.grad_fn).__name__ != "AsStridedBackward0"


def test_base_returned_twice_keeps_its_gradient():
    """Under torch.compile, a view with the base's own shape reaches aotgraph as the base
    itself, so the forward returns one tensor in the view's slot and as the base: the base
    stays differentiable."""
    import aotgraph

    def fn(x):
        y = x * 2
        return y.view(-1), y[1:], y.view(3, -1)

    x_eager, x_ours = _inputs(True), _inputs(True)
    eager = fn(x_eager)
    ours = torch.compile(fn, backend=aotgraph.backend())(x_ours)
    assert [type(o.grad_fn).__name__ for o in ours] == [type(o.grad_fn).__name__ for o in eager]
    ours[2].mul_(3)
    eager[2].mul_(3)
    sum((o * (k + 1)).sum() for k, o in enumerate(eager)).backward()
    sum((o * (k + 1)).sum() for k, o in enumerate(ours)).backward()
    torch.testing.assert_close(x_ours.grad, x_eager.grad)


def test_views_with_a_mutated_buffer():
    """A program that writes into an input (a buffer) and returns views of it and of an intermediate."""
    def fn(x, buffer):
        buffer.add_(1)
        return (x * buffer).view(-1), buffer.t(), buffer[1:]

    x_eager, x_ours = _inputs(True), _inputs(True)
    buffer_eager, buffer_ours = torch.ones(3, 4), torch.ones(3, 4)
    eager, ours = fn(x_eager, buffer_eager), aot_function(fn)(x_ours, buffer_ours)
    assert [type(o.grad_fn).__name__ for o in ours] == [type(o.grad_fn).__name__ for o in eager]
    assert ours[1]._base is buffer_ours and ours[2]._base is buffer_ours
    for outs in (eager, ours):
        outs[0].mul_(2)
        (outs[0] * torch.arange(12.0)).sum().backward()
        outs[2].mul_(5)  # after the backward, which reads the buffer
    torch.testing.assert_close(x_ours.grad, x_eager.grad)
    torch.testing.assert_close(buffer_ours, buffer_eager)
    for e, o in zip(eager, ours):
        torch.testing.assert_close(o, e)


def _rows_of_intermediate(a):
    return list((a * 3).unbind(0))


def _rows_and_their_base(a):
    out = a * 3
    return (*out.unbind(0), out)


def _base_then_rows(a):
    out = a * 3
    return (out, *out.unbind(0))


def _split_halves_and_a_row(a):
    out = a * 3
    first, second = out.split(2)
    return first, second, out[3]


@pytest.mark.parametrize("program", [_rows_of_intermediate, _rows_and_their_base, _base_then_rows,
                                     _split_halves_and_a_row])
def test_outputs_sharing_an_intermediate_get_their_own_gradients(program):
    """Outputs that share memory without one containing the other (unbind's rows) used to be
    rebuilt as as_strided views of the first: the gradient of every other row was lost."""
    assert_parity(program, lambda: Case((leaf(4, 3),)))
