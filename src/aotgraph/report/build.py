"""`build_report`: the `Report` of one compiled entry, from the pipeline's own artifacts.

Stage times come from the entry's `CompileLog`; the joint graph's picture from its
`Partition` (`joint_picture`); the saved-tensor table and totals from `saved_report` (the same
numbers the text report prints); memory timelines from `Partition.memory` (ours, predicted),
the default partition's (save what the backward reads, recompute nothing), eager autograd's
measured on a run of the program when it is given, and one per memory budget asked for.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from ..graph.memory import MemoryTimeline
from ..partition import default_partition, partition, partition_for
from .data import GraphCode, MemoryCurve, Report, SavedTensor, SavedTotals, StageTime
from .joint_picture import joint_picture
from .memory import eager_timeline
from .regions import region_rows
from .saved import primal_names, saved_report

__all__ = ["build_report"]


def _count_ops(graph_module) -> int:
    return sum(n.op == "call_function" for n in graph_module.graph.nodes)


def _curve(label: str, timeline: MemoryTimeline) -> MemoryCurve:
    forward = [s for s in timeline.steps if s.graph == "forward"]
    backward = [s for s in timeline.steps if s.graph == "backward"]
    return MemoryCurve(label, tuple(s.live_bytes for s in forward), tuple(s.live_bytes for s in backward),
                       tuple(s.node for s in forward), tuple(s.node for s in backward), timeline.saved_bytes)


def _measured_curve(program: Callable, inputs: Sequence[Any], saved_bytes: Optional[int]) -> MemoryCurve:
    steps = eager_timeline(program, inputs)
    forward = [s for s in steps if s[0] == "forward"]
    backward = [s for s in steps if s[0] == "backward"]
    return MemoryCurve("eager autograd (measured)", tuple(s[2] for s in forward), tuple(s[2] for s in backward),
                       tuple(s[1] for s in forward), tuple(s[1] for s in backward), saved_bytes or 0, measured=True)


def _memory_curves(entry, program, inputs, budgets: Sequence[Union[int, float]],
                   eager_bytes: Optional[int]) -> tuple[MemoryCurve, ...]:
    ours = entry.partition
    curves = [_curve("ours (predicted)", ours.memory)]
    if program is not None and inputs is not None:
        curves.append(_measured_curve(program, inputs, eager_bytes))
    planned_for = dict(ours.planned_for)  # as the compile planned (the primals its caller keeps, fused kernels)
    default = partition(ours.joint, default_partition, **planned_for)
    if tuple(v.name for v in default.saved) != tuple(v.name for v in ours.saved):
        curves.append(_curve("default partition: saves what backward reads (predicted)", default.memory))
    if budgets and ours.joint.regions:  # a budget plans the whole program: its compile captures the layers flat
        warnings.warn("aotgraph: no budget curves for a compile that took repeated layers as regions: a budget plans "
                      "the whole program, whose compile captures them flat; compile with partition_for(budget=...) "
                      "and read that entry's report instead", stacklevel=3)
        budgets = ()
    for budget in budgets:
        curves.append(_curve(f"memory budget {budget} (predicted)",
                             partition(ours.joint, partition_for(budget), **planned_for).memory))
    return tuple(curves)


def _code(partition_) -> tuple[GraphCode, ...]:
    if partition_.backward is None:
        return (GraphCode("inference", partition_.forward.code.strip(), _count_ops(partition_.forward)),)
    return (GraphCode("forward", partition_.forward.code.strip(), _count_ops(partition_.forward)),
            GraphCode("backward", partition_.backward.code.strip(), _count_ops(partition_.backward)))


def build_report(entry, program: Optional[Callable] = None, inputs: Optional[Sequence[Any]] = None,
                 input_names: Optional[Mapping[int, str]] = None, *, title: str = "", compiler: str = "",
                 partition_name: str = "", budgets: Sequence[Union[int, float]] = ()) -> Report:
    """The `Report` of a `CompiledEntry`. With the eager `program` and its `inputs`, the totals
    say what eager autograd saves and the memory plot has eager's measured timeline (the
    program runs forward and backward once more, writing no ``.grad``). `input_names` (flat input
    position -> display name) names inputs; `budgets` (as `partition_for`'s `budget`) adds the
    predicted timeline of each budget's plan."""
    parts = entry.partition
    labels = primal_names(parts.joint, input_names)
    saved = saved_report(entry, program, inputs, input_names)
    picture = joint_picture(parts, labels)
    module_of = {node.name: picture.groups[node.group].name for node in picture.nodes}
    module_of.update({node.label: module_of[node.name] for node in picture.nodes if node.label})
    rows = tuple(SavedTensor(
        name=row.name, shape=str(list(row.shape)) if row.shape is not None else "-",
        dtype=str(row.dtype).replace("torch.", "") if row.dtype else "symbol", nbytes=row.nbytes,
        producer=row.producer, reason=row.reason, is_input=row.is_input, offloaded=row.offloaded,
        module=module_of.get(row.name, "")) for row in saved.rows)
    totals = SavedTotals(count=len(rows), input_count=sum(r.is_input for r in rows), saved_bytes=saved.saved_bytes,
                         offloaded_bytes=saved.offloaded_bytes, recomputed_ops=len(saved.recomputed),
                         recompute_flops=saved.recompute_flops, eager_count=saved.eager_saved_count,
                         eager_bytes=saved.eager_saved_bytes)
    memory = () if parts.backward is None else _memory_curves(entry, program, inputs, budgets, saved.eager_saved_bytes)
    return Report(
        title=title, compiler=compiler, partition=partition_name,
        stages=tuple(StageTime(r.stage, r.seconds, r.detail) for r in entry.log.records),
        joint=picture, saved=rows, totals=totals, memory=memory, code=_code(parts),
        input_names=tuple(labels.items()), regions=region_rows(parts.joint))
