"""The progress bar of long compiles: drawn on a terminal once a compile passes the delay, with
each stage; nothing when stderr is not a terminal, when turned off, or for a quick compile."""
import io
import sys

import torch

import aotgraph
from aotgraph import config, progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _compile_once():
    compiled = aotgraph.aot_function(lambda x: (x * 2).sin().cos())
    compiled(torch.randn(3, requires_grad=True)).sum().backward()


def test_a_long_compile_draws_a_bar_with_its_stages(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(progress, "DELAY_SECONDS", 0.0)  # every compile counts as long
    _compile_once()
    drawn = terminal.getvalue()
    assert "aotgraph <lambda>" in drawn
    for stage in ("capture", "partition", "compile"):
        assert stage in drawn
    assert "3/3 stages" in drawn


def test_a_quick_compile_draws_nothing(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(progress, "DELAY_SECONDS", 60.0)
    _compile_once()
    assert terminal.getvalue() == ""


def test_no_bar_when_stderr_is_not_a_terminal_or_progress_is_off(monkeypatch):
    monkeypatch.setattr(progress, "DELAY_SECONDS", 0.0)
    not_a_terminal = io.StringIO()
    monkeypatch.setattr(sys, "stderr", not_a_terminal)
    _compile_once()
    assert not_a_terminal.getvalue() == ""
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(config, "progress", False)
    _compile_once()
    assert terminal.getvalue() == ""
