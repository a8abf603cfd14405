"""Plain-text report of one compiled entry (what ``python -m aotgraph explain`` prints)."""
from __future__ import annotations

from ..artifacts import Partition


def _count_ops(graph_module) -> int:
    return sum(n.op == "call_function" for n in graph_module.graph.nodes)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def format_saved(partition: Partition) -> str:
    """One line per value the forward saves for the backward, then the total."""
    if partition.backward is None:
        return "saved for backward: nothing (inference graph)"
    rows = [f"{'name':<28} {'shape':<22} {'dtype':<10} {'bytes':>10}  producer"]
    for value in partition.saved:
        meta = value.meta
        shape = str(list(meta.shape)) if meta else "-"
        dtype = str(meta.dtype).replace("torch.", "") if meta else "symbol"
        rows.append(f"{value.name:<28} {shape:<22} {dtype:<10} {value.nbytes:>10}  {value.producer}")
    rows.append(f"{len(partition.saved)} saved values, {_human_bytes(partition.saved_bytes)} in all")
    return "\n".join(rows)


def format_entry(entry) -> str:
    """Stages with timings, graph sizes, and the saved-tensor table of a CompiledEntry."""
    partition = entry.partition
    joint = partition.joint
    sig = joint.signature
    lines = ["== stages", entry.log.format(), "", "== graphs"]
    lines.append(f"joint graph:    {_count_ops(joint.graph_module):5d} ops")
    if partition.backward is None:
        lines.append(f"inference graph:{_count_ops(partition.forward):5d} ops")
    else:
        lines.append(f"forward graph:  {_count_ops(partition.forward):5d} ops")
        lines.append(f"backward graph: {_count_ops(partition.backward):5d} ops")
        if partition.recomputed:
            lines.append(f"recomputed in backward: {len(partition.recomputed)} ops")
    mutated = [i for i, info in enumerate(sig.inputs) if info.mutates_data or info.mutates_metadata]
    aliased = [i for i, info in enumerate(sig.outputs) if info.base_input is not None]
    lines.append(f"inputs: {len(sig.inputs)} ({joint.num_primals} tensors), mutated: {mutated or 'none'}")
    lines.append(f"outputs: {len(sig.outputs)}, aliasing an input: {aliased or 'none'}")
    lines += ["", "== saved for backward", format_saved(partition)]
    return "\n".join(lines)
