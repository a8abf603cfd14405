"""Forward-mode AD (``torch.autograd.forward_ad``): whether a dual level is open, and whether a
tensor carries a tangent at it.

Checked on torch 2.11, 2.13 and 2.14.1 (``_current_level``: -1 while no ``dual_level`` is open).
"""
from __future__ import annotations

import torch.autograd.forward_ad as forward_ad

__all__ = ["forward_ad", "carries_tangent"]


def carries_tangent(tensor) -> bool:
    """Whether `tensor` is a dual tensor of the open dual level (``make_dual``)."""
    return forward_ad.unpack_dual(tensor).tangent is not None
