"""The default partition: the forward computes what the user's outputs need, and saves
every forward value that the backward reads."""
from __future__ import annotations

import operator

import torch.fx as fx

from ..graph.ops import is_random, is_runtime_assert
from ..graph.naming import is_primal
from ..graph.nodes import ancestors, extract_graph, joint_outputs, saved_by_default, tangent_dependent


def default_partition(joint_module: fx.GraphModule, _joint_inputs=None, *, num_fwd_outputs: int,
                      static_lifetime_input_indices=None, static_lifetime_input_nodes=None):
    """Split a joint graph (functorch's ``default_partition`` calling convention).

    Returns ``(forward, backward)``: the forward outputs its ``num_fwd_outputs`` outputs
    followed by the saved values; the backward's placeholders are the saved values (same
    names) followed by the tangents, and it outputs the joint's gradient outputs. The
    `static_lifetime_*` arguments are functorch's and are not used.
    """
    graph = joint_module.graph
    fwd_outputs, bwd_outputs = joint_outputs(joint_module, num_fwd_outputs)
    backward_only = tangent_dependent(graph)
    # Random draws and runtime asserts run in the forward for their effect.
    kept = {n for n in graph.nodes if (is_random(n) or is_runtime_assert(n)) and n not in backward_only}
    forward_nodes = ancestors(fwd_outputs + list(kept))
    # Every element of a forward op's tuple result is a forward value: save the element, never the tuple.
    forward_nodes |= {u for n in forward_nodes for u in n.users if u.target is operator.getitem}
    primals = [n for n in graph.nodes if is_primal(n)]
    tangents = [n for n in graph.nodes if n.op == "placeholder" and not is_primal(n)]

    saved = saved_by_default(graph.nodes, forward_nodes, bwd_outputs, primals, tangents)
    forward = extract_graph(joint_module, primals, fwd_outputs + saved, keep=kept)
    backward = extract_graph(joint_module, saved + tangents, bwd_outputs)
    return forward, backward
