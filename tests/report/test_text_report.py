"""The text report names inputs by the caller's `input_names`, else by flat position."""
import torch

from aotgraph import aot_function
from aotgraph.report import format_entry, format_graph_code


def _entry():
    def program(x, counter):
        counter.add_(1)
        return x.sin() * 2, x.view(-1)

    compiled = aot_function(program)
    outputs = compiled(torch.randn(2, 3, requires_grad=True), torch.zeros(()))
    outputs[0].sum().backward()
    return next(iter(compiled.aotgraph_entries.values()))


def test_inputs_go_by_position_without_names():
    text = format_entry(_entry())
    assert "mutated: 1\n" in text and "aliasing an input: 1 -> 0\n" in text
    assert "primals_1 " in text  # sin's backward saves x, named by its placeholder


def test_inputs_go_by_the_given_names():
    entry = _entry()
    text = format_entry(entry, input_names={0: "x", 1: "counter"})
    assert "mutated: counter\n" in text and "aliasing an input: 1 -> x\n" in text
    saved = text.split("== saved for backward")[1]
    assert "\nx " in saved and "primals_1" not in saved
    partly = format_entry(entry, input_names={1: "counter"})
    assert "aliasing an input: 1 -> 0\n" in partly and "primals_1 " in partly


def test_graph_code_has_a_legend_of_the_placeholders():
    code = format_graph_code(_entry(), {0: "x", 1: "counter"})
    assert code.startswith("== code\ninputs: primals_1 = x, primals_2 = counter\nforward graph:\ndef forward(")
    assert "\nbackward graph:\ndef forward(" in code
    assert "inputs:" not in format_graph_code(_entry())
