"""Eager's semantics through Inductor on CUDA, where its kernels differ from the CPU's: version
counters of inputs its forward writes, returned tensors over memory of their own or shared as
in eager, whole-tensor argmax, scatters whose new values read their base. Skipped without CUDA.
(The compiled optimizer step's versions: tests/compilers/test_inductor_eager_semantics.py.)"""
import pytest
import torch

import aotgraph

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_an_input_inductor_writes_reads_as_modified_in_an_earlier_backward():
    def program(buf, x):
        buf.add_(1)
        return x * 2

    def outcome(fn):
        w = torch.randn(4, device="cuda", requires_grad=True)
        buf, x = torch.randn(4, device="cuda"), torch.randn(4, device="cuda")
        product = (w * buf).sum()
        fn(buf, x)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            product.backward()

    outcome(program)
    outcome(aotgraph.aot_function(program, "inductor"))


def test_returned_tensors_share_memory_as_eagers():
    def apart(x):
        v = x - 1
        return v.clone().expand(3, 6).detach(), torch.stack((v, x))

    def shared(x):
        stacked = torch.stack((x, x))
        return stacked.unbind(1)[2].t(), stacked

    x = torch.randn(6, device="cuda", requires_grad=True)
    first, second = aotgraph.aot_function(apart, "inductor")(x)
    torch.testing.assert_close((first, second), apart(x))
    assert first.untyped_storage().data_ptr() != second.untyped_storage().data_ptr()
    y = torch.randn(3, 4, device="cuda", requires_grad=True)
    first, second = aotgraph.aot_function(shared, "inductor")(y)
    torch.testing.assert_close((first, second), shared(y))
    assert first.untyped_storage().data_ptr() == second.untyped_storage().data_ptr()


def test_whole_tensor_argmax_and_a_diagonal_written_from_itself():
    def program(x):
        y = x * 1
        y.diagonal().mul_(2)
        y.diagonal().copy_(y.diagonal().flip(0))
        return y, torch.argmax(x.t() * 2)

    x = torch.randn(5, 5, device="cuda")
    torch.testing.assert_close(aotgraph.aot_function(program, "inductor")(x), program(x))
