"""Programs with symbolic sizes through Inductor that the OpInfo sweep with ``--dynamic`` found
failing in capture or partition (`benchmarks/inductor_sweep.py --dynamic`): each trains like eager."""
from __future__ import annotations

from typing import Optional

import pytest
import torch

import aotgraph


def _assert_trains_like_eager(program, *inputs, entries: Optional[int] = 1):
    compiled = aotgraph.aot_function(program, "inductor", dynamic=True)
    for scale in (1, 2):  # a second size: the same symbolic entry where its guards hold
        sized = [torch.cat([x] * scale).detach().requires_grad_(x.requires_grad) for x in inputs]
        ours = compiled(*sized)
        ours.sum().backward()
        ours_grads = [x.grad for x in sized if x.requires_grad]
        for x in sized:
            x.grad = None
        expected = program(*sized)
        expected.sum().backward()
        torch.testing.assert_close(ours, expected)
        for mine, theirs in zip(ours_grads, [x.grad for x in sized if x.requires_grad]):
            torch.testing.assert_close(mine, theirs)
    if entries is not None:
        assert len(compiled.aotgraph_entries) == entries


def test_a_uniform_gradient_rebuilt_from_symbolic_sizes():
    """softshrink's backward: Inductor's joint passes fold a zero tensor into ``full`` of the
    input's symbolic sizes, placed ahead of the size nodes it reads (the partition then failed
    with ``KeyError: sym_size_int``)."""
    _assert_trains_like_eager(lambda x: torch.nn.functional.softshrink(x, 0.5) * 3,
                              torch.randn(5, 6, requires_grad=True))


@pytest.mark.parametrize("cap", [3, 40])
def test_a_size_that_is_the_minimum_of_three(cap):
    """``min(rows, columns, cap)`` is one sympy ``Min`` of three arguments (svd_lowrank's rank):
    recorded as a graph node pairwise (was: ``sym_min() takes 2 positional arguments``)."""
    def program(x):
        k = min(x.shape[0], x.shape[1], cap)
        return x[:k, :k].exp() + torch.ones(k, k)

    # 7 -> 14 rows: the guard on which size is the smallest fails, a second entry
    _assert_trains_like_eager(program, torch.randn(7, 9, requires_grad=True), entries=2)


def test_inductor_compiles_with_the_python_dispatcher_on(monkeypatch):
    """As torch's compile_fx: Inductor runs fallback kernels on fakes to learn their layouts, and
    with symbolic sizes only the Python meta functions take them (on CUDA, cholesky's and
    bilinear's C++ composites refused: `test_fallback_kernels_with_symbolic_sizes_on_cuda`)."""
    from aotgraph.compilers import torchinductor

    seen = []
    real = torchinductor._compile_fx_inner

    def spy(*args, **kwargs):
        seen.append(torch._C._dispatch_tls_local_include_set().has(torch._C.DispatchKey.PythonDispatcher))
        return real(*args, **kwargs)

    monkeypatch.setattr(torchinductor, "_compile_fx_inner", spy)
    x = torch.randn(4, 3, requires_grad=True)
    aotgraph.aot_function(lambda x: x.sin().sum(), "inductor", dynamic=True)(x).backward()
    assert seen == [True, True]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA")
@pytest.mark.parametrize("program, shapes", [
    (lambda a: torch.linalg.cholesky(a @ a.mT + torch.eye(a.shape[-1], device=a.device)), [(2, 4, 4)]),
    (lambda x, w: torch.nn.functional.bilinear(x, x[:, :3], w), [(3, 4), (2, 4, 3)]),
])
def test_fallback_kernels_with_symbolic_sizes_on_cuda(program, shapes):
    inputs = [torch.randn(*shape, device="cuda", requires_grad=True) for shape in shapes]
    _assert_trains_like_eager(program, *inputs, entries=None)


@pytest.mark.parametrize("input_shape, mask_shape", [((10,), (10, 10)), ((10, 1, 10), (10, 10)), ((10, 10), (10,))])
def test_masked_select_with_a_mask_that_broadcasts(input_shape, mask_shape):
    """masked_select's fake kernel bounds its length by the input's element count: with a mask
    that broadcasts the input, Inductor's runtime assert of that bound failed (``u0 <= 10``; torch's
    own with capture_dynamic_output_shape_ops too). Recorded on the broadcast operands."""
    torch.manual_seed(0)
    x, mask = torch.randn(*input_shape, requires_grad=True), torch.rand(*mask_shape) > 0.5
    compiled = aotgraph.aot_function(torch.masked_select, "inductor", dynamic=True)
    ours = compiled(x, mask)
    (ours_grad,) = torch.autograd.grad(ours.square().sum(), x)
    expected = torch.masked_select(x, mask)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), x)
    torch.testing.assert_close(ours, expected)
    torch.testing.assert_close(ours_grad, expected_grad)


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("shape", [(), (3, 4)])
def test_take_with_a_zero_dim_index(shape, dynamic):
    """torch's decomposition of take (Inductor's table) indexes in Python, which reads a 0-d
    index's value: refused as a value read before (OpInfo's third sample of take); recorded as
    advanced indexing now, for every compiler."""
    x, index = torch.randn(shape, requires_grad=True), torch.tensor(0 if not shape else 5)
    ours = aotgraph.aot_function(torch.take, "inductor", dynamic=dynamic)(x, index)
    (ours_grad,) = torch.autograd.grad(ours.sum(), x)
    expected = torch.take(x, index)
    (expected_grad,) = torch.autograd.grad(expected.sum(), x)
    torch.testing.assert_close(ours, expected)
    torch.testing.assert_close(ours_grad, expected_grad)


def test_a_chunk_of_an_input_written_in_place_and_returned():
    """``v = x.chunk(2)[1]; x.relu_(); return v, x``: v is one output of a multi-output view of the
    written value. The write stays with the runtime (Inductor would compute v in a buffer of its
    own and copy into x after), so v comes back in x's memory, with x's new values (fuzzer seed
    2330: a CompilerError before)."""
    def program(x):
        v = x.chunk(2, 0)[1]
        return v, x.relu_(), v

    compiled = aotgraph.aot_function(program, "inductor", dynamic=True)
    for rows in (4, 6, 8):
        x = torch.randn(rows, 3, dtype=torch.float64)
        expected_x = x.clone()
        expected = program(expected_x)
        out = compiled(x)
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(x, expected_x)
        assert out[0].untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
        out[2].zero_()  # a view of x, as eager's
        expected[2].zero_()
        torch.testing.assert_close(x, expected_x)
    assert len(compiled.aotgraph_entries) == 1

