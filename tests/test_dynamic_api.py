"""``aot_function`` / ``aot_module(..., dynamic=True)``: one compile with symbolic sizes serves
every size the shape environment's guards admit; a call outside them (a size 0 or 1 the
compile assumed was not, another branch on sizes) compiles a new entry. Differential against
eager: loss, gradients, parameters and buffers over optimizer steps."""
from __future__ import annotations

import functools

import pytest
import torch

import aotgraph
from aotgraph import models
from aotgraph.compilers import eager
from backend_training import assert_training_parity, counting


def train_dynamic(model, inputs, compiler):
    compiled = {}

    def compile_model(module):
        compiled["module"] = aotgraph.aot_module(module, fw_compiler=compiler, dynamic=True)
        return compiled["module"]

    assert_training_parity(model, inputs, compile_model, lr=0.01)
    return compiled["module"]


def gpt_inputs(batches, lengths):
    torch.manual_seed(0)
    model, _ = models.gpt(seq=32, dim=32, heads=2, layers=1)
    inputs = [(torch.randint(0, 256, (b, s)), torch.randint(0, 256, (b, s))) for b in batches for s in lengths]
    return model, inputs


def test_gpt_five_batches_by_five_lengths_compile_once():
    model, inputs = gpt_inputs((2, 3, 4, 5, 6), (5, 8, 11, 16, 23))
    compiler = counting(eager)
    compiled = train_dynamic(model, inputs, compiler)
    assert len(compiled.aotgraph_entries) == 1 and compiler.calls == 2
    entry = next(iter(compiled.aotgraph_entries.values()))
    assert any(saved.meta is None for saved in entry.partition.saved)  # sizes saved for the backward


def test_mlp_five_batches_compile_once():
    torch.manual_seed(0)
    model, _ = models.mlp()
    inputs = [(torch.randn(b, 32),) for b in (3, 8, 5, 17, 2, 64)]
    compiler = counting(eager)
    compiled = train_dynamic(model, inputs, compiler)
    assert len(compiled.aotgraph_entries) == 1 and compiler.calls == 2


def test_sizes_zero_and_one_recompile():
    """The first compile assumed a batch of at least 2 (the shape environment specializes 0
    and 1): a batch of 1 or 0 compiles its own entry, and each comes back to its entry."""
    torch.manual_seed(0)
    model, _ = models.mlp()
    inputs = [(torch.randn(b, 32),) for b in (4, 1, 6, 0, 1, 5, 0)]
    compiled = train_dynamic(model, inputs, "eager")
    reasons = [e.reason for e in compiled.aotgraph_entries.values()]
    assert len(reasons) == 3 and all(r.startswith("sizes outside") for r in reasons[1:]), reasons


def test_relation_between_sizes_is_guarded():
    """A branch on sizes: the compile assumes x is longer than y; a call where it is not
    compiles again and takes the other branch, as eager does."""
    def f(x, y):
        if x.shape[0] > y.shape[0]:
            return (x[: y.shape[0]] * y).sum(0)
        return (x * y[: x.shape[0]]).sum(0)

    compiled = aotgraph.aot_function(f, dynamic=True)
    for nx, ny in ((5, 3), (6, 4), (3, 5), (9, 2), (2, 7)):
        x, y = torch.randn(nx, 4, requires_grad=True), torch.randn(ny, 4)
        out = compiled(x, y)
        torch.testing.assert_close(out, f(x, y))
        grad, = torch.autograd.grad(out.sum(), x)
        torch.testing.assert_close(grad, torch.autograd.grad(f(x, y).sum(), x)[0])
    assert len(compiled.aotgraph_entries) == 2


def test_output_view_of_input_compiles_once():
    """A view of an input with symbolic sizes is rebuilt at the layout of the graph's output
    (one entry for every size; per size with the switch ``symbolic_input_views`` off)."""
    def f(x, w):
        return x @ w, x.view(x.shape[0] * 2, -1)

    compiled = aotgraph.aot_function(f, dynamic=True)
    w = torch.randn(4, 3, requires_grad=True)
    for batch in (3, 5):
        x = torch.randn(batch, 4)
        out, view = compiled(x, w)
        torch.testing.assert_close(out, x @ w)
        assert view._base is x and view.shape == (batch * 2, 2) and torch.equal(view, x.view(batch * 2, 2))
    assert len(compiled.aotgraph_entries) == 1


@pytest.mark.parametrize("requires_grad", [False, True])
def test_output_view_of_a_written_input_with_symbolic_sizes(requires_grad):
    """A view of an input the program wrote, with symbolic view sizes: the graph's output views
    the written value (a tensor of the graph's own), laid out as the input, so the runtime takes
    the view's place in the input's memory from it (`runtime._on_written_input`)."""
    def f(x):
        x.mul_(2)
        return (x.view(x.shape[0] // 2, 2, 4).transpose(0, 1),)

    compiled = aotgraph.aot_function(f, "eager", dynamic=True)
    for batch in (6, 8):
        leaf = torch.randn(batch, 4, requires_grad=requires_grad)
        expected_in, actual_in = leaf * 1, leaf * 1
        expected, actual = f(expected_in)[0], compiled(actual_in)[0]
        assert actual._base is not None and actual.stride() == expected.stride()
        torch.testing.assert_close(actual, expected)
        torch.testing.assert_close(actual_in, expected_in)
    assert len(compiled.aotgraph_entries) == 1


def test_output_view_of_an_input_with_history_and_symbolic_sizes():
    """An input that requires grad and has history is seen by the program as a copy of its own;
    a view of it returned, of symbolic layout, is still the graph's view of the input (not a copy
    the runtime cannot place: Longformer's ``as_strided`` chunks under changing sizes)."""
    def f(x):
        return x.as_strided((x.shape[0] - 1, 2, 4), (4, 4, 1)), x.t()

    compiled = aotgraph.aot_function(f, "eager", dynamic=True)
    for batch in (5, 7):
        leaf = torch.randn(batch, 4, requires_grad=True)
        x = leaf * 1
        for expected, actual in zip(f(x), compiled(x)):
            assert actual._base is x and actual.stride() == expected.stride()
            torch.testing.assert_close(actual, expected)
        grads = [torch.autograd.grad(sum(o.sum() for o in fn(leaf * 1)), leaf)[0] for fn in (f, compiled)]
        torch.testing.assert_close(grads[1], grads[0])


def test_output_view_of_input_compiles_per_size_for_a_compiler_that_copies_inputs():
    """A compiler that runs on copies of its inputs (Inductor's CUDA graphs) would hand back a
    view of the copy: such an entry is compiled per size, its views replayed on the caller's tensor."""
    from aotgraph.compilers import CompilerTraits

    class Copying:
        aotgraph_traits = CompilerTraits(copies_inputs=lambda: True)

        def __call__(self, graph_module, example_inputs):
            return graph_module

    def f(x, w):
        return x @ w, x.view(x.shape[0] * 2, -1)

    compiled = aotgraph.aot_function(f, Copying(), dynamic=True)
    w = torch.randn(4, 3, requires_grad=True)
    for batch in (3, 5):
        x = torch.randn(batch, 4)
        out, view = compiled(x, w)
        torch.testing.assert_close(out, x @ w)
        assert view._base is x and torch.equal(view, x.view(batch * 2, 2))
    assert len(compiled.aotgraph_entries) == 2


@pytest.mark.slow
@pytest.mark.parametrize("model_name", ["gpt", "mlp"])
def test_inductor_compiles_once(model_name):
    if model_name == "gpt":
        model, inputs = gpt_inputs((2, 3, 4, 5, 6), (5, 8, 11, 16, 23))
    else:
        torch.manual_seed(0)
        model, _ = models.mlp()
        inputs = [(torch.randn(b, 32),) for b in (3, 8, 5, 17, 2, 64)]
    compiled = train_dynamic(model, inputs, "inductor")
    assert len(compiled.aotgraph_entries) == 1


def _unbound_backward_symbols(entry) -> set:
    """Symbols the backward's values use that none of its inputs carries alone."""
    graph = entry.partition.backward.graph
    bound, used = set(), set()
    for node in graph.nodes:
        value = node.meta.get("val")
        sizes = [*value.shape, *value.stride(), value.storage_offset()] if isinstance(value, torch.Tensor) \
            else [value] if isinstance(value, torch.SymInt) else []
        for size in (s for s in sizes if isinstance(s, torch.SymInt)):
            used |= size.node.expr.free_symbols
            if node.op == "placeholder" and size.node.expr.is_Symbol:
                bound.add(size.node.expr)
    return used - bound


def test_backward_gets_the_symbols_of_what_it_reads():
    """The backward reads a flattened view of an input it does not take (the targets of a
    cross entropy, size s0*s1): the forward saves s0 and s1 for it, so a compiler can bind
    every symbol (Inductor asserts it; GPT under Inductor failed so)."""
    def f(logits, targets):
        return torch.nn.functional.cross_entropy(logits, targets.reshape(-1))

    compiler = counting(eager)
    compiled = aotgraph.aot_function(f, compiler, dynamic=True)
    for rows, cols in ((3, 4), (5, 2), (4, 7)):
        logits, targets = torch.randn(rows * cols, 6, requires_grad=True), torch.randint(0, 6, (rows, cols))
        out = compiled(logits, targets)
        torch.testing.assert_close(out, f(logits, targets))
        torch.testing.assert_close(torch.autograd.grad(out, logits)[0],
                                   torch.autograd.grad(f(logits, targets), logits)[0])
    (entry,) = compiled.aotgraph_entries.values()
    assert compiler.calls == 2 and not _unbound_backward_symbols(entry)


def test_masked_select_with_a_scalar_tensor_input():
    """Boolean-mask selection (its backward asks ``aten.size``, and its C++ formula pins the
    sizes, as under torch's AOTAutograd) and a 0-dim integer tensor input (its value is not
    made a size): eager's values and gradients at every size."""
    def f(x, mask, scale):
        return torch.masked_select(x, mask) * scale

    compiled = aotgraph.aot_function(f, dynamic=True)
    for rows in (3, 5, 8):
        x, mask = torch.randn(rows, 4, requires_grad=True), torch.randn(rows, 4) > 0
        scale = torch.tensor(rows)
        out = compiled(x, mask, scale)
        torch.testing.assert_close(out, f(x, mask, scale))
        torch.testing.assert_close(torch.autograd.grad(out.sum(), x)[0], torch.autograd.grad(f(x, mask, scale).sum(), x)[0])


def test_view_inputs_keep_their_layout():
    """A strided view passed in (its base's sizes would be symbols with no source to guard)
    compiles for its concrete layout; eager's values and gradients."""
    def f(x):
        return x.ravel() * 2

    compiled = aotgraph.aot_function(f, dynamic=True)
    for size in (5, 6):
        base = torch.randn(size, size, 2 * size, requires_grad=True)
        x = base[:, :, ::2]
        out = compiled(x)
        torch.testing.assert_close(out, f(x))
        torch.testing.assert_close(torch.autograd.grad(out.sum(), base)[0], torch.autograd.grad(f(x).sum(), base)[0])


def test_inductor_convnet_trains_with_symbolic_batch_sizes():
    """Inductor lays a CPU convolution's activations out channels-last in the forward with
    symbolic sizes too: the backward is compiled for the strides they really have (expressions of
    the symbols), and one compile serves every batch size (Inductor's own convolution backward
    specializes the image size)."""
    torch.manual_seed(0)
    model, _ = models.resnet(blocks=1, width=4)
    inputs = [(torch.randn(b, 3, 8, 8),) for b in (4, 6, 3)]
    compiled = train_dynamic(model, inputs, "inductor")
    assert len(compiled.aotgraph_entries) == 1


@functools.lru_cache(maxsize=None)
def _positions(length):
    return torch.arange(length, dtype=torch.float32)


def _checks_when_eager(x):
    """A program of the kind transformers writes: a check of tensor data and a cache keyed by a
    size, both skipped where ``torch.compiler.is_compiling()`` (a symbolic size cannot key a
    cache, and a data-dependent branch cannot be captured)."""
    if not torch.compiler.is_compiling():
        if (x.abs() > 1e6).any():
            raise ValueError("too large")
        positions = _positions(x.shape[0])
    else:
        positions = torch.arange(x.shape[0], dtype=torch.float32)
    return (x * positions[:, None]).tanh().sum()


@pytest.mark.parametrize("dynamic", [False, True])
def test_capture_runs_the_program_as_compiling(dynamic):
    compiled = aotgraph.aot_function(_checks_when_eager, dynamic=dynamic)
    for rows in (3, 5, 7):
        x = torch.randn(rows, 4, requires_grad=True)
        out = compiled(x)
        grad, = torch.autograd.grad(out, x)
        expected = _checks_when_eager(x)
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(grad, torch.autograd.grad(expected, x)[0])
    assert len(compiled.aotgraph_entries) == (1 if dynamic else 3)
    assert not torch.compiler.is_compiling()  # (the flag is back once the capture ends)


def _shifted_neighbours(x):
    """MobileBERT's embedding: each position beside its neighbours, padded slices of x."""
    after = torch.nn.functional.pad(x[:, 1:], [0, 0, 0, 1])
    before = torch.nn.functional.pad(x[:, :-1], [0, 0, 1, 0])
    return torch.cat([after, x, before], dim=2).tanh().sum()


def _unfolded(x):
    """ConvBERT's span convolution: unfold with a padded kernel along the sequence."""
    return torch.nn.functional.unfold(x, kernel_size=(3, 1), padding=(1, 0)).tanh().sum()


@pytest.mark.parametrize("program, shape", [(_shifted_neighbours, (2, 0, 4)), (_unfolded, (2, 3, 0, 1))],
                         ids=["padded-slices", "unfold"])
def test_padded_slices_compile_once(program, shape):
    """Sizes one apart in their backward (a slice padded back to its length): one symbolic
    compile for every length, equal to eager (they were refused and compiled per size)."""
    compiled = aotgraph.aot_function(program, dynamic=True)
    axis = shape.index(0)
    for length in (7, 9, 12):
        x = torch.randn(*(length if k == axis else n for k, n in enumerate(shape)), requires_grad=True)
        out = compiled(x)
        expected = program(x)
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(torch.autograd.grad(out, x)[0], torch.autograd.grad(expected, x)[0])
    assert len(compiled.aotgraph_entries) == 1


def _windows_padded(x):
    """Swin's window partition: the length padded to a whole number of windows, then split."""
    window = 4
    pad = (window - x.shape[1] % window) % window
    x = torch.nn.functional.pad(x, (0, 0, 0, pad))
    return x.reshape(x.shape[0], -1, window, x.shape[2]).tanh().sum()


def test_size_arithmetic_too_large_for_symbolic_sizes_compiles_per_size(monkeypatch, caplog):
    """A program whose size conditions outgrow `LARGEST_SIZE_CONDITION` terms is compiled for
    concrete sizes instead (torch's evaluation of such conditions took Swin 30-50 s a capture),
    with the reason logged; results stay eager's."""
    from aotgraph.torch_private import symbolic

    monkeypatch.setattr(symbolic, "LARGEST_SIZE_CONDITION", 4)  # (Swin's reach 1300 terms; this one's 5-20)
    compiled = aotgraph.aot_function(_windows_padded, dynamic=True)
    with caplog.at_level("INFO", logger="aotgraph"):
        for length in (5, 9, 14):
            x = torch.randn(2, length, 3, requires_grad=True)
            out, expected = compiled(x), _windows_padded(x)
            torch.testing.assert_close(out, expected)
            torch.testing.assert_close(torch.autograd.grad(out, x)[0], torch.autograd.grad(expected, x)[0])
    assert len(compiled.aotgraph_entries) == 3
    assert "size arithmetic grew too large for symbolic sizes" in caplog.text
    monkeypatch.setattr(symbolic, "LARGEST_SIZE_CONDITION", 200)
    compiled = aotgraph.aot_function(_windows_padded, dynamic=True)
    for length in (5, 9, 14):
        compiled(torch.randn(2, length, 3, requires_grad=True))
    assert len(compiled.aotgraph_entries) < 3  # (symbolic: the pad's remainder guards some lengths apart)


def _transposed(t):
    return torch.randn(2, 6, t).transpose(1, 2)


def _sliced(t):
    return torch.randn(2, t + 1, 6)[:, 1:]


@pytest.mark.parametrize("make", [_transposed, _sliced], ids=["transposed", "sliced"])
def test_view_inputs_compile_once(make):
    """A view passed in (no gradient, its memory its own) gets symbolic sizes and strides of its
    own: one compile for every length, as torch.compile's, not one per length."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(6, 4)
    compiled = aotgraph.aot_module(linear, dynamic=True)
    for t in (3, 4, 5, 7, 9):
        x = make(t)
        out = compiled(x)
        out.sum().backward()
        expected_grad, linear.weight.grad = linear.weight.grad.clone(), None
        torch.testing.assert_close(out, linear(x))
        linear(x).sum().backward()
        torch.testing.assert_close(expected_grad, linear.weight.grad)
        linear.weight.grad = None
    assert len(compiled.aotgraph_entries) == 1


def test_a_view_input_written_in_place_compiles_once():
    def scale_into(x, w):
        x.mul_(2)
        return (x @ w).sum()

    compiled = aotgraph.aot_function(scale_into, dynamic=True)
    for t in (3, 4, 6):
        base, expected_base = torch.randn(2, 6, t), None
        expected_base = base.clone()
        w = torch.randn(6, 2, requires_grad=True)
        out = compiled(base.transpose(1, 2), w)
        torch.testing.assert_close(out, scale_into(expected_base.transpose(1, 2), w))
        torch.testing.assert_close(base, expected_base)
    assert len(compiled.aotgraph_entries) == 1
