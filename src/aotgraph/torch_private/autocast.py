"""Autocast's C switches: whether it is on for any device, and a block with it off.

Checked on torch 2.11 (the H200, benchmarks/gpu_train.py), 2.13 and 2.14.1 (the test suite).
"""
from __future__ import annotations

import torch

__all__ = ["any_autocast_enabled", "DisableAutocast"]

any_autocast_enabled = torch._C._is_any_autocast_enabled  # on for any device (a C call: the per-call path)
DisableAutocast = torch._C._DisableAutocast
