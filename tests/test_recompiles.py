"""Recompiles are seen: each entry says why it was compiled, the log names the function and
the reason, and a function past the recompile limit warns once, naming what changed."""
import logging
import warnings

import pytest
import torch

from aotgraph import aot_function, aot_module, config
from aotgraph import RecompileWarning


def _recompile_warnings(caught):
    return [str(w.message) for w in caught if issubclass(w.category, RecompileWarning)]


def test_past_the_limit_one_warning_names_the_function_and_the_changed_input():
    def batch_sum(x):
        return x.sum(0)

    compiled = aot_function(batch_sum)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for batch in range(1, 30):
            torch.testing.assert_close(compiled(torch.ones(batch, 3)), torch.full((3,), float(batch)))
    messages = _recompile_warnings(caught)
    assert len(messages) == 1
    assert "batch_sum" in messages[0] and "argument 0: shape (8, 3) -> (9, 3)" in messages[0]
    assert len(compiled.aotgraph_entries) == 29  # it warns, and keeps compiling


def test_the_limit_is_configurable(monkeypatch):
    monkeypatch.setattr(config, "recompile_limit", 2)
    compiled = aot_function(lambda x, k: x * k)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for k in range(4):
            compiled(torch.ones(2), k)
    messages = _recompile_warnings(caught)
    assert len(messages) == 1 and "argument 1: value 1 -> 2" in messages[0]


def test_within_the_limit_nothing_is_said():
    compiled = aot_function(lambda x: x * 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecompileWarning)
        for n in range(1, 9):
            compiled(torch.ones(n))


@pytest.mark.parametrize("change, reason", [
    (lambda: (torch.ones(2, 3, dtype=torch.float64),), "dtype torch.float32 -> torch.float64"),
    (lambda: (torch.ones(3, 2).t(),), "stride (3, 1) -> (1, 2)"),
    (lambda: (torch.ones(2, 3, requires_grad=True),), "requires_grad False -> True"),
])
def test_each_entry_records_why_it_was_compiled(change, reason):
    compiled = aot_function(lambda x: x.exp())
    compiled(torch.ones(2, 3))
    compiled(*change())
    reasons = [entry.reason for entry in compiled.aotgraph_entries.values()]
    assert reasons[0] == "first call" and reason in reasons[1]


def test_grad_mode_and_module_attributes_are_named():
    model = torch.nn.Dropout(0.0)
    compiled = aot_module(model)
    x = torch.ones(3, requires_grad=True)
    compiled(x)
    with torch.no_grad():
        compiled(x)
    model.p = 0.25
    compiled(x)
    reasons = [entry.reason for entry in compiled.aotgraph_entries.values()]
    assert reasons[1] == "grad mode changed: on -> off"
    assert "self.p changed: 0.0 -> 0.25" in reasons


def test_the_log_names_the_function_and_why(caplog):
    def scaled(x, k):
        return x * k

    compiled = aot_function(scaled)
    with caplog.at_level(logging.INFO, logger="aotgraph"):
        compiled(torch.ones(2), 2)
        compiled(torch.ones(2), 3)
    lines = [r.getMessage() for r in caplog.records if "compiling" in r.getMessage()]
    assert lines == ["aotgraph compiling scaled: first call",
                     "aotgraph recompiling scaled: argument 1: value 2 -> 3"]


def test_a_new_default_dtype_recompiles():
    """Factory functions in the program make tensors of the default dtype: after
    ``torch.set_default_dtype`` the compiled graphs would make the old one. The call recompiles,
    its entry names why, and it gives eager's dtypes."""
    def program(x):
        return x * 2, torch.tensor(1.5), torch.ones(2), torch.arange(3) * 0.5

    compiled = aot_function(program, "eager")
    x = torch.randn(3, dtype=torch.float64)
    compiled(x)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for _ in range(2):  # the compiling call, then the fast path's
            assert [t.dtype for t in compiled(x)] == [t.dtype for t in program(x)]
    finally:
        torch.set_default_dtype(previous)
    assert [t.dtype for t in compiled(x)] == [t.dtype for t in program(x)]
    reasons = [entry.reason for entry in compiled.aotgraph_entries.values()]
    assert reasons[1] == "the default dtype changed: torch.float32 -> torch.float64"


def test_the_reason_names_the_change_against_the_nearest_entry():
    """A compile after calls in two grad modes names the input whose requires_grad changed
    (the latest entry, compiled under no_grad, differs in grad mode as well)."""
    compiled = aot_function(lambda x, w: (x @ w).sin(), "eager")
    x, w = torch.randn(6, 8, requires_grad=True), torch.randn(8, 5, requires_grad=True)
    compiled(x, w).sum().backward()
    with torch.no_grad():
        compiled(x, w)
    compiled(x.detach(), w).sum().backward()
    reasons = [entry.reason for entry in compiled.aotgraph_entries.values()]
    assert reasons[1] == "grad mode changed: on -> off"
    assert reasons[2] == "argument 0: requires_grad True -> False"
