"""Dynamo's pieces that aotgraph uses without importing Dynamo itself: the C++ tensor check
behind its TENSOR_MATCH guards, the tracing context that Inductor reads, the flag behind
``torch.compiler.is_compiling()``, and a Dynamo setting as every thread reads it.

Checked on torch 2.11 (the H200, benchmarks/gpu_train.py), 2.13 and 2.14.1 (the test suite).
"""
from __future__ import annotations

import contextlib
import contextvars
import sys
from typing import Any, Iterator

import torch
from torch._C._dynamo.guards import TensorGuards
from torch._guards import TracingContext, tracing

__all__ = ["TensorGuards", "TracingContext", "tracing", "compiling", "dynamo_setting_for_every_thread",
           "mark_dynamic_dims_for_dynamo", "dynamo_compile_lock"]

_NO_LOCK = contextlib.nullcontext()


def dynamo_compile_lock():
    """Dynamo's compile lock (``convert_frame.compile_lock``, held while it compiles a frame and
    calls its backend) where Dynamo is imported, else a context that locks nothing (no frame
    can be compiling then; importing Dynamo for it would cost a warm start most of a second)."""
    convert_frame = sys.modules.get("torch._dynamo.convert_frame")
    return _NO_LOCK if convert_frame is None else convert_frame.compile_lock


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


@contextlib.contextmanager
def dynamo_setting_for_every_thread(name: str, value: Any) -> Iterator[None]:
    """``torch._dynamo.config.<name> = value`` for the block, as every thread reads it. torch
    2.11 and 2.12 keep one value for the process, which a plain assignment sets; from 2.13 an
    assignment holds for the assigning thread's context alone (a ContextVar), so there the
    setting's default changes instead (a thread that assigned a value of its own keeps it)."""
    import torch._dynamo.config as config

    entry = getattr(config, "_config", {}).get(name)
    if isinstance(getattr(entry, "user_override", None), contextvars.ContextVar):
        previous = entry.default
        entry.default = value
        try:
            yield
        finally:
            entry.default = previous
        return
    previous = getattr(config, name)
    setattr(config, name, value)
    try:
        yield
    finally:
        setattr(config, name, previous)


def mark_dynamic_dims_for_dynamo(tensor, dims: frozenset) -> None:
    """Tell Dynamo that `tensor`'s `dims` were symbolic in the graph that made it: a frame that
    reads it after a graph break traces them dynamic at once instead of compiling for their sizes
    first, as torch's own AOT runtime marks its outputs: ``_dynamo_propagated_dynamic_indices``
    (unguarded) where Dynamo reads it (torch 2.13+), else ``_dynamo_weak_dynamic_indices``
    (``maybe_mark_dynamic``'s, torch 2.11)."""
    attribute = "_dynamo_propagated_dynamic_indices" if _dynamo_reads_propagated_indices() \
        else "_dynamo_weak_dynamic_indices"
    marked = getattr(tensor, attribute, None)
    setattr(tensor, attribute, set(dims) if marked is None else marked | dims)


_reads_propagated: list = []  # [whether Dynamo reads _dynamo_propagated_dynamic_indices], once known


def _dynamo_reads_propagated_indices() -> bool:
    """Whether Dynamo's automatic-dynamic decision reads ``_dynamo_propagated_dynamic_indices``
    (torch 2.13+); torch 2.11's reads ``_dynamo_weak_dynamic_indices`` only. Where Dynamo is not
    loaded yet (or its function moved), the newer attribute."""
    if not _reads_propagated:
        builder = sys.modules.get("torch._dynamo.variables.builder")
        automatic_dynamic = getattr(builder, "_automatic_dynamic", None)
        code = getattr(automatic_dynamic, "__code__", None)
        if code is None:
            return True
        _reads_propagated.append("_dynamo_propagated_dynamic_indices" in code.co_consts
                                 or "_dynamo_weak_dynamic_indices" not in code.co_consts)
    return _reads_propagated[0]
