"""``as_strided`` of a graph input that starts inside its storage, for Inductor before torch 2.13.

An ``as_strided`` offset counts from the start of the input's storage: ``x = base[1:]`` (storage
offset 4) read with ``x.as_strided((2, 2), (1, 4), 5)`` reads elements 5, 6, 9 and 10 of
`base`. Inductor's code addresses an input from its first element, which already includes the
input's storage offset; torch 2.13's lowering subtracts that offset from an explicit
``as_strided`` offset of an input, torch 2.11's and 2.12's do not, and read (and write) 4
elements further, silently, on CPU and GPU alike (torch.compile's too). Our functionalization
makes such reads wherever a program relays an input that views a larger tensor in place
(``x.as_strided_(...)``).

Where Inductor lacks that subtraction (`_inductor_subtracts_input_offsets`), `offsets_from_input_starts`
rewrites, in place, each ``as_strided`` taken directly of a graph input with a storage offset of
its own (known as an int) to count from the input's first element (switch
``as_strided_input_offsets``). A graph is compiled for its inputs' storage offsets: the
functionalized offsets already assume them.
"""
from __future__ import annotations

import functools

import torch
import torch.fx as fx

from .. import config as aot_config
from ..graph.nodes import rewritten_in_place

__all__ = ["offsets_from_input_starts"]

_AS_STRIDED = torch.ops.aten.as_strided.default


@functools.lru_cache(maxsize=None)
def _inductor_subtracts_input_offsets() -> bool:
    from torch._inductor.graph import GraphLowering

    return "graph_input_storage_offsets" in GraphLowering.__init__.__code__.co_names


def offsets_from_input_starts(graph_module: fx.GraphModule) -> bool:
    """Rewrite, in place, the ``as_strided`` offsets of inputs of `graph_module` (its regions
    too) that start inside their storage as Inductor before torch 2.13 reads them; whether any was."""
    if _inductor_subtracts_input_offsets() or not aot_config.enabled("as_strided_input_offsets"):
        return False
    return rewritten_in_place(graph_module, _offsets_from_starts)


def _offsets_from_starts(module: fx.GraphModule) -> bool:
    touched = False
    for node in module.graph.find_nodes(op="call_function", target=_AS_STRIDED):
        base = node.args[0]
        value = base.meta.get("val") if isinstance(base, fx.Node) and base.op == "placeholder" else None
        if not isinstance(value, torch.Tensor):
            continue
        start = value.storage_offset()
        offset = node.args[3] if len(node.args) > 3 else node.kwargs.get("storage_offset")
        if type(start) is not int or start == 0 or type(offset) is not int:
            continue
        node.args = (*node.args[:3], offset - start)
        node.kwargs = {k: v for k, v in node.kwargs.items() if k != "storage_offset"}
        touched = True
    return touched
