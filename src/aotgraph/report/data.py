"""The report of one compile as plain data: what the HTML page draws and ``--json`` writes.

`Report` and its parts are frozen dataclasses of strings, numbers and tuples, so a report
is the same object after a trip through JSON (`Report.to_json`, `Report.from_json`).
Bytes are distinct storages outside the graph inputs, as `Partition.saved_bytes` and
`Partition.memory` count them. `report.build.build_report` makes one from a compiled entry.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from typing import Optional

import torch

from ..graph.sizes import size_hint

__all__ = ["Report", "StageTime", "GraphNode", "NodeGroup", "JointPicture", "SavedTensor", "SavedTotals",
           "MemoryCurve", "GraphCode", "RegionRow", "PLACEMENTS"]

# Where a joint-graph node runs. "input": a primal (the caller's tensor); "tangent": a
# gradient the backward receives; "unused": the partition dropped it (dead in both graphs).
PLACEMENTS = ("input", "forward", "offloaded", "recomputed", "backward", "tangent", "unused")


@dataclass(frozen=True)
class StageTime:
    stage: str
    seconds: float
    detail: str = ""


@dataclass(frozen=True)
class GraphNode:
    """One node of the joint graph. `side`: 0 left of the cut (runs in the forward, or is an
    input), 1 right of it (runs in the backward: backward ops, recomputed ops, tangents).
    `rank`: its column, the longest path to it from its side's first nodes (the backward's
    columns follow the forward's). `saved`: the forward hands its value to the backward.
    `group`: index into `JointPicture.groups`."""

    name: str
    op: str
    placement: str
    side: int
    rank: int
    group: int
    nbytes: int
    shape: str
    saved: bool = False
    label: str = ""  # the input's display name (``blocks.0.attn.qkv.weight``), else empty


@dataclass(frozen=True)
class NodeGroup:
    """Nodes drawn as one box in the overview: a module (from parameter names, or Dynamo's
    module stack) on one side of the cut, or, without names, a run of consecutive nodes."""

    name: str
    side: int


@dataclass(frozen=True)
class JointPicture:
    """The joint graph as the page draws it: nodes in graph order, edges as (from, to) node
    indices, the groups of the overview, and `cut_rank`: the first column right of the cut."""

    nodes: tuple[GraphNode, ...]
    edges: tuple[tuple[int, int], ...]
    groups: tuple[NodeGroup, ...]
    cut_rank: int


@dataclass(frozen=True)
class SavedTensor:
    """One value the forward hands to the backward (a row of the saved-tensor table)."""

    name: str
    shape: str
    dtype: str
    nbytes: int
    producer: str
    reason: str
    is_input: bool
    offloaded: bool
    module: str = ""  # the module (or group) of the joint graph's node, as the graph picture groups it


@dataclass(frozen=True)
class SavedTotals:
    """Totals of the saved-tensor table, and what eager autograd saves (None: not measured)."""

    count: int
    input_count: int
    saved_bytes: int
    offloaded_bytes: int
    recomputed_ops: int
    recompute_flops: int
    eager_count: Optional[int] = None
    eager_bytes: Optional[int] = None


@dataclass(frozen=True)
class MemoryCurve:
    """Live bytes at each step of a forward then its backward (`forward`, `backward`: one value
    per op), with the op of each step, for one plan; `measured`: from a run, not predicted."""

    label: str
    forward: tuple[int, ...]
    backward: tuple[int, ...]
    forward_steps: tuple[str, ...]
    backward_steps: tuple[str, ...]
    saved_bytes: int
    measured: bool = False

    @property
    def peak(self) -> int:
        return max((*self.forward, *self.backward), default=0)


@dataclass(frozen=True)
class GraphCode:
    name: str  # "forward", "backward" or "inference"
    code: str
    num_ops: int


@dataclass(frozen=True)
class RegionRow:
    """A region captured and partitioned once (`capture.regions`): found without a marker
    (`automatic`) or marked; the calls it served; the seconds of its one capture and partition,
    and about what the other calls saved (that much each: the flat capture records every call)."""

    name: str
    automatic: bool
    occurrences: int
    seconds: float
    seconds_saved: float


@dataclass(frozen=True)
class Report:
    """What one compile did: the stages and their times, the joint graph with where each node
    runs, the saved tensors with totals and eager's, the memory timelines (ours first), the code."""

    title: str
    compiler: str
    partition: str
    stages: tuple[StageTime, ...]
    joint: JointPicture
    saved: tuple[SavedTensor, ...]
    totals: SavedTotals
    memory: tuple[MemoryCurve, ...]
    code: tuple[GraphCode, ...]
    input_names: tuple[tuple[str, str], ...] = ()  # (placeholder, display name)
    regions: tuple[RegionRow, ...] = ()

    def to_dict(self) -> dict:
        """Plain data (``dataclasses.asdict``'s shape); a symbolic count (a size expression of
        an entry compiled with symbolic sizes) as its value at the traced sizes."""
        return _plain(self)

    def to_json(self, indent: Optional[int] = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "Report":
        return _decode(cls, json.loads(text))


def _plain(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (torch.SymInt, torch.SymFloat)):
        if isinstance(value, torch.SymInt):
            return size_hint(value)
        return float(value.node.hint) if value.node.has_hint() else None
    return value


def _decode(kind, value):
    """`value` (parsed JSON) as an instance of the type `kind`: dataclasses field by field,
    tuples (``tuple[X, ...]`` and fixed) element by element, Optional as its argument."""
    if value is None:
        return None
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        return kind(**{f.name: _decode(hints[f.name], value[f.name]) for f in dataclasses.fields(kind)
                       if f.name in value})
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], item) for item in value)
        return tuple(_decode(arg, item) for arg, item in zip(args, value))
    if origin is typing.Union:
        return _decode(next(a for a in args if a is not type(None)), value)
    return value
