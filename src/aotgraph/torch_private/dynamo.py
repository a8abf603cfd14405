"""Dynamo's pieces that aotgraph uses without importing Dynamo itself: the C++ tensor check
behind its TENSOR_MATCH guards, and the tracing context that Inductor reads.

Checked on torch 2.11 (the H200, benchmarks/gpu_train.py), 2.13 and 2.14.1 (the test suite).
"""
from __future__ import annotations

from torch._C._dynamo.guards import TensorGuards
from torch._guards import TracingContext, tracing

__all__ = ["TensorGuards", "TracingContext", "tracing"]
