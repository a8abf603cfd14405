"""The saved-tensor report: rows match the partition, totals match the plan, eager comparison counts."""
import torch

from aotgraph import aot_module, default_partition, min_cut_rematerialization_partition, models
from aotgraph.partition import offload_large, partition_for
from aotgraph.report.saved import eager_saved_tensors, saved_report


def _entry(partition_fn):
    torch.manual_seed(0)
    model, inputs = models.gpt(layers=2)
    compiled = aot_module(model, partition_fn=partition_fn)
    compiled(*inputs).backward()
    return next(iter(compiled.aotgraph_entries.values())), model, inputs


def test_report_rows_and_totals():
    entry, model, inputs = _entry(min_cut_rematerialization_partition)
    report = saved_report(entry, model, inputs)
    plan = entry.partition.plan
    assert [r.name for r in report.rows] == list(plan.saved)
    assert report.saved_bytes == plan.saved_bytes
    assert report.recompute_flops == plan.recompute_flops > 0
    assert all(r.reason for r in report.rows)
    text = report.format()
    assert "eager autograd saves" in text and "recomputed in backward" in text


def test_eager_comparison_counts_distinct_storages():
    x = torch.randn(32, 32, requires_grad=True)

    def program(x):
        y = x.sin()  # saves x (an input: not counted)
        return (y * y).exp()  # mul saves y (once, deduplicated), exp saves its output

    count, nbytes = eager_saved_tensors(program, [x])
    assert (count, nbytes) == (2, 2 * 32 * 32 * 4)


def test_min_cut_saves_less_than_default_and_eager():
    entry, model, inputs = _entry(min_cut_rematerialization_partition)
    ours = saved_report(entry, model, inputs)
    default = saved_report(_entry(default_partition)[0], model, inputs)
    assert ours.saved_bytes < default.saved_bytes
    assert ours.saved_bytes <= ours.eager_saved_bytes


def test_offloaded_values_are_marked():
    entry, _, _ = _entry(partition_for(policy=offload_large(16 * 1024)))
    report = saved_report(entry)
    assert any(r.offloaded for r in report.rows) and report.offloaded_bytes > 0
    assert "[host]" in report.format()


def test_report_shows_the_predicted_memory():
    entry, _, _ = _entry(min_cut_rematerialization_partition)
    report = saved_report(entry)
    memory = entry.partition.memory
    assert report.memory is memory and memory.saved_bytes == report.saved_bytes
    assert memory.peak >= memory.saved_bytes > 0
    assert "backward peak " in report.format() and memory.peak_step.node in report.format()
