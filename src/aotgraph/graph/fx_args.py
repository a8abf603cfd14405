"""Setting an fx node's arguments on the hot paths that build graphs (capture, partition)."""
from __future__ import annotations

from typing import Any

import torch.fx as fx

# What the public ``Node.args`` / ``Node.kwargs`` setters call, minus ``Node.__setattr__``'s
# lookup-table update (~4 us a node).
_update_args_kwargs = getattr(fx.Node, "_update_args_kwargs", None)


def set_args(node: fx.Node, args: tuple, kwargs: dict[str, Any]) -> None:
    """``node.args, node.kwargs = args, kwargs``, as the setters do it: same users, same node."""
    if _update_args_kwargs is not None:
        _update_args_kwargs(node, args, kwargs)
    else:  # pragma: no cover - torch without the private method
        node.args, node.kwargs = args, kwargs
