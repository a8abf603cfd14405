"""Dynamo's pieces that aotgraph uses without importing Dynamo itself: the C++ tensor check
behind its TENSOR_MATCH guards, the tracing context that Inductor reads, and the flag behind
``torch.compiler.is_compiling()``.

Checked on torch 2.11 (the H200, benchmarks/gpu_train.py), 2.13 and 2.14.1 (the test suite).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch._C._dynamo.guards import TensorGuards
from torch._guards import TracingContext, tracing

__all__ = ["TensorGuards", "TracingContext", "tracing", "compiling"]


@contextlib.contextmanager
def compiling() -> Iterator[None]:
    """A context in which ``torch.compiler.is_compiling()`` is True, as it is while Dynamo
    compiles a frame (``torch.compiler._compile_session_context``) and while torch.export
    traces: programs take their trace-friendly paths there (transformers skips its Python-side
    caches keyed by sizes and its checks that read tensor data)."""
    compiler = torch.compiler
    before = compiler._is_compiling_flag
    compiler._is_compiling_flag = True
    try:
        yield
    finally:
        compiler._is_compiling_flag = before
