"""Key manifests: each stored entry keeps the parts of its key, a miss names the parts that
differ from the closest stored entry (on the entry, in the log, with both values), and
``python -m aotgraph cache info --verbose`` lists the manifests."""
import logging
import os
import subprocess
import sys

import pytest
import torch
import torch.fx as fx

import aotgraph
from aotgraph import config
from aotgraph.cache.disk import DiskCache
from aotgraph.cache.disk_keys import settings_key
from aotgraph.cache.manifests import KeyParts, explain_miss
from aotgraph.compilers import resolve_compiler


def _scaled_sin(x, w):
    return (torch.sin(x) * w).sum()


def _entry(compiled):
    return list(compiled.aotgraph_entries.values())[-1]


def _compile_and_run(fn, *args):
    compiled = aotgraph.aot_function(fn, cache=True)
    torch.testing.assert_close(compiled(*args), fn(*args))
    return _entry(compiled)


def _inputs(dtype=torch.float32):
    torch.manual_seed(0)
    return torch.randn(4, 6, dtype=dtype, requires_grad=True), torch.randn(6, dtype=dtype, requires_grad=True)


@pytest.mark.parametrize("change, named", [
    ("dtype", "input 0: "),
    ("autocast", "global state: autocast: "),
    ("switch", "switches: "),
])
def test_a_miss_names_the_changed_factor(change, named, monkeypatch, caplog):
    first = _compile_and_run(_scaled_sin, *_inputs())
    assert first.disk_miss == "no entry is stored yet"
    args = _inputs(torch.float64 if change == "dtype" else torch.float32)
    if change == "switch":
        monkeypatch.setattr(config, "disabled", config.disabled | {"gc_pause"})
    with caplog.at_level(logging.INFO, logger="aotgraph"):
        if change == "autocast":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                entry = _entry(_compile_with(args))
        else:
            entry = _compile_and_run(_scaled_sin, *args)
    assert entry.disk_key != first.disk_key
    assert entry.disk_miss.startswith(f"the closest stored entry {first.disk_key[:12]} differs in "), entry.disk_miss
    assert entry.disk_miss.split(" key parts: ")[1].startswith(named), entry.disk_miss
    assert named in caplog.text
    again = _compile_and_run(_scaled_sin, *_inputs()) if change != "switch" else None
    if again is not None:
        assert again.disk_key == first.disk_key and again.disk_miss is None


def _compile_with(args):
    compiled = aotgraph.aot_function(_scaled_sin, cache=True)
    compiled(*args)
    return compiled


def test_a_changed_node_of_a_graph_program_is_named():
    def graph_of(op):
        graph = fx.Graph()
        x = graph.placeholder("x")
        graph.output(graph.call_function(torch.mul, (graph.call_function(op, (x,)), 2.0)))
        return fx.GraphModule(torch.nn.Module(), graph)

    x = torch.randn(3, requires_grad=True)
    entries = []
    for op in (torch.sin, torch.cos):
        forward = aotgraph.aot_module_simplified(graph_of(op), [x], fw_compiler="eager")
        torch.testing.assert_close(forward(x), graph_of(op)(x))
        entries.append(_entry(forward))
    reason = entries[1].disk_miss
    assert " differs in 3 of " in reason, reason  # sin absent, cos new, mul reads cos
    assert "program graph: node sin: " in reason and "(absent)" in reason, reason
    assert "program graph: node cos: " in reason and "program graph: node mul: " in reason, reason


def test_explain_miss_picks_the_closest_manifest():
    base = KeyParts().extended([("a", 1), ("b", 2), ("c", 3)])
    near = KeyParts().extended([("a", 1), ("b", 2), ("c", 4)])
    far = KeyParts().extended([("a", 0), ("b", 0), ("c", 0)])
    reason = explain_miss(base, [(far.key, far), (near.key, near)])
    assert reason.startswith(f"the closest stored entry {near.key[:12]} differs in 1 of 3 key parts: c: 4 [")
    assert explain_miss(base, []) == "no entry is stored yet"


def test_cli_info_verbose_lists_each_entry_and_its_parts():
    entry = _compile_and_run(_scaled_sin, *_inputs())
    env = dict(os.environ, AOTGRAPH_CACHE_DIR=str(DiskCache().directory), PYTHONPATH=os.pathsep.join(sys.path))
    info = subprocess.run([sys.executable, "-m", "aotgraph", "cache", "info", "--verbose"], env=env,
                          capture_output=True, text=True, check=True).stdout
    assert f"entry {entry.disk_key}" in info
    for part in ("environment: aotgraph source", "fw_compiler", "partition", "input 1", "global state: grad mode",
                 "captured graph"):
        assert part in info, info
    assert any(line.split()[:2] == ["captured", "graph"] and line.endswith(" nodes") for line in info.splitlines())


def test_a_changed_inductor_setting_is_shown_where_it_differs():
    """A compiler's identity is kept whole in the manifest: the miss shows the setting that
    changed, however deep in Inductor's config it sits."""
    inductor = resolve_compiler("inductor")
    stages = dict(fw_compiler=inductor, bw_compiler=inductor, inference_compiler=inductor,
                  partition_fn=aotgraph.default_partition)
    before = settings_key(stages, None, None)
    with torch._inductor.config.patch(unroll_reductions_threshold=123):
        after = settings_key(stages, None, None)
    reason = explain_miss(after, [(before.key, before)])
    assert reason.split(" key parts: ")[1].startswith("fw_compiler: "), reason
    assert r"unroll_reductions_threshold\', 123)" in reason, reason
