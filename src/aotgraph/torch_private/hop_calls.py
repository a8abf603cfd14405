"""torch's public APIs of higher-order operators outside Dynamo (``torch.cond``, ``while_loop``,
``scan``, ``map``, ``associative_scan``) run their operator inside a nested ``torch.compile``
(``torch._higher_order_ops.utils._hop_compile_and_call``). While aotgraph captures a program,
Dynamo would trace the capture's own modes there; the operator is called directly instead, in
the capturing thread only, and the capture's `HigherOrderCalls` meets it.

Checked on torch 2.13 and 2.14.1 (the test suite); where torch has no such function, nothing is
replaced.
"""
from __future__ import annotations

import contextlib
import sys
import threading
from typing import Iterator

__all__ = ["operators_called_directly"]

_FUNCTION = "_hop_compile_and_call"
_state = threading.local()
_originals: dict = {}


def _called_directly(fn, args, kwargs=None):
    if getattr(_state, "depth", 0):
        return fn(*args, **(kwargs or {}))
    return _originals[_FUNCTION](fn, args, kwargs)


@contextlib.contextmanager
def operators_called_directly() -> Iterator[None]:
    module = sys.modules.get("torch._higher_order_ops.utils")
    original = getattr(module, _FUNCTION, None)
    if original is None:
        yield
        return
    if original is not _called_directly:  # (left in place afterwards: it defers to torch's outside a capture)
        _originals[_FUNCTION] = original
        setattr(module, _FUNCTION, _called_directly)
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1
