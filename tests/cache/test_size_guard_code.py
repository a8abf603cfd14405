"""The size guard aotgraph writes itself (cache/size_guard_code.py) admits exactly the sizes
torch's own guard producer admits, for programs with size guards of every kind: sizes
specialized to a number, pooled and concatenated sizes (floor divisions, equalities), a branch
on a relation between two inputs, one input's size replaced by another's, transposed inputs.
Differential: both texts evaluated on a few hundred random layouts."""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

import aotgraph
from aotgraph import models
from aotgraph.cache import size_guards
from aotgraph.torch_private.symbolic import guards_hold


def _recorded_guards(monkeypatch, compile_and_call) -> tuple:
    """(ours, torch's, number of inputs) of the size guard of the last symbolic compile."""
    seen = []
    original = size_guards.size_guard_text

    def recording(shape_env, placeholders):
        text = original(shape_env, placeholders)
        seen.append((text, shape_env.produce_guards_expression(placeholders, ignore_static=False) or "True",
                     len(placeholders)))
        return text

    monkeypatch.setattr(size_guards, "size_guard_text", recording)
    compile_and_call()
    assert seen, "no symbolic compile"
    return seen[-1]


def _admitted(code, tensors: list) -> bool:
    try:
        return guards_hold(code, tensors)
    except ZeroDivisionError:  # (torch's text checks the ranges last: a condition dividing by a size of 0 raises)
        return False


def _pool_cat(x):
    skip = F.max_pool2d(x, 2)
    deep = F.max_pool2d(skip, 2)
    up = F.interpolate(deep, scale_factor=2.0, mode="nearest")
    return torch.cat([up, skip], 1).sum()


def _branch(x, y):
    return (x[: y.shape[0]] * y).sum() if x.shape[0] > y.shape[0] else (x * y[: x.shape[0]]).sum()


def _same_rows(x, y):
    return (x + y).relu().sum()


def _channels(x, w):
    return F.conv2d(x, w, padding=1).sum()


def _random_layouts(dims: list, count: int = 300) -> list:
    rng = random.Random(0)
    sizes = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 24, 32]
    layouts = []
    for _ in range(count):
        tensors = []
        for rank in dims:
            t = torch.empty([rng.choice(sizes) for _ in range(rank)])
            if rank >= 2 and rng.random() < 0.2:
                t = t.transpose(-1, -2)
            tensors.append(t)
        layouts.append(tensors)
    return layouts


CASES = {
    "pool_cat": (_pool_cat, lambda: (torch.randn(2, 3, 16, 16),)),
    "branch": (_branch, lambda: (torch.randn(6, 4), torch.randn(3, 4))),
    "same_rows": (_same_rows, lambda: (torch.randn(5, 4), torch.randn(5, 4))),
    "channels": (_channels, lambda: (torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3))),
    "transposed": (_same_rows, lambda: (torch.randn(4, 6).t(), torch.randn(6, 4))),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_admits_what_torch_admits(monkeypatch, case):
    fn, make_inputs = CASES[case]
    inputs = make_inputs()
    compiled = aotgraph.aot_function(fn, dynamic=True)
    ours, theirs, count = _recorded_guards(monkeypatch, lambda: compiled(*inputs))
    assert ours is not None, "the printer declined"
    assert guards_hold(compile(ours, "ours", "eval"), list(inputs[:count]))
    our_code, torch_code = compile(ours, "ours", "eval"), compile(theirs, "torch", "eval")
    differences = [[tuple(t.shape) for t in tensors] for tensors in _random_layouts([t.dim() for t in inputs[:count]])
                   if guards_hold(our_code, tensors) != _admitted(torch_code, tensors)]
    assert not differences, (ours, theirs, differences[:5])


def test_unet_guard_is_torchs(monkeypatch):
    """A UNet's guard (pooled sizes, skip connections) through aot_module: the same sizes pass."""
    model, (x,) = models.unet()
    compiled = aotgraph.aot_module(model, fw_compiler=aotgraph.nop, dynamic=True)
    ours, theirs, _ = _recorded_guards(monkeypatch, lambda: compiled(x).sum().backward())
    our_code, torch_code = compile(ours, "ours", "eval"), compile(theirs, "torch", "eval")
    for height in range(0, 70):
        for width in (8, 16, 24, 40, 9, 18):
            t = torch.empty(2, 3, height, width)
            assert guards_hold(our_code, [t]) == _admitted(torch_code, [t]), (height, width)


def test_declines_a_symbol_without_a_source():
    """A guard over a symbol that no input's layout names: the printer declines (torch's
    producer then writes the guard)."""
    from torch.fx.experimental.symbolic_shapes import ShapeEnv
    from aotgraph.cache.size_guard_code import size_guard_text
    from aotgraph.torch_private.symbolic import symbolic_fake
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode(shape_env=ShapeEnv(duck_shape=False))
    a = symbolic_fake(mode, torch.empty(4, 5), "a")
    b = symbolic_fake(mode, torch.empty(6), "b")
    assert bool(a.shape[0] * 2 < b.shape[0] + 3)  # a guard over both inputs' symbols
    assert size_guard_text(mode.shape_env, [a, b]) is not None
    assert size_guard_text(mode.shape_env, [a]) is None
