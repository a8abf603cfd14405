"""A per-stage log of one compile: what ran, how long it took, what it produced.

Each stage appends one `StageRecord`; reports and the `aotgraph` logger read it.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

logger = logging.getLogger("aotgraph")


@dataclass(frozen=True)
class StageRecord:
    stage: str
    seconds: float
    detail: str = ""


@dataclass
class CompileLog:
    """Ordered records of the stages of one compile (capture, partition, compile, first run)."""

    records: list[StageRecord] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str, detail: str = ""):
        start = time.perf_counter()
        try:
            yield
        finally:
            record = StageRecord(name, time.perf_counter() - start, detail)
            self.records.append(record)
            logger.info("aotgraph %s: %.4f s %s", name, record.seconds, detail)

    def seconds(self, name: str) -> float:
        return sum(r.seconds for r in self.records if r.stage == name)

    def total(self) -> float:
        return sum(r.seconds for r in self.records)

    def format(self) -> str:
        lines = [f"{r.stage:<12} {r.seconds * 1e3:9.2f} ms  {r.detail}" for r in self.records]
        lines.append(f"{'total':<12} {self.total() * 1e3:9.2f} ms")
        return "\n".join(lines)
