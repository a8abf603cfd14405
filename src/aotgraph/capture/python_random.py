"""Draws from Python's own random number generators while a program is captured.

A program that calls ``random.random()`` or ``numpy.random.rand()`` runs that call once, at
capture: the value drawn becomes a constant of the graph, the same on every call, where eager
draws a new one each time (torch.compile's Dynamo replays such draws per call). aotgraph cannot
replay them, so a capture that moved those generators' states warns, naming the program.
torch's own generators are not concerned: their draws are ops of the graph.
"""
from __future__ import annotations

import contextlib
import random
import sys
import threading
import warnings
from typing import Iterator

__all__ = ["python_random_draws_warned"]

_depth = threading.local()


def _states() -> tuple:
    numpy = sys.modules.get("numpy")  # (not imported for this: a program that draws from it imported it)
    numpy_state = None
    if numpy is not None:
        _, keys, position, has_gauss, gauss = numpy.random.get_state()
        numpy_state = (keys.tobytes(), position, has_gauss, gauss)
    return random.getstate(), numpy_state


@contextlib.contextmanager
def python_random_draws_warned(program_name: str) -> Iterator[None]:
    """Warn (once the outermost capture on this thread ends without an error) if the program
    drew from Python's ``random`` or numpy's global generator while it was captured."""
    outermost = getattr(_depth, "value", 0) == 0
    _depth.value = getattr(_depth, "value", 0) + 1
    before = _states() if outermost else None
    try:
        yield
    finally:
        _depth.value -= 1
    if outermost:
        after = _states()
        moved = [name for name, b, a in zip(("Python's random", "numpy.random"), before, after) if b != a]
        if moved:
            warnings.warn(
                f"aotgraph: the program {program_name} drew from {' and '.join(moved)} while it was captured; "
                "the values drawn then are constants of the compiled graph, the same on every call (eager draws "
                "new ones each call). Draw with torch's random functions inside the program (torch.rand, "
                "torch.randint, ...) or draw outside it and pass the values in", stacklevel=2)
