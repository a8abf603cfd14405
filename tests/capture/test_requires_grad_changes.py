"""``requires_grad_()`` inside the compiled program is not captured. Where eager's answer depends
on it (an input's flag and gradient, an output that requires grad only through a leaf the
program made), the compiled function must refuse, never return tensors with other flags."""
import pytest
import torch

from aotgraph import aot_function
from aotgraph.errors import UnsupportedOp


def input_made_to_require_grad(a, b):
    a.requires_grad_(True)
    return a.mul(3), b.mul(4)


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
    (input_made_to_require_grad, lambda: (torch.randn(3, 3), torch.randn(3, 3, requires_grad=True)),
     r"calls requires_grad_\(True\) on tensor input 0"),
    (view_of_input_made_to_require_grad, lambda: (torch.randn(3, 3), torch.randn(3, 3, requires_grad=True)),
     r"output leaf 0 requires grad"),
    (intermediate_made_a_leaf, lambda: (torch.randn(3, 3),), r"output leaf 0 requires grad"),
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
