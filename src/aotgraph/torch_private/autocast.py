"""Autocast's C switches: whether it is on for any device, and a block with it off.

Checked on torch 2.11, 2.13 and 2.14.
"""
from __future__ import annotations

from typing import Callable

import torch

__all__ = ["any_autocast_enabled", "DisableAutocast"]


def _autocast_on_cpu_or_cuda() -> bool:
    return torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")


# Whether autocast is on for any device: torch's own C function where it has one (no Python
# frame on the per-call path).
any_autocast_enabled: Callable[[], bool] = getattr(torch._C, "_is_any_autocast_enabled", _autocast_on_cpu_or_cuda)
DisableAutocast = torch._C._DisableAutocast
