"""Forward-mode AD (``torch.autograd.forward_ad``) through compiled functions: a call with dual
tensors runs the program as it is, so its ops carry the tangents (compiled kernels dropped them
silently; the autograd.Function has no jvp), also right after a plain call took the fast path."""
import pytest
import torch
import torch.autograd.forward_ad as fwAD

import aotgraph


def _program(x, w):
    return (x.sin() * x) @ w


def _tangent(fn, x, w, tx):
    with fwAD.dual_level():
        return fwAD.unpack_dual(fn(fwAD.make_dual(x, tx), w)).tangent


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("path", ["eager", "inductor", "backend"])
def test_dual_inputs_get_eagers_tangents(path, requires_grad):
    torch.manual_seed(0)
    x, w, tx = torch.randn(3, 5, requires_grad=requires_grad), torch.randn(5, 2), torch.randn(3, 5)
    fn = (torch.compile(_program, backend=aotgraph.backend(compiler="eager")) if path == "backend"
          else aotgraph.aot_function(_program, path))
    torch.testing.assert_close(fn(x, w), _program(x, w))  # a plain call first: the fast path is set up
    expected = _tangent(_program, x, w, tx)
    got = _tangent(fn, x, w, tx)
    assert got is not None
    torch.testing.assert_close(got, expected)
