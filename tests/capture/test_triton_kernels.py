"""User Triton kernels under capture (``triton_kernel_wrapper_mutation`` recorded in its
functional form), compared with eager: outputs, the inputs a kernel writes, gradients, several
optimizer steps.

Needs triton. On CUDA the kernels are compiled, and Dynamo hands them over (the "eager" and
"inductor" compilers); on the CPU they run in Triton's interpreter (``TRITON_INTERPRET=1`` set
before the test starts), which Dynamo cannot trace, so the CPU tests call the operator
directly (torch's kernel side table), as ``torch.library.wrap_triton`` does on CUDA.
"""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn as nn

import aotgraph
from aotgraph import aot_function, default_partition, min_cut_rematerialization_partition
from aotgraph.cache import graph_codec
from aotgraph.cache.graph_codec import NotStorable
from backend_training import HopSeen, assert_training_parity

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")
CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
if not CUDA and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("without CUDA, user Triton kernels run only in Triton's interpreter: set TRITON_INTERPRET=1",
                allow_module_level=True)

BLOCK = 16


@triton.jit
def scale_add_kernel(x_ptr, y_ptr, n, alpha, BLOCK: tl.constexpr):
    """y += alpha * x, in place."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = offsets < n
    tl.store(y_ptr + offsets, tl.load(y_ptr + offsets, mask=inside) + alpha * tl.load(x_ptr + offsets, mask=inside),
             mask=inside)


def launch(x: torch.Tensor, y: torch.Tensor, alpha: float) -> None:
    """``y += alpha * x`` by the kernel, through the operator torch wraps kernel launches in
    (``wrap_triton`` emits it; an interpreted kernel it leaves as it is, so on the CPU the
    operator is called here)."""
    grid = (triton.cdiv(x.numel(), BLOCK),)
    if CUDA:
        torch.library.wrap_triton(scale_add_kernel)[grid](x, y, x.numel(), alpha, BLOCK=BLOCK)
        return
    from torch._higher_order_ops.triton_kernel_wrap import kernel_side_table, triton_kernel_wrapper_mutation

    triton_kernel_wrapper_mutation(
        kernel_idx=kernel_side_table.add_kernel(scale_add_kernel),
        constant_args_idx=kernel_side_table.add_constant_args({"BLOCK": BLOCK}),
        grid=[(*grid, 1, 1)], tma_descriptor_metadata={},
        kwargs={"x_ptr": x, "y_ptr": y, "n": x.numel(), "alpha": alpha})


def test_kernel_writing_an_input_and_an_intermediate():
    def program(x, y, total):
        launch(x.sin(), total, 2.0)  # writes an input
        scaled = y.clone()
        launch(total, scaled, 0.5)  # writes an intermediate
        return (scaled * y).sum()

    x, y = torch.randn(40, device=DEVICE), torch.randn(40, device=DEVICE, requires_grad=True)
    total, expected_total = torch.randn(40, device=DEVICE), None
    expected_total = total.clone()
    compiled = aot_function(program, fw_compiler="eager")
    out, expected = compiled(x, y, total), program(x, y, expected_total)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(total, expected_total)
    torch.testing.assert_close(torch.autograd.grad(out, y), torch.autograd.grad(expected, y))
    forward = next(iter(compiled.aotgraph_entries.values())).partition.forward
    assert len(forward.graph.find_nodes(op="call_function",
                                        target=torch.ops.higher_order.triton_kernel_wrapper_functional)) == 2
    # the disk cache does not store it: the kernel's index means another kernel in another process
    with pytest.raises(NotStorable, match="user Triton kernel"):
        graph_codec.dumps(forward)


class ScaleAdd(torch.autograd.Function):
    """x + alpha * y by the kernel, with its backward written in torch ops."""

    @staticmethod
    def forward(ctx, x, y, alpha):
        out = x.clone()
        launch(y, out, alpha)
        ctx.alpha = alpha
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad, grad * ctx.alpha, None


class KernelLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin, self.skip = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        return torch.tanh(ScaleAdd.apply(self.lin(x), self.skip(x), 0.5))


@pytest.mark.parametrize("partition_fn", [default_partition, min_cut_rematerialization_partition],
                         ids=["default", "min_cut"])
def test_training_step_through_aot_module(partition_fn):
    """Parity, and the forward saves tensors for the backward, never the dict of written copies
    that the kernel's functional node returns (the min cut, which Inductor's compiles use, took
    it for an 8-byte scalar; Inductor's graph lowering asserts on a graph returning it)."""
    torch.manual_seed(0)
    steps = [(torch.randn(4, 8, device=DEVICE),) for _ in range(3)]
    compiled = assert_training_parity(
        KernelLayer().to(DEVICE), steps,
        lambda m: aotgraph.aot_module(m, fw_compiler="eager", partition_fn=partition_fn), lr=0.01)
    (entry,) = compiled.aotgraph_entries.values()
    forward_outputs = entry.partition.forward.graph.find_nodes(op="output")[0].args[0]
    assert all(isinstance(node.meta["val"], torch.Tensor) for node in forward_outputs), forward_outputs


class DirectKernelLayer(KernelLayer):
    """The kernel launched as a user writes it (Dynamo turns the launch into the operator)."""

    def forward(self, x):
        h, skip = self.lin(x), self.skip(x)
        out = h.detach().clone()  # written by the kernel: no gradient flows through it
        scale_add_kernel[(triton.cdiv(out.numel(), BLOCK),)](skip.detach(), out, out.numel(), 0.5, BLOCK=BLOCK)
        return torch.tanh(h + skip + out)


@pytest.mark.skipif(not CUDA, reason="Dynamo hands user Triton kernels over only when they are compiled (CUDA)")
@pytest.mark.parametrize("compiler", ["eager", pytest.param("inductor", marks=pytest.mark.slow)])
@pytest.mark.parametrize("model", [KernelLayer, DirectKernelLayer], ids=["autograd_function", "direct_launch"])
def test_training_step_through_dynamo(compiler, model):
    torch._dynamo.reset()
    torch.manual_seed(0)
    steps = [(torch.randn(4, 8, device=DEVICE),) for _ in range(3)]
    seen = HopSeen(compiler)
    assert_training_parity(model().to(DEVICE), steps, seen.compile, lr=0.01)
    assert "triton_kernel_wrapper_mutation" in seen.hops
