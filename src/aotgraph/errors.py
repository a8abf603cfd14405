"""Errors that name the stage, the cause and what to do.

Every error aotgraph raises on purpose is an `AotGraphError`; its message reads
``<Kind>: <cause> (<stage> stage); <what to do>``.
"""
from __future__ import annotations


class AotGraphError(RuntimeError):
    """Base class: `stage` is one of capture, partition, compile, runtime, api."""

    kind = "AotGraphError"

    def __init__(self, cause: str, stage: str, fix: str = ""):
        self.cause, self.stage, self.fix = cause, stage, fix
        message = f"{self.kind}: {cause} ({stage} stage)"
        super().__init__(message + (f"; {fix}" if fix else ""))


class UnsupportedOp(AotGraphError):
    """An op that cannot be captured: no fake kernel, data-dependent output, unsupported mutation."""

    kind = "UnsupportedOp"


class DataDependentControlFlow(AotGraphError):
    """Python code read a tensor's value (``.item()``, ``bool(t)``, ``if t > 0``) while tracing."""

    kind = "DataDependentControlFlow"


class BadArgument(AotGraphError):
    """The user passed something aotgraph cannot work with."""

    kind = "BadArgument"


class CompilerError(AotGraphError):
    """A compiler failed or returned something that is not callable."""

    kind = "CompilerError"


class RecompileWarning(UserWarning):
    """A compiled function compiled more entries than `aotgraph.config.recompile_limit`."""
