"""Repeated submodules found without a marker (capture/repeated_layers.py): parity with eager
over several optimizer steps, one region per structure, layers of another configuration kept
apart, layers that update their buffers as regions writing them, unsafe layers (random draws, a
buffer the backward reads before it is written) recorded flat, and the switches (auto_regions,
region_buffer_writes; direct_state_swap, on decoders of 2 and 12 layers)."""
from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn as nn

from aotgraph import aot_module, config, default_partition
from aotgraph.capture import capture
from aotgraph.capture.regions import region_of
from aotgraph.partition import partition, partition_for
from aotgraph.partition.policies import save_nothing
from aotgraph.partition import partition_for
from aotgraph.report import build_report, format_entry
from backend_training import assert_training_parity
from decoder_blocks import AveragingBlock, Block, Decoder, DropoutBlock, NormBlock, ReluStack, region_graphs

COMPILERS = ["eager", pytest.param("inductor", marks=pytest.mark.slow)]


def steps(count=3):
    torch.manual_seed(0)
    return [(torch.randint(0, 64, (2, 8)), torch.randint(0, 64, (2, 8))) for _ in range(count)]


def train(model, compiler="eager"):
    """The compiled model after `assert_training_parity`, and its one compiled entry."""
    compiled = assert_training_parity(model, steps(), lambda m: aot_module(m, compiler))
    (entry,) = compiled.aotgraph_entries.values()
    return compiled, entry


def region_calls(graph_module) -> int:
    return sum(node.target is torch.ops.higher_order.invoke_subgraph for node in graph_module.graph.nodes)


@pytest.mark.parametrize("compiler", COMPILERS)
def test_identical_blocks_become_one_region(compiler):
    torch.manual_seed(0)
    _, entry = train(Decoder([Block(32, 4) for _ in range(4)]), compiler)
    regions = entry.partition.joint.regions
    assert all(r.automatic for r in regions)
    assert [r.occurrences for r in regions] == [4]
    assert region_calls(entry.partition.forward) == 4 and region_calls(entry.partition.backward) == 4
    assert "auto_Block (found): 4 calls" in format_entry(entry)
    assert [r.occurrences for r in build_report(entry).regions] == [4]


def test_blocks_of_another_configuration_are_not_merged():
    torch.manual_seed(0)
    # same parameter shapes, another activation (a plain attribute); another hidden width
    blocks = [Block(32, 4), Block(32, 4, "relu"), Block(32, 4), Block(32, 4, "relu"), Block(32, 4),
              Block(32, 4, "relu"), Block(32, 4, hidden=2)]
    _, entry = train(Decoder(blocks))
    calls = sorted(r.occurrences for r in entry.partition.joint.regions)
    assert sum(calls) == 6 and len(calls) >= 2  # gelu and relu blocks apart; the lone hidden=2 block flat
    assert region_calls(entry.partition.forward) == 6


def test_a_structure_repeated_fewer_than_min_repeats_times_is_recorded_flat():
    """Two blocks of one structure stay flat (a region would cost more than it saves), three
    become one region; both train as eager."""
    from aotgraph.capture.repeated_layers import MIN_REPEATS

    for layers in (MIN_REPEATS - 1, MIN_REPEATS):
        torch.manual_seed(0)
        _, entry = train(Decoder([Block(32, 4) for _ in range(layers)]))
        assert [r.occurrences for r in entry.partition.joint.regions] == ([] if layers < MIN_REPEATS else [layers])


def test_switch_off_records_every_block_flat(monkeypatch):
    monkeypatch.setattr(config, "disabled", config.disabled | {"auto_regions"})
    torch.manual_seed(0)
    _, entry = train(Decoder([Block(32, 4) for _ in range(3)]))
    assert entry.partition.joint.regions == ()
    assert region_calls(entry.partition.forward) == 0


class Stack(nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        return self.blocks(x).square().mean()


def test_blocks_that_draw_random_numbers_are_recorded_flat():
    torch.manual_seed(0)
    model = Stack([DropoutBlock(8) for _ in range(3)])
    compiled = aot_module(model)
    x = torch.randn(16, 8)
    torch.manual_seed(1)
    expected = model(x)
    torch.manual_seed(1)
    assert torch.equal(compiled(x), expected)
    (entry,) = compiled.aotgraph_entries.values()
    assert entry.partition.joint.regions == ()


@pytest.mark.parametrize("compiler", COMPILERS)
@pytest.mark.parametrize("block", [NormBlock, AveragingBlock])
def test_blocks_that_update_buffers_are_regions_writing_them(block, compiler):
    """A norm's running statistics, or a buffer of the layer's own: each call writes its own
    layer's buffers (compared with eager's after every step)."""
    torch.manual_seed(0)
    model = Stack([block(8) for _ in range(4)])
    inputs = [(torch.randn(16, 8),) for _ in range(3)]
    compiled = assert_training_parity(model, inputs, lambda m: aot_module(m, compiler))  # compares the buffers too
    (entry,) = compiled.aotgraph_entries.values()
    # the first block's input needs no gradient, the others' do: two regions
    assert sorted(r.occurrences for r in entry.partition.joint.regions) == [1, 3]
    assert region_calls(entry.partition.forward) == 4


def test_blocks_that_update_buffers_are_recorded_flat_with_the_switch_off(monkeypatch):
    monkeypatch.setattr(config, "disabled", config.disabled | {"region_buffer_writes"})
    torch.manual_seed(0)
    model = Stack([NormBlock(8) for _ in range(3)])
    compiled = assert_training_parity(model, [(torch.randn(16, 8),) for _ in range(3)], lambda m: aot_module(m))
    (entry,) = compiled.aotgraph_entries.values()
    assert entry.partition.joint.regions == ()


def _scales_then_updates(x, w, shift):
    y = (x @ w) * torch.exp(shift)
    shift.add_(0.5)
    return (y,)


@pytest.mark.parametrize("policy", [None, save_nothing])
def test_a_region_that_writes_a_buffer_returns_its_new_value(policy):
    """The region's forward returns the buffer's new value after its outputs (the caller copies
    it in); even a partition that recomputes everything keeps the buffer's old value out of the
    backward (the partition never reads a written input there: the region checks it too)."""
    x, w, shift = torch.randn(4, 8, requires_grad=True), torch.randn(8, 8, requires_grad=True), torch.zeros(8)
    split = functools.partial(partition, partition_fn=partition_for(policy=policy) if policy else default_partition)
    region = region_of("r", _scales_then_updates, [x, w, shift], capture=capture, split=split)
    assert region is not None and region.writes == (2,) and region.written[0].shape == (8,)
    assert ("operand", 2) not in region.backward_saved
    assert torch.equal(shift, torch.zeros(8))  # captured on fakes: the operand itself is untouched
    out, new_shift, *saved = region.forward(x.detach(), w.detach(), shift)
    torch.testing.assert_close(out, _scales_then_updates(x.detach(), w.detach(), shift.clone())[0])
    torch.testing.assert_close(new_shift, shift + 0.5)


@pytest.mark.parametrize("block, switched_off", [(DropoutBlock, None), (NormBlock, "region_buffer_writes")])
def test_norms_and_dropouts_in_training_are_not_captured_as_regions_at_all(block, switched_off, monkeypatch):
    """Their region capture would be refused: it is not attempted (capture pays once, flat)."""
    from aotgraph.capture import regions

    if switched_off:
        monkeypatch.setattr(config, "disabled", config.disabled | {switched_off})
    attempts = []
    original = regions.region_of
    monkeypatch.setattr(regions, "region_of", lambda *a, **k: attempts.append(a[0]) or original(*a, **k))
    torch.manual_seed(0)
    model = Stack([block(8) for _ in range(3)])
    aot_module(model)(torch.randn(16, 8)).backward()
    assert attempts == []
    model.eval()  # in eval a norm reads its statistics and a dropout does nothing: plain regions
    compiled = aot_module(model)
    x = torch.randn(16, 8)
    torch.testing.assert_close(compiled(x), model(x))
    (entry,) = compiled.aotgraph_entries.values()
    assert attempts and sum(r.occurrences for r in entry.partition.joint.regions) == 3


class ScaledBlock(NormBlock):
    """Keeps a tensor as a plain attribute: its value is not part of any structure."""

    def __init__(self, dim: int, scale: float):
        super().__init__(dim)
        self.bn = nn.LayerNorm(dim)
        self.scale = torch.tensor(scale)

    def forward(self, x):
        return super().forward(x) * self.scale


def test_blocks_with_tensor_attributes_are_not_taken():
    torch.manual_seed(0)
    model = Stack([ScaledBlock(8, s) for s in (0.5, 2.0, 3.0)])
    compiled = assert_training_parity(model, [(torch.randn(16, 8),) for _ in range(2)], lambda m: aot_module(m))
    (entry,) = compiled.aotgraph_entries.values()
    assert entry.partition.joint.regions == ()


def test_changing_one_occurrence_after_the_compile_recompiles():
    torch.manual_seed(0)
    model = Decoder([Block(32, 4) for _ in range(3)])
    compiled = aot_module(model)
    idx, targets = steps(1)[0]
    compiled(idx, targets)
    model.blocks[2].activation = "relu"  # a block not captured itself: its attributes are guarded too
    torch.testing.assert_close(compiled(idx, targets), model(idx, targets))


class CountingBlock(NormBlock):
    """Counts its calls in a plain attribute: a Python side effect each layer must see once."""

    def __init__(self, dim: int):
        super().__init__(dim)
        self.bn = nn.LayerNorm(dim)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return super().forward(x)


def test_blocks_that_change_their_own_attributes_each_run_once_at_capture():
    torch.manual_seed(0)
    model = Stack([CountingBlock(8) for _ in range(3)])
    x = torch.randn(16, 8)
    expected = model(x)
    aot_module(model)(x)
    assert [block.calls for block in model.blocks] == [2, 2, 2]  # eager's call, then the capture's (as flat)
    torch.testing.assert_close(aot_module(model)(x), expected)


def test_a_plan_for_the_whole_program_keeps_blocks_flat():
    torch.manual_seed(0)
    model = Decoder([Block(32, 4) for _ in range(3)])
    compiled = assert_training_parity(model, steps(2), lambda m: aot_module(m, partition_fn=partition_for(budget=0.5)))
    (entry,) = compiled.aotgraph_entries.values()
    assert entry.partition.joint.regions == ()


@pytest.mark.parametrize("layers", [3, 12])
@pytest.mark.parametrize("swap_disabled", [False, True])
def test_deep_decoder_with_and_without_the_direct_state_swap(layers, swap_disabled, monkeypatch):
    """The program's parameters swapped for its inputs by aot_module itself or by
    torch.func.functional_call (switch ``direct_state_swap``): eager's losses, every layer's
    gradients and parameters over SGD steps, one region called per layer."""
    if swap_disabled:
        monkeypatch.setattr(config, "disabled", config.disabled | {"direct_state_swap"})
    torch.manual_seed(0)
    _, entry = train(Decoder([Block(32, 4) for _ in range(layers)]))
    assert region_calls(entry.partition.forward) == layers and region_calls(entry.partition.backward) == layers


@pytest.mark.parametrize("kept", [True, False])
def test_a_region_reads_its_own_output_in_its_backward_rather_than_recomputing_it(kept, monkeypatch):
    """Each block's output is the next block's operand: the caller's graph keeps it for the
    backward anyway, so the region's min cut saves it for free (switch ``region_outputs_kept``)
    and its backward reads the ReLU's mask from it; switched off, the backward recomputes the
    block (ResNet's blocks: the residual ReLU and a batch norm's normalization). Both match eager."""
    from aotgraph import min_cut_rematerialization_partition
    if not kept:
        monkeypatch.setattr(config, "disabled", config.disabled | {"region_outputs_kept"})
    torch.manual_seed(0)
    model = ReluStack()
    data = [(torch.randn(4, 16),) for _ in range(3)]
    compiled = assert_training_parity(model, data, lambda m: aot_module(
        m, "eager", partition_fn=min_cut_rematerialization_partition))
    (entry,) = compiled.aotgraph_entries.values()
    assert sum(r.occurrences for r in entry.partition.joint.regions) == 3  # (the first block's input needs no grad)
    recomputed = {str(n.target) for g in region_graphs(entry.partition.backward) for n in g.graph.nodes
                  if n.op == "call_function"}
    assert ("aten.relu.default" in recomputed) is not kept, recomputed


class _Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 8)

    def forward(self, x):
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(x)))


class _TokenFirst(nn.Module):
    """Six blocks, then a class token put before their output (ConViT's order, reversed)."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(*[_Mlp() for _ in range(6)])
        self.token = nn.Parameter(torch.randn(1, 1, 8))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.blocks(x)
        return self.head(torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)).sum()


def test_a_region_of_symbolic_sizes_gets_a_contiguous_gradient():
    """The blocks' output gradient is a slice of the concatenation's gradient, not contiguous.
    The region's backward was traced with a contiguous tangent and views it as one (a linear of
    a 3-d input: ``view(tangent, [s0*s1, 8])``): with symbolic sizes that gradient reached it
    uncopied and the view raised (timm's ConViT under aot_module(dynamic=True))."""
    torch.manual_seed(0)
    model = _TokenFirst()
    eager = copy.deepcopy(model)
    compiled = aot_module(model, "eager", dynamic=True)
    for shape in [(2, 5, 8), (3, 7, 8), (4, 5, 8)]:
        x = torch.randn(shape)
        compiled(x).backward()
        eager(x).backward()
        for p, q in zip(eager.parameters(), model.parameters()):
            torch.testing.assert_close(q.grad, p.grad)
    (entry,) = compiled.aotgraph_entries.values()
    assert sum(use.occurrences for use in entry.joint.regions if use.automatic) == 6


class _FilledBlock(nn.Module):
    """A block whose output's dtype follows a Python attribute's type."""

    def __init__(self, value):
        super().__init__()
        self.linear, self.value = nn.Linear(8, 8), value

    def forward(self, x):
        return self.linear(x) + x, torch.full((2,), self.value)


class _FilledStack(nn.Module):
    def __init__(self, values):
        super().__init__()
        self.layers = nn.ModuleList([_FilledBlock(v) for v in values])

    def forward(self, x):
        filled = []
        for layer in self.layers:
            x, t = layer(x)
            filled.append(t)
        return x, filled


def test_blocks_whose_attributes_are_equal_but_of_other_types_are_apart():
    """``1 == 1.0 == True`` (and ``0.0 == -0.0``): one region for all would give each the first's tensors."""
    model = _FilledStack([1, 1.0, True, 1, 1.0, True, 0.0, -0.0, 0.0, -0.0])
    x = torch.randn(4, 8)
    expected, ours = model(x)[1], aot_module(model)(x)[1]
    assert [t.dtype for t in ours] == [t.dtype for t in expected]
    for got, wanted in zip(ours, expected):
        torch.testing.assert_close(got, wanted, equal_nan=True)
        assert torch.equal(got.signbit(), wanted.signbit()) if got.is_floating_point() else True


def test_a_hook_on_every_module_keeps_the_layers_flat():
    torch.manual_seed(0)
    blocks = nn.Sequential(*[nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8)) for _ in range(4)])
    scale = {id(block[1]): 1.0 + k for k, block in enumerate(blocks)}
    handle = nn.modules.module.register_module_forward_hook(
        lambda module, inputs, output: output * scale[id(module)] if id(module) in scale else None)
    try:
        x = torch.randn(3, 8)
        torch.testing.assert_close(aot_module(blocks)(x), blocks(x))
    finally:
        handle.remove()


class _FeedForward(nn.Module):
    def __init__(self, dim=16):
        super().__init__()
        self.up, self.down = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        return x + self.down(torch.nn.functional.gelu(self.up(x)))


class _CheckpointedStack(nn.Module):
    def __init__(self, checkpointed: bool):
        super().__init__()
        self.layers, self.checkpointed = nn.ModuleList([_FeedForward() for _ in range(3)]), checkpointed

    def forward(self, x):
        from torch.utils.checkpoint import checkpoint

        for layer in self.layers:
            x = checkpoint(layer, x, use_reentrant=False) if self.checkpointed else layer(x)
        return x.sum()


def test_layers_called_inside_a_checkpoint_save_what_the_checkpoint_says():
    """A repeated layer called through checkpoint is recorded inline: as a region it saved its
    own activations, and the checkpoint's memory saving was lost."""
    torch.manual_seed(0)
    saved = {}
    for checkpointed in (False, True):
        compiled = assert_training_parity(_CheckpointedStack(checkpointed), [(torch.randn(8, 16),) for _ in range(2)],
                                          aot_module)
        (entry,) = compiled.aotgraph_entries.values()
        saved[checkpointed] = entry.partition.saved_bytes
    assert saved[True] * 4 < saved[False]
