"""Symbolic sizes through the torch.compile backend: once Dynamo hands symbolic inputs (its
automatic dynamic shapes, ``dynamic=True``, ``mark_dynamic``), one aotgraph entry serves every
size Dynamo's guards let through; parity with eager, and no more compiles than torch.compile's
own AOT path on the same sequence of sizes; inputs faked from Dynamo's traced fakes, and the
floats Dynamo fixed read as constants."""
from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import aotgraph
from aotgraph import models
from backend_training import assert_training_parity


pytestmark = pytest.mark.usefixtures("fresh_dynamo")


def gpt_steps(sizes):
    torch.manual_seed(0)
    model, _ = models.gpt(seq=32, dim=32, heads=2, layers=1)
    return model, [(torch.randint(0, 256, (b, s)), torch.randint(0, 256, (b, s))) for b, s in sizes]


def mlp_steps(batches):
    torch.manual_seed(0)
    model, _ = models.mlp()
    return model, [(torch.randn(b, 32),) for b in batches]


def torch_compiles(model, inputs, **options) -> int:
    """Frames torch.compile(backend="aot_eager") compiles on the same sequence."""
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    assert_training_parity(model, inputs, lambda m: torch.compile(m, backend=counter, **options), lr=0.01)
    torch._dynamo.reset()
    return counter.frame_count


def symbolic_entries(backend) -> list:
    return [e for e in backend.entries if e.reason == "symbolic sizes"]


@pytest.mark.parametrize("partition", ["mincut", pytest.param("default", marks=pytest.mark.slow)])
def test_gpt_changing_sizes_compile_as_often_as_torch(partition):
    sizes = [(2, 8), (2, 12), (3, 12), (5, 31)]
    model, inputs = gpt_steps(sizes)
    backend = aotgraph.backend(compiler="eager", partition=partition)
    assert_training_parity(model, inputs, lambda m: torch.compile(m, backend=backend), lr=0.01)
    entries = backend.entries  # before torch_compiles resets Dynamo, which frees them
    assert len(symbolic_entries(backend)) >= 1
    # The backward reads sizes: saved as symbolic ints next to the tensors, counted in the plan.
    entry = symbolic_entries(backend)[-1]
    saved_sizes = [s for s in entry.partition.saved if s.meta is None]
    assert saved_sizes and all(s.nbytes == 0 for s in saved_sizes)
    assert entry.partition.num_saved_tensors == len(entry.partition.saved) - len(saved_sizes)
    assert len(entries) <= torch_compiles(model, inputs)


def test_mlp_automatic_dynamic_compiles_twice():
    model, inputs = mlp_steps([8, 5, 6, 5, 9, 1, 3])
    backend = aotgraph.backend(compiler="eager")
    assert_training_parity(model, inputs, lambda m: torch.compile(m, backend=backend), lr=0.01)
    reasons = [e.reason for e in backend.entries]
    # 8: static; 5: symbolic from then on; 1: Dynamo specializes size 1 (its own guard)
    assert reasons == ["first call", "symbolic sizes", "first call"]
    assert len(reasons) <= torch_compiles(model, inputs)


def test_dynamic_true_compiles_once():
    model, inputs = mlp_steps([4, 7, 9, 12])
    backend = aotgraph.backend(compiler="eager")
    assert_training_parity(model, inputs, lambda m: torch.compile(m, backend=backend, dynamic=True), lr=0.01)
    assert [e.reason for e in backend.entries] == ["symbolic sizes"]


def test_convnet_with_buffers_compiles_as_often_as_torch():
    """Batch norm's running statistics (buffers Dynamo traced with static sizes, faked directly)
    and its momentum and eps (floats Dynamo wraps as tensors): eager's losses, gradients and
    running statistics at every batch and image size, one entry."""
    torch.manual_seed(0)
    model, _ = models.resnet(blocks=2, width=8)
    inputs = [(torch.randn(b, 3, s, s),) for b, s in ((4, 16), (6, 12), (3, 20), (17, 8))]
    backend = aotgraph.backend(compiler="eager")
    assert_training_parity(model, inputs, lambda m: torch.compile(m, backend=backend, dynamic=True), lr=0.01)
    reasons = [e.reason for e in backend.entries]
    # (Dynamo's own trace of the convolution guards on a batch under 16: 17 compiles again)
    assert set(reasons) == {"symbolic sizes"} and len(reasons) <= torch_compiles(model, inputs, dynamic=True)


def test_mark_dynamic_compiles_once():
    model, inputs = mlp_steps([4, 7, 9])
    for (x,) in inputs:
        torch._dynamo.mark_dynamic(x, 0)
    backend = aotgraph.backend(compiler="eager")
    assert_training_parity(model, inputs, lambda m: torch.compile(m, backend=backend), lr=0.01)
    assert [e.reason for e in backend.entries] == ["symbolic sizes"]


def test_a_view_input_with_history_compiles_as_often_as_torch():
    """Mixtral's router and experts get ``hidden_states.view(-1, hidden)``: a graph input that
    requires grad, is not a leaf and views a larger base. Capture's storage checks on it (its
    grad-tracking copy's ``set_``, the freed-storage test) once recorded guards tying its sizes
    to its base's with the first batch baked in, so a new batch compiled the frame again."""
    def f(x):
        return (x * 2).sin()

    def run(backend) -> int:
        torch._dynamo.reset()
        counter = CompileCounterWithBackend(backend)
        compiled = torch.compile(f, backend=counter)
        w = torch.randn(16, requires_grad=True)
        for batch, seq in [(2, 8), (2, 12), (2, 16), (3, 16)]:
            data = torch.randn(batch, seq, 16)
            (grad,) = torch.autograd.grad(compiled((data * w).view(-1, 16)).sum(), w)
            (expected,) = torch.autograd.grad(f((data * w).view(-1, 16)).sum(), w)
            torch.testing.assert_close(grad, expected)
        torch._dynamo.reset()
        return counter.frame_count

    assert run(aotgraph.backend(compiler="eager")) <= run("aot_eager")


@pytest.mark.parametrize("compiler", ["eager", "inductor"])
def test_a_view_of_an_input_with_symbolic_sizes_compiles_once(compiler):
    """An output that is a view of an input with symbolic sizes (``x.view(2 * batch, -1)``, a
    graph ending in ``hidden.reshape(batch, seq, dim)``): the runtime rebuilds it at the layout
    of the graph's own output, one entry for every size (it compiled per size before). It is a
    real view of the input (a write through it reaches the input, as in eager), and gradients
    flow through it."""
    def f(x, w):
        return (x @ w).relu(), x.view(x.shape[0] * 2, -1)

    backend = aotgraph.backend(compiler=compiler)
    compiled = torch.compile(f, backend=backend, dynamic=True)
    w = torch.randn(4, 3, requires_grad=True)
    for batch in (5, 6, 7):  # (not 3 or 4: Dynamo's duck sizing would tie the batch to w's sizes)
        x = torch.randn(batch, 4, requires_grad=True)
        out, view = compiled(x, w)
        expected, expected_view = f(x, w)
        torch.testing.assert_close(out, expected)
        assert view._base is x and torch.equal(view, expected_view)
        grads = torch.autograd.grad((out.sum() + (view * view).sum()), [x, w])
        torch.testing.assert_close(grads, torch.autograd.grad(expected.sum() + (expected_view ** 2).sum(), [x, w]))
        plain = torch.randn(batch, 4)
        _, plain_view = compiled(plain, w)
        plain_view.mul_(0)
        assert plain_view._base is plain and not plain.any()
    # one entry for an input requiring grad, one for a plain one, whatever the batch
    assert [e.reason for e in backend.entries] == ["symbolic sizes"] * 2


@pytest.mark.slow
def test_inductor_compiles_symbolic_graphs():
    sizes = [(2, 8), (2, 12), (3, 12), (3, 16), (4, 20)]
    model, inputs = gpt_steps(sizes)
    backend = aotgraph.backend(compiler="inductor")
    assert_training_parity(model, inputs, lambda m: torch.compile(m, backend=backend), lr=0.01)
    assert len(symbolic_entries(backend)) >= 1
    assert len(backend.entries) <= torch_compiles(model, inputs)


class IntAfterBreak(torch.nn.Module):
    """A graph break hands the next graph a plain int (a length), as OPT's or BART's attention
    masks do: Dynamo makes it a SymInt input, the size of no tensor."""

    def __init__(self):
        super().__init__()
        self.first, self.second = torch.nn.Linear(8, 16), torch.nn.Linear(16, 16)

    def forward(self, x, keep):
        h = self.first(x).relu()
        torch._dynamo.graph_break()
        return (self.second(h)[:, :keep] * keep).sum() + keep


@pytest.mark.parametrize("compiler", ["eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_an_int_input_stays_symbolic_and_compiles_as_often_as_torch(compiler):
    torch.manual_seed(0)
    model = IntAfterBreak()
    inputs = [(torch.randn(4, 8), keep) for keep in (3, 5, 6, 9, 12, 16)]
    backend = aotgraph.backend(compiler=compiler)
    assert_training_parity(model, inputs, lambda m: torch.compile(m, backend=backend), lr=0.01)
    entries = backend.entries
    assert len(symbolic_entries(backend)) >= 1
    assert len(entries) <= torch_compiles(model, inputs)


def test_an_int_input_that_turns_negative_compiles_again_and_stays_right():
    """The size carrying a dynamic int guards it non-negative: a negative value recompiles
    (per value, as ints did before), never a failed call or a wrong one."""
    def program(x, n):
        y = x.sin()
        torch._dynamo.graph_break()
        return (y * n).sum() + n

    compiled = torch.compile(program, backend=aotgraph.backend("eager"))
    x = torch.randn(8, requires_grad=True)
    for n in (3, 4, 5, -2, -7, 0, 6):
        got, expected = compiled(x, n), program(x, n)
        torch.testing.assert_close(got, expected)
        torch.testing.assert_close(torch.autograd.grad(got, x)[0], torch.autograd.grad(expected, x)[0])


def test_slice_written_when_dynamo_specializes_every_size():
    """Dynamo with dynamic shapes hands fakes whose sizes are all constants after specialization
    (the view below fixes them) but still flagged symbolic; a C++ meta kernel reading them as plain
    ints (slice's storage offset) raised at capture."""
    import aotgraph

    def fn(s, d):
        s[:, :-1, :, 6:] = d[:, :, :4, :7]
        return s.view(1, 6, 16, 13)

    torch._dynamo.reset()
    compiled = torch.compile(fn, backend=aotgraph.backend("eager"), dynamic=True)
    x, y = torch.randn(6, 4, 4, 13), torch.randn(6, 3, 8, 13)
    x_eager = x.clone()
    expected = fn(x_eager, y)
    torch.testing.assert_close(compiled(x, y), expected, rtol=0, atol=0)
    torch.testing.assert_close(x, x_eager, rtol=0, atol=0)


class _CountedFromTensor:
    """The real tensors ``FakeTensorMode.from_tensor`` fakes while the backend compiles
    symbolically (`AotFunction.compile_symbolic`), not while Dynamo traces."""

    def __init__(self, monkeypatch):
        from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
        from aotgraph.api import AotFunction
        self.reals, self.compiling = [], False
        original, compile_symbolic = FakeTensorMode.from_tensor, AotFunction.compile_symbolic

        def from_tensor(mode, tensor, *args, **kwargs):
            if self.compiling and not isinstance(tensor, FakeTensor):
                self.reals.append(tensor)
            return original(mode, tensor, *args, **kwargs)

        def counted_compile(*args, **kwargs):
            self.compiling = True
            try:
                return compile_symbolic(*args, **kwargs)
            finally:
                self.compiling = False

        monkeypatch.setattr(FakeTensorMode, "from_tensor", from_tensor)
        monkeypatch.setattr(AotFunction, "compile_symbolic", counted_compile)


class Normed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin, self.bn = torch.nn.Linear(8, 8), torch.nn.BatchNorm1d(8)

    def forward(self, x):
        return self.bn(self.lin(x)).relu().sum()


def test_inputs_take_their_fakes_from_dynamos_traced_ones(monkeypatch):
    """Under ``dynamic=True`` the batch input and BatchNorm's eps and momentum (0-d tensors)
    get their fakes from the ones Dynamo traced, not from ``from_tensor``; the batch counter
    that Dynamo's tracing wrote in place does go through it. Eager's values and gradients, and
    its running statistics, for three batch sizes."""
    torch.manual_seed(0)
    model = Normed()
    backend = aotgraph.backend(compiler="eager")
    counted = _CountedFromTensor(monkeypatch)
    assert_training_parity(model, [(torch.randn(b, 8),) for b in (4, 6, 5)],
                           lambda m: torch.compile(m, backend=backend, dynamic=True))
    assert len(symbolic_entries(backend)) == 1
    assert [tuple(t.shape) for t in counted.reals] == [()]  # num_batches_tracked alone


class MutatesMetadata(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(6, 6)

    def forward(self, x, y):
        x.t_()
        return (self.lin(x) * y.sum()).sum()


@pytest.mark.parametrize("aliased", [False, True])
def test_inputs_transposed_in_place_or_sharing_a_storage(aliased, monkeypatch):
    """Dynamo applies an input's in-place transpose before its graph, whose traced fake is the
    transposed input: taken as it is. Inputs sharing a storage (views of one base) are faked by
    ``from_tensor``, which keeps their aliasing. Eager's values and gradients for two batch
    sizes, and the input left transposed as eager leaves it."""
    torch.manual_seed(0)
    model = MutatesMetadata()
    compiled = torch.compile(model, backend=aotgraph.backend(compiler="eager"), dynamic=True)
    counted = _CountedFromTensor(monkeypatch)
    for batch in (4, 5):
        base = torch.randn(6, batch + 6)
        x, y = (base[:, :batch], base[:, batch, None].expand(6, batch)[0]) if aliased else \
            (torch.randn(6, batch), torch.randn(batch))
        x_eager, y_eager = x.clone(), y.clone()
        expected = model(x_eager, y_eager)
        expected.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        actual = compiled(x, y)
        actual.backward()
        torch.testing.assert_close(actual, expected)
        torch.testing.assert_close(x, x_eager)
        for p, grad in zip(model.parameters(), grads):
            torch.testing.assert_close(p.grad, grad)
        model.zero_grad()
    assert len([t for t in counted.reals if t.dim() > 0]) == (2 if aliased else 0)


def test_float_attributes_dynamo_fixed_are_read_as_constants(monkeypatch):
    """Under ``dynamic=True`` Dynamo hands BatchNorm's eps and momentum as 0-d tensors read with
    ``.item()``, values it has fixed (and guards): capture reads them as the numbers they are,
    without a dispatch to the fake mode (nor a node), with eager's values and gradients for two
    batch sizes."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    counted_compiles = _CountedFromTensor(monkeypatch)  # (says when the backend compiles)
    reads = []
    dispatch = FakeTensorMode.dispatch

    def counted(mode, func, *args, **kwargs):
        if func is torch.ops.aten._local_scalar_dense.default and counted_compiles.compiling:
            reads.append(func)
        return dispatch(mode, func, *args, **kwargs)

    monkeypatch.setattr(FakeTensorMode, "dispatch", counted)
    torch.manual_seed(0)
    backend = aotgraph.backend(compiler="eager")
    assert_training_parity(Normed(), [(torch.randn(b, 8),) for b in (4, 6)],
                           lambda m: torch.compile(m, backend=backend, dynamic=True))
    (entry,) = symbolic_entries(backend)
    targets = {node.target for node in entry.partition.joint.graph_module.graph.nodes}
    assert torch.ops.aten._local_scalar_dense.default not in targets and reads == []


def test_a_float_dynamo_no_longer_specializes_through_inductor():
    """A float argument that changes between calls, with sizes that change too: Dynamo recompiles
    with the float as a 0-d tensor whose ``.item()`` the graph reads, which Inductor lowers only for
    symbols made by it (``KeyError: 'unbacked_bindings'``, fuzzer seeds 1760, 2651, 4279). The
    joint passes compute with the 0-d tensor instead, as torch.compile's do."""
    def program(x, scale):
        return (x.mul_(scale) + 1.0).sin()

    torch._dynamo.reset()
    compiled = torch.compile(program, backend=aotgraph.backend(compiler="inductor"))
    for shape, scale in [((3,), 3.0), ((4, 1, 3), 2.0), ((2, 1, 5), 5.0), ((6, 1, 2), 0.5)]:
        x = torch.randn(*shape, dtype=torch.float64)
        ours_x, eager_x = x.clone(), x.clone()
        torch.testing.assert_close(compiled(ours_x, scale), program(eager_x, scale))
        torch.testing.assert_close(ours_x, eager_x)


@pytest.mark.parametrize("compiler", ["eager", "inductor"])
def test_a_symbolic_graph_that_writes_an_input_checks_it_shares_no_memory(compiler):
    """Compiled with symbolic sizes for inputs apart, then called with the written input and the
    one read as views of one memory (Dynamo's guards pass: sizes fit): eager's read sees the
    write. (torch.compile's aot_eager reads the old value here.)"""
    def program(a, b):
        a.add_(1)
        return b * 2

    compiled = torch.compile(program, backend=aotgraph.backend(compiler=compiler), dynamic=True)
    compiled(torch.zeros(4), torch.zeros(4))
    compiled(torch.zeros(5), torch.zeros(5))
    memory, expected_memory = torch.zeros(6), torch.zeros(6)
    out = compiled(memory, memory.view(6))
    expected = program(expected_memory, expected_memory.view(6))
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(memory, expected_memory)


@pytest.mark.parametrize("compiler", ["eager", "inductor"])
def test_a_wrapped_float_in_a_graph_of_static_sizes_compiles(compiler):
    """Under ``dynamic=True`` with every size specialized (all ones, or the size of a weight),
    Dynamo still hands a float as a 0-d tensor read with ``.item()``: LayerNorm's eps (a value its
    guards fixed), and a float argument that changes between calls (a symbol). Only Dynamo's fake
    knows that number: the graph is captured on it (a fresh fake made the read data-dependent,
    and Dynamo ran the frame eagerly). Eager's values and gradients, no more compiles than
    torch.compile's ``aot_eager`` (2: Inductor's pass that computes with the 0-d tensor asks
    Dynamo once to trace again, as torch's does)."""
    def program(x, norm, scale):
        return (norm(x) * scale).sin()

    torch.manual_seed(0)
    norm = torch.nn.LayerNorm(4)
    ours, compiled_graphs = aotgraph.backend(compiler=compiler), []

    def backend(graph_module, example_inputs):
        compiled_graphs.append(ours(graph_module, example_inputs))  # (a backend that raises runs the frame eagerly)
        return compiled_graphs[-1]

    compiled = torch.compile(program, backend=backend, dynamic=True)
    for scale in (0.5, 2.0, 3.0):
        x = torch.randn(1, 1, 4, requires_grad=True)
        x_eager = x.detach().clone().requires_grad_()
        got, expected = compiled(x, norm, scale), program(x_eager, norm, scale)
        torch.testing.assert_close(got, expected)
        got.sum().backward()
        weight_grad = norm.weight.grad.clone()
        norm.weight.grad = None
        expected.sum().backward()
        torch.testing.assert_close(x.grad, x_eager.grad)
        torch.testing.assert_close(weight_grad, norm.weight.grad)
        norm.zero_grad()
    torch._dynamo.reset()
    theirs = CompileCounterWithBackend("aot_eager")
    for scale in (0.5, 2.0, 3.0):
        torch.compile(program, backend=theirs, dynamic=True)(torch.randn(1, 1, 4), norm, scale)
    assert 1 <= len(compiled_graphs) <= theirs.frame_count


def test_sizes_stay_dynamic_across_a_graph_break():
    """``mark_dynamic`` and a graph break: the first graph's outputs tell Dynamo which of their
    sizes were symbolic (marked as torch's own AOT runtime marks them, on torch 2.11 and 2.13+),
    so the frame after the break is traced dynamic at once, not compiled for the first size and
    again for the next: no more compiles than torch.compile's ``aot_eager``, and eager's values."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 4)

    def program(x):
        h = lin(x)
        torch._dynamo.graph_break()
        return lin(h.relu()).sum(0)

    counts = []
    for backend in (aotgraph.backend(compiler="eager"), "aot_eager"):
        torch._dynamo.reset()
        counter = CompileCounterWithBackend(backend)
        compiled = torch.compile(program, backend=counter)
        for batch in (2, 3, 9):
            x = torch.randn(batch, 4)
            torch._dynamo.mark_dynamic(x, 0)
            torch.testing.assert_close(compiled(x), program(x))
        counts.append(counter.frame_count)
    assert counts[0] <= counts[1]
