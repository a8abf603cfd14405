"""A module's forward that assigns tensors to its own attributes (a buffer rebound to a new
tensor, a plain tensor attribute): through ``aot_module`` each call assigns what eager's call
assigns, and no fake tensor is left on the user's module (aotgraph/module_writes.py)."""
from __future__ import annotations

import copy

import pytest
import torch

import aotgraph
from aotgraph.compilers import eager
from aotgraph.errors import UnsupportedOp
from aotgraph.torch_private.fake import FakeTensor
from parity import assert_close


class RunningMean(torch.nn.Module):
    """Rebinds a registered buffer each training call (not written in place)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.register_buffer("avg", torch.zeros(4))

    def forward(self, x):
        y = self.lin(x)
        if self.training:
            self.avg = 0.9 * self.avg + 0.1 * y.detach().mean(0)
        return y - self.avg


class Remembers(torch.nn.Module):
    """Keeps its last activation, its input and a count tensor as plain attributes."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.last = None

    def forward(self, x):
        y = self.lin(x).relu()
        self.last = y.detach() * 2
        self.seen = x
        return y.sum(1)


class LazyTable(torch.nn.Module):
    """Builds a table of the input's size on the first call (timm's ConViT does this)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("table", torch.zeros(1), persistent=False)
        self.w = torch.nn.Parameter(torch.randn(5))

    def forward(self, x):
        if self.table.shape[0] != x.shape[-1]:
            self.table = torch.arange(x.shape[-1], dtype=x.dtype)
        return x * self.table * self.w


def _train_both(model, steps, **aot_kwargs):
    torch.manual_seed(0)
    eager = copy.deepcopy(model)
    compiled = aotgraph.aot_module(model, "eager", **aot_kwargs)
    for i, x in enumerate(steps):
        out, expected = compiled(x.clone().requires_grad_()), eager(x.clone().requires_grad_())
        assert_close(out, expected, f"output of call {i}")
        out.sum().backward()
        expected.sum().backward()
        for (name, p), q in zip(eager.named_parameters(), model.parameters()):
            assert_close(q.grad, p.grad, f"gradient of {name} after call {i}")
        for (name, b), c in zip(eager.named_buffers(), model.buffers()):
            assert_close(c, b, f"buffer {name} after call {i}")
    return eager, compiled


@pytest.mark.parametrize("dynamic", [False, True])
def test_a_rebound_buffer_is_assigned_each_call(dynamic):
    steps = [torch.randn(2, 4) for _ in range(3)] + [torch.randn(3, 4)]
    model = RunningMean()
    eager, compiled = _train_both(model, steps, dynamic=dynamic)
    assert not isinstance(model.avg, FakeTensor) and model.avg.abs().sum() > 0
    model.eval(), eager.eval()
    x = torch.randn(2, 4)
    assert_close(compiled(x), eager(x), "eval output")  # (its own graph: no assignment)
    assert_close(model.avg, eager.avg, "buffer after eval")


def test_plain_tensor_attributes_are_assigned_each_call():
    model = Remembers()
    steps = [torch.randn(2, 4) for _ in range(3)]
    eager, compiled = _train_both(model, steps)
    assert type(model.last) is torch.Tensor and not isinstance(model.seen, FakeTensor)
    assert_close(model.last, eager.last, "last activation")
    assert_close(model.seen, eager.seen, "last input")


def test_a_buffer_rebound_to_a_new_size_recompiles():
    model = LazyTable()
    steps = [torch.randn(3, 5) for _ in range(3)]
    eager, compiled = _train_both(model, steps)
    assert model.table.shape == (5,) and torch.equal(model.table, eager.table)
    assert len(compiled.aotgraph_entries) == 2  # the first size of the table, then the built one


def test_the_module_is_left_untouched_by_a_capture_that_fails():
    class Fails(Remembers):
        def forward(self, x):
            self.last = x * 2
            return torch.nonzero(x)  # refused: data-dependent shape

    model = Fails()
    with pytest.raises(Exception):
        aotgraph.aot_module(model, "eager")(torch.randn(2, 4))
    assert model.last is None


def test_assigning_a_parameter_in_forward_is_refused():
    class Reassigns(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(3))

        def forward(self, x):
            self.w = torch.nn.Parameter(x.detach())
            return x * 2

    with pytest.raises(UnsupportedOp, match="assigns its parameter 'w'"):
        aotgraph.aot_module(Reassigns(), "eager")(torch.randn(3))


class _TableBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(5, 5)
        self.register_buffer("table", torch.zeros(1), persistent=False)

    def forward(self, x):
        if self.table.shape[0] != x.shape[-1]:
            self.table = torch.linspace(0, 1, x.shape[-1])
        return self.lin(x) * self.table


def test_repeated_layers_that_rebind_a_buffer_are_recorded_inline():
    """Identical blocks are captured once as a region, except where the block's forward assigns
    a tensor: the region would hold a value of its own capture."""
    model = torch.nn.Sequential(*[_TableBlock() for _ in range(4)])
    steps = [torch.randn(3, 5) for _ in range(3)]
    eager, compiled = _train_both(model, steps)
    for block, expected in zip(model, eager):
        assert torch.equal(block.table, expected.table)


class RotaryCache(torch.nn.Module):
    """Older transformers' rotary embedding: a longer input registers larger cos/sin buffers."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)
        self.register_buffer("cos_cached", torch.ones(2, 4), persistent=False)

    def forward(self, x):
        if x.shape[0] > self.cos_cached.shape[0]:
            positions = torch.arange(x.shape[0], dtype=x.dtype)[:, None] * torch.arange(4, dtype=x.dtype)
            self.register_buffer("cos_cached", positions.cos(), persistent=False)
        return self.proj(x) * self.cos_cached[: x.shape[0]]


def test_register_buffer_in_forward_is_replayed():
    model = RotaryCache()
    steps = [torch.randn(2, 4), torch.randn(5, 4), torch.randn(5, 4), torch.randn(3, 4)]
    eager, compiled = _train_both(model, steps)
    assert model.cos_cached.shape == (5, 4) and "cos_cached" not in model.state_dict()


def test_a_function_assigning_a_computed_tensor_to_a_module_is_refused():
    holder = torch.nn.Linear(2, 2)

    def f(x):
        holder.cache = x * 2
        return x + 1

    with pytest.raises(UnsupportedOp, match="assigns a tensor it computes to Linear.cache"):
        aotgraph.aot_function(f, "eager")(torch.randn(3))
    assert not hasattr(holder, "cache")


def test_aot_module_simplified_of_a_module_replays_its_assignments():
    torch.manual_seed(0)
    model, eager = RunningMean(), None
    eager = copy.deepcopy(model)
    x = torch.randn(2, 4)
    forward = aotgraph.aot_module_simplified(model, (x,), aotgraph.nop)
    for i in range(3):
        x = torch.randn(2, 4)
        assert_close(forward(x), eager(x), f"output of call {i}")
        assert_close(model.avg, eager.avg, f"buffer after call {i}")


def test_a_function_assigning_a_computed_tensor_to_an_argument_object_is_refused():
    class State:
        cache = None

    def f(x, state):
        state.cache = x * 2
        return x + 1

    state = State()
    with pytest.raises(UnsupportedOp, match=r"assigns a tensor it computes to argument 1\.cache"):
        aotgraph.aot_function(f, "eager")(torch.randn(3), state)
    assert state.cache is None and type(state) is State


def test_an_lstm_compiles_once_and_keeps_its_own_weight_lists():
    """nn.LSTM rebuilds its lists of (and weak references to) its weights when it sees other
    weight tensors, as it does while captured on fakes: the lists were left holding fakes, and
    the guard on them recompiled every call."""
    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(4, 5, batch_first=True)
            self.head = torch.nn.Linear(5, 2)

        def forward(self, x):
            return self.head(self.rnn(x)[0])

    model = Tagger()
    steps = [torch.randn(b, 6, 4) for b in (2, 3, 4)]
    eager, compiled = _train_both(model, steps, dynamic=True)
    assert len(compiled.aotgraph_entries) == 1
    assert all(type(w) is torch.nn.Parameter for w in model.rnn._flat_weights)
    assert all(ref() is w for ref, w in zip(model.rnn._flat_weight_refs, model.rnn._flat_weights))


class AuxLosses(torch.nn.Module):
    """An MoE-style gate that appends its load-balancing loss to a list each call, and keeps a
    statistic in a dict; the caller adds the list's losses to its loss and clears it."""

    def __init__(self):
        super().__init__()
        self.gate = torch.nn.Linear(4, 3)
        self.experts = torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(3)])
        self.aux_losses = []
        self.stats = {"calls": 0}

    def forward(self, x):
        p = self.gate(x).softmax(-1)
        self.aux_losses.append((p.mean(0) ** 2).sum() * 3)
        self.stats["max"] = p.detach().amax()
        return sum(p[:, i:i + 1] * e(x) for i, e in enumerate(self.experts))


class Stack(torch.nn.Module):
    """Repeated layers that each append to their own list (recorded inline, not as regions)."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([AuxLosses() for _ in range(4)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


@pytest.mark.parametrize("make", [AuxLosses, Stack])
def test_tensors_appended_to_a_list_or_set_in_a_dict_are_replayed(make):
    torch.manual_seed(0)
    eager = make()
    ours = copy.deepcopy(eager)
    compiled = aotgraph.aot_module(ours, "eager")
    for step in range(3):
        x = torch.randn(5, 4)
        losses = []
        for module, model in ((eager, eager), (compiled, ours)):
            out = module(x)
            lists = [m.aux_losses for m in model.modules() if hasattr(m, "aux_losses")]
            assert all(len(aux) == 1 and not isinstance(aux[0], FakeTensor) for aux in lists)
            loss = out.pow(2).mean() + sum(sum(aux) for aux in lists)
            loss.backward()
            losses.append(loss.detach())
            for aux in lists:
                aux.clear()
        assert_close(losses[1], losses[0], f"loss at step {step}")
        for (name, a), b in zip(eager.named_parameters(), ours.parameters()):
            assert_close(b.grad, a.grad, name)
            a.grad = b.grad = None
        for a, b in zip(eager.modules(), ours.modules()):
            if hasattr(a, "stats"):
                assert a.stats.keys() == b.stats.keys() and torch.equal(a.stats["max"], b.stats["max"])
    assert len(compiled.aotgraph_entries) == 1


def test_a_list_cleared_and_refilled_in_forward_is_refused():
    class Refills(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)
            self.kept = [torch.zeros(1)]

        def forward(self, x):
            self.kept.clear()
            self.kept.append(self.lin(x).sum())
            return x

    module = Refills()
    with pytest.raises(UnsupportedOp, match="kept"):
        aotgraph.aot_module(module, "eager")(torch.randn(2))
    assert len(module.kept) == 1 and not isinstance(module.kept[0], FakeTensor)


class _CarriedState(torch.nn.Module):
    """Truncated backpropagation through time: the hidden state of one call is the next call's
    input, kept as a plain attribute; `last` is only assigned (for logging)."""

    def __init__(self):
        super().__init__()
        self.cell = torch.nn.Linear(8, 4)
        self.hidden, self.last = None, None

    def forward(self, x):
        h = self.cell(torch.cat([x, torch.zeros_like(x) if self.hidden is None else self.hidden], -1)).tanh()
        self.hidden, self.last = h.detach(), h.detach() * 2
        return h


def test_a_tensor_attribute_read_back_by_the_next_call_is_an_input():
    """It compiled once per call (guarded by identity); now twice in all, as torch.compile's 2 frames."""
    torch.manual_seed(0)
    reference = _CarriedState()
    module = copy.deepcopy(reference)
    compiles = []

    def counted(graph_module, example_inputs):
        compiles.append(len(graph_module.graph.nodes))
        return eager(graph_module, example_inputs)

    counted.aotgraph_traits = eager.aotgraph_traits
    compiled = aotgraph.aot_module(module, counted)
    for step in range(6):
        x = torch.randn(3, 4)
        out, expected = compiled(x), reference(x)
        torch.testing.assert_close(out, expected)
        out.sum().backward()
        expected.sum().backward()
        torch.testing.assert_close(module.cell.weight.grad, reference.cell.weight.grad)
        torch.testing.assert_close(module.hidden, reference.hidden)
        torch.testing.assert_close(module.last, reference.last)
    assert len(compiles) == 4  # forward and backward, twice


def test_a_tensor_attribute_only_assigned_compiles_once():
    class Logged(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear, self.last = torch.nn.Linear(4, 4), None

        def forward(self, x):
            y = self.linear(x)
            self.last = y.detach()
            return y

    module = Logged()
    compiled = aotgraph.aot_module(module)
    for _ in range(3):
        x = torch.randn(2, 4)
        torch.testing.assert_close(compiled(x), module.linear(x))
        torch.testing.assert_close(module.last, module.linear(x))
    assert len(compiled.aotgraph_entries) == 1


def test_a_cache_of_views_grown_by_cat_matches_eager():
    """The first call keeps two chunks of one tensor (parts of a larger memory: left as they
    were); later calls keep `cat`s of their own, which become inputs."""
    class Cache(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.kv, self.k, self.v = torch.nn.Linear(8, 16), None, None

        def forward(self, x):
            k, v = self.kv(x).chunk(2, -1)
            if self.k is not None:
                k, v = torch.cat([self.k, k], 1), torch.cat([self.v, v], 1)
            self.k, self.v = k.detach(), v.detach()
            return (k * v).sum(1)

    torch.manual_seed(0)
    reference = Cache()
    compiled = aotgraph.aot_module(copy.deepcopy(reference))
    with torch.no_grad():
        for _ in range(4):
            x = torch.randn(2, 1, 8)
            torch.testing.assert_close(compiled(x), reference(x))
