"""A region's capture shares its caller's fake-output memo (capture/fake_outputs.py, switch
``shared_fake_memo``): the same results as eager with and without it, and fewer misses with it
where two regions of one layer meet the same ops (the first layer's input needs no gradient,
so it is a region of its own)."""
from __future__ import annotations

import pytest
import torch

from aotgraph import config, models
from aotgraph.capture.fake_outputs import FakeOutputs
from parity import assert_module_parity


def _moe():
    torch.manual_seed(0)
    return models.moe(batch=2, seq=4, dim=16, experts=2, layers=3)


@pytest.fixture
def misses(monkeypatch):
    """How many ops the fake memo did not know (each miss makes one recipe, or None)."""
    counted = []
    recipe_of = FakeOutputs._recipe_of

    def counting(self, *args):
        counted.append(1)
        return recipe_of(self, *args)

    monkeypatch.setattr(FakeOutputs, "_recipe_of", counting)
    return counted


def _capture_misses(misses, monkeypatch, shared: bool) -> int:
    disabled = config.disabled - {"shared_fake_memo"} if shared else config.disabled | {"shared_fake_memo"}
    monkeypatch.setattr(config, "disabled", disabled)
    misses.clear()
    model, inputs = _moe()
    parity = assert_module_parity(model, inputs)
    assert parity.grads_compared == len(list(model.parameters()))
    (entry,) = parity.entries
    assert len(entry.joint.regions) == 2  # the first layer's, and the other layers'
    return len(misses)


def test_regions_share_their_callers_memo(misses, monkeypatch):
    shared = _capture_misses(misses, monkeypatch, True)
    apart = _capture_misses(misses, monkeypatch, False)
    assert shared < apart
