"""Room on CPython's frame stack for a deep compile.

CPython 3.11 and later keep each thread's Python frames on a stack of chunks (16 KiB and up,
each mapped from the OS). A frame that sits at the start of a chunk unmaps that chunk when it
returns, so a loop that calls across a chunk boundary maps and unmaps a chunk on every call
(CPython issue gh-142183; 3.14 and late 3.13 releases keep one spare chunk). Python code below
that depth then runs several times slower, the extra time spent in the kernel on page faults.
Whether a compile's hot loops land on a boundary depends on how deep the caller is: Inductor's
post-grad passes on one ResNet graph took 0.65 s instead of 0.1 s (with 37 000 page faults)
when the same script was started another way, and its lowering and scheduling 1.3-1.6x.

`call_with_stack_room(fn, *args, **kwargs)` calls `fn` beneath a frame so large that it starts a
chunk of its own (256 KiB, see `_ROOM_SLOTS`), leaving about 17 000 slots (several hundred
frames) above it in that chunk: the stages of a compile run inside one chunk whatever the
depth of the caller. The frame's size is evaluation-stack capacity that is never used, so
calling it costs one map and unmap (a few microseconds), not a pass over the memory. Calls
nested in one already beneath such a frame run as they are (a second large frame would use up
the room). Switch ``stack_room``.
"""
from __future__ import annotations

import sys
import threading
import types
from typing import Any, Callable

from . import config

__all__ = ["call_with_stack_room"]

# CPython sizes a new chunk as the smallest power of two from 16 KiB that holds the frame plus
# 1000 slots; a frame of this many slots gets a chunk of 256 KiB (32768 slots) to itself.
_ROOM_SLOTS = 15_400
_beneath = threading.local()  # .active: this thread runs beneath the large frame now


def _call(fn, args, kwargs):
    return fn(*args, **kwargs)


# The same function with an evaluation stack `_ROOM_SLOTS` deeper than it needs: its frame is
# that large, and nothing but the call's own values is ever stored in it.
_call_in_large_frame = types.FunctionType(
    _call.__code__.replace(co_stacksize=_call.__code__.co_stacksize + _ROOM_SLOTS), _call.__globals__,
    "_call_in_large_frame")
_CHUNKED_STACK = sys.implementation.name == "cpython" and sys.version_info >= (3, 11)


def call_with_stack_room(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, run above a frame that starts a frame-stack chunk of its own
    (CPython 3.11+; elsewhere, and beneath another such call, a plain call)."""
    if not _CHUNKED_STACK or getattr(_beneath, "active", False) or not config.enabled("stack_room"):
        return fn(*args, **kwargs)
    _beneath.active = True
    try:
        return _call_in_large_frame(fn, args, kwargs)
    finally:
        _beneath.active = False
