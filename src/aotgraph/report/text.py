"""Plain-text report of one compiled entry (what ``python -m aotgraph explain`` prints)."""
from __future__ import annotations

from .saved import saved_report


def _count_ops(graph_module) -> int:
    return sum(n.op == "call_function" for n in graph_module.graph.nodes)


def format_entry(entry, program=None, inputs=None) -> str:
    """Stages with timings, graph sizes, and the saved-tensor table of a CompiledEntry;
    given the eager `program` and its `inputs`, the table is compared with eager autograd's."""
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
    if partition.backward is None:
        lines += ["", "== saved for backward", "nothing (inference graph)"]
    else:
        lines += ["", "== saved for backward", saved_report(entry, program, inputs).format()]
    return "\n".join(lines)
