"""torch.fx internals: lazily generated module code, setting a node's arguments without
``Node.__setattr__``'s bookkeeping, and what torch's graphs carry in ``node.meta``
(``tensor_meta``, ``seq_nr`` from autograd's sequence numbers, the node of a GraphModule's
generated code that a line of it runs).

Checked on torch 2.13 and 2.14.1 (the test suite); `LazyGraphModule` and `update_args_kwargs`
also on 2.11 (the H200, benchmarks/gpu_train.py).
"""
from __future__ import annotations

from types import CodeType
from typing import Any, Optional

import torch
import torch.fx as fx
from torch.fx._lazy_graph_module import _LazyGraphModule as LazyGraphModule  # code made when first read
from torch.fx.passes.shape_prop import TensorMetadata
from torch.fx.passes.shape_prop import _extract_tensor_metadata as tensor_metadata  # meta["tensor_meta"]

__all__ = ["LazyGraphModule", "update_args_kwargs", "tensor_metadata", "TensorMetadata", "current_autograd_node", "sequence_nr",
           "nodes_by_line"]

# What the public ``Node.args`` / ``Node.kwargs`` setters call, minus the lookup-table update.
update_args_kwargs = fx.Node._update_args_kwargs

# The autograd node whose backward is running on this thread (None outside a backward).
current_autograd_node = torch._C._current_autograd_node
# The sequence number the next autograd node made on this thread will take.
sequence_nr = torch.autograd._get_sequence_nr


def nodes_by_line(module: Any, code: CodeType) -> Optional[dict[int, fx.Node]]:
    """{line offset from ``code.co_firstlineno``: the node that line computes} where `code` is
    the generated ``forward`` of GraphModule `module` (as Dynamo reads ``_lineno_map`` to keep
    a GraphModule's node meta when it traces one); None where it is not."""
    if not isinstance(module, fx.GraphModule) or getattr(type(module).forward, "__code__", None) is not code:
        return None
    lineno_map = getattr(module, "_lineno_map", None)
    if not lineno_map:
        return None
    nodes = list(module.graph.nodes)
    return {offset: nodes[index] for offset, index in lineno_map.items() if index is not None and index < len(nodes)}
