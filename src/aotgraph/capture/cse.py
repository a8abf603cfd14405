"""Common subexpressions of a joint graph merged: one node per pure computation.

Decompositions and autograd's formulas compute some values more than once (cross entropy's
ignore mask three times; a ``full`` scalar per use). A node calling the same pure op on the
same arguments as an earlier node is replaced by that node. Pure: an ATen op that writes no
argument, draws no random numbers and allocates no uninitialized memory (``empty``), or a
``getitem``. Nodes of the backward (recorded from autograd's first tangent-reading op on)
merge only with backward nodes: a forward computation that the backward repeats without a
tangent is the program's own recomputation (``torch.utils.checkpoint``), which the
partitioner keeps in the backward. Two nodes the graph returns stay apart: one tensor
returned as two gradients costs a copy at every call (autograd clones a gradient it
shares: 4 device copies per ResNet-50 step, the biases of batch norms that read one
gradient), where two identical reductions fuse into one kernel. The tensors the caller is
handed (outputs, and the bases outputs view) stay apart likewise: eager hands out two tensors
(``x.cumsum(1).detach(), x.cumsum(1)``), and a write into one must not reach the other (seed
34780). Nor does one merge with a node that the backward may read (one read beyond what the
forward's outputs are computed from): the caller may write into it (autograd's copy of ``x``
before ``x.sin_()``, merged into the program's ``x.clone()`` that was returned, made the
caller's write into it fail the backward, where eager's backward reads a copy of its own:
seeds 12253, 29199).
"""
from __future__ import annotations

import operator
from typing import Iterable, Sequence

import torch
import torch.fx as fx

from ..graph.nodes import ancestors, tangent_dependent
from ..graph.ops import op_facts

__all__ = ["merge_common_subexpressions"]

def merge_common_subexpressions(graph: fx.Graph, handed_out: Sequence[fx.Node] = (),
                                forward_outputs: Sequence[fx.Node] = ()) -> int:
    """Merge duplicate pure nodes of `graph` into their first occurrence, in place; the
    number of nodes removed. `handed_out`: the nodes the caller gets (user outputs, the bases
    they are views of); `forward_outputs`: every node the forward returns."""
    # Nodes by (region, op, input nodes); the full comparison of arguments (constants
    # included) runs only where two nodes share those: most nodes are unique.
    groups: dict[tuple, list] = {}
    outputs = graph.find_nodes(op="output")
    returned = set(outputs[0].all_input_nodes) if outputs else set()
    handed_out = _with_view_bases(n for n in handed_out if isinstance(n, fx.Node))
    forward_side = ancestors(forward_outputs)
    backward_only = tangent_dependent(graph)
    in_backward = False
    merged = 0
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        if node in backward_only:
            in_backward = True
        if not op_facts(node.target).pure:
            continue
        group = groups.setdefault((in_backward, id(node.target), *node.all_input_nodes), [])
        earlier = key = None
        if group:
            key = _arguments_key(node)
            for entry in group:
                if entry[1] is None:  # the first of its group: its key is made on demand
                    entry[1] = _arguments_key(entry[0])
                if _same(entry[1], key):
                    earlier = entry[0]
                    break
        if earlier is None:
            group.append([node, key])
            continue
        if node in returned and earlier in returned:
            continue
        if node in handed_out:
            if earlier in handed_out or any(user not in forward_side for user in earlier.users):
                continue
            handed_out.add(earlier)
        elif earlier in handed_out and any(user not in forward_side for user in node.users):
            continue
        if node in returned:
            returned.add(earlier)
        node.replace_all_uses_with(earlier)
        graph.erase_node(node)
        merged += 1
    return merged


# A view whose schema declares no alias (the last step of ``reshape``'s copy of a non-contiguous
# tensor): its output is its argument's memory all the same.
_UNSAFE_VIEW = torch.ops.aten._unsafe_view.default


def _with_view_bases(nodes: Iterable[fx.Node]) -> set:
    """`nodes` and every node whose memory one of them views (the caller's writes reach those;
    ``_unsafe_view`` counts as a view: two reshapes of one non-contiguous tensor are two copies
    in eager, seed 70026)."""
    seen = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if node in seen or node.op != "call_function":
            seen.add(node)
            continue
        seen.add(node)
        if node.target is operator.getitem or node.target is _UNSAFE_VIEW or op_facts(node.target).view:
            base = node.args[0]
            if isinstance(base, fx.Node):
                stack.append(base)
    return seen


def _arguments_key(node: fx.Node) -> tuple:
    return _key(node.args), _key(tuple(node.kwargs.items()))


def _same(earlier_key, key) -> bool:
    """Whether two nodes' argument keys match."""
    try:
        return bool(earlier_key == key)
    except (TypeError, RuntimeError):  # e.g. a tensor constant among the arguments
        return False


def _key(value):
    """A hashable key equal only for interchangeable arguments: nodes by identity, numbers
    with their type (``x * 1`` and ``x * 1.0`` differ in dtype) and floats by their text
    (``-0.0`` and ``0.0`` differ; NaN equals NaN)."""
    kind = type(value)
    if kind is fx.Node:
        return value
    if kind is tuple or kind is list:
        return (kind, tuple(_key(v) for v in value))
    if kind is float:
        return (float, repr(value))
    if kind is int or kind is bool or kind is complex:
        return (kind, value)
    if kind is slice:
        return (slice, _key(value.start), _key(value.stop), _key(value.step))
    return (kind, value)


