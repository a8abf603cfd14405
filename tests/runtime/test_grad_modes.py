"""Grad-mode edges inside the compiled function, custom autograd.Functions, checkpoint,
and double backward."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from aotgraph import AotGraphError, aot_function
from eager_parity import Case, assert_parity, leaf


def make():
    return Case((leaf(3, 4), leaf(3, 4)))


def with_no_grad(x, y):
    with torch.no_grad():
        z = x * 2
    return z * y, z


def with_enable_grad_inside_no_grad(x, y):
    with torch.no_grad():
        with torch.enable_grad():
            z = x * y
        w = z + 1
    return z.sin(), w


def with_detach(x, y):
    return x.detach() * y + x


def with_requires_grad_(x, y):
    z = (x * 2).detach().requires_grad_()
    return z * y


def set_grad_enabled_false(x, y):
    torch.set_grad_enabled(False)
    try:
        z = x * y
    finally:
        torch.set_grad_enabled(True)
    return z + y


@pytest.mark.parametrize("fn", [with_no_grad, with_enable_grad_inside_no_grad, with_detach, with_requires_grad_,
                                set_grad_enabled_false])
def test_grad_mode_inside(fn):
    assert_parity(fn, make)


def test_called_under_no_grad():
    def fn(x, y):
        return (x * y).sum(0), x.view(-1)

    def no_grad(f):
        def call(*args):
            with torch.no_grad():
                return f(*args)
        return call

    # No backward: under no_grad eager's view still reports requires_grad (and cannot backward).
    assert_parity(no_grad(fn), make, compiled=no_grad(aot_function(fn)), backward=False)


def test_called_under_inference_mode():
    fn = lambda x, y: x * y  # noqa: E731
    compiled = aot_function(fn)
    x, y = torch.randn(3), torch.randn(3)
    with torch.inference_mode():
        torch.testing.assert_close(compiled(x, y), fn(x, y))


class ScaledSquare(torch.autograd.Function):
    """A Function whose backward is deliberately not the derivative of its forward."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x)
        ctx.scale = scale
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.scale * x, None


def test_custom_function_backward_is_used():
    assert_parity(lambda x, y: ScaledSquare.apply(x, 5.0) + y, make)


def test_checkpoint_inside():
    def block(x, y):
        return torch.tanh(x @ y.t()).exp()

    def fn(x, y):
        return checkpoint(block, x, y, use_reentrant=False).sum(1)

    assert_parity(fn, make)


def test_checkpoint_with_dropout_recomputes_same_mask():
    def block(x):
        return F.dropout(x, 0.5, training=True) * 3

    def fn(x, y):
        return checkpoint(block, x * y, use_reentrant=False)

    assert_parity(fn, make)


def test_double_backward_raises_clearly():
    x = leaf(3)
    out = aot_function(lambda t: (t ** 3).sum())(x)
    (grad,) = torch.autograd.grad(out, x, create_graph=True)
    with pytest.raises(AotGraphError, match="double backward"):
        grad.sum().backward()


def test_first_derivative_with_create_graph_is_right():
    x = leaf(3)
    out = aot_function(lambda t: (t ** 3).sum())(x)
    (grad,) = torch.autograd.grad(out, x, create_graph=True)
    torch.testing.assert_close(grad, 3 * x.detach() ** 2)


def _leaves_grad_mode_off(x):
    y = x * x
    torch.set_grad_enabled(False)
    return y.clone(), y


def _leaves_grad_mode_on(x):
    torch.set_grad_enabled(True)
    return x * 2


@pytest.mark.parametrize("program, called_in, left_in", [(_leaves_grad_mode_off, True, False),
                                                         (_leaves_grad_mode_on, False, True)])
def test_grad_mode_the_program_leaves_set_outlives_each_call(program, called_in, left_in):
    """``torch.set_grad_enabled(mode)`` not undone by the program stays set after the call, in
    eager and after every compiled call (the first one captures, later ones only run)."""
    compiled = aot_function(program)
    observed = []
    try:
        for call in (program, compiled, compiled):
            torch.set_grad_enabled(called_in)
            out = call(torch.ones(3, requires_grad=True))
            flags = [o.requires_grad for o in (out if isinstance(out, tuple) else (out,))]
            observed.append((torch.is_grad_enabled(), flags))
    finally:
        torch.set_grad_enabled(True)
    assert observed[0][0] is left_in
    assert observed[1] == observed[0] and observed[2] == observed[0]


def test_grad_mode_the_program_leaves_set_under_torch_compile():
    import aotgraph

    torch._dynamo.reset()
    compiled = torch.compile(_leaves_grad_mode_off, backend=aotgraph.backend("eager"), fullgraph=True)
    x = torch.ones(3, requires_grad=True) * 3
    try:
        for _ in range(2):
            torch.set_grad_enabled(True)
            clone, y = compiled(x)
            assert not torch.is_grad_enabled()
            assert clone.grad_fn is None and y.grad_fn is not None
            torch.set_grad_enabled(True)
            (grad,) = torch.autograd.grad(y.sum(), x)
            torch.testing.assert_close(grad, 2 * x.detach())
    finally:
        torch.set_grad_enabled(True)


def _view_of_input_under_no_grad(x, w):
    with torch.no_grad():
        return x[1:]


def _view_under_no_grad_beside_a_loss(x, w):
    with torch.no_grad():
        v = x[1:]
    return v, (x * w).sum()


def _view_of_intermediate_under_no_grad(x, w):
    y = x * w
    with torch.no_grad():
        v = y[1:]
    return v, y.sum()


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("program", [_view_of_input_under_no_grad, _view_under_no_grad_beside_a_loss,
                                     _view_of_intermediate_under_no_grad], ids=lambda p: p.__name__)
def test_a_view_made_under_no_grad_is_returned_as_eagers(program, dynamic):
    """Eager's view of a tensor requiring grad made under no_grad requires grad, has no history,
    is a leaf, and refuses an in-place write under grad mode. aotgraph refused such programs (as
    if they had called requires_grad_()); now its output is the same kind of view, in the same
    memory, and the other outputs' gradients are eager's."""
    compiled = aot_function(program, "eager", dynamic=dynamic)
    for n in (4, 5):
        seen = []
        for fn in (program, compiled):
            torch.manual_seed(n)
            x, w = torch.randn(n, 3, requires_grad=True), torch.randn(n, 3, requires_grad=True)
            outs = fn(x, w)
            outs = outs if isinstance(outs, tuple) else (outs,)
            view = outs[0]
            facts = (view.requires_grad, view.grad_fn is None, view.is_leaf, view._is_view(),
                     view.data_ptr() == x.data_ptr() + 3 * x.element_size() if program is not
                     _view_of_intermediate_under_no_grad else True)
            try:
                view.mul_(2)
                refused = False
            except RuntimeError as error:
                refused = "no_grad mode" in str(error)
            if len(outs) > 1:
                outs[1].backward()
            seen.append((facts, refused, view.detach().clone(), x.grad, w.grad))
        assert seen[1][:2] == seen[0][:2]
        torch.testing.assert_close(seen[1][2:], seen[0][2:])


def test_a_view_of_a_leaf_view_made_under_no_grad_keeps_its_history():
    """A leaf made of a view taken under no_grad (as OpInfo's partial-view samples are): views of it
    carry autograd's no_grad mark but have a history, and the output takes its gradient (a first
    version of returning no_grad views as eager's rebuilt this one under no_grad: no gradient)."""
    def program(x):
        return torch.as_strided(x, (2, 2), (1, 2))

    grads = []
    for fn in (program, aot_function(program, "eager")):
        with torch.no_grad():
            x = torch.arange(15.0)[5:]
        x.requires_grad_()
        out = fn(x)
        assert out.grad_fn is not None
        (out * torch.tensor([[1.0, 2.0], [3.0, 4.0]])).sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[1], grads[0])
