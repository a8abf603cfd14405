"""Errors that name the stage, the cause and what to do.

Every error aotgraph raises on purpose is an `AotGraphError`; its message reads
``<Kind>: <cause> (<stage> stage); <what to do>``.

Where capture fails as torch's fake tensors fail for its own backends (a tensor's value read, a
data-dependent output shape, an op without a fake kernel), the error is also torch's exception
(`fake_tensor_failure`): Dynamo answers those by running the frame eagerly with a graph break,
as it does for ``aot_eager`` and ``inductor``; called directly, the error reads as ours.
"""
from __future__ import annotations

from .torch_private.fake import DataDependentOutputException, DynamicOutputShapeException, UnsupportedOperatorException


class AotGraphError(RuntimeError):
    """Base class: `stage` is one of capture, partition, compile, runtime, api."""

    kind = "AotGraphError"

    def __init__(self, cause: str, stage: str, fix: str = ""):
        self.cause, self.stage, self.fix = cause, stage, fix
        message = f"{self.kind}: {cause} ({stage} stage)" + (f"; {fix}" if fix else "")
        super().__init__(message)
        self.args = (message,)  # (a torch exception class among the bases may not set it)


class UnsupportedOp(AotGraphError):
    """An op that cannot be captured: no fake kernel, data-dependent output, unsupported mutation."""

    kind = "UnsupportedOp"


class DataDependentControlFlow(AotGraphError):
    """Python code read a tensor's value (``.item()``, ``bool(t)``, ``if t > 0``) while tracing."""

    kind = "DataDependentControlFlow"


class BadArgument(AotGraphError):
    """The user passed something aotgraph cannot work with."""

    kind = "BadArgument"


class OpRefused(AotGraphError):
    """An op raised on the fake tensors of capture: the error eager raises for those arguments,
    or a fake (meta) kernel stricter than the op's eager kernel."""

    kind = "OpRefused"


class CompilerError(AotGraphError):
    """A compiler failed or returned something that is not callable."""

    kind = "CompilerError"


_TORCH_FAILURES = (DataDependentOutputException, DynamicOutputShapeException, UnsupportedOperatorException)
_FAILURE_CLASSES: dict = {}


def fake_tensor_failure(error: AotGraphError, torch_error: Exception) -> AotGraphError:
    """`error`, made an instance of `torch_error`'s class too (one of torch's fake-tensor
    failures, which Dynamo turns into a graph break and an eager run of the frame), with its
    ``func``; `error` unchanged for any other `torch_error`."""
    torch_class = next((c for c in _TORCH_FAILURES if isinstance(torch_error, c)), None)
    if torch_class is None:
        return error
    key = (type(error), torch_class)
    combined = _FAILURE_CLASSES.get(key)
    if combined is None:  # torch's classes are dataclasses: keep an exception's identity, repr
        combined = _FAILURE_CLASSES[key] = type(type(error).__name__, (type(error), torch_class), {
            "__eq__": object.__eq__, "__hash__": object.__hash__, "__repr__": BaseException.__repr__,
            "__module__": type(error).__module__, "__doc__": type(error).__doc__})
    error.__class__ = combined
    error.func = getattr(torch_error, "func", None)
    return error


class RecompileWarning(UserWarning):
    """A compiled function compiled more entries than `aotgraph.config.recompile_limit`."""
