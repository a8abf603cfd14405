"""A loaded disk cache entry decodes its graphs only when something reads them: its runtime
runs from the stored `ForwardFacts`, which must equal what the forward graph says, and the
graphs read later (reports, the debug log) must equal the ones that were stored."""
import pytest
import torch
import torch.nn as nn

import aotgraph
from aotgraph.cache.stored_entries import graphs_decoded
from aotgraph.errors import AotGraphError
from aotgraph.runtime import forward_facts


def _entry(compiled):
    return list(compiled.aotgraph_entries.values())[-1]


def _cache_load(entry) -> str:
    return [r.detail for r in entry.log.records if r.stage == "cache load"][-1]


def _outputs_and_grads(fn, args):
    """(outputs, gradients of their sum with respect to every input requiring grad), on clones of `args`."""
    args = [a.detach().clone().requires_grad_(a.requires_grad) for a in args]
    out = fn(*args)
    outs = out if isinstance(out, tuple) else (out,)
    loss = sum(o.float().sum() for o in outs if o.requires_grad)
    grads = torch.autograd.grad(loss, [a for a in args if a.requires_grad])
    return [o.detach() for o in outs], grads, args


def _mlp(x, w1, w2):
    return torch.tanh(x @ w1) @ w2


def _updates_a_buffer(x, w, buffer):
    """A mutated input the runtime or the graph writes, read by the backward after its update,
    and a non-differentiable output."""
    y = (x * w).sin()
    buffer.mul_(0.9).add_(y.detach() * 0.1)
    return y * buffer, buffer.detach() * 2


def _returns_a_view(x, w):
    y = x * w
    return y.transpose(0, 1), y.exp()


def _args(program):
    torch.manual_seed(0)
    if program is _mlp:
        return [torch.randn(4, 6, requires_grad=True), torch.randn(6, 8, requires_grad=True),
                torch.randn(8, 3, requires_grad=True)]
    if program is _updates_a_buffer:
        return [torch.randn(5, requires_grad=True), torch.randn(5, requires_grad=True), torch.randn(5)]
    return [torch.randn(3, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True)]


def _compile_twice(program, compiler):
    """The cold entry and the loaded one (a fresh compiled function), each checked against eager."""
    expected = _outputs_and_grads(program, _args(program))
    entries = []
    for _ in range(2):
        compiled = aotgraph.aot_function(program, compiler, cache=True)
        got = _outputs_and_grads(compiled, _args(program))
        for a, b in [*zip(got[0], expected[0]), *zip(got[1], expected[1]), *zip(got[2], expected[2])]:
            torch.testing.assert_close(a, b)
        entries.append(_entry(compiled))
    assert _cache_load(entries[0]) == "miss" and _cache_load(entries[1]) == "hit"
    return entries


@pytest.mark.parametrize("program", [_mlp, _updates_a_buffer, _returns_a_view])
def test_inductor_entry_runs_without_decoding_its_graphs(program):
    _, loaded = _compile_twice(program, "inductor")
    assert not graphs_decoded(loaded.partition) and not graphs_decoded(loaded.joint)


@pytest.mark.parametrize("compiler", ["inductor", "eager"])
@pytest.mark.parametrize("program", [_mlp, _updates_a_buffer, _returns_a_view])
def test_stored_forward_facts_are_those_of_the_decoded_forward_graph(program, compiler):
    cold, loaded = _compile_twice(program, compiler)
    stored = forward_facts(cold.compiled)
    recomputed = forward_facts(loaded.compiled)  # reads the loaded forward graph: decodes it
    assert graphs_decoded(loaded.partition)
    assert stored == recomputed


@pytest.mark.parametrize("program", [_mlp, _updates_a_buffer])
def test_graphs_read_later_equal_the_stored_ones(program):
    cold, loaded = _compile_twice(program, "inductor")
    pairs = [(cold.joint.graph_module, loaded.joint.graph_module), (cold.partition.forward, loaded.partition.forward),
             (cold.partition.backward, loaded.partition.backward)]
    for stored, read in pairs:
        assert [(n.op, n.name, str(n.target)) for n in stored.graph.nodes] == \
               [(n.op, n.name, str(n.target)) for n in read.graph.nodes]
        assert [_layout(n.meta.get("val")) for n in stored.graph.nodes] == \
               [_layout(n.meta.get("val")) for n in read.graph.nodes]
    # Decoded together: a value the joint and the forward share is one fake tensor in both, as stored.
    assert _shared_values(*pairs[0]) == _shared_values(*pairs[1])
    assert loaded.partition.saved_bytes == cold.partition.saved_bytes
    assert loaded.partition.memory.forward_peak == cold.partition.memory.forward_peak
    assert "ops" in str(loaded)  # the headline reads the decoded graphs


def _layout(value):
    if isinstance(value, torch.Tensor):
        return tuple(value.shape), value.stride(), value.dtype, value.requires_grad
    return value if value is None or isinstance(value, (int, float, bool)) else type(value).__name__


def _shared_values(joint, forward) -> set:
    """Names of the forward's nodes whose value is the very fake tensor of a joint node."""
    joint_values = {id(n.meta["val"]) for n in joint.graph.nodes if isinstance(n.meta.get("val"), torch.Tensor)}
    return {n.name for n in forward.graph.nodes if id(n.meta.get("val")) in joint_values}


def test_loaded_entry_still_refuses_a_double_backward():
    def program(x):
        return (x ** 3).sum()

    for attempt in range(2):
        compiled = aotgraph.aot_function(program, "inductor", cache=True)
        x = torch.randn(3, requires_grad=True)
        (grad,) = torch.autograd.grad(compiled(x), x, create_graph=True)
        torch.testing.assert_close(grad, 3 * x.detach() ** 2)
        with pytest.raises(AotGraphError, match="double backward"):
            grad.sum().backward()
    assert _cache_load(_entry(compiled)) == "hit" and not graphs_decoded(_entry(compiled).partition)


def test_torch_compile_backend_hit_builds_a_report_from_graphs_decoded_then():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(3, 8)
    for attempt in range(2):
        torch._dynamo.reset()
        backend = aotgraph.backend(compiler="inductor")
        out = torch.compile(model, backend=backend, dynamic=False)(x)
        out.sum().backward()
        torch.testing.assert_close(out, model(x))
    (entry,) = backend.entries
    assert _cache_load(entry) == "hit" and not graphs_decoded(entry.partition)
    (report,) = backend.reports()
    assert graphs_decoded(entry.partition) and report.to_json()
    torch._dynamo.reset()


def test_a_flipped_byte_in_the_graphs_decoded_later_is_still_found_at_read():
    """The graphs' bytes (the payload's last part) are checksummed with the rest when the entry is read."""
    from aotgraph.cache.disk import CacheCorruptionWarning, DiskCache

    cold, _ = _compile_twice(_mlp, "inductor")
    path = DiskCache().directory / "entries" / cold.disk_key[:2] / cold.disk_key
    data = path.read_bytes()
    path.write_bytes(data[:-40] + bytes([data[-40] ^ 1]) + data[-39:])
    with pytest.warns(CacheCorruptionWarning, match="checksum"):
        compiled = aotgraph.aot_function(_mlp, "inductor", cache=True)
        got = _outputs_and_grads(compiled, _args(_mlp))
    expected = _outputs_and_grads(_mlp, _args(_mlp))
    for a, b in [*zip(got[0], expected[0]), *zip(got[1], expected[1])]:
        torch.testing.assert_close(a, b)
    assert _cache_load(_entry(compiled)) == "miss"
