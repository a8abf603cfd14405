"""Probing CPython's frame stack for a chunk boundary (see `aotgraph.stack_room`): a loop of
calls run at some depth, and the page faults it causes. A call that crosses into a new chunk
maps that chunk (its first page faults) and unmaps it on return; a call that stays inside a
chunk faults nothing."""
from __future__ import annotations

import resource
import types
from typing import Callable, Optional

CALLS = 2000


def _leaf():
    return None


# A callee with a frame of ~64 slots: a call depth whose frames end within 64 slots of a chunk's
# end crosses the boundary, and the probe's depths (a few slots apart) land there.
_wide_leaf = types.FunctionType(_leaf.__code__.replace(co_stacksize=64), globals(), "_wide_leaf")


def faults_of_calls() -> int:
    """Page faults while calling a function `CALLS` times, here."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(CALLS):
        _wide_leaf()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def at_depth(depth: int, fn: Callable):
    """``fn()`` called `depth` frames deeper than here."""
    return at_depth(depth - 1, fn) if depth else fn()


def crossing_depth(call: Callable = lambda depth, fn: at_depth(depth, fn), depths: int = 600) -> Optional[int]:
    """The first depth below `call` at which `faults_of_calls` faults on most calls (they
    cross a chunk boundary); None if none does up to `depths`."""
    return next((d for d in range(depths) if call(d, faults_of_calls) >= CALLS // 2), None)
