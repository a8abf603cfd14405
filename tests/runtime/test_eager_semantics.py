"""Issue 16, items 6 and 7: requires_grad of outputs, grad-mode regions, inference mode and
inference tensors, and custom autograd.Functions whose forward returns an input or a view of
it, each compared with eager on identical inputs: outputs (values, requires_grad, whether
grad_fn is None), the inputs afterwards, the gradients of every leaf, and the kind of error
where eager raises."""
import pytest
import torch
from torch.utils._pytree import tree_flatten

from aotgraph import aot_function, aot_module
from eager_parity import Case, assert_parity, leaf


def assert_eager_semantics(fn, make, *, compiled=None, backward=True, eager_raises=False):
    """`assert_parity`, and each output's ``grad_fn is None`` as in eager."""
    eager, ours = assert_parity(fn, make, compiled=compiled, backward=backward, eager_raises=eager_raises)
    if eager_raises:
        return
    eager_out, ours_out = tree_flatten(eager.raw_outputs)[0], tree_flatten(ours.raw_outputs)[0]
    for k, (e, c) in enumerate(zip(eager_out, ours_out)):
        if isinstance(e, torch.Tensor):
            assert (e.grad_fn is None) == (c.grad_fn is None), f"output {k}: grad_fn {e.grad_fn} (eager) vs {c.grad_fn}"


def two_leaves():
    return Case((leaf(3, 4), leaf(3, 4)))


def under(mode, f):
    def call(*args):
        with mode():
            return f(*args)
    return call


# Item 6: requires_grad and grad modes.

def test_output_of_inputs_without_grad_does_not_require_grad():
    assert_eager_semantics(lambda x, w: (x * 2, x * w), lambda: Case((torch.randn(3), leaf(3))))


def no_grad_region_returned_and_used(x, w):
    with torch.no_grad():
        a = x * w
        b = w * 3
    return a, b * x + w


def enable_grad_region(x, w):
    with torch.enable_grad():
        a = x * w
    return a, x + w, (x * w).view(-1)


def inference_mode_region(x, w):
    with torch.inference_mode():
        a = x * 2
    return a, a.clone() * w


def test_no_grad_region_returned_and_used():
    assert_eager_semantics(no_grad_region_returned_and_used, two_leaves)


def enable_grad_region_returned(x, w):
    with torch.enable_grad():
        return x * w


def enable_grad_region_with_view(x, w):
    y = x * 2
    with torch.enable_grad():
        z = y * w
    return z, y.view(-1)


@pytest.mark.parametrize("fn", [enable_grad_region, enable_grad_region_returned, enable_grad_region_with_view])
def test_enable_grad_inside_a_call_under_no_grad(fn):
    assert_eager_semantics(under(torch.no_grad, fn), two_leaves, compiled=under(torch.no_grad, aot_function(fn)))


def test_inference_mode_region_inside():
    assert_eager_semantics(inference_mode_region, two_leaves)


def test_called_under_inference_mode():
    fn = lambda x, w: (x * w, x.view(-1))  # noqa: E731
    assert_eager_semantics(under(torch.inference_mode, fn), two_leaves,
                           compiled=under(torch.inference_mode, aot_function(fn)), backward=False)


def inference_input(requires_grad=True):
    with torch.inference_mode():
        x = torch.randn(3, 4)
    return x, leaf(3, 4, requires_grad=requires_grad)


def _observe(fn, args):
    """(error kind, or (outputs, inputs afterwards, gradients)); `Observed` reads version counters,
    which inference tensors do not keep."""
    try:
        out = fn(*args)
        flat_out = tree_flatten(out)[0]
        diff = [o for o in flat_out if o.requires_grad]
        if diff:
            torch.autograd.backward(diff, [torch.ones_like(o) for o in diff])
    except RuntimeError as error:
        return type(error)
    outs = [(o.detach().clone(), o.requires_grad, o.grad_fn is None, o.is_inference()) for o in flat_out]
    return outs, [a.detach().clone() for a in args], [a.grad for a in args]


def mutates_inference_input(x, w):
    x.add_(1)
    return x * w


@pytest.mark.parametrize("fn, in_inference_mode", [
    (lambda x, w: x * w, False),  # eager: inference tensors cannot be saved for backward
    (lambda x, w: x + w, False),
    (lambda x, w: (x.view(-1), x * w.detach(), x.sum()), False),
    (mutates_inference_input, False),  # eager: in-place update outside InferenceMode
    (lambda x, w: x * w, True),
    (mutates_inference_input, True),
], ids=["mul-saves-x", "add", "view-and-no-grad", "mutation", "mul-in-inference-mode", "mutation-in-inference-mode"])
def test_inference_tensors_as_inputs(fn, in_inference_mode):
    mode = torch.inference_mode if in_inference_mode else torch.enable_grad
    torch.manual_seed(0)
    eager = _observe(under(mode, fn), inference_input(not in_inference_mode))
    torch.manual_seed(0)
    ours = _observe(under(mode, aot_function(fn)), inference_input(not in_inference_mode))
    if isinstance(eager, type):
        assert issubclass(ours, eager), f"eager raised {eager.__name__}, compiled: {ours}"  # (caught alike)
        return
    assert not isinstance(ours, type), f"compiled raised {ours.__name__}"
    for e, c in zip(eager[0], ours[0]):
        torch.testing.assert_close(c[0], e[0])
        assert c[1:] == e[1:], "requires_grad, grad_fn is None, is_inference"
    for e, c in zip(eager[1] + eager[2], ours[1] + ours[2]):
        assert (e is None) == (c is None)
        if e is not None:
            torch.testing.assert_close(c, e)


class BufferUnderNoGrad(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)
        self.register_buffer("scale", torch.ones(4))

    def forward(self, x):
        with torch.no_grad():
            scale = self.scale * 2
            self.scale.mul_(1.5)
        return self.linear(x) * scale, scale


def test_module_buffer_used_under_no_grad():
    torch.manual_seed(0)
    eager = BufferUnderNoGrad()
    module = BufferUnderNoGrad()
    module.load_state_dict(eager.state_dict())
    compiled = aot_module(module)
    x = torch.randn(2, 4)
    for _ in range(2):
        expected, got = eager(x), compiled(x)
        for e, c in zip(expected, got):
            torch.testing.assert_close(c, e)
            assert (c.requires_grad, c.grad_fn is None) == (e.requires_grad, e.grad_fn is None)
        expected[0].sum().backward()
        got[0].sum().backward()
    torch.testing.assert_close(module.scale, eager.scale)
    for e, c in zip(eager.parameters(), module.parameters()):
        torch.testing.assert_close(c.grad, e.grad)


# Item 7: custom autograd.Functions returning an input or a view of it.

class ReturnsInput(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x

    @staticmethod
    def backward(ctx, grad):
        return grad * 2


class ReturnsView(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view(-1)

    @staticmethod
    def backward(ctx, grad):
        return grad.view(3, 4) * 2


class ReturnsClone(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * 3


class MarksDirty(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        x.mul_(2)
        ctx.mark_dirty(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        return grad * 2


class NonDifferentiableOutput(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        index = x.argmax()
        ctx.mark_non_differentiable(index)
        return x * 2, index

    @staticmethod
    def backward(ctx, grad, grad_index):
        return grad * 2


class NoMaterializedGrads(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.set_materialize_grads(False)
        return x * 2, x * 3

    @staticmethod
    def backward(ctx, grad_a, grad_b):
        grads = [g * s for g, s in ((grad_a, 2), (grad_b, 3)) if g is not None]
        return sum(grads) if grads else None


class NoGradForSecondInput(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):
        return x * y

    @staticmethod
    def backward(ctx, grad):
        return grad, None


@pytest.mark.parametrize("fn", [
    lambda x, y: ReturnsInput.apply(x),
    lambda x, y: ReturnsInput.apply(x * y),
    lambda x, y: ReturnsInput.apply(x).view(-1),
    lambda x, y: (ReturnsInput.apply(x) * 2, y),
    lambda x, y: ReturnsView.apply(x),
    lambda x, y: ReturnsView.apply(x * y),
    lambda x, y: (ReturnsView.apply(x) + 1, ReturnsView.apply(y)[1:]),
    lambda x, y: ReturnsClone.apply(x) * y,
    lambda x, y: MarksDirty.apply(x * y),
    lambda x, y: NonDifferentiableOutput.apply(x * y),
    lambda x, y: NoMaterializedGrads.apply(x * y)[0],
    lambda x, y: NoMaterializedGrads.apply(x),
    lambda x, y: NoGradForSecondInput.apply(x, y),
], ids=["input", "intermediate", "input-viewed", "input-used", "view", "view-of-intermediate", "views-used",
        "clone", "mark-dirty", "non-differentiable", "no-materialize-one-used", "no-materialize-both",
        "none-grad"])
def test_custom_function(fn):
    assert_eager_semantics(fn, two_leaves)


def test_custom_function_marks_a_leaf_dirty_raises_as_eager():
    assert_eager_semantics(lambda x, y: MarksDirty.apply(x), two_leaves, eager_raises=True)


def test_custom_function_marks_an_input_without_grad_dirty():
    assert_eager_semantics(lambda x, w: MarksDirty.apply(x) * w, lambda: Case((torch.randn(3, 4), leaf(3, 4))))


def test_an_entry_compiled_for_ordinary_tensors_raises_as_eager_for_inference_tensors():
    """An in-place write into an inference tensor outside inference mode raises in eager; the
    entry compiled for ordinary tensors of the same layout raises too."""
    def f(x):
        return x.add_(1)

    compiled = aot_function(f)
    compiled(torch.zeros(3))
    with torch.inference_mode():
        t = torch.zeros(3)
    with pytest.raises(RuntimeError):
        f(t)
    with torch.inference_mode():
        t2 = torch.zeros(3)
    with pytest.raises(RuntimeError):
        compiled(t2)


@pytest.mark.parametrize("compiler", ["eager", "inductor"])
def test_a_write_through_view_as_complex_and_view_as_real(compiler):
    """An in-place op through ``view_as_complex`` of an intermediate (a rotary embedding written
    in place; ``mul_`` by a complex scalar) and through ``view_as_real`` of a complex one: the
    intermediate takes the write, as eager's."""
    def program(x):
        y = x * 1
        z = torch.view_as_complex(y)
        z.mul_(1j)
        w = torch.view_as_complex(x.detach() * 2).clone()
        torch.view_as_real(w).add_(x)
        return y, z.abs(), w

    x = torch.randn(3, 2, requires_grad=True)
    x_ours = x.detach().clone().requires_grad_()
    expected, got = program(x), aot_function(program, compiler)(x_ours)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)
    sum(t.abs().sum() for t in expected).backward()
    sum(t.abs().sum() for t in got).backward()
    torch.testing.assert_close(x_ours.grad, x.grad)
