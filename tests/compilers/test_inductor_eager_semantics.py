"""Inductor compiles our graphs with eager's semantics where the user can see them: random ops
draw eager's numbers and leave eager's RNG state, and the bases of returned views keep eager's
layouts (the runtime replays the program's view ops on them)."""
import pytest
import torch
import torch.nn.functional as F

import aotgraph
from aotgraph.compilers import GraphRole


def _run_seeded(fn, *args):
    torch.manual_seed(7)
    out = fn(*args)
    return out, torch.get_rng_state()


def test_dropout_under_inductor_draws_eagers_numbers_and_leaves_its_rng_state():
    def f(x):
        return F.dropout(x, 0.5, training=True) * 3

    x = torch.randn(256, requires_grad=True)
    compiled = aotgraph.aot_function(f, "inductor")
    out, state = _run_seeded(compiled, x)
    expected, expected_state = _run_seeded(f, x)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert torch.equal(state, expected_state)
    out.sum().backward()
    grad = x.grad.clone()
    x.grad = None
    expected.sum().backward()
    torch.testing.assert_close(grad, x.grad, rtol=0, atol=0)


def test_the_bases_of_returned_views_are_user_visible_outputs_for_the_compiler():
    roles = []

    def recording(graph_module, example_inputs, role):
        roles.append(role)
        return graph_module.forward

    recording._takes_role = True

    def f(x):
        y = x.t() * 2
        return y.t(), y.sum()

    x = torch.randn(6, 4, requires_grad=True)
    out = aotgraph.aot_function(f, recording)(x)
    expected = f(x)
    torch.testing.assert_close(out[0], expected[0])
    assert out[0].stride() == expected[0].stride() and out[0]._base.stride() == expected[0]._base.stride()
    forward = next(r for r in roles if r.kind == "forward")
    # user tensors (2) are followed by the base of the returned view
    assert forward.num_user_outputs == 2 and forward.view_bases == (2,)
    assert isinstance(forward, GraphRole)


def test_inductor_keeps_eagers_strides_for_the_bases_of_returned_views(monkeypatch):
    from torch._inductor import compile_fx

    visible = []
    real = compile_fx.compile_fx_inner

    def recording(graph_module, *args, **kwargs):
        visible.append(graph_module.graph.find_nodes(op="output")[0].meta["user_visible_output_idxs"])
        return real(graph_module, *args, **kwargs)

    monkeypatch.setattr(compile_fx, "compile_fx_inner", recording)

    def f(x):
        y = x.t() * 2
        return y.t(), y.sum()

    x = torch.randn(6, 4, requires_grad=True)
    out = aotgraph.aot_function(f, "inductor")(x)
    expected = f(x)
    torch.testing.assert_close(out[0], expected[0])
    assert out[0]._base.stride() == expected[0]._base.stride()
    assert visible[0] == [0, 1, 2]


def test_a_tensor_the_program_closes_over_is_a_constant_inductor_takes():
    """A module's plain tensor attribute (not a buffer: ``Module.to`` leaves it, as timm 1.0.29's
    ConViT keeps its table) is a ``get_attr`` constant of the graph. Inductor's fake propagation
    refused it ("Please convert all Tensors to FakeTensors first")."""
    class Table(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3)
            self.table = torch.randn(1, 4, 4, 3)

        def forward(self, x):
            return self.lin(x * self.table.expand(x.shape[0], -1, -1, -1))

    model = Table()
    x = torch.randn(2, 4, 4, 3, requires_grad=True)
    out = aotgraph.aot_module(model, "inductor")(x)
    torch.testing.assert_close(out, model(x))
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(grad, torch.autograd.grad(model(x).sum(), x)[0])


def test_a_returned_clone_written_under_no_grad_leaves_the_saved_value_alone():
    """Fuzzer seed 1170: Inductor's joint passes drop ``v.clone()`` as a no-op, so the returned
    clone became relu's output, which relu's backward saves: the caller's ``zero_`` under
    no_grad then failed the backward (``modified by an inplace operation``). The returned value
    gets a copy of its own again (switch ``forward_outputs_kept_apart``)."""
    def program(x):
        v = torch.relu(x)
        return v.clone() * 1, v.clone()

    results = []
    for fn in (program, aotgraph.aot_function(program, "inductor")):
        torch.manual_seed(0)
        x = torch.randn(6, requires_grad=True)
        scaled, copy = fn(x)
        with torch.no_grad():
            copy.zero_()
        (scaled * torch.arange(6.0)).sum().backward()
        results.append((scaled.detach(), copy, x.grad))
    torch.testing.assert_close(results[1], results[0])


def test_two_returned_detaches_of_one_view_stay_one_memory_through_inductor():
    """Fuzzer seed 2210: Inductor lays an intermediate out otherwise than eager (contiguous,
    where eager keeps the transposed input's layout), and an output viewing it follows. The
    second detach of the same view was rebuilt at eager's layout over that memory, reading other
    elements: a write into the first was not seen in the second. It is now an alias of the
    first as Inductor laid it out."""
    def program(x):
        column = (x + 3.0).unbind(1)[0]
        return column.detach(), column.detach()

    results = []
    for fn in (program, aotgraph.aot_function(program, "inductor")):
        torch.manual_seed(0)
        x = torch.randn(4, 3, dtype=torch.float64).t()
        with torch.no_grad():
            first, second = fn(x)
        first.add_(1.0)
        results.append((first, second))
    torch.testing.assert_close(results[1], results[0])


def _saved_then_written(compiled):
    """A tensor saved by an earlier product's backward, then written by `compiled`; the backward's
    error (eager's: the saved tensor was modified in place), or None where it ran."""
    w, buf, x = torch.randn(4, requires_grad=True), torch.randn(4), torch.randn(4)
    product = (w * buf).sum()
    version = buf._version
    compiled(buf, x)
    assert buf._version > version
    try:
        product.backward()
    except RuntimeError as error:
        return str(error)
    return None


def test_an_input_the_compiled_forward_writes_reads_as_modified_in_an_earlier_backward():
    """Inductor writes the input through its memory (the mutation moved into the graph); its
    version counter moves as eager's, so the earlier backward refuses the stale value as eager
    does instead of computing a gradient from the new one."""
    def program(buf, x):
        buf.add_(1)
        return x * 2

    expected = _saved_then_written(program)
    assert expected is not None and "modified by an inplace operation" in expected
    assert _saved_then_written(aotgraph.aot_function(program, "inductor")) == expected


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA"))])
def test_a_compiled_optimizer_step_bumps_the_parameters_versions(device):
    """torch.compile(optimizer.step) through the backend: every parameter and state tensor the
    step writes reads as modified afterwards (its values equal eager's step)."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 4, device=device)) for _ in range(3)]
    reference = [p.detach().clone().requires_grad_() for p in params]
    for p, r in zip(params, reference):
        p.grad = torch.randn_like(p)
        r.grad = p.grad.clone()
    opt = torch.optim.AdamW(params, lr=1e-2, foreach=True)
    ref_opt = torch.optim.AdamW(reference, lr=1e-2, foreach=True)
    step = torch.compile(opt.step, backend=aotgraph.backend(compiler="inductor"))
    def written():  # the parameters, and their optimizer state once the first step made it
        return params + [opt.state[p][name] for p in params if opt.state[p] for name in ("exp_avg", "exp_avg_sq")]

    for _ in range(2):
        before = [(t, t._version) for t in written()]
        step()
        ref_opt.step()
        assert all(t._version > version for t, version in before)
    for p, r in zip(params, reference):
        torch.testing.assert_close(p, r)


def test_a_returned_clone_of_a_stacked_value_is_memory_of_its_own():
    """``v.clone()`` returned (detached) beside ``torch.stack((v, x))``: Inductor drops the clone as
    a no-op and computes v inside the stack's buffer; the clone reaches it as our copy, so a write
    into the first output leaves the second alone, as in eager (fuzzer seed 165)."""
    def program(x):
        v = x - 1
        return v.clone().expand(3, 6).detach(), torch.stack((v, x))

    x = torch.randn(6, requires_grad=True)
    first, second = aotgraph.aot_function(program, "inductor")(x)
    expected_first, expected_second = program(x)
    torch.testing.assert_close((first, second), (expected_first, expected_second))
    assert first.untyped_storage().data_ptr() != second.untyped_storage().data_ptr()
    first[0].add_(1)
    torch.testing.assert_close(second, expected_second)


def test_a_view_through_unbind_of_a_returned_stack_stays_its_view():
    """``s = torch.stack((x, x)); return s.unbind(2)[2].t(), s``: eager's first output views the
    second; through Inductor too, so a write into one reaches the other (fuzzer seed 7525)."""
    def program(x):
        stacked = torch.stack((x, x))
        return stacked.unbind(2)[2].t(), stacked

    x = torch.randn(3, 4, requires_grad=True)
    first, second = aotgraph.aot_function(program, "inductor")(x)
    torch.testing.assert_close((first, second), program(x))
    assert first.untyped_storage().data_ptr() == second.untyped_storage().data_ptr()
    (first.sum() + second.sum()).backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 2.0) + torch.nn.functional.pad(torch.full((3, 1), 2.0), (2, 1)))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA"))])
@pytest.mark.parametrize("fill", [
    lambda x: x.fill_(0.5),
    lambda x: torch.full_like(x, -1.5),
    lambda x: torch.fill(x, 2.7),
    lambda x: x.new_full((4,), 0.5),
    lambda x: torch.full((4,), 0.5, dtype=x.dtype, device=x.device),
], ids=["fill_", "full_like", "fill", "new_full", "full"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_a_float_fill_of_integers_is_cast_as_eager_casts_it(fill, dtype, device):
    """Inductor kept a float fill value of an integer tensor in its code, and ``cumsum`` of it
    computed in float (0.5, 1.0, ... where eager gives int64 zeros; torch.compile's the same)."""
    def program(x):
        return torch.cumsum(fill(x), 0) + x

    x = torch.tensor([1, -2, 3, 4], device=device).to(dtype)
    expected = program(x.clone())
    got = aotgraph.aot_function(program, "inductor")(x.clone())
    assert got.dtype == expected.dtype
    torch.testing.assert_close(got, expected)


def test_inductor_code_that_writes_an_input_the_graph_does_not_gets_a_copy(monkeypatch):
    """Where Inductor's code writes into an input its graph does not write (CUDA, torch 2.11: a
    ``diagonal_scatter`` of a clone of a transposed input computed in the input's memory, fuzzer
    seed 9834), the compiled graph is called on a copy of that input: the user's tensor keeps its
    values. Here Inductor's code is made to write into its input, and to say so as it did there."""
    from aotgraph.compilers import torchinductor

    real = torchinductor._compile_fx_inner

    class Writes:
        mutated_input_idxs = {0}
        _boxed_call = True

        def __init__(self, compiled):
            self.compiled = compiled

        def __call__(self, args):
            args[0].add_(100.0)  # what the wrong code did to the user's tensor
            return self.compiled(args)

    def writing(graph_module, example_inputs, role, *rest):
        compiled = real(graph_module, example_inputs, role, *rest)
        return Writes(compiled) if role.kind == "forward" else compiled

    monkeypatch.setattr(torchinductor, "_compile_fx_inner", writing)

    def program(x):
        return (x.t().clone().t() * 2).sum(0)

    x = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    before = x.detach().clone()
    aotgraph.aot_function(program, "inductor")(x).sum().backward()
    torch.testing.assert_close(x.detach(), before)


def test_the_writes_a_graph_means_include_foreach_lists_and_out_arguments():
    """The inputs a graph writes itself (left alone by the copy of inputs only Inductor's code
    writes): ``copy_``'s target, a view's base, each tensor of a foreach op's list, an ``out=``."""
    from aotgraph.compilers import torchinductor

    graph = torch.fx.Graph()
    a, b, c, d, e, f = (graph.placeholder(name) for name in "abcdef")
    aten = torch.ops.aten
    graph.call_function(aten.copy_.default, (a, f))
    graph.call_function(aten.add_.Tensor, (graph.call_function(aten.t.default, (b,)), f))
    graph.call_function(aten._foreach_add_.Scalar, ([c, d], 1.0))
    graph.call_function(aten.mul.out, (f, f), {"out": e})
    graph.output(None)
    module = torch.fx.GraphModule({}, graph)
    roots = {torchinductor._written_root(node).name for node in torchinductor._written_arguments(module)}
    assert roots == {"a", "b", "c", "d", "e"}
