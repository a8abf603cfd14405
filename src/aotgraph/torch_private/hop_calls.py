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

from torch.utils._pytree import tree_unflatten

__all__ = ["operators_called_directly", "note_scan_outputs"]

_FUNCTION = "_hop_compile_and_call"
_state = threading.local()
_originals: dict = {}


def _called_directly(fn, args, kwargs=None):
    if not getattr(_state, "depth", 0):
        return _originals[_FUNCTION](fn, args, kwargs)
    _state.scan_outputs = None
    result = fn(*args, **(kwargs or {}))
    if getattr(fn, "__name__", "") == "run_flattened_scan" and _state.scan_outputs is not None:
        # scan() returns ``carry, out`` as Dynamo's trace of the operator gives them, each in its
        # pytree structure; the operator itself gives one flat list, the carried values first.
        carry_structure, out_structure = _state.scan_outputs
        carried = carry_structure.num_leaves
        return (tree_unflatten(list(result[:carried]), carry_structure),
                tree_unflatten(list(result[carried:]), out_structure))
    return result


def note_scan_outputs(carry_structure, out_structure) -> None:
    """The pytree structures of a scan's carry and outputs, from the capture's scan rule, for
    `_called_directly`."""
    _state.scan_outputs = (carry_structure, out_structure)


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
