"""Graph utilities every stage may use: walk a joint graph's nodes, copy subgraphs."""
from __future__ import annotations

import operator
from typing import Iterable, Optional

import torch.fx as fx

from .fx_args import set_args
from ..torch_private.fx import LazyGraphModule as _make_graph_module
from .naming import is_tangent
from .ops import is_view



def joint_outputs(joint: fx.GraphModule, num_fwd_outputs: int) -> tuple[list, list]:
    """(forward outputs, backward outputs) of a joint graph with a flat output tuple."""
    outputs = list(joint.graph.find_nodes(op="output")[0].args[0])
    return outputs[:num_fwd_outputs], outputs[num_fwd_outputs:]


def tangent_dependent(graph: fx.Graph) -> set[fx.Node]:
    """Nodes whose value depends on a tangent: they can only run in the backward."""
    dependent: set[fx.Node] = set()
    stack = [n for n in graph.find_nodes(op="placeholder") if is_tangent(n)]
    while stack:
        node = stack.pop()
        if node not in dependent:
            dependent.add(node)
            stack.extend(node.users)
    return dependent


def ancestors(roots: Iterable[Optional[fx.Node]], stop: set[fx.Node] = frozenset()) -> set[fx.Node]:
    """Every node `roots` read from, transitively, not walking past `stop` nodes."""
    seen: set[fx.Node] = set()
    stack = [r for r in roots if isinstance(r, fx.Node)]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node not in stop:
            stack.extend(node.all_input_nodes)
    return seen



def saved_by_default(nodes: Iterable[fx.Node], forward_values: set, bwd_outputs: list, primals: list,
                     tangents: list) -> list:
    """What the default partition saves, in `nodes`' order: forward values and primals that the
    backward reads (it computes everything else from them and the tangents)."""
    available = forward_values | set(primals)
    needed = ancestors(bwd_outputs, stop=available | set(tangents))
    return [n for n in nodes if n in available and n in needed]

def extract_graph(
    source: fx.GraphModule, inputs: list[fx.Node], outputs: list, keep: set[fx.Node] = frozenset(),
    on_demand: set[fx.Node] = frozenset(), needed: Optional[set[fx.Node]] = None,
) -> fx.GraphModule:
    """A new module computing `outputs` from `inputs` (which become placeholders of the same
    names), copying only the nodes needed, plus the nodes in `keep` (e.g. random ops
    whose draws must happen), in the source's order, except `on_demand` nodes: each is
    placed right before its first consumer (recomputation in a backward, so recomputed
    values do not all come back to life at its start). `needed`: the nodes to copy, where
    the caller has them (`outputs`, `keep` and their ancestors up to `inputs`)."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in inputs:
        placeholder = graph.create_node("placeholder", node.name, name=node.name, type_expr=node.type)
        placeholder.meta.update(node.meta)
        env[node] = placeholder

    def emit(root: fx.Node) -> None:
        stack = [root]
        while stack:
            node = stack[-1]
            if node in env:
                stack.pop()
                continue
            if node.op == "placeholder":
                raise AssertionError(f"partition needs {node.name} but it is not an input of this graph")
            pending = [i for i in node.all_input_nodes if i not in env]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            env[node] = _copy_node(graph, node, env)

    if needed is None:
        needed = ancestors(list(outputs) + list(keep), stop=set(inputs))
    for node in source.graph.nodes:
        if node in env or node not in needed or node.op == "output" or node in on_demand:
            continue
        if on_demand or node.op == "placeholder":
            emit(node)
        else:  # every input of a needed node is a graph input or a needed node: copied already
            env[node] = _copy_node(graph, node, env)
    for node in outputs:
        if isinstance(node, fx.Node):
            emit(node)
    graph.output(tuple(env[o] if isinstance(o, fx.Node) else o for o in outputs))
    return _make_graph_module(source, graph)


def _copy_node(graph: fx.Graph, node: fx.Node, env: dict) -> fx.Node:
    """``graph.node_copy(node, env.__getitem__)`` without its per-node overheads: create_node's
    per-argument pytree scan (a warning check for raw SymInts) and ``Node.__setattr__``'s
    lookup-table update on every attribute set (together half of the copy time)."""
    copy = graph.create_node(node.op, node.target, name=node.name, type_expr=node.type)
    args = fx.map_arg(node.args, env.__getitem__)
    kwargs = fx.map_arg(node.kwargs, env.__getitem__) if node.kwargs else {}
    set_args(copy, args, kwargs)
    copy.meta.update(node.meta)
    return copy


def aliases_of_placeholders(nodes: list, names: set) -> list[int]:
    """Indices of `nodes` that are one of the named placeholders or a chain of views of one."""
    return [index for index, node in enumerate(nodes)
            if (root := _view_root(node)) is not None and root.op == "placeholder" and root.name in names]


def placeholders_viewed(nodes: list) -> set:
    """Names of the placeholders that some of `nodes` is a chain of (one or more) views of."""
    return {root.name for node in nodes
            if (root := _view_root(node)) is not None and root is not node and root.op == "placeholder"}


def _view_root(node):
    """The node that `node` is a chain of views of (`node` itself where it is no view)."""
    while isinstance(node, fx.Node) and node.op == "call_function":
        if node.target is operator.getitem or getattr(node.target, "is_view", False):
            node = node.args[0]
        else:
            break
    return node if isinstance(node, fx.Node) else None


def rewritten_in_place(graph_module: fx.GraphModule, rewrite) -> bool:
    """Apply `rewrite` (a graph module -> whether it changed it) to `graph_module` and to each
    graph module inside it (its regions), recompiling those it changed; whether any was."""
    changed = False
    for module in graph_module.modules():
        if isinstance(module, fx.GraphModule) and rewrite(module):
            module.recompile()
            changed = True
    return changed


def is_view_of_memory(node: fx.Node) -> bool:
    """Whether `node` is its first argument's memory in a functional graph: a view op, or one
    output (the getitem) of a multi-output view (``split``, ``unbind``)."""
    if not isinstance(node, fx.Node) or not node.args or not isinstance(node.args[0], fx.Node):
        return False
    return is_view(node) or node.target is operator.getitem and is_view(node.args[0])


def view_chain(node: fx.Node) -> tuple[fx.Node, list[fx.Node]]:
    """(the node whose memory `node` views in a functional graph, the view nodes from it to
    `node`, innermost first: back through `is_view_of_memory` nodes to the first that is not)."""
    views = []
    while is_view_of_memory(node):
        views.append(node)
        node = node.args[0]
    return node, views[::-1]


def memory_root(node: fx.Node) -> fx.Node:
    """The node whose memory `node` views in a functional graph (`view_chain`'s first)."""
    return view_chain(node)[0]
