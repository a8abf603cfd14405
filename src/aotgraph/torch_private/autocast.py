"""Autocast's C switches: whether it is on for any device, a block with it off, and a block
that leaves autocast's nesting count as it found it.

Checked on torch 2.11 (the H200, benchmarks/gpu_train.py), 2.13 and 2.14.1 (the test suite).
"""
from __future__ import annotations

import contextlib

import torch

__all__ = ["any_autocast_enabled", "DisableAutocast", "autocast_nesting_kept"]

any_autocast_enabled = torch._C._is_any_autocast_enabled  # on for any device (a C call: the per-call path)
DisableAutocast = torch._C._DisableAutocast


def _nesting() -> int:
    level = torch.autocast_increment_nesting() - 1
    torch.autocast_decrement_nesting()
    return level


@contextlib.contextmanager
def autocast_nesting_kept():
    """A block after which autocast's nesting count is what it was before. A Dynamo graph enters
    and leaves an autocast region with two plain calls; a call that stops inside the region (an
    exception, or checkpoint's recompute stopping early once it has what the backward needs)
    skips the second, and the count stays up: autocast then never clears its cache of casts
    again (the weights' bf16 copies from before an optimizer step), for the whole process."""
    level = _nesting()
    try:
        yield
    finally:
        excess = _nesting() - level
        for _ in range(max(excess, 0)):
            if torch.autocast_decrement_nesting() == 0:
                torch.clear_autocast_cache()
