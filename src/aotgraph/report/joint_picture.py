"""The joint graph as a picture: where each node runs, its column, its group, the edges.

Placement of a node (see `data.PLACEMENTS`): primals are inputs, tangents tangents; a node the
backward recomputes is "recomputed" and one whose value goes to host memory "offloaded"; else
"forward" or "backward" by the graph the partition put it in, or "unused". Columns: the longest
path to a node from the first nodes of its side of the cut (an input, or a node reading only
inputs: just before its first reader), the backward's columns after the forward's, so that the cut is one vertical line that
saved values cross. A node the backward recomputes sits right of the cut unless the forward
also computes it.

Groups (the overview of a large graph): Dynamo's module stack where the graph has one; else a
forward node belongs to the module of the parameter it reads, or of its latest input's group,
and a backward node to the group of the forward op it differentiates (same ``seq_nr``); names
are cut to fewer dots until there are at most `MAX_GROUPS`. With no names at all (a function
of plain tensors), groups are runs of consecutive columns.
"""
from __future__ import annotations

import re
from typing import Mapping, Optional

import torch
import torch.fx as fx

from ..artifacts import Partition
from ..graph.naming import is_tangent
from ..graph.ops import op_name
from ..graph.sizes import size_hint
from .data import GraphNode, JointPicture, NodeGroup

__all__ = ["joint_picture", "saved_node_names", "MAX_GROUPS"]

MAX_GROUPS = 120  # boxes in the overview, both sides together
_NO_MODULE = "(no module)"


def _placements(partition: Partition, nodes: list[fx.Node]) -> dict[str, str]:
    forward = {n.name for n in partition.forward.graph.nodes}
    backward = {n.name for n in partition.backward.graph.nodes} if partition.backward is not None else set()
    recomputed = set(partition.recomputed)
    offloaded = set(partition.plan.offloaded) if partition.plan else set()
    placements = {}
    for node in nodes:
        if node.op == "placeholder":
            placements[node.name] = "tangent" if is_tangent(node) else "input"
        elif node.name in recomputed:
            placements[node.name] = "recomputed"
        elif node.name in offloaded:
            placements[node.name] = "offloaded"
        elif node.name in forward:
            placements[node.name] = "forward"
        elif node.name in backward:
            placements[node.name] = "backward"
        else:
            placements[node.name] = "unused"
    return placements


def saved_node_names(partition: Partition) -> set[str]:
    """Joint nodes whose values the forward hands to the backward (an offloaded value's host
    copy counts as its source)."""
    if partition.backward is None:
        return set()
    outputs = list(partition.forward.graph.find_nodes(op="output")[0].args[0])[partition.joint.num_fwd_outputs:]
    names = set()
    for node in outputs:
        if isinstance(node, fx.Node):
            is_host_copy = node.name.endswith("_host") and node.args and isinstance(node.args[0], fx.Node)
            names.add(node.args[0].name if is_host_copy else node.name)
    return names


def _ranks(nodes: list[fx.Node], sides: dict[fx.Node, int]) -> tuple[dict[fx.Node, int], int]:
    """(column of each node, first column of the backward side)."""
    local: dict[fx.Node, int] = {}
    for node in nodes:
        preds = [local[p] for p in node.all_input_nodes if p in local and sides[p] == sides[node]]
        local[node] = 1 + max(preds) if preds else 0
    floating = set()  # inputs, and nodes that read only inputs and floating nodes (a weight's transpose)
    for node in nodes:
        if node.op == "placeholder" or all(p in floating for p in node.all_input_nodes if sides[p] == sides[node]):
            floating.add(node)
    for node in reversed(nodes):  # a floating node stands just before its first reader, not in column 0
        if node in floating:
            readers = [local[u] for u in node.users if u in local and sides[u] == sides[node]]
            if readers:
                local[node] = max(local[node], min(readers) - 1)
    cut = 1 + max((r for n, r in local.items() if sides[n] == 0), default=-1)
    return {n: r + cut * sides[n] for n, r in local.items()}, cut


def _module_of(label: str) -> str:
    return label.rsplit(".", 1)[0] if "." in label else label


def _stack_group(node: fx.Node) -> Optional[str]:
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    path = str(list(stack.values())[-1][0])  # Dynamo's spelling: L['self'].blocks[0]._modules['attn']
    path = re.sub(r"\._modules\['([^']+)'\]|\[(\d+)\]", lambda m: "." + (m.group(1) or m.group(2)), path)
    return re.sub(r"^L\['[^']*'\]", "", path).lstrip(".") or None  # the compiled module itself: L['self'], L['fn']


def _module_groups(nodes: list[fx.Node], sides: dict, labels: Mapping[str, str]) -> dict[fx.Node, Optional[str]]:
    groups: dict[fx.Node, Optional[str]] = {}
    by_seq_nr: dict[int, str] = {}
    for node in nodes:
        group = _stack_group(node)
        if group is None and node.op == "placeholder":
            group = _module_of(labels[node.name]) if node.name in labels else None
        elif group is None:
            seq_nr = node.meta.get("seq_nr")
            if sides[node] == 1 and seq_nr in by_seq_nr:
                group = by_seq_nr[seq_nr]
            else:
                inputs = [groups[p] for p in node.all_input_nodes if groups.get(p) is not None]
                group = inputs[-1] if inputs else None
        if group is not None and sides[node] == 0 and node.meta.get("seq_nr") is not None:
            by_seq_nr.setdefault(node.meta["seq_nr"], group)
        groups[node] = group
    return groups


def _coarsen(groups: dict[fx.Node, Optional[str]], sides: dict) -> dict[fx.Node, str]:
    """Module names cut to fewer dots until at most MAX_GROUPS (name, side) boxes remain."""
    names = {n: (g if g is not None else _NO_MODULE) for n, g in groups.items()}
    depth = max((name.count(".") + 1 for name in names.values()), default=1)
    while depth > 1 and len({(name, sides[n]) for n, name in names.items()}) > MAX_GROUPS:
        depth -= 1
        names = {n: ".".join(name.split(".")[:depth]) for n, name in names.items()}
    return names


def _column_runs(ranks: dict[fx.Node, int], sides: dict) -> dict[fx.Node, str]:
    """Groups of consecutive columns, about MAX_GROUPS of them in all."""
    width = max(1, -(-(max(ranks.values(), default=0) + 1) // MAX_GROUPS))
    names = {}
    for node, rank in ranks.items():
        start = rank // width * width
        names[node] = f"{'backward' if sides[node] else 'forward'} columns {start}-{start + width - 1}"
    return names


def _describe(value) -> tuple[int, str]:
    """(bytes, "shape dtype") of a node's value: a tensor, a tuple of them, or a symbol."""
    if isinstance(value, torch.Tensor):
        tensors = [value]
    elif isinstance(value, (tuple, list)):
        tensors = [v for v in value if isinstance(v, torch.Tensor)]
    else:
        tensors = []
    nbytes = sum(size_hint(t.numel()) * t.element_size() for t in tensors)  # an unbacked size: its assumed hint
    shape = ", ".join(f"{list(t.shape)} {str(t.dtype).replace('torch.', '')}" for t in tensors)
    return nbytes, shape or ("" if value is None else type(value).__name__)


def joint_picture(partition: Partition, labels: Optional[Mapping[str, str]] = None) -> JointPicture:
    """The `JointPicture` of a partition's joint graph; `labels`: placeholder -> display name."""
    labels = dict(labels or {})
    graph = partition.joint.graph_module.graph
    nodes = [n for n in graph.nodes if n.op != "output"]
    placements = _placements(partition, nodes)
    forward = {n.name for n in partition.forward.graph.nodes}
    sides = {n: int(placements[n.name] in ("backward", "tangent")
                    or (placements[n.name] == "recomputed" and n.name not in forward)) for n in nodes}
    ranks, cut = _ranks(nodes, sides)
    modules = _module_groups(nodes, sides, labels)
    names = _coarsen(modules, sides) if any(g is not None for g in modules.values()) else _column_runs(ranks, sides)
    group_index: dict[tuple[str, int], int] = {}
    for node in sorted(nodes, key=lambda n: (sides[n], ranks[n])):
        group_index.setdefault((names[node], sides[node]), len(group_index))
    saved = saved_node_names(partition)
    index = {node: i for i, node in enumerate(nodes)}
    picture_nodes = []
    for node in nodes:
        nbytes, shape = _describe(node.meta.get("val"))
        picture_nodes.append(GraphNode(
            name=node.name, op=node.name if node.op == "placeholder" else op_name(node),
            placement=placements[node.name], side=sides[node], rank=ranks[node],
            group=group_index[(names[node], sides[node])], nbytes=nbytes, shape=shape,
            saved=node.name in saved, label=labels.get(node.name, "")))
    edges = tuple((index[p], index[n]) for n in nodes for p in n.all_input_nodes if p in index)
    groups = tuple(NodeGroup(name, side) for (name, side) in group_index)
    return JointPicture(tuple(picture_nodes), edges, groups, cut)

