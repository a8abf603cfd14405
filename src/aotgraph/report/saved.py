"""What the backward keeps alive: the saved-tensor report of one compiled entry.

`saved_report(entry, program, inputs)` lists each saved value (name, shape, dtype, bytes,
producing op, why saved; an input saved as it is goes by its display name when
`input_names` gives one, e.g. ``lin.weight`` for ``primals_1``), the ops the backward recomputes, totals, the predicted memory
peaks of forward and backward (`Partition.memory`), and, when the program
and its inputs are given, what eager autograd saves for the same program (counted with
``torch.autograd.graph.saved_tensors_hooks``). Bytes are distinct storages; inputs
(parameters, the batch) are listed but not counted: the caller keeps them alive anyway.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
import torch.fx as fx
from torch.utils._pytree import tree_leaves

from ..artifacts import Partition
from ..graph.ops import flops_of, op_name
from ..graph.naming import is_primal
from ..graph.nodes import tangent_dependent
from ..graph.memory import MemoryTimeline, saved_storage_bytes
from ..graph.sizes import size_hint

__all__ = ["SavedRow", "SavedReport", "saved_report", "eager_saved_tensors", "saved_storage_bytes", "recompute_flops",
           "primal_names"]


@dataclass(frozen=True)
class SavedRow:
    name: str
    shape: Optional[tuple]
    dtype: Optional[torch.dtype]
    nbytes: int
    producer: str
    reason: str
    is_input: bool
    offloaded: bool


@dataclass(frozen=True)
class SavedReport:
    rows: tuple[SavedRow, ...]
    recomputed: tuple[tuple[str, str, int], ...]  # (node, op, FLOPs)
    saved_bytes: int  # distinct non-input storages, device and host
    offloaded_bytes: int
    recompute_flops: int
    eager_saved_bytes: Optional[int] = None
    eager_saved_count: Optional[int] = None
    memory: Optional[MemoryTimeline] = None  # predicted live bytes per node, and peaks

    def _memory_lines(self) -> list[str]:
        memory = self.memory
        if memory is None:
            return []

        def peak_of(graph: str) -> str:
            step = max((s for s in memory.steps if s.graph == graph), key=lambda s: s.live_bytes, default=None)
            return f"{human_bytes(step.live_bytes)} at {step.node}" if step else "-"

        return [f"predicted memory above the inputs (non-fusing compiler): forward peak {peak_of('forward')}, "
                f"backward peak {peak_of('backward')}; between them {human_bytes(memory.saved_bytes)} saved + "
                f"{human_bytes(memory.carried_bytes)} outputs and tangents; gradients {human_bytes(memory.gradient_bytes)}"]

    def format(self) -> str:
        width = max([30, *(len(row.name) for row in self.rows)])
        lines = [f"{'saved value':<{width}} {'shape':<20} {'dtype':<9} {'bytes':>11}  {'producer':<34} why"]
        for row in self.rows:
            shape = str(list(row.shape)) if row.shape is not None else "-"
            dtype = str(row.dtype).replace("torch.", "") if row.dtype else "symbol"
            where = " [host]" if row.offloaded else ""
            lines.append(f"{row.name:<{width}} {shape:<20} {dtype:<9} {row.nbytes:>11}  {row.producer:<34} "
                         f"{row.reason}{where}")
        inputs = sum(r.is_input for r in self.rows)
        lines.append(f"{len(self.rows)} saved values ({inputs} inputs, not counted): {human_bytes(self.saved_bytes)} saved, "
                     f"{human_bytes(self.offloaded_bytes)} of it in host memory")
        ops: dict[str, int] = {}
        for _, op, _ in self.recomputed:
            ops[op] = ops.get(op, 0) + 1
        summary = ", ".join(f"{op} x{count}" for op, count in sorted(ops.items(), key=lambda kv: -kv[1]))
        lines.append(f"recomputed in backward: {len(self.recomputed)} ops, {self.recompute_flops:.3g} FLOPs"
                     + (f" ({summary})" if summary else ""))
        if self.eager_saved_bytes is not None:
            ratio = self.saved_bytes / self.eager_saved_bytes if self.eager_saved_bytes else float("nan")
            lines.append(f"eager autograd saves {self.eager_saved_count} tensors, {human_bytes(self.eager_saved_bytes)}; "
                         f"ours / eager = {ratio:.2f}")
            if self.saved_bytes > self.eager_saved_bytes:
                forced = [r for r in self.rows if not r.is_input and r.reason.startswith("not recomputable")]
                lines.append(f"ours saves more than eager: {len(forced)} values cannot be recomputed "
                             f"({human_bytes(sum(r.nbytes for r in forced))}), e.g. "
                             + ", ".join(f"{r.name} ({r.reason})" for r in forced[:3]))
        return "\n".join(lines + self._memory_lines())


def human_bytes(n: float) -> str:
    """``512 B``, ``56.3 KiB``, ``1.2 GiB``; a count of symbolic sizes at the sizes it was traced
    with (its hint)."""
    if not isinstance(n, (int, float)):
        n = size_hint(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def recompute_flops(backward: fx.GraphModule) -> list[tuple[str, str, int]]:
    """Backward ops that read no tangent: values the backward rebuilds from saved ones."""
    dependent = tangent_dependent(backward.graph)
    return [(n.name, op_name(n), flops_of(n)) for n in backward.graph.nodes
            if n.op == "call_function" and n not in dependent]


def eager_saved_tensors(program: Callable, inputs: Sequence[Any]) -> tuple[int, int]:
    """(distinct storages, bytes) eager autograd saves for ``program(*inputs)``, outside
    the inputs and the module's parameters and buffers."""
    excluded = {t.untyped_storage().data_ptr() for t in tree_leaves(list(inputs)) if isinstance(t, torch.Tensor)}
    if isinstance(program, torch.nn.Module):
        excluded |= {t.untyped_storage().data_ptr() for t in [*program.parameters(), *program.buffers()]}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in excluded:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        program(*inputs)
    return len(saved), sum(saved.values())


def primal_names(joint, input_names: Optional[Mapping[int, str]]) -> dict[str, str]:
    """Placeholder name of each primal of `joint` (``primals_3``) -> the display name that
    `input_names` (flat input position -> name) gives its flat input; primals without one are left out."""
    if not input_names:
        return {}
    primals = [n for n in joint.graph_module.graph.find_nodes(op="placeholder") if is_primal(n)]
    return {node.name: input_names[position] for node, position in zip(primals, joint.signature.primal_positions)
            if position in input_names}


def saved_report(entry, program: Optional[Callable] = None, inputs: Optional[Sequence[Any]] = None,
                 input_names: Optional[Mapping[int, str]] = None) -> SavedReport:
    """The saved-tensor report of a `CompiledEntry` (or a `Partition`); with `program` and
    `inputs`, compared with what eager autograd saves. `input_names` (flat input position ->
    display name, e.g. ``{0: "lin.weight"}``) names the rows of inputs saved as they are."""
    partition: Partition = entry if isinstance(entry, Partition) else entry.partition
    if partition.backward is None:
        return SavedReport((), (), 0, 0, 0)
    names = primal_names(partition.joint, input_names)
    plan = partition.plan
    offloaded = set(plan.offloaded) if plan else set()
    num_fwd = partition.joint.num_fwd_outputs
    saved_nodes = list(partition.forward.graph.find_nodes(op="output")[0].args[0])[num_fwd:]
    rows = []
    for value, node in zip(partition.saved, saved_nodes):
        meta = value.meta
        source = node.args[0] if node.name.endswith("_host") and node.args else node
        name = names.get(value.name, value.name) if node.op == "placeholder" else value.name
        rows.append(SavedRow(name, tuple(meta.shape) if meta else None, meta.dtype if meta else None,
                             value.nbytes, value.producer if source is node else str(source.target),
                             value.reason, node.op == "placeholder", source.name in offloaded))
    recomputed = recompute_flops(partition.backward)
    count = eager_bytes = None
    if program is not None and inputs is not None:
        count, eager_bytes = eager_saved_tensors(program, inputs)
    return SavedReport(
        rows=tuple(rows),
        recomputed=tuple(recomputed),
        saved_bytes=saved_storage_bytes(partition.forward, num_fwd),
        offloaded_bytes=plan.offloaded_bytes if plan else 0,
        recompute_flops=sum(f for _, _, f in recomputed),
        eager_saved_bytes=eager_bytes,
        eager_saved_count=count,
        memory=partition.memory,
    )
