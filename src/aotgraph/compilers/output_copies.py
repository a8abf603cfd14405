"""Copies that make a returned tensor memory of its own, kept from Inductor's no-op removal.

Inductor's post-grad pass drops a ``clone`` whose result has its source's layout: the graph is
functional, so the copy looks useless. Where the clone (or a view of it) is returned to the user,
the returned tensor becomes the source's memory, and its lowering may place that source inside
another buffer: ``torch.stack`` and ``torch.cat`` compute their inputs straight into their own
output. ``v = x - 1; return v.clone().expand(3, 6), torch.stack((v, x))`` then returns two
tensors over one memory (fuzzer seed 165; torch.compile's own Inductor does the same), and a
write into one changes the other, where eager's are apart.

So such a clone, returned and copying a value that something else reads too, reaches Inductor
as `materialized` (a copy of ours that it calls as a fallback kernel; switch
``output_copies_kept``): one copy kernel in the rare graphs that return such a value.
"""
from __future__ import annotations

import torch
import torch.fx as fx

from .. import config as aot_config
from ..graph.nodes import memory_root, view_chain
from .scatter_sources import MATERIALIZED

__all__ = ["keep_output_copies"]

_CLONE = torch.ops.aten.clone.default


def keep_output_copies(graph_module: fx.GraphModule, returned: list[int]) -> bool:
    """Route, in place, each clone of `graph_module` that the outputs at positions `returned`
    are (or view) through `materialized`, where Inductor would drop it (same layout as its
    source, whose memory is no output) and its source is read elsewhere too; whether any was."""
    if not aot_config.enabled("output_copies_kept"):
        return False
    outputs = graph_module.graph.find_nodes(op="output")[0].args[0]
    # Inductor keeps a clone whose source's memory is itself an output (a value the backward saves)
    output_memory = {memory_root(o) for o in outputs if isinstance(o, fx.Node)}
    clones = {memory_root(outputs[k]) for k in returned if isinstance(outputs[k], fx.Node)}
    clones = [node for node in clones if node.op == "call_function" and node.target is _CLONE
              and isinstance(node.args[0], fx.Node) and _same_layout(node, node.args[0])
              and memory_root(node.args[0]) not in output_memory and _read_elsewhere(node.args[0], node)]
    for clone in clones:
        clone.target, clone.args, clone.kwargs = MATERIALIZED, (clone.args[0],), {}
    if clones:
        graph_module.recompile()
    return bool(clones)


def _same_layout(node: fx.Node, source: fx.Node) -> bool:
    value, source_value = node.meta.get("val"), source.meta.get("val")
    if not isinstance(value, torch.Tensor) or not isinstance(source_value, torch.Tensor):
        return False
    return (value.shape == source_value.shape and value.stride() == source_value.stride()
            and value.dtype == source_value.dtype and value.device == source_value.device)


def _read_elsewhere(source: fx.Node, clone: fx.Node) -> bool:
    """Whether `source`'s memory (its root, through views) is read by a node other than `clone`
    and the views leading to it."""
    root, views = view_chain(source)
    if root.op != "call_function":  # an input: Inductor keeps copies of inputs that are returned
        return False
    pending, seen, chain = [root], set(), set(views)
    while pending:
        node = pending.pop()
        for user in node.users:
            if user is clone or user in seen:
                continue
            seen.add(user)
            if user in chain:
                pending.append(user)
            else:
                return True
    return False
