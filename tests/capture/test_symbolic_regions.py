"""Regions with symbolic operands (capture/regions.py, switch ``symbolic_regions``): under
``dynamic=True`` a model's repeated blocks are captured once, keyed by their operands' size
expressions, and called per occurrence (a size the region's backward needs passed by the
caller's graph); differential against eager
(loss, gradients, parameters over optimizer steps, several sizes) with exactly one compile;
a region making an unbacked size, layers repeated fewer than `SYMBOLIC_MIN_REPEATS` times, and
the switch off record the calls inline; the switches
``symbolic_regions``, ``shared_fake_memo`` and ``region_mode_exit`` off give the same size guards."""
from __future__ import annotations

import pytest
import torch

import aotgraph
from aotgraph import config, models
from aotgraph.capture import repeated_layers
from aotgraph.compilers import eager
from backend_training import assert_training_parity, counting

COMPILERS = ["eager", pytest.param("inductor", marks=pytest.mark.slow)]


@pytest.fixture(autouse=True)
def regions_from_three_repeats(monkeypatch):
    """Layers repeated 3 times become regions here (by default only from `SYMBOLIC_MIN_REPEATS`)."""
    monkeypatch.setattr(repeated_layers, "SYMBOLIC_MIN_REPEATS", 3)


def region_calls(graph_module) -> int:
    return sum(node.target is torch.ops.higher_order.invoke_subgraph for node in graph_module.graph.nodes)


def train_gpt_over_sizes(compiler):
    """A 3-block GPT trained eagerly and through ``aot_module(dynamic=True)`` over 3 x 3 sizes:
    the compiled model's one entry (one compile: a second would be a second entry)."""
    torch.manual_seed(0)
    model, _ = models.gpt(seq=32, dim=32, heads=2, layers=3)
    inputs = [(torch.randint(0, 256, (b, s)), torch.randint(0, 256, (b, s))) for b in (2, 3, 5) for s in (5, 8, 13)]
    compiled = assert_training_parity(model, inputs, lambda m: aotgraph.aot_module(m, fw_compiler=compiler,
                                                                                   dynamic=True), lr=0.01)
    (entry,) = compiled.aotgraph_entries.values()
    return entry


@pytest.mark.parametrize("compiler", COMPILERS)
def test_symbolic_blocks_become_one_region(compiler):
    counted = counting(eager)
    entry = train_gpt_over_sizes(counted if compiler == "eager" else compiler)
    assert compiler != "eager" or counted.calls == 2
    assert [r.occurrences for r in entry.partition.joint.regions] == [3]
    assert region_calls(entry.partition.forward) == 3 and region_calls(entry.partition.backward) == 3


def test_fewer_repeats_than_the_minimum_are_recorded_inline(monkeypatch):
    monkeypatch.setattr(repeated_layers, "SYMBOLIC_MIN_REPEATS", 4)
    entry = train_gpt_over_sizes(eager)
    assert entry.partition.joint.regions == ()


def test_switch_off_records_blocks_inline(monkeypatch):
    monkeypatch.setattr(config, "disabled", config.disabled | {"symbolic_regions"})
    entry = train_gpt_over_sizes(eager)
    assert entry.partition.joint.regions == ()
    assert region_calls(entry.partition.forward) == 0


class CenteredLayer(torch.nn.Module):
    """Its backward needs the number of rows (the mean's), a symbolic size the region saves."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(6, 6)

    def forward(self, x):
        rows, columns = x.shape
        centered = x - x.mean(dim=0)
        return torch.tanh(self.linear(centered.reshape(rows * columns // 2, 2).reshape(rows, columns)))


class PositiveRows(torch.nn.Module):
    """Gathers the rows with a positive sum: ``nonzero`` makes an unbacked size."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(6, 6)

    def forward(self, x):
        y = self.linear(x)
        return y + y[(y.sum(1) > 0).nonzero().squeeze(1)].sum(0)


def train_layers_over_rows(layer, rows):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 6), *(layer() for _ in range(3)))  # every layer's input needs a grad
    inputs = [(torch.randn(n, 6),) for n in rows]
    counted = counting(eager)
    compiled = assert_training_parity(model, inputs, lambda m: aotgraph.aot_module(m, fw_compiler=counted,
                                                                                   dynamic=True), lr=0.01)
    (entry,) = compiled.aotgraph_entries.values()
    assert counted.calls == 2
    return entry


def test_region_saving_a_size_for_its_backward():
    entry = train_layers_over_rows(CenteredLayer, (3, 7, 12, 5, 9))
    (region,) = entry.partition.joint.regions
    assert region.occurrences == 3
    (module,) = [m for name, m in entry.partition.joint.graph_module.named_children() if name.endswith("_backward")]
    assert any(isinstance(n.meta.get("val"), torch.SymInt) for n in module.graph.find_nodes(op="placeholder"))


def test_region_making_unbacked_sizes_is_recorded_inline():
    entry = train_layers_over_rows(PositiveRows, (4, 9, 6))
    assert entry.partition.joint.regions == ()


def size_guards(monkeypatch, switches_off: set) -> list:
    """The size guards of a 3-block GPT's compile with `switches_off` off."""
    monkeypatch.setattr(config, "disabled", config.disabled | switches_off)
    torch.manual_seed(0)
    model, _ = models.gpt(seq=16, dim=32, heads=2, layers=3)
    compiled = aotgraph.aot_module(model, fw_compiler=eager, dynamic=True)
    compiled(torch.randint(0, 256, (3, 7)), torch.randint(0, 256, (3, 7))).backward()
    (entry,) = compiled.aotgraph_entries.values()
    return sorted(g.text for g in entry.guards.guards if getattr(g, "text", ""))


@pytest.mark.parametrize("switch", ["symbolic_regions", "shared_fake_memo", "region_mode_exit"])
def test_switch_off_gives_the_same_size_guards(switch, monkeypatch):
    on = size_guards(monkeypatch, set())
    assert any(on) and size_guards(monkeypatch, {switch}) == on
