"""Save / recompute / offload policies: pure functions of what a node is.

A policy takes a `NodeInfo` (op, shape, dtype, bytes, tags) and returns a `Decision`, or
None to leave the node to the optimizer. The partitioner applies it to every forward value:

- SAVE: never recompute it; if the backward reads it, it is saved.
- RECOMPUTE: never save it; the backward recomputes it (even a matmul). Ops whose
  recomputation would change results (random draws, side effects) stay saved regardless.
- OFFLOAD: no say in what is saved; if the cut saves it, the saved copy lives in host memory
  between forward and backward.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
import torch.fx as fx

from ..graph.ops import bytes_of, op_name
from ..torch_private.dispatch import OpOverload


class Decision(enum.Enum):
    SAVE = "save"
    RECOMPUTE = "recompute"
    OFFLOAD = "offload"


@dataclass(frozen=True)
class NodeInfo:
    """What a policy may look at. `tags`: the op's name (``mm``), its overload
    (``aten.mm.default``) and its ``torch.Tag`` names (``pointwise``, ...). `position`: where
    the node sits in the forward, from 0.0 (first) to 1.0 (last): the backward runs in
    roughly reverse order, so early values wait longest for their use."""

    name: str
    op: str
    shape: Optional[tuple]
    dtype: Optional[torch.dtype]
    nbytes: Optional[int]
    tags: frozenset
    position: float = 0.0

    @staticmethod
    def of(node: fx.Node, position: float = 0.0) -> "NodeInfo":
        value = node.meta.get("val")
        is_tensor = isinstance(value, torch.Tensor)
        tags = {op_name(node)}
        if isinstance(node.target, OpOverload):
            tags.add(str(node.target))
            tags.update(tag.name for tag in node.target.tags)
        return NodeInfo(node.name, op_name(node), tuple(value.shape) if is_tensor else None,
                        value.dtype if is_tensor else None, bytes_of(node), frozenset(tags), position)


Policy = Callable[[NodeInfo], Optional[Decision]]

_MATMULS = frozenset({"mm", "addmm", "bmm", "baddbmm", "convolution", "_convolution"})


def save_matmuls(info: NodeInfo) -> Optional[Decision]:
    """Save matmul and convolution outputs, recompute everything else (like jax's
    ``dots_saveable``)."""
    return Decision.SAVE if info.op in _MATMULS else Decision.RECOMPUTE


def save_nothing(info: NodeInfo) -> Optional[Decision]:
    """Recompute everything that can be recomputed; only inputs and random draws are kept."""
    return Decision.RECOMPUTE


def save_tagged(names: Iterable[str]) -> Policy:
    """Save nodes whose op name, overload or torch.Tag is in `names` (or whose node name is);
    recompute the rest."""
    wanted = frozenset(names)

    def policy(info: NodeInfo) -> Optional[Decision]:
        return Decision.SAVE if info.name in wanted or info.tags & wanted else Decision.RECOMPUTE

    policy.__name__ = f"save_tagged({sorted(wanted)})"
    return policy


def offload_large(min_bytes: int) -> Policy:
    """Offload every saved tensor of at least `min_bytes` to host memory; no other opinion."""

    def policy(info: NodeInfo) -> Optional[Decision]:
        return Decision.OFFLOAD if info.shape is not None and (info.nbytes or 0) >= min_bytes else None

    policy.__name__ = f"offload_large({min_bytes})"
    return policy


def offload_early(min_bytes: int, before: float = 0.5) -> Policy:
    """Offload saved tensors of at least `min_bytes` produced in the first `before` share of
    the forward: they sit unused longest (until late in the backward), so their transfers
    have the most compute to hide behind."""

    def policy(info: NodeInfo) -> Optional[Decision]:
        large = info.shape is not None and (info.nbytes or 0) >= min_bytes
        return Decision.OFFLOAD if large and info.position < before else None

    policy.__name__ = f"offload_early({min_bytes}, before={before})"
    return policy
