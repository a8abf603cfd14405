"""Node creation without fx's per-node argument walk.

``fx.Graph.create_node`` walks each node's arguments with pytree to warn about raw
SymInts (recent torch); graph building is a large share of capture and partition time,
and that walk is most of it. These helpers create the node without arguments and then
set them, which registers users exactly as ``create_node`` does: same node, same name.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import torch.fx as fx
from torch.fx.node import map_arg

__all__ = ["append_call", "copy_node"]


def append_call(graph: fx.Graph, target: Callable, args: tuple, kwargs: dict[str, Any]) -> fx.Node:
    """``graph.call_function(target, args, kwargs)`` at the insert point."""
    node = graph.create_node("call_function", target)
    node.args = args
    if kwargs:
        node.kwargs = kwargs
    return node


def copy_node(graph: fx.Graph, node: fx.Node, lookup: Callable[[fx.Node], Any]) -> fx.Node:
    """``graph.node_copy(node, lookup)``: same op, target, name and meta, arguments mapped."""
    new = graph.create_node(node.op, node.target, name=node.name, type_expr=node.type)
    new.args = map_arg(node.args, lookup)
    if node.kwargs:
        new.kwargs = map_arg(node.kwargs, lookup)
    new.meta = copy.copy(node.meta)
    return new
