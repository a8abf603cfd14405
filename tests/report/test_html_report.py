"""The report object, its HTML page and its JSON: each section present, its numbers equal the
partition's own, on the demo model and on a 10,000-node graph; the page runs in headless
Chromium without script errors (skipped when Chromium is absent)."""
import json
import re
from collections import Counter

import pytest
import torch

import aotgraph
from aotgraph import aot_function, aot_module, default_partition, min_cut_rematerialization_partition, models
from aotgraph.explain import input_names
from aotgraph.report import Report, build_report, format_html, write_html
from aotgraph.report.joint_picture import MAX_GROUPS, saved_node_names
from aotgraph.report.saved import eager_saved_tensors, recompute_flops

from html_page import CHROMIUM, by_id, parse, rendered_body, screenshot

SECTIONS = ("summary", "stages", "graph", "saved", "memory", "code")


@pytest.fixture(scope="module")
def demo():
    torch.manual_seed(0)
    model, inputs = models.gpt(layers=2)
    compiled = aot_module(model, partition_fn=min_cut_rematerialization_partition)
    disabled = aotgraph.config.disabled
    aotgraph.config.disabled = disabled | {"auto_regions"}  # the flat graph: every node of every block shown
    try:
        compiled(*inputs).backward()
    finally:
        aotgraph.config.disabled = disabled
    entry = next(iter(compiled.aotgraph_entries.values()))
    report = build_report(entry, model, inputs, input_names(model, inputs), title="demo", compiler="eager",
                          partition_name="mincut", budgets=(0.5,))
    return entry, model, inputs, report


def _chain(x, w):
    for _ in range(1000):
        x = torch.tanh(x * w) + x
    return x.sum()


@pytest.fixture(scope="module")
def large():
    """A function of plain tensors whose joint graph has over 10,000 nodes."""
    compiled = aot_function(_chain, partition_fn=default_partition)
    compiled(torch.randn(4, 4), torch.randn(4, 4, requires_grad=True)).backward()
    entry = next(iter(compiled.aotgraph_entries.values()))
    return entry, build_report(entry, title="chain")


def _check_numbers_equal_the_partitions(entry, report: Report):
    partition = entry.partition
    totals = report.totals
    assert totals.saved_bytes == partition.saved_bytes > 0
    if partition.plan is not None:
        assert totals.saved_bytes == partition.plan.saved_bytes
        display = dict(report.input_names)
        assert [row.name for row in report.saved] == [display.get(name, name) for name in partition.plan.saved]
    assert totals.count == len(report.saved) == len(partition.saved)
    assert totals.recomputed_ops == len(recompute_flops(partition.backward))
    assert totals.recompute_flops == sum(f for _, _, f in recompute_flops(partition.backward))
    joint_nodes = [n for n in partition.joint.graph_module.graph.nodes if n.op != "output"]
    assert [n.name for n in report.joint.nodes] == [n.name for n in joint_nodes]
    assert len(report.joint.edges) == sum(len(n.all_input_nodes) for n in joint_nodes)
    placements = Counter(n.placement for n in report.joint.nodes)
    assert placements["recomputed"] == len(partition.recomputed)
    assert placements["input"] == partition.joint.num_primals
    assert placements["tangent"] == partition.joint.num_tangents
    assert {n.name for n in report.joint.nodes if n.saved} == saved_node_names(partition)
    forward_names = {n.name for n in partition.forward.graph.nodes}
    assert all(n.name in forward_names for n in report.joint.nodes if n.placement == "forward")
    assert all(n.rank < report.joint.cut_rank for n in report.joint.nodes if n.side == 0)
    assert all(n.rank >= report.joint.cut_rank for n in report.joint.nodes if n.side == 1)
    ours = report.memory[0]
    timeline = partition.memory
    assert ours.peak == timeline.peak and ours.saved_bytes == timeline.saved_bytes == totals.saved_bytes
    assert len(ours.forward) + len(ours.backward) == len(timeline.steps)
    assert [c.num_ops for c in report.code] == [sum(n.op == "call_function" for n in g.graph.nodes)
                                               for g in (partition.forward, partition.backward)]


def _check_page(report: Report, page: str):
    """Each section is present and shows the report's numbers; nothing is fetched."""
    root = parse(page)
    for section in SECTIONS:
        by_id(root, section)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page fetches something"
    assert not list(root.find_all("link")) and all("src" not in s.attrs for s in root.find_all("script"))
    stages = by_id(root, "stages")
    assert [r.attrs["data-stage"] for r in stages.find_all("tr") if "data-stage" in r.attrs] == \
        [s.stage for s in report.stages]
    totals = by_id(root, "saved-totals").attrs
    assert int(totals["data-saved-bytes"]) == report.totals.saved_bytes
    assert int(totals["data-count"]) == report.totals.count
    assert int(totals["data-input-count"]) == report.totals.input_count
    table = by_id(root, "saved-table")
    body = next(table.find_all("tbody"))
    assert len(list(body.find_all("tr"))) == report.totals.count
    recomputed = by_id(root, "recomputed").attrs
    assert int(recomputed["data-ops"]) == report.totals.recomputed_ops
    canvas = by_id(root, "graph-canvas").attrs
    assert int(canvas["data-nodes"]) == len(report.joint.nodes) and int(canvas["data-edges"]) == len(report.joint.edges)
    legend = {e.attrs["data-placement"]: int(e.attrs["data-count"]) for e in by_id(root, "graph").with_attr("data-placement")}
    assert legend == {k: v for k, v in Counter(n.placement for n in report.joint.nodes).items()}
    curves = [e for e in by_id(root, "memory").find_all("polyline")]
    assert [int(c.attrs["data-peak"]) for c in curves] == [c.peak for c in report.memory]
    code = {d.attrs["data-graph"]: d for d in by_id(root, "code").find_all("details")}
    assert list(code) == [g.name for g in report.code]
    for graph in report.code:
        assert int(code[graph.name].attrs["data-ops"]) == graph.num_ops
        assert graph.code.splitlines()[1].strip() in code[graph.name].all_text()
    data = json.loads(by_id(root, "report-data").all_text().replace("<\\/", "</"))
    assert Report.from_json(json.dumps(data)) == report


def test_demo_report_numbers_equal_the_partitions(demo):
    entry, model, inputs, report = demo
    _check_numbers_equal_the_partitions(entry, report)
    assert (report.totals.eager_count, report.totals.eager_bytes) == eager_saved_tensors(model, inputs)
    assert [c.label for c in report.memory][:2] == ["ours (predicted)", "eager autograd (measured)"]
    assert report.memory[1].measured and report.memory[1].forward and report.memory[1].backward
    assert report.memory[-1].label.startswith("memory budget 0.5")
    assert report.memory[-1].saved_bytes <= 0.5 * entry.partition.memory.saved_bytes * 2
    names = dict(report.input_names)
    assert names["primals_1"] == "tok.weight"
    assert any(n.label == "blocks.0.attn.qkv.weight" for n in report.joint.nodes)
    assert any(g.name.startswith("blocks.1") for g in report.joint.groups)
    modules = {row.name: row.module for row in report.saved}
    assert modules["blocks.0.attn.qkv.weight"] == "blocks.0.attn.qkv"
    assert any(m.startswith("blocks.0.mlp") for name, m in modules.items() if name.startswith("addmm"))


def test_demo_page_has_every_section_with_the_partitions_numbers(demo):
    _, _, _, report = demo
    _check_page(report, format_html(report))


def test_json_round_trips(demo):
    _, _, _, report = demo
    text = report.to_json()
    assert Report.from_json(text) == report
    assert json.loads(text)["totals"]["saved_bytes"] == report.totals.saved_bytes


def test_large_graph_is_drawn_as_an_overview(large):
    entry, report = large
    assert len(report.joint.nodes) >= 10_000
    _check_numbers_equal_the_partitions(entry, report)
    assert len(report.joint.groups) <= MAX_GROUPS + 2
    _check_page(report, format_html(report))


def test_explain_returns_the_report_and_writes_no_grad():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    x = torch.randn(5, 8)
    report = aotgraph.explain(model, x, partition="default", budgets=(0.5,))
    assert all(p.grad is None for p in model.parameters())
    assert report.title == "Sequential" and report.partition == "default"
    assert dict(report.input_names)["primals_1"] == "0.weight"
    assert report.totals.eager_bytes == eager_saved_tensors(model, [x])[1]
    assert [c.label for c in report.memory][0] == "ours (predicted)" and len(report.memory) == 3
    with pytest.raises(aotgraph.BadArgument, match="unknown partition"):
        aotgraph.explain(model, x, partition="nope")


def test_backend_gives_one_report_per_compiled_graph():
    torch._dynamo.reset()
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh())
    backend = aotgraph.backend(compiler="eager")
    compiled = torch.compile(model, backend=backend, dynamic=False)
    compiled(torch.randn(3, 8)).sum().backward()
    compiled(torch.randn(5, 8)).sum().backward()
    reports = backend.reports()
    assert len(reports) == len(backend.entries) == 2
    assert {"0", "1"} <= {g.name for g in reports[0].joint.groups}  # Dynamo's module stack names the groups
    for report, entry in zip(reports, backend.entries):
        assert report.totals.saved_bytes == entry.partition.saved_bytes
        assert report.totals.eager_bytes is None and report.memory[0].peak == entry.partition.memory.peak
    torch._dynamo.reset()


needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium (Debian's chromium) not installed")


@needs_chromium
def test_demo_page_renders_in_chromium_without_script_errors(demo, tmp_path):
    _, _, _, report = demo
    page = tmp_path / "report.html"
    write_html(report, page)
    body = rendered_body(page)
    assert body.get("data-rendered") == "ok" and "data-error" not in body and "error-text" not in body, body
    png = tmp_path / "report.png"
    screenshot(page, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 50_000


@needs_chromium
def test_page_reports_a_script_error(demo, tmp_path):
    """The error marker the test above looks for does appear when the script fails."""
    _, _, _, report = demo
    page = tmp_path / "broken.html"
    page.write_text(format_html(report).replace("var REPORT = JSON.parse", "var REPORT = no_such_function"))
    body = rendered_body(page)
    assert "no_such_function" in body["data-error"] and "error-text" in body and "data-rendered" not in body


@needs_chromium
def test_large_page_stays_responsive_in_chromium(large, tmp_path):
    _, report = large
    page = tmp_path / "large.html"
    write_html(report, page)
    body = rendered_body(page, "#search=tanh")  # a search expands every group holding a match: ~1000 nodes drawn
    assert body.get("data-rendered") == "ok" and "data-error" not in body, body
    paint_ms = float(body["data-paint-ms"])
    assert paint_ms < 1500, f"drawing the expanded graph took {paint_ms} ms"


def test_offloaded_values_are_marked_in_the_picture_and_the_table():
    from aotgraph.partition import offload_large, partition_for

    torch.manual_seed(0)
    model, inputs = models.gpt(layers=1)
    compiled = aot_module(model, partition_fn=partition_for(policy=offload_large(16 * 1024)))
    compiled(*inputs).backward()
    entry = next(iter(compiled.aotgraph_entries.values()))
    report = build_report(entry)
    plan = entry.partition.plan
    assert plan.offloaded and report.totals.offloaded_bytes == plan.offloaded_bytes > 0
    assert {n.name for n in report.joint.nodes if n.placement == "offloaded"} == set(plan.offloaded)
    assert sum(row.offloaded for row in report.saved) == len(plan.offloaded)
    root = parse(format_html(report))
    assert int(by_id(root, "saved-totals").attrs["data-offloaded-bytes"]) == plan.offloaded_bytes
    assert sum(cell.all_text() == "host" for cell in by_id(root, "saved-table").find_all("td")) == len(plan.offloaded)


def test_an_inference_graph_has_code_and_no_timeline():
    report = aotgraph.explain(lambda x: x.sin() * 2, torch.randn(3))
    assert report.memory == () and report.totals.count == 0 and [c.name for c in report.code] == ["inference"]
    assert {n.placement for n in report.joint.nodes} == {"input", "forward"}
    root = parse(format_html(report))
    assert "No backward" in by_id(root, "memory").all_text()
    assert Report.from_json(report.to_json()) == report


def test_reports_of_an_entry_with_symbolic_sizes(tmp_path):
    """An entry compiled with symbolic sizes counts bytes as size expressions: its text report
    (``print(entry)``), its JSON and its HTML page give them at the traced sizes (they raised on
    formatting a SymInt, and on deep-copying one)."""
    torch._dynamo.reset()
    backend = aotgraph.backend(compiler="eager")
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    compiled = torch.compile(model, backend=backend)
    for batch in (3, 5):  # the second batch size: Dynamo's automatic dynamic sizes
        compiled(torch.randn(batch, 4)).sum().backward()
    entry = backend.entries[-1]
    assert entry.reason == "symbolic sizes"
    assert "saved" in str(entry)
    report = backend.reports()[-1]
    assert json.loads(report.to_json())
    write_html(report, tmp_path / "report.html")
    assert (tmp_path / "report.html").stat().st_size > 0
    torch._dynamo.reset()


@pytest.mark.parametrize("middle", [torch.nn.ReLU(inplace=True), torch.nn.Dropout(0.1)], ids=["relu_", "dropout"])
def test_explain_a_program_whose_op_returns_its_input(middle):
    """An in-place op returns the tensor it was given: the eager timeline remembers it twice."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), middle, torch.nn.Linear(8, 2))
    report = aotgraph.explain(model, torch.randn(4, 8))
    assert json.loads(report.to_json())


def test_a_budget_curve_predicts_the_plan_that_budget_compiles():
    """The report's budget plans are made as the compile made its own (the primals a caller
    keeps across calls priced as the compile priced them): under autocast the bf16 copies of
    the parameters are not free to save."""
    from aotgraph.partition import partition_for

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16))
    x = torch.randn(4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        report = aotgraph.explain(model, x, budgets=(0,))
        compiled = aot_module(model, partition_fn=partition_for(budget=0))
        compiled(x).sum().backward()
    (entry,) = compiled.aotgraph_entries.values()
    (curve,) = [c for c in report.memory if c.label == "memory budget 0 (predicted)"]
    assert curve.saved_bytes == entry.partition.saved_bytes


def test_no_budget_curve_is_predicted_from_a_compile_with_regions():
    """A budget plans the whole program (its compile captures repeated layers flat): curves made
    from the compile's regions predicted other bytes than the budget compiles."""
    torch.manual_seed(0)
    blocks = [torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 8)) for _ in range(4)]
    model = torch.nn.Sequential(*blocks)
    with pytest.warns(UserWarning, match="no budget curves"):
        report = aotgraph.explain(model, torch.randn(4, 8), budgets=(0.5,))
    assert not [c for c in report.memory if c.label.startswith("memory budget")]
