"""Dynamo's C++ pieces that aotgraph uses without importing Dynamo itself.

Checked on torch 2.11, 2.13 and 2.14.
"""
from __future__ import annotations

try:  # the C++ tensor check behind Dynamo's TENSOR_MATCH guards
    from torch._C._dynamo.guards import TensorGuards
except ImportError:  # without it every call builds its cache key
    TensorGuards = None

__all__ = ["TensorGuards"]
