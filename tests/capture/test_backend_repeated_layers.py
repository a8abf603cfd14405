"""Repeated blocks found without a marker in the graphs Dynamo hands the backend
(capture/repeated_blocks.py): parity with eager over several optimizer steps (GPT decoder,
nn.TransformerEncoder; eager compiler, Inductor in the slow set), each distinct block captured once
and called per layer, blocks of another configuration kept apart, blocks that update their buffers
as regions writing them (flat with switch ``region_buffer_writes`` off), unsafe blocks (random draws,
an input needing a gradient written in place) flat, grad-mode changes, a block called several times, blocks
holding a marked region, the switch ``auto_regions``, a plan for the whole program, automatic and
``dynamic=True`` shapes (fixed float attributes as constants), a failing search, and the rewrite on its own."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import aotgraph
from aotgraph import config
from aotgraph.capture import regions as capture_regions
from aotgraph.capture.repeated_blocks import found_blocks, with_repeated_blocks
from aotgraph.models import gpt, transformer_stack
from aotgraph.report import build_report, format_entry
from backend_training import HopSeen, assert_training_parity
from decoder_blocks import AveragingBlock, Block, Decoder, DropoutBlock, NormBlock

COMPILERS = ["eager", pytest.param("inductor", marks=pytest.mark.slow)]


pytestmark = pytest.mark.usefixtures("fresh_dynamo")


@pytest.fixture
def region_captures(monkeypatch):
    """The names of the regions capture captured (`capture.regions.region_of`), in order."""
    names = []
    original = capture_regions.region_of
    monkeypatch.setattr(capture_regions, "region_of", lambda *a, **k: names.append(a[0]) or original(*a, **k))
    return names


def region_calls(graph_module) -> int:
    return sum(node.target is torch.ops.higher_order.invoke_subgraph for node in graph_module.graph.nodes)


def gpt_steps(count=3, vocab=256, batch=2, seq=8):
    torch.manual_seed(1)
    return [(torch.randint(0, vocab, (batch, seq)), torch.randint(0, vocab, (batch, seq))) for _ in range(count)]


def train_compiled(model, steps, compiler="eager", **backend_options):
    """`model` trained eagerly and through ``torch.compile(backend=aotgraph.backend(...))``,
    compared step by step; the backend's one entry and the HOPs Dynamo's graph held."""
    seen = HopSeen(compiler)
    if backend_options:
        seen.backend = aotgraph.backend(compiler=compiler, **backend_options)
    assert_training_parity(model, steps, seen.compile)
    (entry,) = seen.backend.entries
    return entry, seen.hops


@pytest.mark.parametrize("compiler", COMPILERS)
def test_gpt_blocks_become_one_region(compiler, region_captures):
    torch.manual_seed(0)
    model, _ = gpt(layers=3, dim=32, seq=8)
    entry, hops = train_compiled(model, gpt_steps(), compiler)
    assert hops == set()  # Dynamo handed a flat graph: the regions were found by aotgraph
    regions = entry.partition.joint.regions
    assert [(r.automatic, r.occurrences) for r in regions] == [(True, 3)]
    assert len(region_captures) == 1  # the block captured and partitioned once, for 3 layers
    assert region_calls(entry.partition.forward) == 3 and region_calls(entry.partition.backward) == 3
    assert "auto_Block (found): 3 calls" in format_entry(entry)
    assert [(r.automatic, r.occurrences) for r in build_report(entry).regions] == [(True, 3)]


@pytest.mark.slow
def test_gpt_blocks_compiled_apart_by_inductor(monkeypatch, region_captures):
    """With ``regions_compiled_apart``, Inductor compiles the found block once too."""
    monkeypatch.setattr(config, "opted_in", config.opted_in | {"regions_compiled_apart"})
    torch.manual_seed(0)
    model, _ = gpt(layers=4, dim=32, seq=8)
    entry, _ = train_compiled(model, gpt_steps(2), "inductor")
    assert [r.occurrences for r in entry.partition.joint.regions] == [4] and len(region_captures) == 1


def test_transformer_encoder_layers_become_one_region(region_captures):
    torch.manual_seed(0)
    model, (x,) = transformer_stack(layers=4, dim=32, heads=4, ffn=64, batch=2, seq=8)
    steps = [(torch.randn_like(x),) for _ in range(3)]
    entry, _ = train_compiled(model, steps)
    # the first layer reads the input, which needs no gradient (the others read one that does):
    # another layout, so that layer stays flat
    assert [(r.automatic, r.occurrences) for r in entry.partition.joint.regions] == [(True, 3)]
    assert len(region_captures) == 1
    assert region_calls(entry.partition.forward) == 3


def test_blocks_of_another_configuration_are_not_merged(region_captures):
    torch.manual_seed(0)
    # same parameter shapes, another activation (a plain attribute); another hidden width, alone
    blocks = [Block(32, 4), Block(32, 4, "relu"), Block(32, 4), Block(32, 4, "relu"), Block(32, 4),
              Block(32, 4, "relu"), Block(32, 4, hidden=2)]
    entry, _ = train_compiled(Decoder(blocks), gpt_steps(vocab=64))
    assert sorted(r.occurrences for r in entry.partition.joint.regions) == [3, 3]
    assert len(region_captures) == 2
    assert region_calls(entry.partition.forward) == 6  # the lone hidden=2 block is flat


def test_a_structure_found_fewer_than_min_repeats_times_stays_flat(region_captures):
    from aotgraph.capture.repeated_layers import MIN_REPEATS

    torch.manual_seed(0)
    entry, _ = train_compiled(Decoder([Block(32, 4) for _ in range(MIN_REPEATS - 1)]), gpt_steps(vocab=64))
    assert entry.partition.joint.regions == () and region_captures == []


def test_switch_off_keeps_the_graph_flat(monkeypatch, region_captures):
    monkeypatch.setattr(config, "disabled", config.disabled | {"auto_regions"})
    torch.manual_seed(0)
    entry, _ = train_compiled(Decoder([Block(32, 4) for _ in range(3)]), gpt_steps(vocab=64))
    assert entry.partition.joint.regions == () and region_captures == []
    assert region_calls(entry.partition.forward) == 0 and region_calls(entry.partition.backward) == 0


def test_a_plan_for_the_whole_program_keeps_blocks_flat(region_captures):
    torch.manual_seed(0)
    entry, _ = train_compiled(Decoder([Block(32, 4) for _ in range(3)]), gpt_steps(2, vocab=64), memory_budget=0.5)
    assert entry.partition.joint.regions == () and region_captures == []


class ScaledDecoder(Decoder):
    """Computes a scale under no_grad before its blocks, and runs its last `frozen` blocks under
    no_grad: Dynamo's graph changes grad mode around them."""

    def __init__(self, blocks, frozen: int = 0):
        super().__init__(blocks)
        self.frozen = frozen

    def forward(self, idx, targets):
        x = self.tok(idx)
        with torch.no_grad():
            scale = 1 + x.abs().mean()
        thawed = len(self.blocks) - self.frozen
        for block in self.blocks[:thawed]:
            x = block(x)
        with torch.no_grad():
            for block in self.blocks[thawed:]:
                x = block(x)
        return (self.head(x) * scale).mean() + x.mean()


@pytest.mark.parametrize("frozen, occurrences", [(0, [6]), (3, [3])])
def test_grad_mode_changes_set_blocks_apart(frozen, occurrences, region_captures):
    """A no_grad section before the blocks leaves them one region; blocks run under no_grad are
    not merged with those run with gradients (of the three frozen blocks the first has an input
    needing a gradient, the other two are too few for a region: they stay flat)."""
    torch.manual_seed(0)
    entry, _ = train_compiled(ScaledDecoder([Block(32, 4) for _ in range(6)], frozen), gpt_steps(2, vocab=64))
    assert [r.occurrences for r in entry.partition.joint.regions] == occurrences
    assert len(region_captures) == 1


class AtenInPlaceBlock(AveragingBlock):
    """Writes in place through an ATen operator it calls itself."""

    def forward(self, x):
        h = self.lin(x).clone()
        torch.ops.aten.mul_.Tensor(h, 0.5)
        return x + torch.tanh(h)


class Stack(nn.Module):
    """Blocks after an input layer: every block reads a value that needs a gradient (a block
    reading the input itself would have another layout, and be apart)."""

    def __init__(self, blocks, dim: int = 8):
        super().__init__()
        self.inp = nn.Linear(dim, dim)
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        return self.blocks(self.inp(x)).square().mean()


class InputWritingBlock(nn.Module):
    """Writes its input, which needs a gradient, in place: no region (recorded inline)."""

    def __init__(self, dim: int):
        super().__init__()
        self.lin = nn.Linear(dim, dim)

    def forward(self, x):
        x.mul_(0.5)
        return x + torch.tanh(self.lin(x))


@pytest.mark.parametrize("compiler", COMPILERS)
@pytest.mark.parametrize("block", [NormBlock, AveragingBlock, AtenInPlaceBlock])
def test_blocks_that_update_buffers_are_regions_writing_them(block, compiler, region_captures):
    """Each call writes its own block's buffers (a norm's running statistics, a buffer the
    block updates itself), compared with eager's; an in-place write of a value of the block's
    own is functional inside the region."""
    torch.manual_seed(0)
    model = Stack([block(8) for _ in range(3)])
    entry, _ = train_compiled(model, [(torch.randn(16, 8),) for _ in range(3)], compiler)  # compares the buffers too
    assert [r.occurrences for r in entry.partition.joint.regions] == [3]
    assert region_calls(entry.partition.forward) == 3


@pytest.mark.parametrize("block, inner_regions", [(NormBlock, []), (AveragingBlock, ["region_0_auto_Sequential"]),
                                                   (AtenInPlaceBlock, ["region_0_auto_Sequential"])])
def test_blocks_that_update_buffers_stay_flat_with_the_switch_off(block, inner_regions, region_captures,
                                                                   monkeypatch):
    """The blocks themselves stay flat; AveragingBlock's inner Sequential, a plain function of
    its operands, is a region of its own."""
    monkeypatch.setattr(config, "disabled", config.disabled | {"region_buffer_writes"})
    torch.manual_seed(0)
    model = Stack([block(8) for _ in range(3)])
    entry, _ = train_compiled(model, [(torch.randn(16, 8),) for _ in range(3)])  # compares the buffers too
    assert [r.name for r in entry.partition.joint.regions] == inner_regions == region_captures


def test_blocks_that_write_an_input_needing_a_gradient_run_inline(region_captures):
    torch.manual_seed(0)
    model = Stack([InputWritingBlock(8) for _ in range(3)])
    entry, _ = train_compiled(model, [(torch.randn(16, 8),) for _ in range(3)])
    assert region_calls(entry.partition.forward) == 0 and len(region_captures) >= 1


def test_blocks_that_draw_random_numbers_stay_flat(region_captures):
    torch.manual_seed(0)
    model = Stack([DropoutBlock(8) for _ in range(3)])
    backend = aotgraph.backend(compiler="eager")
    compiled = torch.compile(model, backend=backend, dynamic=False)
    x = torch.randn(16, 8)
    torch.manual_seed(1)
    expected = model(x)
    torch.manual_seed(1)
    assert torch.equal(compiled(x), expected)
    (entry,) = backend.entries
    assert entry.partition.joint.regions == () and region_captures == []


@pytest.mark.parametrize("block", [NormBlock, DropoutBlock])
def test_norms_and_dropouts_in_eval_become_regions(block, region_captures):
    torch.manual_seed(0)
    model = Stack([block(8) for _ in range(3)]).eval()
    entry, _ = train_compiled(model, [(torch.randn(16, 8),) for _ in range(2)])
    assert [r.occurrences for r in entry.partition.joint.regions] == [3] and len(region_captures) == 1


class Shared(nn.Module):
    """One block called three times: its calls have one structure (the same parameters as operands)."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.inp = nn.Linear(dim, dim)
        self.block = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, dim))

    def forward(self, x):
        x = self.inp(x)
        for _ in range(3):
            x = x + self.block(x)
        return x.square().mean()


def test_a_block_called_several_times_is_one_region(region_captures):
    torch.manual_seed(0)
    entry, _ = train_compiled(Shared(), [(torch.randn(4, 8),) for _ in range(3)])
    assert [r.occurrences for r in entry.partition.joint.regions] == [3] and len(region_captures) == 1


def _dynamo_graph(model, *inputs, dynamic=False):
    """The one graph (and its example inputs) that Dynamo hands a backend for ``model(*inputs)``."""
    graphs = []

    def keep(graph_module, example_inputs):
        graphs.append((graph_module, example_inputs))
        return graph_module.forward

    torch.compile(model, backend=keep, dynamic=dynamic)(*inputs)
    (graph,) = graphs
    return graph


@pytest.mark.parametrize("compiler", COMPILERS)
@pytest.mark.parametrize("layers, occurrences", [(3, []), (6, [6])])
def test_automatic_dynamic_shapes(layers, occurrences, compiler):
    """After a size changes, Dynamo hands a graph whose blocks read the batch size as a SymInt
    input: read from the block's input in the region. Eager's losses and gradients for four batch
    sizes, one static and one symbolic entry; the symbolic one has regions only from
    `SYMBOLIC_MIN_REPEATS` (6) layers on, as aot_module(dynamic=True)."""
    torch.manual_seed(0)
    model = Decoder([Block(32, 4) for _ in range(layers)])
    backend = aotgraph.backend(compiler=compiler)
    steps = [(torch.randint(0, 64, (batch, 8)), torch.randint(0, 64, (batch, 8))) for batch in (2, 3, 5, 4)]
    assert_training_parity(model, steps, lambda m: torch.compile(m, backend=backend))
    static, symbolic = backend.entries
    assert [r.occurrences for r in static.partition.joint.regions] == [layers]
    assert symbolic.reason == "symbolic sizes"
    assert [r.occurrences for r in symbolic.partition.joint.regions] == occurrences


def test_dynamic_true_takes_fixed_float_attributes_as_constants(region_captures):
    """Under ``dynamic=True`` Dynamo hands LayerNorm's eps as a 0-d tensor that each block reads
    with ``.item()``, a value the shape environment has fixed (eps reaches a C++ double, and
    Dynamo guards it): the blocks are one region holding eps as a constant, with eager's losses
    and gradients for three batch sizes from one compile."""
    torch.manual_seed(0)
    model = Decoder([Block(32, 4) for _ in range(6)])
    graph_module, _ = _dynamo_graph(model, *gpt_steps(1, vocab=64)[0], dynamic=True)
    assert any(node.target == "item" for node in graph_module.graph.nodes)
    (blocks,) = found_blocks(graph_module.graph)
    assert [dict((n.name, v) for n, v in b.constants) for b in blocks][0] and len(blocks) == 6
    assert all(sorted(v for _, v in b.constants) == [1e-5, 1e-5] for b in blocks)
    torch._dynamo.reset()
    backend = aotgraph.backend(compiler="eager")
    steps = [(torch.randint(0, 64, (batch, 8)), torch.randint(0, 64, (batch, 8))) for batch in (2, 3, 5)]
    assert_training_parity(model, steps, lambda m: torch.compile(m, backend=backend, dynamic=True))
    (entry,) = backend.entries
    assert [r.occurrences for r in entry.partition.joint.regions] == [6] and len(region_captures) == 1


def test_dynamic_true_blocks_of_another_eps_are_apart_and_a_changed_eps_recompiles():
    """A block whose eps differs is a region of its own (the constant is part of the
    structure); changing eps after the compile makes Dynamo recompile (its guard on the fixed
    value), and the values stay eager's."""
    torch.manual_seed(0)
    model = Decoder([Block(32, 4) for _ in range(7)])
    model.blocks[6].ln1.eps = 1e-3
    graph_module, _ = _dynamo_graph(model, *gpt_steps(1, vocab=64)[0], dynamic=True)
    assert [len(blocks) for blocks in found_blocks(graph_module.graph)] == [6]
    torch._dynamo.reset()
    backend = aotgraph.backend(compiler="eager")
    compiled = torch.compile(model, backend=backend, dynamic=True)
    idx, targets = gpt_steps(1, vocab=64)[0]
    torch.testing.assert_close(compiled(idx, targets), model(idx, targets))
    for block in model.blocks[:3]:
        block.ln2.eps = 0.5
    torch.testing.assert_close(compiled(idx, targets), model(idx, targets))
    assert len(backend.entries) == 2


class ScaledBlock(nn.Module):
    """Scales by a float attribute in tensor arithmetic: under ``dynamic=True`` the value stays a
    symbol (nothing guards it), which a region does not hold."""

    def __init__(self, dim: int):
        super().__init__()
        self.lin, self.scale = nn.Linear(dim, dim), 0.5

    def forward(self, x):
        return x + torch.tanh(self.lin(x)) * self.scale


def test_dynamic_true_blocks_reading_an_unfixed_float_stay_flat(region_captures):
    """A float that only scales a tensor stays a symbol: the blocks are captured flat, the graph
    reads the symbol from Dynamo's 0-d tensor, and a changed scale needs no recompile (torch
    guards nothing there either); losses and gradients are eager's for two batch sizes and
    after the change."""
    torch.manual_seed(0)
    model = Stack([ScaledBlock(8) for _ in range(6)])
    graph_module, _ = _dynamo_graph(model, torch.randn(4, 8), dynamic=True)
    assert any(node.target == "item" for node in graph_module.graph.nodes)
    assert found_blocks(graph_module.graph) == []
    torch._dynamo.reset()
    backend = aotgraph.backend(compiler="eager")
    compiled = assert_training_parity(model, [(torch.randn(batch, 8),) for batch in (4, 6)],
                                      lambda m: torch.compile(m, backend=backend, dynamic=True))
    eager = copy.deepcopy(compiled._orig_mod)
    for block in (*compiled.blocks, *eager.blocks):
        block.scale = 2.0
    x = torch.randn(5, 8)
    for module in (compiled, eager):
        module.zero_grad()
        module(x).backward()
    torch.testing.assert_close(compiled(x), eager(x))
    for p_compiled, p_eager in zip(compiled.parameters(), eager.parameters()):
        torch.testing.assert_close(p_compiled.grad, p_eager.grad)
    assert len(backend.entries) == 1 and region_captures == []


def test_the_rewritten_graph_computes_what_dynamos_graph_does():
    """The rewrite on its own: one subgraph, an invoke_subgraph call per layer, the graph linted,
    the same values as Dynamo's graph on its example inputs, Dynamo's graph left unchanged."""
    torch.manual_seed(0)
    model = Decoder([Block(32, 4) for _ in range(3)])
    graph_module, example_inputs = _dynamo_graph(model, *gpt_steps(1, vocab=64)[0])
    code = graph_module.code
    rewritten = with_repeated_blocks(graph_module)
    rewritten.graph.lint()
    assert graph_module.code == code and region_calls(graph_module) == 0
    assert region_calls(rewritten) == 3
    subgraphs = [m for m in rewritten.children() if isinstance(m, torch.fx.GraphModule)]
    assert len(subgraphs) == 1 and subgraphs[0].aotgraph_found
    with torch.no_grad():
        torch.testing.assert_close(rewritten(*example_inputs), graph_module(*example_inputs))


def test_a_graph_without_repeats_is_returned_as_it_is():
    torch.manual_seed(0)
    model = Decoder([Block(32, 4), Block(32, 4, "relu")])
    graph_module, _ = _dynamo_graph(model, *gpt_steps(1, vocab=64)[0])
    assert with_repeated_blocks(graph_module) is graph_module


def test_a_failing_search_warns_and_compiles_flat(monkeypatch, region_captures):
    def failing(graph_module):
        raise RuntimeError("a graph the search does not expect")

    monkeypatch.setattr(aotgraph.api, "with_repeated_blocks", failing)
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="search for repeated blocks failed"):
        entry, _ = train_compiled(Decoder([Block(32, 4) for _ in range(3)]), gpt_steps(2, vocab=64))
    assert entry.partition.joint.regions == () and region_captures == []


class PartlyMarkedBlock(Block):
    """Its feed-forward part marked with nested_compile_region, the block itself not."""

    @torch.compiler.nested_compile_region
    def feed_forward(self, x):
        return x + self.out(F.gelu(self.fc(self.ln2(x))))  # not a view (a Linear's 3-d output is one): a region

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d))
        return self.feed_forward(x)


def test_blocks_holding_a_marked_region_keep_it_and_stay_flat_around_it(region_captures):
    """A block that holds a marked region (a get_attr of its subgraph) is not taken: the marked
    region is reused as before, the rest of each block is flat."""
    torch.manual_seed(0)
    entry, hops = train_compiled(Decoder([PartlyMarkedBlock(32, 4) for _ in range(3)]), gpt_steps(2, vocab=64))
    assert hops == {"invoke_subgraph"}
    assert [(r.automatic, r.occurrences) for r in entry.partition.joint.regions] == [(False, 3)]
    assert len(region_captures) == 1
