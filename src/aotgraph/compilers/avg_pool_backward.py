"""Average pooling's backward with ``ceil_mode`` and ``count_include_pad``, kept from Inductor's lowering.

ATen divides each window's share of the gradient by the size of the part of the window inside
the padded input. Inductor's lowering of ``avg_pool2d_backward`` and ``avg_pool3d_backward``
divides by the whole kernel's size wherever ``count_include_pad`` is set (torch 2.11-2.13), and
with ``ceil_mode`` the last window can reach past the padded input: its gradients come out too
small, silently (``avg_pool1d(x, 6, stride=3, padding=2, ceil_mode=True)`` on a length of 9:
5.6e-2 off; torch.compile's Inductor computes the same). Inductor gets such nodes
(`keep_from_inductor`) as calls of an op of ours that runs ATen's kernel, which it calls as a
fallback kernel (switch ``avg_pool_backward_aten``). The forward's lowering is right.
"""
from __future__ import annotations

import torch
import torch.fx as fx

from .. import config as aot_config
from ..graph.nodes import rewritten_in_place

__all__ = ["keep_from_inductor"]

aten = torch.ops.aten
_LIBRARY = torch.library.Library("aotgraph", "FRAGMENT")
_KEPT = {}
for _dims, _aten_op in ((2, aten.avg_pool2d_backward.default), (3, aten.avg_pool3d_backward.default)):
    _name = f"avg_pool{_dims}d_backward_aten"
    _LIBRARY.define(f"{_name}(Tensor grad_output, Tensor self, int[{_dims}] kernel_size, int[{_dims}] stride, "
                    f"int[{_dims}] padding, bool ceil_mode, bool count_include_pad, int? divisor_override) -> Tensor")
    _LIBRARY.impl(_name, lambda *args, _op=_aten_op: _op(*args), "CompositeExplicitAutograd")
    # Fake tensors run ATen's meta kernel through this Meta kernel (``register_fake`` would cost
    # 5-10 ms a op at import, in every process that loads Inductor's code, warm starts included).
    _LIBRARY.impl(_name, lambda *args, _op=_aten_op: _op(*args), "Meta")
    _KEPT[_aten_op] = getattr(torch.ops.aotgraph, _name).default


def keep_from_inductor(graph_module: fx.GraphModule) -> bool:
    """Point, in place, each average pooling backward of `graph_module` (its regions too) that
    Inductor would lower wrongly (``ceil_mode`` and ``count_include_pad``, no divisor override) at
    our op that runs ATen's kernel; whether any was."""
    if not aot_config.enabled("avg_pool_backward_aten"):
        return False
    return rewritten_in_place(graph_module, _aten_kernels_kept)


def _aten_kernels_kept(module: fx.GraphModule) -> bool:
    kept = [node for node in module.graph.nodes
            if node.op == "call_function" and node.target in _KEPT and _lowered_wrongly(node)]
    for node in kept:
        node.target = _KEPT[node.target]
    return bool(kept)


def _lowered_wrongly(node: fx.Node) -> bool:
    names = ("grad_output", "self", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
             "divisor_override")
    values = dict(zip(names, node.args), **node.kwargs)
    return (values.get("ceil_mode", False) is True and values.get("count_include_pad", True) is True
            and values.get("divisor_override") is None)
