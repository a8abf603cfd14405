"""Scatters whose new values read the tensor they are written into, kept apart for Inductor.

``diagonal_scatter(base, src)`` and its kin (``select_scatter``, ``slice_scatter``,
``as_strided_scatter``) return a copy of `base` with `src` written into one view of it. Where
nothing reads `base` afterwards, Inductor's post-grad pass writes `src` into `base`'s own buffer.
Its lowering of that write then computes `src` inside the same loop, element by element, from
`base`'s buffer as the loop changes it (torch 2.11-2.13, CPU and GPU): where `src` reads
`base` at other positions than it writes, later elements read values already overwritten.
``y = x * 1; y.diagonal().mul_(2); y.diagonal().copy_(y.diagonal().flip(0))`` comes back with
half its diagonal wrong, silently, and torch.compile's own Inductor computes the same.

So a scatter whose new values depend on its base's memory gets them through an op of ours
(`materialized`, a copy that Inductor calls as a fallback kernel): they are whole in a buffer
of their own before the write begins (switch ``scatter_sources_apart``). That costs a copy of
the written values, in the rare graphs that have such a scatter.
"""
from __future__ import annotations

import torch
import torch.fx as fx

from .. import config as aot_config
from ..graph.nodes import memory_root, rewritten_in_place

__all__ = ["keep_scatter_sources_apart"]

aten = torch.ops.aten
_VIEW_OF_SCATTER = {aten.diagonal_scatter.default: aten.diagonal.default, aten.select_scatter.default: aten.select.int,
                    aten.slice_scatter.default: aten.slice.Tensor, aten.as_strided_scatter.default: aten.as_strided.default}
_LIBRARY = torch.library.Library("aotgraph", "FRAGMENT")
_LIBRARY.define("materialized(Tensor x) -> Tensor")
_LIBRARY.impl("materialized", lambda x: x.clone(), "CompositeExplicitAutograd")
_LIBRARY.impl("materialized", lambda x: x.clone(), "Meta")
MATERIALIZED = torch.ops.aotgraph.materialized.default


def keep_scatter_sources_apart(graph_module: fx.GraphModule) -> bool:
    """Route, in place, the new values of each scatter of `graph_module` (its regions too) that
    read the scattered tensor's memory through `materialized`; whether any was."""
    if not aot_config.enabled("scatter_sources_apart"):
        return False
    return rewritten_in_place(graph_module, _sources_apart)


def _sources_apart(module: fx.GraphModule) -> bool:
    scatters = [node for target in _VIEW_OF_SCATTER for node in module.graph.find_nodes(op="call_function", target=target)]
    if not scatters:
        return False
    order = {node: index for index, node in enumerate(module.graph.nodes)}
    touched = False
    for scatter in scatters:
        base, src = scatter.args[0], scatter.args[1]
        if isinstance(src, fx.Node) and _reads_elsewhere(scatter, src, memory_root(base), order):
            with module.graph.inserting_before(scatter):
                copy = module.graph.call_function(MATERIALIZED, (src,))
            if "val" in src.meta:
                copy.meta["val"] = MATERIALIZED(src.meta["val"])
            scatter.replace_input_with(src, copy)
            touched = True
    return touched


def _reads_elsewhere(scatter: fx.Node, src: fx.Node, root: fx.Node, order: dict) -> bool:
    """Whether `src` is computed from `root`'s values other than element by element from the
    view `scatter` writes (``y.diagonal().mul_(2)``: each element reads only its own position,
    which is safe). Only nodes after `root` can read it; ``copy(self, src)`` reads only `self`'s
    layout (functionalized writes take that form)."""
    start = order[root]
    shape = src.meta["val"].shape if isinstance(src.meta.get("val"), torch.Tensor) else None
    seen = set()
    stack = [(src, True)]  # (node, reached from `src` through elementwise ops only)
    while stack:
        current, aligned = stack.pop()
        if current is root:
            return True
        if (current, aligned) in seen or order.get(current, -1) <= start:
            continue
        seen.add((current, aligned))
        if aligned and _same_view(current, scatter):
            continue
        aligned = aligned and _elementwise(current, shape)
        if current.target is aten.copy.default:
            stack.extend((a, aligned) for a in current.args[1:2] if isinstance(a, fx.Node))
        else:
            stack.extend((a, aligned) for a in current.all_input_nodes)
    return False


def _same_view(node: fx.Node, scatter: fx.Node) -> bool:
    """Whether `node` is the view of the scatter's base that `scatter` writes."""
    return (node.op == "call_function" and node.target is _VIEW_OF_SCATTER[scatter.target]
            and node.args[0] is scatter.args[0] and tuple(node.args[1:]) == tuple(scatter.args[2:])
            and node.kwargs == scatter.kwargs)


def _elementwise(node: fx.Node, shape) -> bool:
    """Whether `node` computes each element of its output of `shape` from the same position of
    each tensor operand, all of that shape (a pointwise op without broadcasting)."""
    if shape is None or node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
        return False
    if node.target is not aten.copy.default and torch.Tag.pointwise not in node.target.tags:
        return False
    values = [a.meta.get("val") for a in (node, *node.all_input_nodes)]
    return all(isinstance(v, torch.Tensor) and v.shape == shape for v in values)
