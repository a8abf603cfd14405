"""Programs aotgraph cannot compile fail with an error naming the stage, the cause (op or
argument) and the fix; never a wrong answer, and nothing is left half-compiled."""
import dataclasses

import re

import pytest
import torch

import aotgraph
from aotgraph import aot_function, aot_module, aot_module_simplified, nop
from aotgraph.errors import AotGraphError, BadArgument, CompilerError, DataDependentControlFlow, OpRefused, UnsupportedOp


@torch.library.custom_op("aotgraph_tests::double_without_fake", mutates_args=())
def double_without_fake(x: torch.Tensor) -> torch.Tensor:
    return x * 2


_cpu_only = torch.library.Library("aotgraph_tests_cpu", "DEF")
_cpu_only.define("triple(Tensor x) -> Tensor")
_cpu_only.impl("triple", lambda x: x * 3, "CPU")


def leaf(*shape):
    return torch.randn(*shape, requires_grad=True)


def branch_on_value(x):
    if x.sum() > 0:
        return x * 2
    return x * 3


def scale_by_item(x):
    return x * x.sum().item()


def select_nonzero(x):
    return x[x.nonzero()[:, 0]]


def call_custom_op(x):
    return double_without_fake(x.sin())


def call_cpu_only_op(x):
    return torch.ops.aotgraph_tests_cpu.triple(x.sin())


def _raises(error_class, fn, *args, **kwargs) -> AotGraphError:
    with pytest.raises(error_class) as info:
        fn(*args, **kwargs)
    return info.value


def _assert_names(error: AotGraphError, stage: str, *words: str) -> None:
    message = str(error)
    assert error.stage == stage and f"({stage} stage)" in message, message
    assert error.fix, f"no fix suggested: {message}"
    for word in words:
        assert word in message, f"{word!r} not in: {message}"


@pytest.mark.parametrize("grad", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("program, line", [(branch_on_value, "if x.sum() > 0:"),
                                           (scale_by_item, "x.sum().item()")], ids=["if", "item"])
def test_data_dependent_python_control_flow(program, line, grad):
    compiled = aot_function(program)
    with torch.set_grad_enabled(grad):
        error = _raises(DataDependentControlFlow, compiled, leaf(4))
    _assert_names(error, "capture", "_local_scalar_dense", "test_errors.py", line)
    assert compiled.aotgraph_entries == {}


def test_data_dependent_output_shape():
    error = _raises(UnsupportedOp, aot_function(select_nonzero), leaf(5))
    _assert_names(error, "capture", "aten.nonzero", "data-dependent output shape")


@pytest.mark.parametrize("program, op", [
    (lambda x: x[x > 0], "aten.index.Tensor"),
    (lambda x: torch.unique(x), "aten._unique2"),
    (lambda x: x.repeat_interleave(torch.tensor([1, 2, 1, 0])), "aten.repeat_interleave"),
], ids=["boolean-mask", "unique", "repeat_interleave"])
def test_other_data_dependent_shapes(program, op):
    error = _raises(UnsupportedOp, aot_function(program), leaf(4))
    _assert_names(error, "capture", op, "data-dependent output shape")


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True to a scalar")
@pytest.mark.parametrize("program, op", [
    (lambda x: x * 2 if torch.equal(x, x) else x, "aten.equal"),
    (lambda x: x * float(x.sum()), "_local_scalar_dense"),
    (lambda x: x * 2 if x.any() else x, "_local_scalar_dense"),
    (lambda x: x * float(x.detach().numpy().sum()), "NumPy"),
], ids=["torch.equal", "float()", "any()", "numpy()"])
def test_other_reads_of_tensor_values(program, op):
    error = _raises(DataDependentControlFlow, aot_function(program), leaf(4))
    _assert_names(error, "capture", op, "test_errors.py")


@pytest.mark.parametrize("program, op", [(call_custom_op, "aotgraph_tests.double_without_fake"),
                                         (call_cpu_only_op, "aotgraph_tests_cpu.triple")],
                         ids=["custom_op", "library_cpu_impl"])
def test_op_without_fake_kernel(program, op):
    x = leaf(3)
    program(x.detach())  # the op itself works eagerly
    error = _raises(UnsupportedOp, aot_function(program), x)
    _assert_names(error, "capture", op, "no fake", "register_fake")


def test_capture_failures_are_also_torchs_fake_tensor_exceptions():
    """Capture's own errors for what torch's fake tensors cannot trace are torch's exceptions
    too (Dynamo runs such a frame eagerly after a graph break), and still read as ours."""
    from torch._subclasses.fake_tensor import DataDependentOutputException, DynamicOutputShapeException
    error = _raises(DataDependentControlFlow, aot_function(scale_by_item), leaf(4))
    assert isinstance(error, DataDependentOutputException) and "_local_scalar_dense" in str(error.func)
    assert str(error).startswith("DataDependentControlFlow:") and error in {error}  # an exception's identity
    error = _raises(UnsupportedOp, aot_function(select_nonzero), leaf(5))
    assert isinstance(error, DynamicOutputShapeException) and type(error).__name__ == "UnsupportedOp"


@torch.library.custom_op("aotgraph_tests::scale_by_segments", mutates_args=())
def scale_by_segments(x: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    return x * 2


@scale_by_segments.register_fake
def _(x, ends):
    return torch.empty_like(x)


def _segments_backward(ctx, grad):
    out, start = torch.zeros_like(grad), 0
    for end in ctx.ends.tolist():  # reads values in the backward, as transformers' MoE experts' op does
        out[start:end] = grad[start:end] * 2
        start = end
    return out, None


scale_by_segments.register_autograd(_segments_backward,
                                    setup_context=lambda ctx, inputs, output: setattr(ctx, "ends", inputs[1]))


def test_a_backward_that_reads_values_runs_eagerly_under_torch_compile():
    """Mixtral's experts (transformers' grouped_mm fallback) read their segment ends with
    ``.tolist()`` in a custom op's backward. Under torch.compile our backend's capture fails as
    torch's own backends' does, and Dynamo runs the frame eagerly (a graph break): the training
    step matches eager instead of stopping with BackendCompilerFailed."""
    import aotgraph

    def f(x, ends):
        return scale_by_segments(x, ends).sin().sum()

    x, ends = leaf(6, 4), torch.tensor([2, 6])
    (expected,) = torch.autograd.grad(f(x, ends), x)
    torch._dynamo.reset()
    try:
        (grad,) = torch.autograd.grad(torch.compile(f, backend=aotgraph.backend("eager"))(x, ends), x)
    finally:
        torch._dynamo.reset()
    torch.testing.assert_close(grad, expected)


def test_an_error_leaves_no_tracing_state_behind():
    _raises(DataDependentControlFlow, aot_function(branch_on_value), leaf(3))
    x = torch.ones(3)
    assert type(x * 2) is torch.Tensor and torch.equal(x * 2, torch.full((3,), 2.0))
    compiled = aot_function(lambda t: t.exp())
    torch.testing.assert_close(compiled(x), x.exp())


@pytest.mark.parametrize("not_callable", [3, "fn", None, torch.ones(2)], ids=["int", "str", "None", "tensor"])
def test_non_callable_function(not_callable):
    error = _raises(BadArgument, aot_function, not_callable)
    _assert_names(error, "api", "callable", type(not_callable).__name__)


def test_aot_module_of_a_non_module():
    error = _raises(BadArgument, aot_module, lambda x: x)
    _assert_names(error, "api", "nn.Module", "aot_function")


@pytest.mark.parametrize("args", [torch.randn(2, 3), 5], ids=["tensor", "int"])
def test_aot_module_simplified_with_args_not_a_sequence(args):
    graph = torch.fx.symbolic_trace(torch.nn.Linear(3, 3))
    error = _raises(BadArgument, aot_module_simplified, graph, args, nop)
    _assert_names(error, "api", "args", type(args).__name__, "[x]")


@pytest.mark.parametrize("role", ["fw_compiler", "bw_compiler", "inference_compiler"])
def test_compiler_that_returns_a_non_callable(role):
    def returns_nothing(graph_module, example_inputs):
        return None

    compilers = {"fw_compiler": "eager", "bw_compiler": "eager", "inference_compiler": "eager", role: returns_nothing}
    compiled = aot_function(lambda x: x.sin(), **compilers)
    with torch.set_grad_enabled(role != "inference_compiler"):
        error = _raises(CompilerError, compiled, leaf(3))
    kind = {"fw_compiler": "forward", "bw_compiler": "backward", "inference_compiler": "inference"}[role]
    _assert_names(error, "compile", f"{kind} compiler", "returns_nothing", "NoneType", "not callable")
    assert compiled.aotgraph_entries == {}


def test_unknown_compiler_name():
    error = _raises(BadArgument, aot_function, lambda x: x, fw_compiler="tvm")
    _assert_names(error, "compile", "'tvm'", "eager")


def test_compiler_that_is_neither_a_name_nor_a_callable():
    error = _raises(BadArgument, aot_function, lambda x: x, bw_compiler=42)
    _assert_names(error, "compile", "int")


def test_closed_over_tensor_that_requires_grad():
    weight = torch.randn(3, requires_grad=True)
    error = _raises(BadArgument, aot_function(lambda x: x * weight), leaf(3))
    _assert_names(error, "capture", "requires grad but is not an input", "(3,)", "pass it as an argument")
    assert weight.grad is None


def test_module_passed_to_aot_function_with_inputs_that_need_no_grad():
    # The parameters would get gradients in eager: aot_module is the way to compile a module.
    error = _raises(BadArgument, aot_function(torch.nn.Linear(3, 2)), torch.randn(4, 3))
    _assert_names(error, "capture", "(2, 3)", "aot_module")


def test_closed_over_tensor_used_without_gradient_is_fine():
    weight = torch.randn(3, requires_grad=True)

    def fn(x):
        return x * weight.detach() + (weight > 0) + torch.zeros_like(weight)

    x_eager, x_compiled = leaf(3), leaf(3)
    x_compiled.data.copy_(x_eager.data)
    torch.testing.assert_close(aot_function(fn)(x_compiled), fn(x_eager))
    with torch.no_grad():
        torch.testing.assert_close(aot_function(lambda x: x * weight)(x_eager), x_eager * weight)


@pytest.mark.parametrize("program", [lambda a: (a.sin() * a).sum(), lambda a: a.exp().sum()], ids=["saves-input",
                                                                                                     "saves-output"])
def test_double_backward_is_refused_not_wrong(program):
    a_eager = torch.randn(3, requires_grad=True)
    a_compiled = a_eager.detach().clone().requires_grad_()
    (expected,) = torch.autograd.grad(program(a_eager), a_eager, create_graph=True)
    (first,) = torch.autograd.grad(aot_function(program)(a_compiled), a_compiled, create_graph=True)
    torch.testing.assert_close(first, expected)
    error = _raises(UnsupportedOp, torch.autograd.grad, first.sum() + a_compiled.sum(), a_compiled)
    _assert_names(error, "runtime", "double backward", "create_graph=True")


def test_output_in_a_class_pytree_cannot_see_into():
    @dataclasses.dataclass
    class Holder:
        tensor: torch.Tensor

    error = _raises(UnsupportedOp, aot_function(lambda x: Holder(x * 2)), leaf(3))
    _assert_names(error, "capture", "output leaf 0", "Holder", "register_dataclass")


def test_an_op_whose_fake_kernel_refuses_what_eager_runs_is_named_with_the_line():
    """torch 2.13's fake kernel of ``_grouped_mm`` wants bf16 where its CPU kernel runs float32
    (Mixtral's experts through aot_module): `OpRefused`, a RuntimeError, naming the op, the
    program's line and the kernel's words (or, with a torch whose fake kernel agrees, eager's values)."""
    def program(x, w, offs):
        return torch._grouped_mm(x, w, offs=offs).sum()

    x, w, offs = leaf(8, 16), torch.randn(2, 16, 4), torch.tensor([3, 8], dtype=torch.int32)
    try:
        expected = program(x.detach(), w, offs)
    except (RuntimeError, AttributeError, NotImplementedError):
        pytest.skip("this torch's CPU kernel of _grouped_mm does not run float32")
    try:
        got = aot_function(program)(x, w, offs)
    except OpRefused as error:
        _assert_names(error, "capture", "aten._grouped_mm.default", "fake tensors of capture", "float32")  # (torch's own text)
        assert re.search(r"test_errors\.py:\d+: return torch\._grouped_mm", str(error))
        assert isinstance(error, RuntimeError)
    else:
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("compiler", ["eager", "inductor"])
def test_a_branch_on_tensor_data_with_symbolic_sizes_names_the_line(compiler):
    """With symbolic sizes a tensor's value is a symbol of its own: a Python branch on it is
    refused by name with the user's line (torch's GuardOnDataDependentSymNode underneath)."""
    def clamp_if_negative(x):
        if torch.any(x < 0):
            return x.clamp(min=0).sum()
        return x.sum()

    compiled = aot_function(clamp_if_negative, compiler, dynamic=True)
    error = _raises(DataDependentControlFlow, compiled, leaf(4))
    _assert_names(error, "capture", "test_errors.py", "if torch.any(x < 0):")


class _SkipsEmptyGroups(torch.autograd.Function):
    """A custom backward that branches on tensor data (transformers' grouped-matmul fallback
    loops over ``offs.tolist()`` and skips empty groups so)."""

    @staticmethod
    def forward(ctx, x, counts):
        ctx.save_for_backward(counts)
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        counts, = ctx.saved_tensors
        if counts.sum() == 0:
            return torch.zeros_like(grad), None
        return grad * 2, None


def test_a_branch_on_tensor_data_in_a_custom_backward_is_refused_by_name():
    """Recording the backward runs the custom backward on fakes: its branch on data is refused
    as the forward's would be, not as torch's raw GuardOnDataDependentSymNode."""
    compiled = aot_function(lambda x, counts: _SkipsEmptyGroups.apply(x, counts).sum(), dynamic=True)
    error = _raises(DataDependentControlFlow, compiled, leaf(4), torch.tensor([1, 2]))
    _assert_names(error, "capture", "a value read from a tensor's data", "test_errors.py",
                  "if counts.sum() == 0:")


def test_a_kernel_launched_outside_the_dispatcher_is_refused_by_name(monkeypatch):
    """A torch.cuda.jiterator function calls this entry point of torch._C with its tensors; on
    capture's fakes its kernel would touch memory that is not there (CUDA builds only: stood in
    for here, so the refusal is tested on every build)."""
    launched = []
    monkeypatch.setattr(torch._C, "_cuda_jiterator_compile_and_launch_kernel",
                        lambda *args, **kwargs: launched.append(args) or args[4][0], raising=False)

    def jitted(x):
        return torch._C._cuda_jiterator_compile_and_launch_kernel("code", "kernel", False, 1, (x.sin(),), {})

    error = _raises(UnsupportedOp, aot_function(jitted), leaf(4))
    _assert_names(error, "capture", "jiterator", "outside the compiled function")
    assert launched == []
    assert torch._C._cuda_jiterator_compile_and_launch_kernel("c", "k", False, 1, (1,), {}) == 1  # put back


def test_a_jagged_nested_tensor_through_the_backend_is_named():
    """Dynamo hands the graph of a jagged nested tensor its ragged size as a nested int input;
    capture named none of it (``'NestedIntNode' object has no attribute 'sub'``). Now the
    layout is named (torch's own ``aot_eager`` runs such programs; aotgraph does not yet)."""
    import aotgraph

    parts = [torch.randn(n, 3, dtype=torch.float64, requires_grad=True) for n in (2, 3, 4)]
    nested = torch.nested.as_nested_tensor(parts, layout=torch.jagged)
    torch._dynamo.reset()
    compiled = torch.compile(lambda x: x.clone(), backend=aotgraph.backend("eager"), fullgraph=True)
    with pytest.raises(Exception) as info:
        compiled(nested)
    cause = info.value
    while cause is not None and not isinstance(cause, AotGraphError):
        cause = cause.__cause__ or getattr(cause, "inner_exception", None)
    assert isinstance(cause, BadArgument), repr(info.value)
    _assert_names(cause, "capture", "torch.jagged")


@pytest.mark.parametrize("program, inputs", [
    (lambda x, y: x + y, (torch.randn(3), torch.randn(4))),
    (lambda x, y: x @ y, (torch.randn(3, 2), torch.randn(4, 2))),
], ids=["broadcast", "matmul"])
def test_an_error_eager_raises_too_names_the_line_and_stays_a_runtime_error(program, inputs):
    """A shape error in the program (a check above the fake kernels) is an `OpRefused` naming the
    program's line, the stage and eager's own message; callers that catch eager's RuntimeError
    still catch it (the fake kernels' wording may differ from eager's)."""
    with pytest.raises(RuntimeError):
        program(*inputs)
    with pytest.raises(OpRefused, match=r"(?s)raised while it was captured at .*test_errors.py:\d+.*capture stage"):
        aot_function(program, "eager")(*inputs)


@pytest.mark.parametrize("make", [
    lambda: torch.randn(3, 3).to_sparse(),
    lambda: torch.randn(3, 3).to_sparse_csr(),
    lambda: torch.nested.nested_tensor([torch.randn(2), torch.randn(3)]),
    lambda: torch.quantize_per_tensor(torch.randn(3), 0.1, 0, torch.qint8),
], ids=["sparse_coo", "sparse_csr", "nested_strided", "quantized"])
def test_an_input_of_an_unsupported_kind_is_a_bad_argument(make):
    """Sparse, strided-nested and quantized inputs are refused by name at the call, not with
    torch's internal errors from deep inside ("Cannot access storage of SparseTensorImpl")."""
    with pytest.raises(BadArgument, match="input 0 is a .*not supported"):
        aot_function(lambda x: x * 2, "eager")(make())


def test_user_callables_and_arguments_that_break_the_contract_are_named():
    """A partition function that returns no (forward, backward) pair, a compiled graph returning
    the wrong number of values, decompositions that are not a dict of ops, a backend policy that
    is not a function: each a clear error naming it (they raised TypeError or IndexError from
    inside, or only once Dynamo compiled)."""
    import aotgraph
    from aotgraph import make_boxed_func

    x = torch.randn(4, requires_grad=True)

    def program(t):
        return (t.sin() * 2).sum()

    with pytest.raises(BadArgument, match="partition_fn .* returned NoneType"):
        aot_function(program, partition_fn=lambda joint, inputs, **kw: None)(x)
    with pytest.raises(CompilerError, match="returned 0 values, where the graph returns 2"):
        aot_function(program, fw_compiler=lambda gm, ex: make_boxed_func(lambda *a: []))(x)
    with pytest.raises(BadArgument, match="decompositions must be a dict"):
        aot_function(program, decompositions=5)(x)
    with pytest.raises(BadArgument, match="keys must be ATen ops"):
        aot_function(program, decompositions={"sin": torch.sin})(x)
    with pytest.raises(BadArgument, match="policy must be a function"):
        aotgraph.backend(compiler="eager", policy=3)


@pytest.mark.skipif(not hasattr(BaseException, "add_note"), reason="exception notes: Python 3.11+")
def test_a_type_error_that_names_fake_tensor_says_where_and_why():
    def adds_a_string(x):
        return x + "a"

    error = _raises(TypeError, aot_function(adds_a_string), leaf(3))
    note = " ".join(error.__notes__)
    assert "test_errors.py" in note and 'return x + "a"' in note and "stand-in for a Tensor" in note


@pytest.mark.parametrize("answer", ["recompute", True, 1])
def test_a_policy_that_returns_no_decision_is_named(answer):
    from aotgraph.partition import partition_for

    compiled = aot_function(lambda x, w: (x @ w).relu().sum(), partition_fn=partition_for(policy=lambda info: answer))
    error = _raises(BadArgument, compiled, torch.randn(3, 4), leaf(4, 2))
    _assert_names(error, "partition", repr(answer), "Decision.RECOMPUTE")


def test_a_checkpointed_batch_norm_in_training_is_refused_by_name():
    """Its recompute updates the running statistics a second time (eager's does): refused with
    what to do, not torch's raw "modified by an inplace operation" from inside the capture."""
    from torch.utils.checkpoint import checkpoint

    class Checkpointed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear, self.norm = torch.nn.Linear(16, 16), torch.nn.BatchNorm1d(5)

        def forward(self, x):
            return checkpoint(lambda t: self.norm(self.linear(t)).relu(), x, use_reentrant=False)

    torch._dynamo.reset()
    compiled = torch.compile(Checkpointed(), backend=aotgraph.backend(compiler="eager"))
    with pytest.raises(Exception, match="BatchNorm in training") as info:
        compiled(torch.randn(3, 5, 16)).sum().backward()
    assert isinstance(info.value.__cause__ or info.value, (UnsupportedOp, RuntimeError))
    error = _raises(UnsupportedOp, aot_module(Checkpointed()), torch.randn(3, 5, 16))
    _assert_names(error, "capture", "BatchNorm in training", "outside the checkpoint")


def test_a_data_dependent_guard_in_a_backward_formula_says_so():
    """``w.repeat(n + 1)``'s backward decides on ``n + 1 != 1``: no line of the program does."""
    def repeated(x, w, n):
        return (w.repeat(n.item() + 1) * x).sum()

    compiled = aot_function(repeated, dynamic=True)
    error = _raises(DataDependentControlFlow, compiled, torch.randn(8), leaf(4), torch.tensor(1))
    _assert_names(error, "capture", "in the backward of one of its ops")


def test_a_value_requiring_grad_written_into_a_view_input_names_the_input():
    """Autograd gives the view's base (not an input) a history: refused naming the input and what to pass."""
    def f(x, y):
        x.add_(y)
        return x.sum(0)

    base = torch.randn(30)
    with pytest.raises(UnsupportedOp, match="tensor input 0 is a view of a tensor that is not an input") as error:
        aot_function(f)(base[5:25].view(5, 4), torch.randn(5, 4, requires_grad=True))
    assert "pass its base and take the view inside" in str(error.value)


@pytest.mark.parametrize("program", [lambda i: i.mul_(1.5), lambda i: i.add_(torch.ones(4)),
                                     lambda i: i.float().add_(torch.full((4,), 1j))],
                         ids=["int times float", "int plus float tensor", "float plus complex"])
def test_an_in_place_op_whose_result_its_target_cannot_hold_raises_as_eager(program):
    """Eager raises "result type Float can't be cast to the desired output type Long"; a fake kernel would cast."""
    with pytest.raises(RuntimeError, match="can't be cast to the desired output type") as eager:
        program(torch.arange(4))
    with pytest.raises(OpRefused, match=str(eager.value).split(" can't")[0]):
        aot_function(program)(torch.arange(4))
