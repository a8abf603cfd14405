"""A value a thread holds for the length of a block: ``with held(state, "name", value):``."""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

__all__ = ["held"]


@contextlib.contextmanager
def held(state: threading.local, name: str, value: Any, outside: Any = None) -> Iterator[None]:
    """``state.<name>`` is `value` on this thread inside the block, and after it what it was
    before (`outside` if it was never set)."""
    before = getattr(state, name, outside)
    setattr(state, name, value)
    try:
        yield
    finally:
        setattr(state, name, before)
