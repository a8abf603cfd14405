"""A value held for the length of a block: ``with held(state, "name", value):``, on a
``threading.local`` (this thread's) or any object's attribute."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

__all__ = ["held"]


@contextlib.contextmanager
def held(state: Any, name: str, value: Any, outside: Any = None) -> Iterator[None]:
    """``state.<name>`` is `value` inside the block (on this thread, for a ``threading.local``),
    and after it what it was before (`outside` if it was never set)."""
    before = getattr(state, name, outside)
    setattr(state, name, value)
    try:
        yield
    finally:
        setattr(state, name, before)
