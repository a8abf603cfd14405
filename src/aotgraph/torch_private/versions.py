"""A tensor's version counter set to a given value (checked on torch 2.11, 2.13, 2.14.1)."""
from __future__ import annotations

import torch

__all__ = ["set_version"]


def set_version(tensor: torch.Tensor, version: int) -> None:
    """`tensor`'s version counter (shared with its views) reads `version` from now on."""
    torch._C._autograd._unsafe_set_version_counter((tensor,), (version,))
