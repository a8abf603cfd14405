"""Tensor subclasses (TwoTensor: a traceable wrapper subclass holding two tensors) as inputs,
parameters and outputs: captured as their inner tensors (the graphs are plain), rebuilt at the
boundary, gradients included; compared with eager on each inner tensor. What is not flattened
is refused with an error that names the subclass and the stage."""
import copy

import pytest
import torch
from torch.testing._internal.two_tensor import TwoTensor

import aotgraph
from aotgraph import aot_function, aot_module
from aotgraph.errors import UnsupportedOp


def _two(*shape, requires_grad=True):
    return TwoTensor(torch.randn(*shape), torch.randn(*shape)).requires_grad_(requires_grad)


def _copy(value):
    if isinstance(value, TwoTensor):
        return TwoTensor(value.a.clone(), value.b.clone()).requires_grad_(value.requires_grad)
    return value.detach().clone().requires_grad_(value.requires_grad)


def _assert_same(actual, expected, what):
    assert type(actual) is type(expected), f"{what}: {type(actual).__name__}, eager {type(expected).__name__}"
    if isinstance(expected, TwoTensor):
        torch.testing.assert_close(actual.a, expected.a, msg=lambda m: f"{what}.a: {m}")
        torch.testing.assert_close(actual.b, expected.b, msg=lambda m: f"{what}.b: {m}")
    else:
        torch.testing.assert_close(actual, expected, msg=lambda m: f"{what}: {m}")


def _assert_parity(fn, inputs, compiled_fn):
    eager_inputs, compiled_inputs = [_copy(x) for x in inputs], [_copy(x) for x in inputs]
    expected, actual = fn(*eager_inputs), compiled_fn(*compiled_inputs)
    _assert_same(actual, expected, "output")
    expected.sum().backward()
    actual.sum().backward()
    for k, (x_actual, x_expected) in enumerate(zip(compiled_inputs, eager_inputs)):
        if x_expected.requires_grad:
            _assert_same(x_actual.grad, x_expected.grad, f"input {k}.grad")


def _mul_sin(x, w):
    return (x * w).sin() + x.cos()


@pytest.mark.parametrize("compiler", ["eager", "inductor"])
def test_subclass_inputs_and_output_match_eager(compiler):
    torch.manual_seed(0)
    compiled = aot_function(_mul_sin, fw_compiler=compiler)
    _assert_parity(_mul_sin, [_two(3, 4), _two(3, 4)], compiled)
    (entry,) = compiled.aotgraph_entries.values()
    graph = entry.joint.graph_module.graph
    placeholders = [node.meta["val"] for node in graph.find_nodes(op="placeholder")]
    assert len(placeholders) == 4 + 2  # two inner tensors per input, then one tangent per inner output
    assert all(type(value) is not TwoTensor for value in placeholders), "the captured graph holds a subclass"


def test_subclass_inputs_through_torch_compile():
    torch.manual_seed(0)
    backend = aotgraph.backend(compiler="eager")
    _assert_parity(_mul_sin, [_two(5), _two(5)], torch.compile(_mul_sin, backend=backend, dynamic=False))
    assert len(backend.entries) == 1


def _pair(x, y):
    return TwoTensor(x.exp(), y * 2)


def test_subclass_output_of_plain_inputs_is_rebuilt():
    # A TwoTensor built from tensors is a new autograd leaf (eager's too): no gradients here.
    x, y = torch.randn(4), torch.randn(4)
    compiled = aot_function(_pair)
    for _ in range(2):  # the second call finds the entry compiled for the subclass output
        _assert_same(compiled(x, y), _pair(x, y), "output")
    assert len(compiled.aotgraph_entries) == 1


def test_subclass_parameter_trains_as_eager():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    model.weight = torch.nn.Parameter(_two(3, 4, requires_grad=False))
    model.bias = torch.nn.Parameter(_two(3, requires_grad=False))
    inputs = [_two(2, 4, requires_grad=False) for _ in range(3)]
    eager, compiled = copy.deepcopy(model), copy.deepcopy(model)
    run = aot_module(compiled)
    for module, call in ((eager, eager), (compiled, run)):
        optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
        for x in inputs:
            optimizer.zero_grad()
            call(x).square().sum().backward()
            optimizer.step()
    _assert_same(compiled.weight.detach(), eager.weight.detach(), "final weight")
    _assert_same(compiled.bias.detach(), eager.bias.detach(), "final bias")
    assert len(run.aotgraph_entries) == 1


def test_plain_input_whose_gradient_is_a_subclass_is_refused():
    with pytest.raises(UnsupportedOp, match=r"a TwoTensor \(a tensor subclass\).*\(capture stage\); pass that input as a TwoTensor"):
        aot_function(_mul_sin)(_two(3), torch.randn(3, requires_grad=True))


def test_plain_gradient_for_a_subclass_output_is_refused():
    out = aot_function(_mul_sin)(_two(3), _two(3))
    with pytest.raises(UnsupportedOp, match=r"a gradient for a TwoTensor arrived as a Tensor \(runtime stage\)"):
        out.backward(torch.ones(3))


def _transpose_in_place_then_scale(a):
    a.transpose_(1, 0)
    return a.mul(2).transpose(1, 0)


@pytest.mark.parametrize("requires_grad", [False, True])
def test_in_place_layout_change_of_a_subclass_input_is_refused(requires_grad):
    """Eager leaves the caller's TwoTensor transposed; the compiled call used to return the right
    values but leave the input in its old layout. It must refuse instead."""
    eager_input = TwoTensor(torch.ones(1, 2, 4), torch.ones(1, 2, 4)).requires_grad_(requires_grad).clone()
    _transpose_in_place_then_scale(eager_input)
    assert eager_input.shape == (2, 1, 4)
    compiled_input = TwoTensor(torch.ones(1, 2, 4), torch.ones(1, 2, 4)).requires_grad_(requires_grad).clone()
    with pytest.raises(UnsupportedOp, match=r"changes the sizes or strides of flat input 0, a TwoTensor.*"
                                            r"\(capture stage\); use the out-of-place view"):
        aot_function(_transpose_in_place_then_scale)(compiled_input)
    assert compiled_input.shape == (1, 2, 4)


def test_a_jagged_nested_tensor_that_requires_grad():
    """The gradient of a jagged nested input is rebuilt on the input's own offsets (autograd
    hands zeros for integer inner tensors: a gradient on zero offsets had another ragged size,
    and autograd refused it)."""
    def program(x):
        return (x.sin() * 2).values().sum()

    def jagged():
        parts = [torch.randn(2, 4, generator=torch.Generator().manual_seed(0)), torch.ones(3, 4)]
        return torch.nested.nested_tensor(parts, layout=torch.jagged, requires_grad=True)

    expected, ours = jagged(), jagged()
    program(expected).backward()
    aotgraph.aot_function(program, "eager")(ours).backward()
    torch.testing.assert_close(ours.grad.values(), expected.grad.values())
    assert torch.equal(ours.grad.offsets(), expected.grad.offsets())


class _Doubling(torch.Tensor):
    """A subclass whose __torch_function__ changes what an op computes (multiplication doubles)."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        out = super().__torch_function__(func, types, args, kwargs or {})
        if func in (torch.mul, torch.Tensor.mul, torch.Tensor.__mul__):
            with torch._C.DisableTorchFunctionSubclass():
                out = torch.Tensor.mul(out, 2)
        return out


def _scaled_sum(x, w):
    return (x * w).sum(-1)


def test_a_torch_function_subclass_input_is_refused_by_aot_function():
    """The capture would record its ops as a plain tensor's (half of eager's values): refused."""
    x = torch.randn(3, 4).as_subclass(_Doubling)
    with pytest.raises(aotgraph.errors.BadArgument, match="input 0 is a _Doubling.*__torch_function__"):
        aot_function(_scaled_sum)(x, torch.randn(4, requires_grad=True))


def test_a_torch_function_subclass_input_runs_through_the_backend(fresh_dynamo):
    """Dynamo traces the subclass's __torch_function__ into the graph it hands over."""
    x, w = torch.randn(3, 4).as_subclass(_Doubling), torch.randn(4, requires_grad=True)
    out = torch.compile(_scaled_sum, backend=aotgraph.backend(compiler="eager"))(x, w)
    expected = _scaled_sum(x, w)
    torch.testing.assert_close(out.as_subclass(torch.Tensor), expected.as_subclass(torch.Tensor))
    (grad,) = torch.autograd.grad(out.sum(), w)
    torch.testing.assert_close(grad, torch.autograd.grad(expected.sum(), w)[0])


def test_a_jagged_nested_tensor_through_the_backend_is_refused_naming_what_takes_it(fresh_dynamo):
    njt = torch.nested.nested_tensor([torch.randn(2, 3), torch.randn(4, 3)], layout=torch.jagged)
    compiled = torch.compile(lambda n: (n * 2).sin().values(), backend=aotgraph.backend(compiler="eager"))
    with pytest.raises(Exception, match="torch.jagged with symbolic sizes.*aotgraph.aot_function"):
        compiled(njt)
