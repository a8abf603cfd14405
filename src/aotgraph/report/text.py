"""Plain-text report of one compiled entry (what ``python -m aotgraph explain`` prints).

Inputs go by their flat position unless the caller passes `input_names` (flat input
position -> display name): the command line names a module's parameters and buffers
(``lin.weight``, ``bn.running_mean``) and the program's arguments (``x``).
"""
from __future__ import annotations

from typing import Mapping, Optional

from .regions import format_regions, region_rows
from .saved import human_bytes, primal_names, saved_report, saved_storage_bytes


def _count_ops(graph_module) -> int:
    return sum(n.op == "call_function" for n in graph_module.graph.nodes)


def _input_label(position: int, input_names: Optional[Mapping[int, str]]) -> str:
    name = (input_names or {}).get(position)
    return str(position) if name is None else name


def entry_headline(entry) -> str:
    """One line on a CompiledEntry: ops per graph, and the tensors its forward saves for the
    backward with their bytes (distinct storages outside the inputs, as the saved-tensor report)."""
    partition = entry.partition
    if partition.backward is None:
        return f"inference graph {_count_ops(partition.forward)} ops; nothing saved for backward"
    nbytes = saved_storage_bytes(partition.forward, partition.joint.num_fwd_outputs)
    return (f"forward graph {_count_ops(partition.forward)} ops, backward graph {_count_ops(partition.backward)} ops "
            f"(joint {_count_ops(partition.joint.graph_module)}); saved for backward: "
            f"{partition.num_saved_tensors} tensors, {human_bytes(nbytes)} outside the inputs")


def format_entry(entry, program=None, inputs=None, input_names: Optional[Mapping[int, str]] = None) -> str:
    """Stages with timings, graph sizes, and the saved-tensor table of a CompiledEntry;
    given the eager `program` and its `inputs`, the table is compared with eager autograd's.
    `input_names` (flat input position -> display name) names mutated inputs, inputs that
    outputs alias and inputs saved for backward; inputs without a name show their position."""
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
    mutated = [_input_label(i, input_names) for i, info in enumerate(sig.inputs)
               if info.mutates_data or info.mutates_metadata]
    aliased = [f"{i} -> {_input_label(info.base_input, input_names)}" for i, info in enumerate(sig.outputs)
               if info.base_input is not None]
    lines.append(f"inputs: {len(sig.inputs)} ({joint.num_primals} tensors), mutated: {', '.join(mutated) or 'none'}")
    lines.append(f"outputs: {len(sig.outputs)}, aliasing an input: {', '.join(aliased) or 'none'}")
    if partition.backward is None:
        lines += ["", "== saved for backward", "nothing (inference graph)"]
    else:
        lines += ["", "== saved for backward", saved_report(entry, program, inputs, input_names).format()]
    lines += ["", "== regions", format_regions(region_rows(joint))]
    return "\n".join(lines)


def format_graph_code(entry, input_names: Optional[Mapping[int, str]] = None) -> str:
    """The Python code of the entry's forward and backward graphs (or its inference graph),
    after a legend of which input each ``primals_k`` placeholder is, where `input_names` names it."""
    partition = entry.partition
    names = primal_names(partition.joint, input_names)
    lines = ["== code"]
    if names:
        lines.append("inputs: " + ", ".join(f"{placeholder} = {name}" for placeholder, name in names.items()))
    if partition.backward is None:
        lines += ["inference graph:", partition.forward.code.strip()]
    else:
        lines += ["forward graph:", partition.forward.code.strip(), "", "backward graph:", partition.backward.code.strip()]
    return "\n".join(lines)
