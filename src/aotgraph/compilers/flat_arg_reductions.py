"""``argmax`` and ``argmin`` over a whole tensor, handed to Inductor as reductions of its flat view.

Without a dimension, ``argmax(t)`` is the index of the largest element of `t` read in order,
row by row. Inductor (torch 2.11-2.13, torch.compile's too) reduces a tensor computed from a
transposed one in the order of the memory it reads, and returns the index of that order:
``argmax(x.t() * 2)`` of a 4x3 `x` whose largest element is ``x[0, 1]`` gives 1, not 4, silently.
Given ``argmax(reshape(t, [-1]), 0)`` instead, the same reduction over a flat view in `t`'s own
order, its answer is right.

`flat_arg_reductions` rewrites, in place, each whole-tensor ``argmax`` and ``argmin`` into that
form (with ``keepdim``, viewed as a tensor of ones after; switch ``flat_arg_reductions``).
"""
from __future__ import annotations

import torch
import torch.fx as fx

from .. import config as aot_config
from ..graph.nodes import rewritten_in_place

__all__ = ["flat_arg_reductions"]

aten = torch.ops.aten
_REDUCTIONS = (aten.argmax.default, aten.argmin.default)


def flat_arg_reductions(graph_module: fx.GraphModule) -> bool:
    """Rewrite, in place, the whole-tensor ``argmax``/``argmin`` nodes of `graph_module` (its
    regions too) as reductions over dimension 0 of a flat view; whether any was."""
    if not aot_config.enabled("flat_arg_reductions"):
        return False
    return rewritten_in_place(graph_module, _flat_reductions)


def _flat_reductions(module: fx.GraphModule) -> bool:
    touched = False
    for target in _REDUCTIONS:
        for node in module.graph.find_nodes(op="call_function", target=target):
            operand = node.args[0]
            value = operand.meta.get("val") if isinstance(operand, fx.Node) else None
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
            if dim is not None or not isinstance(value, torch.Tensor) or value.dim() < 2:
                continue
            with module.graph.inserting_before(node):
                flat = module.graph.call_function(aten.reshape.default, (operand, [-1]))
            flat.meta["val"] = value.reshape(-1)
            result = node.meta.get("val")
            node.args, node.kwargs = (flat, 0), {}
            if keepdim:  # the index in a tensor of ones: the flat reduction's 0-d index, viewed so
                with module.graph.inserting_after(node):
                    shaped = module.graph.call_function(aten.view.default, (node, [1] * value.dim()))
                node.replace_all_uses_with(shaped, delete_user_cb=lambda user: user is not shaped)
                shaped.meta["val"] = result
                node.meta["val"] = result.reshape(())
            touched = True
    return touched
