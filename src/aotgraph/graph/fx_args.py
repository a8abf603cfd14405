"""Setting an fx node's arguments on the hot paths that build graphs (capture, partition)."""
from __future__ import annotations

from typing import Any

import torch.fx as fx

from ..torch_private.fx import update_args_kwargs


def set_args(node: fx.Node, args: tuple, kwargs: dict[str, Any]) -> None:
    """``node.args, node.kwargs = args, kwargs``, as the setters do it (same users, same node),
    without ``Node.__setattr__``'s per-node bookkeeping."""
    update_args_kwargs(node, args, kwargs)
