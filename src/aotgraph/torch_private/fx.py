"""torch.fx internals: lazily generated module code, and setting a node's arguments without
``Node.__setattr__``'s bookkeeping.

Checked on torch 2.11, 2.13 and 2.14.
"""
from __future__ import annotations

import torch.fx as fx
from torch.fx._lazy_graph_module import _LazyGraphModule as LazyGraphModule  # code made when first read

__all__ = ["LazyGraphModule", "update_args_kwargs"]

# What the public ``Node.args`` / ``Node.kwargs`` setters call, minus the lookup-table update.
update_args_kwargs = fx.Node._update_args_kwargs
