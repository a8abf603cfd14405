"""Fake inputs keep what the capture reads of the real ones: layout, grad, aliasing."""
import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

from aotgraph.capture.inputs import fake_inputs


def _facts(t):
    return (t.dtype, tuple(t.shape), t.stride(), t.storage_offset(), t.device, t.requires_grad, t.is_leaf,
            t.untyped_storage().nbytes())


def test_fakes_match_their_inputs_and_keep_aliasing():
    base = torch.randn(6, 4)
    weight = torch.nn.Parameter(torch.randn(3, 5).t())  # non-contiguous leaf
    oversized = torch.randn(4)  # storage larger than its layout needs
    oversized.untyped_storage().resize_(64)
    nonleaf = torch.randn(3, requires_grad=True) * 2
    flat = [base[1:], base, weight, weight, oversized, nonleaf, 7, torch.zeros(2, dtype=torch.int64)]
    fakes = fake_inputs(flat, FakeTensorMode())
    for real, fake in zip(flat, fakes):
        if isinstance(real, torch.Tensor):
            reference = FakeTensorMode().from_tensor(real, static_shapes=True)  # the general conversion
            assert isinstance(fake, FakeTensor) and _facts(fake) == _facts(reference)
            assert _facts(fake)[:7] == _facts(real)[:7]
        else:
            assert fake == real
    storage = [f.untyped_storage()._cdata if isinstance(f, torch.Tensor) else None for f in fakes]
    assert storage[0] == storage[1]  # a view and its base share a fake storage
    assert fakes[2] is fakes[3]  # the same tensor twice: the same fake
    assert len({storage[k] for k in (1, 2, 4, 5, 7)}) == 5


def test_a_view_made_under_no_grad_whose_base_was_written_with_grad_is_no_plain_leaf():
    """Reading such a view's ``grad_fn`` raises; a Dynamo graph input of this kind (fuzzer seeds
    549 and 3975 through the backend, torch 2.11) failed the compile where Dynamo's own backend
    runs. A view is never a plain leaf, whatever its history: the view test comes first."""
    from aotgraph.capture.inputs import _is_plain_leaf

    base = torch.randn(4, requires_grad=True).clone()
    with torch.no_grad():
        view = base[1:]
    base.mul_(2)
    assert _is_plain_leaf(view) is False
