"""The regions a compile captured once and called per occurrence, as report rows and text."""
from __future__ import annotations

from .data import RegionRow

__all__ = ["region_rows", "format_regions"]


def region_rows(joint) -> tuple[RegionRow, ...]:
    """One row per region of `joint` (a `JointGraph`), from its `regions`."""
    return tuple(RegionRow(use.name, use.automatic, use.occurrences, use.seconds,
                           use.seconds * (use.occurrences - 1)) for use in joint.regions)


def format_regions(rows: tuple[RegionRow, ...]) -> str:
    """A line per region, then the caveat of a region as a unit: a fusing compiler (Inductor)
    compiles it on its own, so no kernel fuses across its boundary (the flat graph may)."""
    if not rows:
        return ("none (no marked region, no repeated submodule or block taken: capture/repeated_layers.py, "
                "capture/repeated_blocks.py)")
    lines = [f"{row.name} ({'found' if row.automatic else 'marked'}): {row.occurrences} calls, captured and "
             f"partitioned once in {row.seconds:.3f} s, about {row.seconds_saved:.3f} s saved" for row in rows]
    lines.append("a region is a unit: kernels do not fuse across its boundary, and each call keeps its own "
                 "saved values (switch auto_regions / region_reuse off to compare with the flat graph)")
    return "\n".join(lines)
