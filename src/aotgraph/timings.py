"""A per-stage log of one compile: what ran, how long it took, what it produced.

Each stage appends one `StageRecord`: capture, partition, compile, then "first run" (the
first call's forward through the compiled graphs) and "first backward" (the backward
graph's first run). Reports read the log; each record is also logged at INFO level on the
``aotgraph`` logger (debug level 1, see `debug`). While a compile runs, the log tells its
`progress` (a bar on stderr, see `progress`) each stage it begins and ends.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Optional

from .debug import logger
from .progress import CompileProgress


@dataclass(frozen=True)
class StageRecord:
    stage: str
    seconds: float
    detail: str = ""


@dataclass
class StageNote:
    detail: str = ""


@dataclass
class CompileLog:
    """Ordered records of the stages of one compile (capture, partition, compile, first run)."""

    records: list[StageRecord] = field(default_factory=list)
    progress: Optional[CompileProgress] = field(default=None, repr=False, compare=False)

    @contextmanager
    def stage(self, name: str):
        """Time the block as stage `name`; the block may set ``.detail`` on what it gets."""
        note = StageNote()
        if self.progress is not None:
            self.progress.begin(name)
        start = time.perf_counter()
        try:
            yield note
        finally:
            record = StageRecord(name, time.perf_counter() - start, note.detail)
            self.records.append(record)
            if self.progress is not None:
                self.progress.end()
            logger.info("aotgraph %s: %.4f s %s", name, record.seconds, record.detail)

    def seconds(self, name: str) -> float:
        return sum(r.seconds for r in self.records if r.stage == name)

    def total(self) -> float:
        return sum(r.seconds for r in self.records)

    def format(self) -> str:
        lines = [f"{r.stage:<15} {r.seconds * 1e3:9.2f} ms  {r.detail}" for r in self.records]
        lines.append(f"{'total':<15} {self.total() * 1e3:9.2f} ms")
        return "\n".join(lines)

    def __str__(self) -> str:
        """The table of `format`: one line per stage and the total."""
        return self.format()


def time_first_call(boxed: Callable[[list], object], log: CompileLog, stage: str) -> Callable[[list], object]:
    """`boxed` (a graph in the boxed convention) with its first call recorded as `stage`."""
    pending = [True]

    def call(args: list):
        if pending:
            pending.clear()
            with log.stage(stage):
                return boxed(args)
        return boxed(args)

    call._boxed_call = True
    return call
