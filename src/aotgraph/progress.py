"""A progress bar on stderr for long compiles (tqdm draws it).

`compile_progress(what)` yields a `CompileProgress` that the compile's `CompileLog` tells each
stage it begins and ends (capture, joint passes, partition, compile). Nothing is drawn for a
compile that ends within `DELAY_SECONDS`; after that a bar shows the stage under way and its
time, refreshed by a ticker thread while a long stage runs. Off when stderr is not a terminal
and when ``aotgraph.config.progress`` is False (``AOTGRAPH_PROGRESS=0``).
"""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Optional

from . import config

__all__ = ["CompileProgress", "compile_progress", "DELAY_SECONDS"]

DELAY_SECONDS = 2.0
_REFRESH_SECONDS = 0.5
_STAGES = 3  # capture, partition, compile; a compiler's joint passes add one


class CompileProgress:
    """The stages of one compile, drawn as a bar once the compile has run `DELAY_SECONDS`."""

    def __init__(self, what: str):
        self.what = what
        self.stage = "starting"
        self.begun = 0
        self.done = 0
        self.bar = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._started = time.time()  # tqdm's clock: the bar's elapsed time counts from here
        self._ticker = threading.Thread(target=self._tick, name="aotgraph-progress", daemon=True)

    def start(self) -> None:
        self._ticker.start()

    def begin(self, stage: str) -> None:
        with self._lock:
            self.stage = stage
            self.begun += 1
            self._draw()

    def end(self) -> None:
        with self._lock:
            self.done += 1
            self._draw()

    def _draw(self) -> None:
        if self.bar is None:
            if time.time() - self._started < DELAY_SECONDS:
                return
            from tqdm import tqdm

            self.bar = tqdm(total=_STAGES, desc=f"aotgraph {self.what}", unit="stage", leave=False, file=sys.stderr,
                            bar_format="{desc}: {n}/{total} stages |{bar}| {elapsed} {postfix}")
            self.bar.start_t = self._started
        self.bar.total = max(_STAGES, self.begun)
        self.bar.n = self.done
        self.bar.set_postfix_str(self.stage, refresh=False)
        self.bar.refresh()

    def _tick(self) -> None:
        while not self._stopped.wait(_REFRESH_SECONDS):
            with self._lock:
                self._draw()

    def close(self) -> None:
        self._stopped.set()
        if self._ticker.is_alive():
            self._ticker.join()
        if self.bar is not None:
            self.bar.close()


def _wanted() -> bool:
    stream = sys.stderr
    return config.progress and stream is not None and hasattr(stream, "isatty") and stream.isatty()


@contextmanager
def compile_progress(what: str) -> Iterator[Optional[CompileProgress]]:
    """A `CompileProgress` for the compile of `what` (a function's name), or None when no bar
    is wanted (stderr not a terminal, or progress turned off)."""
    if not _wanted():
        yield None
        return
    progress = CompileProgress(what)
    progress.start()
    try:
        yield progress
    finally:
        progress.close()
