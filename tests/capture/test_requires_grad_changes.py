"""``requires_grad_()`` inside the compiled program. On an input before any op reads it, it is
captured: the caller's tensor gets the flag, and the gradient, as in eager; a leaf the program
makes and returns comes back a leaf requiring grad. Elsewhere, where eager's answer depends on
it (an input's flag set after a read, an output that requires grad only through a leaf the
program made), the compiled function must refuse, never return tensors with other flags."""
import pytest
import torch

from aotgraph import aot_function
from aotgraph.errors import UnsupportedOp


def input_made_to_require_grad(a, b):  # torch's test_input_inplace_requires_grad_true
    a.requires_grad_(True)
    return a.mul(3), b.mul(4)


def input_flag_cleared_by_attribute(a, b):
    b.requires_grad = False
    return a * b, b + 1


def input_made_to_require_grad_under_no_grad(a, b):  # the flag is no op: grad mode does not matter
    with torch.no_grad():
        a.requires_grad_()
    return (a * b).sum(), a.detach() + 1


def input_made_to_require_grad_after_a_read(a, b):
    c = a * 2
    a.requires_grad_(True)
    return c * a, b.mul(4)


def view_of_input_made_to_require_grad(a, b):
    a_view = a.view(-1)
    a_view.requires_grad_(True)
    return a_view


def intermediate_made_a_leaf(a):
    b = a * 2
    b.requires_grad_(True)
    return b


def computed_from_a_leaf_made_inside(a):
    v = a.view(-1)
    v.requires_grad_(True)
    return v * 2


CASES = [
    (input_made_to_require_grad_after_a_read, lambda: (torch.randn(3, 3), torch.randn(3, 3, requires_grad=True)),
     r"calls requires_grad_\(True\) on tensor input 0 after reading it"),
    (computed_from_a_leaf_made_inside, lambda: (torch.randn(3, 3),), r"output leaf 0 requires grad"),
]


@pytest.mark.parametrize("fn, make_args, message", CASES, ids=[c[0].__name__ for c in CASES])
def test_requires_grad_changed_inside_is_refused(fn, make_args, message):
    eager_args = make_args()
    eager_out = fn(*eager_args)
    eager_flags = [o.requires_grad for o in (eager_out if isinstance(eager_out, tuple) else (eager_out,))]
    assert eager_flags[0], "eager returns a tensor that requires grad"
    with pytest.raises(UnsupportedOp, match=message + r".*\(capture stage\)"):
        aot_function(fn)(*make_args())


def test_leaf_made_inside_for_an_inner_gradient_stays_allowed():
    """A leaf the program makes and differentiates itself does not reach an output's flag."""
    def inner_grad(x):
        leaf = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad((leaf.sin()).sum(), leaf)
        return g * x

    x = torch.randn(4, requires_grad=True)
    expected = inner_grad(x)
    got = aot_function(inner_grad)(x)
    torch.testing.assert_close(got, expected)
    assert got.requires_grad == expected.requires_grad


@pytest.mark.parametrize("fn", [input_made_to_require_grad, input_flag_cleared_by_attribute,
                                input_made_to_require_grad_under_no_grad], ids=lambda f: f.__name__)
def test_an_inputs_flag_set_before_it_is_read_is_set_on_the_callers_tensor(fn):
    """As eager: the caller's tensor takes the flag, the outputs' flags follow it, and the gradient
    reaches the tensor; the next call (the flag now set) compiles for the new flag and agrees."""
    compiled = aot_function(fn, "eager")
    for call in range(2):
        results = []
        for f in (fn, compiled):
            torch.manual_seed(call)
            a, b = torch.randn(3, 3), torch.randn(3, 3, requires_grad=True)
            outs = f(a, b)
            loss = sum(o.sum() for o in outs if o.requires_grad)
            if isinstance(loss, torch.Tensor):
                loss.backward()
            results.append(([o.requires_grad for o in outs], a.requires_grad, b.requires_grad,
                            [o.detach() for o in outs], a.grad, b.grad))
            if call == 1 and f is compiled:  # the same tensors again, their flags set by the first call
                outs = f(a, b)
                assert [o.requires_grad for o in outs] == results[0][0]
        (eager_flags, *eager_rest), (our_flags, *our_rest) = results
        assert our_flags == eager_flags
        assert our_rest[:2] == eager_rest[:2]
        torch.testing.assert_close(our_rest[2:], eager_rest[2:])


def intermediate_made_a_leaf_beside_a_loss(a, b):
    c = a * 2
    c.requires_grad_(True)
    return c, (b * 3).sum()


def leaf_made_under_no_grad(a):
    with torch.no_grad():
        c = a * 2
        c.requires_grad_(True)
    return c


@pytest.mark.parametrize("fn, make_args", [
    (view_of_input_made_to_require_grad, lambda: (torch.randn(3, 3), torch.randn(3, 3, requires_grad=True))),
    (intermediate_made_a_leaf, lambda: (torch.randn(3, 3),)),
    (intermediate_made_a_leaf_beside_a_loss, lambda: (torch.randn(3, 3), torch.randn(3, 3, requires_grad=True))),
    (leaf_made_under_no_grad, lambda: (torch.randn(3, 3),)),
], ids=lambda v: getattr(v, "__name__", ""))
def test_a_leaf_the_program_made_require_grad_is_returned_as_one(fn, make_args):
    """torch's test_some_output_requires_grad_input_doesnt, and leaves made from intermediates:
    eager returns a leaf requiring grad with no history (a view of the input where it was one);
    refused until session 42 (a leaf made under no_grad came back not requiring grad)."""
    seen = []
    for f in (fn, aot_function(fn, "eager")):
        torch.manual_seed(0)
        args = make_args()
        outs = f(*args)
        outs = outs if isinstance(outs, tuple) else (outs,)
        facts = [(o.requires_grad, o.is_leaf, o.grad_fn is None, o._is_view(), o.data_ptr() == args[0].data_ptr())
                 for o in outs]
        (outs[0] * 2).sum().backward()  # a leaf's own gradient
        if len(outs) > 1:
            outs[1].backward()
        seen.append((facts, [o.detach() for o in outs], outs[0].grad, args[-1].grad))
    assert seen[1][0] == seen[0][0]
    torch.testing.assert_close(seen[1][1:], seen[0][1:])
