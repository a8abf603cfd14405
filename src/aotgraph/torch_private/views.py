"""How autograd marks a view's creation (checked on torch 2.11, 2.13, 2.14).

Autograd refuses an in-place write into a view made by an op that returns several views
(``split``, ``chunk``, ``unbind``), made under no_grad, or made inside a custom Function, and a
backward through such a view once its base was written. It keeps that as the view's
creation meta. A view the runtime rebuilds with ``as_strided`` (where the program's view ops
hold symbolic sizes) gets the default one; `set_creation_meta` gives it eager's.
"""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ["creation_meta_of", "set_creation_meta"]

_CreationMeta = torch._C._autograd.CreationMeta


def creation_meta_of(tensor: torch.Tensor) -> Optional[str]:
    """The name of `tensor`'s creation meta where it is a view made other than by default
    (``"MULTI_OUTPUT_NODE"``, ``"NO_GRAD_MODE"``, ...), else None."""
    if not tensor._is_view():
        return None
    meta = torch._C._autograd._get_creation_meta(tensor)
    return None if meta == _CreationMeta.DEFAULT else meta.name


def set_creation_meta(tensor: torch.Tensor, name: str) -> None:
    """Mark the view `tensor` as made the way `name` says (see `creation_meta_of`); a tensor that
    requires no grad has no autograd record to mark, nor a write autograd would check."""
    if tensor._is_view() and tensor.requires_grad:
        torch._C._autograd._set_creation_meta(tensor, getattr(_CreationMeta, name))
