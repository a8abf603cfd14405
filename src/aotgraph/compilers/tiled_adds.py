"""Inductor's CPU code that adds at computed positions inside a 2-D tile, found and avoided.

Inductor's C++ code generation tiles a loop in two dimensions where a fused kernel's accesses
run along an outer dimension (a 16x16 tile: an inner loop ``for (long x1_inner = 0; ...)`` over
the outer dimension, operands read transposed into a local buffer with ``transpose_mxn`` where
needed). Where that kernel also adds at computed positions (``index_put(..., accumulate=True)``,
an indexing's or an embedding's backward) with vector atomics, it emits ``atomic_add_vec`` with
an index that counts the tile's inner position twice (``x1 + 2*x1_inner``; torch 2.11-2.13: the
tile's index rewrite is applied to the store's index, then again when the index becomes a
vector): wrong sums, and writes past the buffer (Falcon's multi-query attention trained with
gradients 2e-2 off, and crashed with changing sizes; torch's own Inductor computes the same
wrong values).

An add at computed positions outside such a tile is vectorized correctly, and is the common case
(an embedding's backward reads its incoming gradient in order). So a CPU graph that may hold such
an add (`may_add_in_tiles`) is compiled as configured, and its generated code is read
(`adds_in_tiles`); only where one kernel holds both a tile's inner loop and a vector
add at computed positions is the graph compiled again without vectorized loops
(``cpp.simdlen=1``; switch ``scatter_graphs_scalar``).

On torch 2.11 such tiles can fail to build instead: a kernel that reads or writes at computed
positions through a tile's transposed load or store (``transpose_mxn``) names the position's
variable outside the tile's loop that declares it ("'tmp5' was not declared in this scope";
Falcon's multi-query attention, its forward's gather and its backward's add). A CPU graph whose
C++ build fails (`cpp_build_failed`) is compiled again without vectorized loops, with a warning
(a build that fails for another reason fails again, and its error is raised).
"""
from __future__ import annotations

import re

import torch
import torch.fx as fx

from .. import config as aot_config

__all__ = ["may_add_in_tiles", "adds_in_tiles", "cpp_build_failed"]

_ADDING = ("index_put", "_unsafe_index_put", "scatter", "index_add", "_unsafe_masked_index_put_accumulate")
_KERNEL_START = 'extern "C"'  # each C++ kernel of Inductor's output code (and the C++ wrapper's entry)
_TILE_LOOP = re.compile(r"for \(long \w+_inner = 0")  # a 2-D tile's loop over its outer dimension


def may_add_in_tiles(graph_module: fx.GraphModule, example_inputs) -> bool:
    """Whether `graph_module` (its regions too) may add into a tensor at computed positions with
    some input on the CPU: the graphs whose generated code `adds_in_tiles` reads."""
    if not aot_config.enabled("scatter_graphs_scalar"):
        return False
    if not any(isinstance(v, torch.Tensor) and v.device.type == "cpu" for v in example_inputs):
        return False
    return any(node.op == "call_function" and getattr(node.target, "_opname", "").rstrip("_").startswith(_ADDING)
               for module in graph_module.modules() if isinstance(module, fx.GraphModule)
               for node in module.graph.nodes)


def adds_in_tiles(compiled) -> bool:
    """Whether Inductor's `compiled` graph has a C++ kernel with a 2-D tile's loop and a vector
    add at computed positions (the miscompiled case above). A compiled graph whose code cannot
    be read counts as one."""
    source = getattr(compiled, "source_code", None)
    if not isinstance(source, str):
        return True
    return any("atomic_add_vec" in kernel and _TILE_LOOP.search(kernel) for kernel in source.split(_KERNEL_START)[1:])


def cpp_build_failed(error: BaseException) -> bool:
    """Whether `error` (Inductor's, maybe wrapping the cause) is a failed C++ build of its kernels."""
    from torch._inductor.exc import CppCompileError

    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, CppCompileError):
            return True
        seen.add(id(error))
        error = getattr(error, "inner_exception", None) or error.__cause__
    return False
