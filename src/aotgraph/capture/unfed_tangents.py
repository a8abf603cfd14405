"""Gradients that only an output returned as the caller's own input would carry: None, as eager.

An output that is an input itself (``return x * 2, w``) reaches the caller as that very tensor
(`OutputInfo.is_input`): the runtime returns the caller's object, outside the autograd.Function,
so the Function's output for it is never used and autograd feeds its tangent as zeros. Whatever
the caller does with the returned input reaches that input directly through autograd. A gradient
of the joint that reads such tangents and no other (``grad(w) = tangent``) would then give ``w`` a
zero gradient where eager leaves ``w.grad`` None (and an optimizer skips it): it is dropped.

`without_unfed_tangent_gradients(joint)` is for the program the runtime calls (a region's or a
branch's outputs are values of the calling graph, whose tangents are fed: not for those).
"""
from __future__ import annotations

import torch.fx as fx

from ..artifacts import JointGraph

__all__ = ["without_unfed_tangent_gradients"]


def without_unfed_tangent_gradients(joint: JointGraph) -> JointGraph:
    """`joint` with each input gradient that reads tangents of returned inputs only set to None
    (and what computed it removed); `joint` itself where there is none."""
    if joint.is_inference:
        return joint
    sig = joint.signature
    tangent_outputs = [o for o in sig.outputs if o.has_tangent]
    unfed_positions = {k for k, o in enumerate(tangent_outputs) if o.is_input}
    if not unfed_positions:
        return joint
    graph = joint.graph_module.graph
    tangents = graph.find_nodes(op="placeholder")[joint.num_primals:]
    unfed = {tangents[k] for k in unfed_positions}
    fed = set(tangents) - unfed
    reads_fed: dict[fx.Node, bool] = {}
    reads_unfed: dict[fx.Node, bool] = {}
    for node in graph.nodes:
        sources = node.all_input_nodes
        reads_fed[node] = node in fed or any(reads_fed[s] for s in sources)
        reads_unfed[node] = node in unfed or any(reads_unfed[s] for s in sources)
    output = graph.find_nodes(op="output")[0]
    values = list(output.args[0])
    first_grad = joint.num_fwd_outputs
    dropped = False
    for k in range(first_grad, first_grad + joint.num_primals):
        grad = values[k]
        if isinstance(grad, fx.Node) and reads_unfed[grad] and not reads_fed[grad]:
            values[k] = None
            dropped = True
    if not dropped:
        return joint
    from . import eliminate_dead_code  # (the package imports this module's caller, not this module)

    output.args = (tuple(values),)
    eliminate_dead_code(graph)
    joint.graph_module.recompile()
    return joint
