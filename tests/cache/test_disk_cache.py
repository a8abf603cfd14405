"""The disk cache end to end: a second compile of the same program in a fresh compiled
function (as a new process would) loads the stored entry, and its outputs, gradients and
mutated inputs match eager; damaged entries are compiled again; unsafe directories refused."""
import copy

import pytest
import torch
import torch.nn as nn
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

import aotgraph
from aotgraph import config
from aotgraph.cache.disk import CacheCorruptionWarning, CacheDirError, DiskCache


def _cache_load(entry) -> str:
    details = [r.detail for r in entry.log.records if r.stage == "cache load"]
    return details[-1] if details else "none"


def _stages(entry) -> set:
    return {r.stage for r in entry.log.records}


def _run(compiled, args, grad_args):
    out = compiled(*args)
    loss = sum(o.float().sum() for o in (out if isinstance(out, tuple) else (out,)) if o.requires_grad)
    grads = torch.autograd.grad(loss, grad_args) if isinstance(loss, torch.Tensor) else ()
    return out, grads


def _assert_close(a, b, dtype=torch.float32):
    tolerance = dict(rtol=2e-2, atol=2e-2) if dtype == torch.bfloat16 else dict(rtol=1e-4, atol=1e-5)
    for x, y in zip(a if isinstance(a, (tuple, list)) else (a,), b if isinstance(b, (tuple, list)) else (b,)):
        torch.testing.assert_close(x, y, **tolerance)


def _twice(make, program, args, grad_args):
    """Compile `program` twice in fresh compiled functions: (first entry, second entry), each
    run's outputs and gradients checked against eager."""
    expected = _run(program, args, grad_args)
    entries = []
    for _ in range(2):
        compiled = make(program)
        got = _run(compiled, args, grad_args)
        _assert_close(got[0], expected[0])
        _assert_close(got[1], expected[1])
        entries.append(list(compiled.aotgraph_entries.values())[-1])
    return entries


def _mlp_program():
    torch.manual_seed(0)
    layers = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))
    x = torch.randn(5, 8, requires_grad=True)
    params = list(layers.parameters())

    def program(x, *weights):
        return torch.func.functional_call(layers, dict(zip([n for n, _ in layers.named_parameters()], weights)), (x,))

    return program, (x, *params), (x, *params)


@pytest.mark.parametrize("compiler", ["eager", "nop", "inductor"])
def test_aot_function_second_compile_loads_after_capture(compiler):
    program, args, grad_args = _mlp_program()
    first, second = _twice(lambda fn: aotgraph.aot_function(fn, compiler, cache=True), program, args, grad_args)
    assert _cache_load(first) == "miss" and "compile" in _stages(first)
    assert _cache_load(second) == "hit" and "capture" in _stages(second) and "compile" not in _stages(second)
    assert second.disk_key == first.disk_key
    assert second.partition.saved_bytes == first.partition.saved_bytes
    assert str(second.joint.signature) == str(first.joint.signature)


def test_a_program_keyed_by_its_capture_warms_its_compiler_up_only_on_a_miss(monkeypatch):
    """Inductor's kernel-compiling pool (its compiler's warm-up) starts once the captured key
    misses, not before capture: a warm start that loads its entry starts none."""
    import dataclasses

    from aotgraph import compilers

    warmed = []
    eager = compilers.resolve_compiler("eager")
    monkeypatch.setattr(eager, "aotgraph_traits", dataclasses.replace(compilers.traits_of(eager), warm_up=warmed.append))
    program, args, grad_args = _mlp_program()
    first, second = _twice(lambda fn: aotgraph.aot_function(fn, "eager", cache=True), program, args, grad_args)
    assert _cache_load(first) == "miss" and _cache_load(second) == "hit"
    assert len(warmed) == 1  # the miss's


def test_aot_function_is_not_cached_unless_asked():
    program, args, _ = _mlp_program()
    compiled = aotgraph.aot_function(program)
    compiled(*args)
    assert _cache_load(list(compiled.aotgraph_entries.values())[0]) == "none"
    assert DiskCache().stats().entries == 0


def test_switch_turns_the_cache_off(monkeypatch):
    monkeypatch.setattr(config, "disk_cache", "0")
    program, args, _ = _mlp_program()
    compiled = aotgraph.aot_function(program, cache=True)
    compiled(*args)
    assert DiskCache().stats().entries == 0


def test_user_compiler_is_not_cached():
    program, args, grad_args = _mlp_program()
    first, second = _twice(lambda fn: aotgraph.aot_function(fn, lambda gm, inputs: gm.forward, cache=True),
                           program, args, grad_args)
    assert _cache_load(second) == "none" and DiskCache().stats().entries == 0


class _BatchNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.norm(self.conv(x))
        return y.relu(), y.transpose(1, 2)  # a fresh output and a view of another


@pytest.mark.parametrize("compiler", ["eager", "inductor"])
def test_graph_module_loads_before_capture_with_buffer_mutations(compiler):
    torch.manual_seed(0)
    model = _BatchNormNet()
    x = torch.randn(2, 3, 6, 6)
    graph = torch.fx.symbolic_trace(model)
    reference = copy.deepcopy(model)
    expected = reference(x)
    entries = []
    for _ in range(2):
        run_model = copy.deepcopy(graph)
        forward = aotgraph.aot_module_simplified(run_model, (x,), fw_compiler=compiler)
        out = forward(x)
        _assert_close(out, expected)
        torch.testing.assert_close(run_model.norm.running_mean, reference.norm.running_mean)
        out[0].sum().backward()
        entries.append(list(forward.aotgraph_entries.values())[-1])
    assert _cache_load(entries[0]) == "miss"
    assert _cache_load(entries[1]) == "hit" and "capture" not in _stages(entries[1])
    grads = [p.grad for p in run_model.parameters()]
    reference.zero_grad()
    reference(x)[0].sum().backward()
    _assert_close(grads, [p.grad for p in reference.parameters()])


def test_torch_compile_backend_loads_in_a_fresh_dynamo():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    x = torch.randn(3, 8)
    expected = model(x)
    for attempt in range(2):
        torch._dynamo.reset()
        backend = aotgraph.backend(compiler="eager")
        out = torch.compile(model, backend=backend, dynamic=False)(x)
        _assert_close(out, expected)
        (entry,) = backend.entries
        assert _cache_load(entry) == ("miss" if attempt == 0 else "hit")
    torch._dynamo.reset()


def test_autocast_region_custom_function_and_selective_checkpoint_are_keyed_by_their_graphs():
    class Scaled(torch.autograd.Function):
        scale = 2.0

        @staticmethod
        def forward(ctx, x):
            return x * 3

        @staticmethod
        def backward(ctx, grad):
            return grad * Scaled.scale

    def policy(ctx, op, *args, **kwargs):
        return CheckpointPolicy.MUST_SAVE if op is torch.ops.aten.mm.default else CheckpointPolicy.PREFER_RECOMPUTE

    def program(x, w):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = x @ w
        h = Scaled.apply(h.float())
        return checkpoint(lambda t: (t @ w).sin(), h, use_reentrant=False,
                          context_fn=lambda: create_selective_checkpoint_contexts(policy))

    torch.manual_seed(0)
    x, w = torch.randn(4, 4, requires_grad=True), torch.randn(4, 4, requires_grad=True)
    grads = {}
    for scale in (2.0, 5.0, 2.0):  # the Function's backward reads a class attribute: a new graph, a new key
        Scaled.scale = scale
        expected = torch.autograd.grad(program(x, w).sum(), (x, w))
        compiled = aotgraph.aot_function(program, cache=True)
        got = torch.autograd.grad(compiled(x, w).sum(), (x, w))
        _assert_close(got, expected, torch.bfloat16)
        entry = list(compiled.aotgraph_entries.values())[0]
        grads.setdefault(scale, []).append((_cache_load(entry), entry.disk_key))
    assert grads[2.0][0][0] == "miss" and grads[5.0][0][0] == "miss" and grads[2.0][1][0] == "hit"
    assert grads[2.0][0][1] != grads[5.0][0][1]


@pytest.mark.parametrize("damage", ["truncate", "flip", "replace"])
def test_damaged_entry_is_compiled_again_and_correct(damage):
    program, args, grad_args = _mlp_program()
    first, _ = _twice(lambda fn: aotgraph.aot_function(fn, cache=True), program, args, grad_args)
    other = aotgraph.aot_function(lambda x: x.sin(), cache=True)
    other(torch.randn(3))
    other_key = list(other.aotgraph_entries.values())[0].disk_key
    entries = DiskCache().directory / "entries"
    path, other_path = entries / first.disk_key[:2] / first.disk_key, entries / other_key[:2] / other_key
    data = path.read_bytes()
    path.write_bytes({"truncate": data[:len(data) // 3], "flip": data[:200] + bytes([data[200] ^ 1]) + data[201:],
                      "replace": other_path.read_bytes()}[damage])
    expected = _run(program, args, grad_args)
    with pytest.warns(CacheCorruptionWarning):
        compiled = aotgraph.aot_function(program, cache=True)
        got = _run(compiled, args, grad_args)
    _assert_close(got[0], expected[0])
    _assert_close(got[1], expected[1])
    assert _cache_load(list(compiled.aotgraph_entries.values())[0]) == "miss"
    again = aotgraph.aot_function(program, cache=True)
    _run(again, args, grad_args)
    assert _cache_load(list(again.aotgraph_entries.values())[0]) == "hit"


def test_unloadable_entry_with_a_valid_checksum_is_compiled_again():
    program, args, grad_args = _mlp_program()
    first, _ = _twice(lambda fn: aotgraph.aot_function(fn, cache=True), program, args, grad_args)
    store = DiskCache()
    store.write(first.disk_key, b"not a pickle")
    before = store.stats()
    with pytest.warns(CacheCorruptionWarning, match="could not be loaded"):
        compiled = aotgraph.aot_function(program, cache=True)
        got = _run(compiled, args, grad_args)
    _assert_close(got[1], _run(program, args, grad_args)[1])
    after = store.stats()
    assert (after.hits, after.misses) == (before.hits, before.misses + 1)  # a miss, not a hit


def test_cache_directory_writable_by_others_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setattr(config, "cache_dir", str(shared))
    program, args, _ = _mlp_program()
    with pytest.raises(CacheDirError, match="writable by group or others"):
        aotgraph.aot_function(program, cache=True)(*args)


def test_a_graph_compiled_around_its_regions_loads_as_its_steps(monkeypatch):
    """Inductor compiling regions apart (as on CUDA, where its C++ wrapper cannot compile them
    inside a graph) gives graphs run as steps (compilers/region_steps.py): their entry stores
    each step's compiled code, and a second compile loads it, as steps again, matching eager."""
    from decoder_blocks import Block, Decoder

    monkeypatch.setattr(config, "opted_in", config.opted_in | {"regions_compiled_apart"})
    torch.manual_seed(0)
    model = Decoder([Block(16, 2) for _ in range(3)], vocab=32, dim=16)
    idx, targets = torch.randint(0, 32, (2, 6)), torch.randint(0, 32, (2, 6))
    reference = copy.deepcopy(model)
    expected = reference(idx, targets)
    expected.backward()
    entries = []
    for _ in range(2):
        model.zero_grad()
        compiled = aotgraph.aot_module(model, "inductor", cache=True)
        loss = compiled(idx, targets)
        loss.backward()
        torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-5)
        for p, q in zip(model.parameters(), reference.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5)
        entries.append(list(compiled.aotgraph_entries.values())[-1])
    first, second = entries
    assert [r.automatic for r in first.partition.joint.regions] == [True]
    assert _cache_load(first) == "miss" and _cache_load(second) == "hit"
    assert "compile" not in _stages(second)
    for graph in (second.compiled.forward, second.compiled.backward):
        assert hasattr(graph, "aotgraph_steps"), graph
