"""Autograd's version counters (torch 2.11-2.14): set one back where an in-place op that changed
no value bumped it on aotgraph's behalf."""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["set_versions"]


def set_versions(tensors: Sequence[torch.Tensor], versions: Sequence[int]) -> None:
    """Set each tensor's version counter (shared by every view of its memory) to its version."""
    torch._C._autograd._unsafe_set_version_counter(tuple(tensors), tuple(versions))
