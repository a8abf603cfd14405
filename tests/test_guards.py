"""Python values a program reads while captured are guarded: after each kind of change the
compiled function equals eager (it compiled again), and changing a value back reuses the
entry compiled for it."""
import copy
import dataclasses
import types
import warnings

import pytest
import sympy
import torch

from aotgraph import aot_function, aot_module


class Scaled(torch.nn.Module):
    """Reads a float, a str, a bool, a tuple, an optional value and a nested config object."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.scale = 2.0
        self.activation = "relu"
        self.residual = False
        self.dims = (0, 1)
        self.bias = None
        self.cfg = Config(0.5)

    def forward(self, x):
        y = self.lin(x) * self.scale
        y = y.relu() if self.activation == "relu" else torch.tanh(y)
        if self.residual:
            y = y + x
        if self.bias is not None:
            y = y + self.bias
        return y.permute(*self.dims) * self.cfg.gain


class Config:
    def __init__(self, gain):
        self.gain = gain


CHANGES = {
    "float": lambda m: setattr(m, "scale", 5.0),
    "str": lambda m: setattr(m, "activation", "tanh"),
    "bool": lambda m: setattr(m, "residual", True),
    "tuple": lambda m: setattr(m, "dims", (1, 0)),
    "none_to_value": lambda m: setattr(m, "bias", 1.5),
    "nested_object": lambda m: setattr(m.cfg, "gain", 3.0),
    "replaced_object": lambda m: setattr(m, "cfg", Config(-1.0)),
    "int_for_float": lambda m: setattr(m, "scale", 2),
}


def _check(compiled, model, x):
    x_compiled = x.clone().requires_grad_()
    x_eager = x.clone().requires_grad_()
    out, expected = compiled(x_compiled), model(x_eager)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(x_compiled.grad, x_eager.grad)


@pytest.mark.parametrize("change", sorted(CHANGES))
@pytest.mark.parametrize("entry", ["aot_module", "aot_function_of_module", "aot_function_of_forward"])
def test_a_changed_module_attribute_recompiles(change, entry):
    torch.manual_seed(0)
    model = Scaled()
    if entry != "aot_module":  # aot_function takes no gradient for parameters it is not passed
        model.requires_grad_(False)
    compiled = {"aot_module": aot_module, "aot_function_of_module": aot_function,
                "aot_function_of_forward": lambda m: aot_function(m.forward)}[entry](model)
    x = torch.randn(3, 4)
    _check(compiled, model, x)
    _check(compiled, model, x)  # the per-call fast path is taken from here on
    CHANGES[change](model)
    _check(compiled, model, x)
    _check(compiled, model, x)


def test_changing_a_value_back_reuses_its_entry():
    model = Scaled()
    compiled = aot_module(model)
    x = torch.randn(3, 4)
    for scale in (2.0, 3.0, 2.0, 3.0):
        model.scale = scale
        _check(compiled, model, x)
    assert len(compiled.aotgraph_entries) == 2
    reasons = [e.reason for e in compiled.aotgraph_entries.values()]
    assert reasons == ["first call", "self.scale changed: 2.0 -> 3.0"]


def test_a_submodule_attribute_is_guarded():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LeakyReLU(0.1))
    compiled = aot_module(model)
    x = torch.randn(3, 4)
    _check(compiled, model, x)
    model[1].negative_slope = 0.5
    _check(compiled, model, x)


def test_an_argument_objects_attribute_is_guarded():
    def f(x, cfg):
        return x * cfg.alpha + cfg.inner.beta

    compiled = aot_function(f)
    cfg = Config(1.5)
    cfg.alpha, cfg.inner = 1.5, Config(0.0)
    cfg.inner.beta = 0.25
    x = torch.randn(3)
    torch.testing.assert_close(compiled(x, cfg), f(x, cfg))
    cfg.alpha = 3.0
    torch.testing.assert_close(compiled(x, cfg), f(x, cfg))
    cfg.inner.beta = -1.0
    torch.testing.assert_close(compiled(x, cfg), f(x, cfg))
    assert len(compiled.aotgraph_entries) == 3


def test_a_frozen_dataclass_argument_recompiles_for_other_values():
    @dataclasses.dataclass(frozen=True)
    class Opts:
        p: float

    def f(x, opts):
        return x * opts.p

    compiled = aot_function(f)
    x = torch.randn(3)
    for p in (1.0, 2.0, 1.0):
        torch.testing.assert_close(compiled(x, Opts(p)), f(x, Opts(p)))


def test_an_object_that_cannot_be_guarded_warns_once():
    def f(x, ns):
        return x * ns.alpha

    compiled = aot_function(f)
    ns = types.SimpleNamespace(alpha=2.0)  # a built-in type: its class cannot be swapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.testing.assert_close(compiled(torch.ones(2), ns), torch.full((2,), 2.0))
    messages = [str(w.message) for w in caught if "cannot be guarded" in str(w.message)]
    assert len(messages) == 1 and "SimpleNamespace" in messages[0]


def test_a_tensor_attribute_replaced_recompiles():
    class Masked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mask = torch.ones(3)  # neither parameter nor buffer: read as a constant

        def forward(self, x):
            return x * self.mask

    model = Masked()
    compiled = aot_module(model)
    x = torch.randn(3)
    torch.testing.assert_close(compiled(x), model(x))
    model.mask = torch.zeros(3)
    torch.testing.assert_close(compiled(x), model(x))


def test_module_classes_are_restored_after_capture():
    model = Scaled()
    classes = [type(m) for m in model.modules()]
    aot_module(model)(torch.randn(3, 4))
    assert [type(m) for m in model.modules()] == classes
    assert type(model.cfg) is Config


class KeepsHalf(torch.nn.Module):
    """Stores a size of its input on itself in forward and reads it back the next time (as
    Hugging Face's Swin keeps its window size): with symbolic sizes, what it keeps is a SymInt."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.half = None

    def forward(self, x):
        offset = 0 if self.half is None else 0 * self.half
        self.half = x.shape[0] // 2
        return self.lin(x[offset: offset + self.half]).sum()


def test_a_kept_symbolic_size_is_guarded_without_changing_its_expression():
    """The guard recorder watches the objects a program reads from its module; a SymInt kept
    from an earlier symbolic trace is guarded by identity, its node and sympy expression left
    alone (watching swaps an object's class, and a sympy expression's class is its operation:
    torch's range analysis then failed with ``KeyError: FloorDiv``)."""
    from torch.utils._sympy.functions import FloorDiv

    model, eager = KeepsHalf(), KeepsHalf()
    eager.load_state_dict(model.state_dict())
    compiled = aot_module(model, dynamic=True)
    for rows in (6, 9, 12, 7):
        x = torch.randn(rows, 4)
        torch.testing.assert_close(compiled(x), eager(x))
        kept = model.half
        if isinstance(kept, torch.SymInt):  # (its expression: s0//2, of torch's own FloorDiv class)
            divisions = [a for a in sympy.preorder_traversal(kept.node._expr) if type(a).__name__ == "FloorDiv"]
            assert divisions and all(type(a) is FloorDiv for a in divisions)


class _Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.body(x))


def _changes():
    def replace_head(model):
        model.head = torch.nn.Linear(4, 3)

    def replace_activation(model):
        model.body[1] = torch.nn.Tanh()

    def add_layer(model):
        model.body.append(torch.nn.Linear(4, 4))

    def add_hook(model):
        model.body[0].register_forward_hook(lambda module, inputs, output: output * 2)

    def add_pre_hook(model):
        model.head.register_forward_pre_hook(lambda module, inputs: (inputs[0] + 1,))

    return [replace_head, replace_activation, add_layer, add_hook, add_pre_hook]


@pytest.mark.parametrize("change", _changes(), ids=lambda f: f.__name__)
def test_a_change_of_the_module_tree_after_the_compile_is_seen(change):
    """A child module replaced or added, or a forward hook added, after the compile: the
    compiled module runs the tree as it is now (parameters of the new modules included), as
    eager and torch.compile do (functorch's aot_module keeps the old program)."""
    torch.manual_seed(0)
    model = _Head()
    compiled = aot_module(model)
    x = torch.randn(3, 4)
    compiled(x).sum().backward()
    change(model)
    model.zero_grad()
    out = compiled(x)
    torch.testing.assert_close(out, model(x))
    out.sum().backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    model(x).sum().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(expected[name], p.grad, msg=name)


def test_a_hook_removed_after_the_compile_is_seen():
    torch.manual_seed(0)
    model = _Head()
    handle = model.body[0].register_forward_pre_hook(lambda module, inputs: (inputs[0] * 3,))
    compiled = aot_module(model)
    x = torch.randn(3, 4)
    torch.testing.assert_close(compiled(x), model(x))
    handle.remove()
    torch.testing.assert_close(compiled(x), model(x))


def test_an_attribute_the_first_call_creates_is_read_by_the_next():
    """``getattr(self, "h", None)`` read an absent attribute: guarded as absent, the call after
    the forward creates it compiles again (then takes it as an input)."""
    class Recurrent(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = torch.nn.RNNCell(4, 6)

        def forward(self, x):
            h = self.cell(x, getattr(self, "h", None))
            self.h = h.detach()
            return h

    torch.manual_seed(0)
    reference = Recurrent()
    compiled = aot_module(copy.deepcopy(reference))
    with torch.no_grad():
        for _ in range(4):
            x = torch.randn(2, 4)
            torch.testing.assert_close(compiled(x), reference(x))


@pytest.mark.parametrize("change", ["forward", "class"])
def test_a_childs_forward_or_class_replaced_after_the_compile_is_seen(change):
    torch.manual_seed(0)
    model = _Head()
    compiled = aot_module(model)
    x = torch.randn(3, 4)
    torch.testing.assert_close(compiled(x), model(x))
    if change == "forward":
        original = model.head.forward
        model.head.forward = lambda t: original(t) * 3
    else:
        class Doubled(torch.nn.Linear):
            def forward(self, t):
                return super().forward(t) * 2

        model.head.__class__ = Doubled
    torch.testing.assert_close(compiled(x), model(x))
