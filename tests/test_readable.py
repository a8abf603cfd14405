"""Printed artifacts read as text: Signature, CompileLog and CompiledEntry have readable __str__s."""
import collections

import torch

from aotgraph import aot_export_joint, aot_module
from aotgraph.report.saved import saved_storage_bytes

Pair = collections.namedtuple("Pair", "first second")


def _signature():
    def program(x, w, buf, scale, extra):
        buf.add_(1)
        return (x @ w).relu().sum() * scale, x.view(-1), Pair(x.t(), extra["k"] * 2)

    args = (torch.randn(4, 8), torch.randn(8, 3, requires_grad=True), torch.zeros(3), 2.0,
            {"k": torch.ones(2, requires_grad=True)})
    return aot_export_joint(program, args).signature


def _entry():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    compiled = aot_module(model)
    compiled(torch.randn(4, 3)).sum().backward()
    return next(iter(compiled.aotgraph_entries.values()))


def test_signature_shows_inputs_outputs_and_structure():
    text = str(_signature())
    assert "TreeSpec(" not in text
    lines = text.splitlines()
    assert lines[0] == "inputs: 5 (4 tensors)"
    assert lines[1].split() == ["#", "shape", "dtype", "requires_grad", "mutated"]
    assert lines[2].split() == ["0", "[4,", "8]", "float32", "no", "-"]
    assert lines[3].split() == ["1", "[8,", "3]", "float32", "yes", "-"]
    assert lines[4].split() == ["2", "[3]", "float32", "no", "data"]  # buf.add_(1)
    assert lines[5].split() == ["3", "constant", "2.0"]
    assert lines[7] == "outputs: 4 (4 tensors)"
    assert lines[8].split() == ["#", "shape", "dtype", "requires_grad", "aliases"]
    assert lines[9].split() == ["0", "[]", "float32", "yes", "-"]
    assert lines[10].split() == ["1", "[32]", "float32", "no", "view", "of", "input", "0"]
    assert lines[11].split() == ["2", "[8,", "4]", "float32", "no", "view", "of", "input", "0"]
    assert lines[-1] == "structure: in ((*x4, {'k': *}), {}) -> out (*, *, Pair(*, *))"


def test_signature_marks_metadata_mutations_inputs_returned_and_short_runs():
    def program(x, y):
        x.unsqueeze_(0)
        return y, y + 1

    text = str(aot_export_joint(program, (torch.randn(3), torch.randn(2))).signature)
    assert "metadata" in text.splitlines()[2]
    assert text.splitlines()[6].split()[-3:] == ["is", "input", "1"]
    assert text.endswith("structure: in ((*, *), {}) -> out (*, *)")


def test_compile_log_prints_its_table():
    log = _entry().log
    assert str(log) == log.format()
    lines = str(log).splitlines()
    assert [line.split()[0] for line in lines] == ["capture", "partition", "compile", "first", "first", "total"]
    assert "\\n" not in str(log)


def test_entry_prints_a_headline_and_its_log():
    entry = _entry()
    headline, *log_lines = str(entry).splitlines()
    partition = entry.partition
    ops = [sum(n.op == "call_function" for n in g.graph.nodes)
           for g in (partition.forward, partition.backward, partition.joint.graph_module)]
    assert headline.startswith(f"forward graph {ops[0]} ops, backward graph {ops[1]} ops (joint {ops[2]}); ")
    assert f"saved for backward: {partition.num_saved_tensors} tensors, " in headline
    nbytes = saved_storage_bytes(partition.forward, partition.joint.num_fwd_outputs)
    assert nbytes > 0 and headline.endswith(f" {nbytes} B outside the inputs")
    assert "\n".join(log_lines) == entry.log.format()
    assert "TreeSpec(" not in str(entry) and "CompiledEntry(" not in str(entry)


def test_inference_entry_headline():
    model = torch.nn.Linear(3, 3)
    compiled = aot_module(model)
    with torch.no_grad():
        compiled(torch.randn(2, 3))
    entry = next(iter(compiled.aotgraph_entries.values()))
    assert str(entry).splitlines()[0] == "inference graph 2 ops; nothing saved for backward"
