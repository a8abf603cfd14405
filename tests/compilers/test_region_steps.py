"""Regions compiled apart (compilers/region_graphs.py, region_steps.py): the ops of a graph
between its region calls compiled a stretch at a time and the graph run as steps (switch
``fused_between_regions``), against eager: losses, gradients and buffers over several optimizer
steps; which graphs the compiler is given; values freed at their last read."""
from __future__ import annotations

import weakref

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import aotgraph
from aotgraph import aot_module, config
from aotgraph.compilers import CompilerTraits
from aotgraph.compilers.boxed_code import boxed_graph_function
from backend_training import assert_training_parity
from decoder_blocks import basic_block_stack

INVOKE_SUBGRAPH = torch.ops.higher_order.invoke_subgraph


@pytest.fixture(params=[True, False], ids=["fused", "unfused"])
def fused(request, monkeypatch):
    monkeypatch.setattr(config, "opted_in", config.opted_in | {"regions_compiled_apart"})
    if not request.param:
        monkeypatch.setattr(config, "disabled", config.disabled | {"fused_between_regions"})
    return request.param


class ApartEager:
    """The eager compiler's code, from a compiler that asks for regions compiled apart; it keeps
    the graphs it is given, and `after_call(graph, inputs)` runs after each call of their code."""

    def __init__(self, after_call=None, ignored=()):
        self.graphs, self.after_call = [], after_call
        self.ignored = {t.data_ptr() for t in ignored}  # tensors not to watch (parameters)
        self.aotgraph_traits = CompilerTraits(compiles_regions_apart=True)

    def __call__(self, graph_module, example_inputs):
        self.graphs.append(graph_module)
        code = boxed_graph_function(graph_module)
        if self.after_call is None:
            return code

        def call(inputs):
            watched = [weakref.ref(v) for v in inputs if isinstance(v, torch.Tensor) and v.data_ptr() not in self.ignored]
            outputs = code(inputs)
            self.after_call(graph_module, watched)
            return outputs

        call._boxed_call = True
        return call


class Layer(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.lin, self.norm = nn.Linear(dim, dim), nn.LayerNorm(dim)

    def forward(self, x):
        return self.norm(torch.tanh(self.lin(x)) + x)


class Stack(nn.Module):
    """Repeated layers with ops of the calling graph between them (a scale, a batch norm whose
    running statistics the step updates) and around them (an embedding, a loss)."""

    def __init__(self, layers: int = 3, dim: int = 8, vocab: int = 16):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList(Layer(dim) for _ in range(layers))
        self.between = nn.BatchNorm1d(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, idx, targets):
        x = self.tok(idx)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == 0:
                x = self.between(x.flatten(0, 1)).view_as(x) * 0.5
        logits = self.head(x)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def _steps(count=3, vocab=16):
    torch.manual_seed(0)
    return [(torch.randint(0, vocab, (2, 6)), torch.randint(0, vocab, (2, 6))) for _ in range(count)]


def _region_calls(graph_module) -> int:
    return sum(node.target is INVOKE_SUBGRAPH for node in graph_module.graph.nodes)


def test_stretches_between_regions_go_to_the_compiler(fused):
    """Fused: the compiler gets each region graph once and each stretch of the calling graphs'
    own ops, never a graph that calls regions; unfused: the region graphs alone."""
    torch.manual_seed(0)
    compiler = ApartEager()
    compiled = assert_training_parity(Stack(), _steps(), lambda m: aot_module(m, compiler))
    (entry,) = compiled.aotgraph_entries.values()
    assert _region_calls(entry.partition.forward) == 3 and _region_calls(entry.partition.backward) == 3
    assert not any(_region_calls(graph) for graph in compiler.graphs)
    children = set(entry.partition.forward.children()) | set(entry.partition.backward.children())
    regions = [g for g in compiler.graphs if g in children]
    assert len(regions) == 2  # the layer's forward and backward, once each
    stretches = len(compiler.graphs) - len(regions)
    # forward: the embedding, the batch norm and scale, the head and loss; backward: the same, reversed
    assert stretches == (6 if fused else 0), [g.code for g in compiler.graphs]
    ops = {n.target for g in compiler.graphs for n in g.graph.nodes if n.op == "call_function"}
    assert (torch.ops.aten.embedding.default in ops) == fused


def test_a_value_is_freed_by_the_step_that_reads_it_last(fused):
    """Without gradients, a layer's input is read by that layer's region call alone: the steps
    have dropped it when the call returns; the unfused graph code holds it until then."""
    held_after_region_calls = []

    def after_call(graph_module, watched):
        if graph_module in regions:
            held_after_region_calls.append(sum(ref() is not None for ref in watched))

    torch.manual_seed(0)
    model = Stack()
    compiler = ApartEager(after_call, ignored=model.parameters())
    regions = set()
    compiled = aot_module(model, compiler)
    idx, targets = _steps(1)[0]
    with torch.no_grad():
        out = compiled(idx, targets)
        (entry,) = compiled.aotgraph_entries.values()
        regions.update(entry.partition.forward.children())
        held_after_region_calls.clear()
        out = compiled(idx, targets)
        torch.testing.assert_close(out, model(idx, targets))
    assert len(held_after_region_calls) == 3
    assert held_after_region_calls == ([0, 0, 0] if fused else [1, 1, 1])


class ScaledStack(Stack):
    """A scale after every layer: the same stretch between every two region calls."""

    def forward(self, idx, targets):
        x = self.tok(idx)
        for layer in self.layers:
            x = layer(x) * 0.5
        return F.cross_entropy(self.head(x).flatten(0, 1), targets.flatten())


@pytest.mark.parametrize("memo", [True, False])
def test_a_repeated_stretch_is_compiled_once(memo, monkeypatch):
    monkeypatch.setattr(config, "opted_in", config.opted_in | {"regions_compiled_apart"})
    if not memo:
        monkeypatch.setattr(config, "disabled", config.disabled | {"stretch_memo"})
    torch.manual_seed(0)
    compiler = ApartEager()
    compiled = assert_training_parity(ScaledStack(layers=4), _steps(), lambda m: aot_module(m, compiler))
    (entry,) = compiled.aotgraph_entries.values()
    children = set(entry.partition.forward.children()) | set(entry.partition.backward.children())
    stretches = [g for g in compiler.graphs if g not in children]
    # forward: the embedding, a scale after each of the first 3 layers, the last scale with the loss;
    # backward: the loss with the last scale, the scale before each of the first 3 layers, the embedding
    assert len(stretches) == (6 if memo else 10), [g.code for g in stretches]


@pytest.mark.slow
def test_inductor_stack_with_buffers_between_regions(fused):
    torch.manual_seed(0)
    compiled = assert_training_parity(Stack(), _steps(), lambda m: aot_module(m, "inductor"))
    (entry,) = compiled.aotgraph_entries.values()
    assert _region_calls(entry.partition.forward) == 3


class MarkedLayer(Layer):
    forward = torch.compiler.nested_compile_region(Layer.forward)


@pytest.mark.slow
def test_inductor_marked_layers_through_the_backend(fused):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = Stack()
    model.layers = nn.ModuleList(MarkedLayer(8) for _ in range(3))
    backend = aotgraph.backend(compiler="inductor")
    assert_training_parity(model, _steps(), lambda m: torch.compile(m, backend=backend, dynamic=False))
    (entry,) = backend.entries
    assert _region_calls(entry.partition.backward) == 3
    torch._dynamo.reset()


@pytest.mark.parametrize("switch", ["default", "off_by_default", "switched_off"])
def test_a_compiler_that_cannot_compile_regions_inside_a_graph_gets_them_apart(switch, monkeypatch):
    """A compiler whose traits say it must (Inductor with its C++ wrapper: no invoke_subgraph
    in its code generation) gets the regions apart: with switch ``regions_compiled_apart`` on (its
    default), and also where it is off by default (as it was until session 25: then the traits
    are asked); turned off by name, the graphs calling regions again. All match eager."""
    switched_off = switch == "switched_off"
    if switched_off:
        monkeypatch.setattr(config, "disabled", config.disabled | {"regions_compiled_apart"})
    if switch == "off_by_default":
        monkeypatch.setattr(config, "OFF_BY_DEFAULT", frozenset({"regions_compiled_apart"}))
    asked = []
    compiler = ApartEager()
    compiler.aotgraph_traits = CompilerTraits(compiles_regions_apart=True,
                                              must_compile_regions_apart=lambda graph, inputs: asked.append(len(inputs)) or True)
    torch.manual_seed(0)
    compiled = assert_training_parity(Stack(), _steps(), lambda m: aot_module(m, compiler))
    (entry,) = compiled.aotgraph_entries.values()
    assert _region_calls(entry.partition.forward) == 3
    calling_graphs = [graph for graph in compiler.graphs if _region_calls(graph)]
    assert bool(calling_graphs) == switched_off
    assert bool(asked) == (switch == "off_by_default")


def test_inductor_compiles_regions_apart_exactly_where_it_uses_its_cpp_wrapper():
    from aotgraph.compilers.torchinductor import uses_cpp_wrapper

    cpu = [torch.empty(2)]
    assert not uses_cpp_wrapper({}, cpu) and uses_cpp_wrapper({"cpp_wrapper": True}, cpu)
    assert not uses_cpp_wrapper({"cpp_wrapper": False}, cpu)


@pytest.mark.parametrize("inlined", [True, False], ids=["inlined", "apart"])
def test_inductor_gets_regions_holding_convolutions_inlined(inlined, monkeypatch):
    """Inductor's layout optimization lays a convolution region's operands out differently at
    different calls (channels-last at one, not another), which its check of a region's
    arguments refuses: such graphs reach it with their regions inlined (switch
    ``convolution_regions_inlined``; off: compiled around them). Both train as eager does
    (BatchNorm's running statistics written by each call), channels-last."""
    from aotgraph.compilers.torchinductor import regions_inlined_for_inductor

    if not inlined:
        monkeypatch.setattr(config, "disabled", config.disabled | {"convolution_regions_inlined"})
    torch.manual_seed(0)
    model, (x,) = basic_block_stack()
    # channels-last: a region's backward gets the caller's channels-last gradients, copied to the
    # contiguous layout its capture traced (else its compiled code's stride check fails)
    model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    compiled = assert_training_parity(model, [(x,)] * 2, lambda m: aot_module(m, "inductor"), scale=10)
    (entry,) = compiled.aotgraph_entries.values()
    assert [r.occurrences for r in entry.partition.joint.regions] == [3]
    assert regions_inlined_for_inductor(entry.partition.forward, {}, []) == inlined
    assert hasattr(entry.compiled.forward, "aotgraph_steps") != inlined  # steps: compiled around its regions
    assert ("regions inlined for the compiler" in entry.log.format()) == inlined


def test_inductor_inlines_regions_on_cuda_with_its_python_wrapper():
    """On CUDA, Inductor's C++ wrapper (the default) gets the regions apart; its Python wrapper
    (CUDA graphs) the graph with them inlined, as before regions reached CUDA: there Inductor
    pads the strides of values a region reads, which could differ between its calls."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from aotgraph.compilers.torchinductor import regions_inlined_for_inductor

    compiled = aot_module(Stack())
    compiled(*_steps(1)[0]).backward()
    (entry,) = compiled.aotgraph_entries.values()
    graph = entry.partition.forward
    assert _region_calls(graph) == 3
    with FakeTensorMode():
        cuda = [torch.empty(4, 8, device="cuda")]
    assert not regions_inlined_for_inductor(graph, {}, [torch.empty(4, 8)])
    assert not regions_inlined_for_inductor(graph, {}, cuda)
    assert regions_inlined_for_inductor(graph, {"cpp_wrapper": False}, cuda)
    assert regions_inlined_for_inductor(graph, {"triton.cudagraphs": True}, cuda)


def _real(meta_value: torch.Tensor) -> torch.Tensor:
    if meta_value.dtype.is_floating_point:
        return torch.randn(meta_value.shape, dtype=meta_value.dtype)
    return torch.zeros(meta_value.shape, dtype=meta_value.dtype)


def test_regions_inlined_compute_what_the_region_calls_do():
    from aotgraph.compilers.region_graphs import regions_inlined

    torch.manual_seed(0)
    model, inputs = basic_block_stack()
    compiled = aot_module(model)
    compiled(*inputs).sum().backward()
    (entry,) = compiled.aotgraph_entries.values()
    for graph in (entry.partition.forward, entry.partition.backward):
        inlined = regions_inlined(graph)
        assert _region_calls(graph) == 3 and _region_calls(inlined) == 0
        values = [_real(n.meta["val"]) for n in graph.graph.find_nodes(op="placeholder")]
        torch.manual_seed(1)
        expected = graph(*[v.clone() for v in values])
        torch.manual_seed(1)
        actual = inlined(*[v.clone() for v in values])
        torch.testing.assert_close(actual, expected)


@pytest.mark.slow
def test_inductor_cpp_wrapper_with_repeated_layers():
    """Inductor's C++ wrapper generates no invoke_subgraph: repeated layers found by
    `aot_module` are compiled apart, and the step matches eager's."""
    torch.manual_seed(0)
    compiled = assert_training_parity(
        Stack(), _steps(2), lambda m: aot_module(m, aotgraph.compilers.InductorCompiler(options={"cpp_wrapper": True})))
    (entry,) = compiled.aotgraph_entries.values()
    assert _region_calls(entry.partition.forward) == 3
