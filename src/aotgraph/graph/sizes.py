"""Sizes that may be symbolic (SymInts of a shape environment): tell them apart, and read a
concrete value for costs without guarding on it."""
from __future__ import annotations

from typing import Any

import torch

from ..torch_private.symbolic import node_expression, statically_known_true

__all__ = ["SYMBOLIC_TYPES", "UNBACKED_SIZE_HINT", "size_hint", "is_symbolic", "known_equal", "known_at_most",
           "has_symbolic_sizes",
           "size_keys", "layout_of", "layout_key", "storage_positions", "concrete_if_constant"]

SYMBOLIC_TYPES = (torch.SymInt, torch.SymFloat, torch.SymBool)
# The size assumed for a size that has no hint (an unbacked size: ``nonzero``'s length, ``.item()``).
UNBACKED_SIZE_HINT = 4096


def size_hint(size) -> int:
    """A concrete size, read without guarding on it: a symbolic size's hint (its value in the
    example inputs), `UNBACKED_SIZE_HINT` where it has none."""
    if type(size) is int:
        return size
    node = getattr(size, "node", None)
    if node is None:
        return int(size)
    if node.has_hint():
        return int(node.hint)
    shape_env = node.shape_env
    if shape_env is None:
        return UNBACKED_SIZE_HINT
    if hasattr(shape_env, "optimization_hint"):  # torch 2.13+ (its size_hint is deprecated there)
        return int(shape_env.optimization_hint(node.expr, fallback=UNBACKED_SIZE_HINT))
    hint = shape_env.size_hint(node.expr, allow_none=True)
    return int(hint) if hint is not None else UNBACKED_SIZE_HINT


def concrete_if_constant(size):
    """`size`, an int where it is a SymInt whose expression is a number (a size a guard fixed)."""
    if type(size) is int or not isinstance(size, torch.SymInt):
        return size
    expr = size.node.expr
    return int(expr) if expr.is_number else size


def is_symbolic(value: Any) -> bool:
    """A SymInt/SymFloat/SymBool that is not a constant."""
    return isinstance(value, SYMBOLIC_TYPES) and not value.node.expr.is_number


def known_equal(x, y) -> bool:
    """Whether the sizes (ints or SymInts) `x` and `y` are equal for every value of their
    symbols, asked without a guard: False where that is not known (two symbols equal only at
    their hints, a data-dependent size)."""
    if type(x) is int and type(y) is int:
        return x == y
    return x is y or statically_known_true(x == y)


def known_at_most(x, y) -> bool:
    """Whether the size `x` is at most `y` for every value of their symbols, asked without a
    guard (False where that is not known)."""
    if type(x) is int and type(y) is int:
        return x <= y
    return statically_known_true(x <= y)


def has_symbolic_sizes(tensor: torch.Tensor) -> bool:
    """Whether a size, stride or the storage offset of `tensor` is a SymInt."""
    return any(isinstance(s, torch.SymInt) for s in (*tensor.shape, *tensor.stride(), tensor.storage_offset()))


def size_keys(sizes) -> tuple:
    """Sizes as hashable keys: an int as it is, a SymInt as its expression (equal expressions are
    equal sizes; compared without a guard, unlike SymInts)."""
    return tuple(s if type(s) is int else node_expression(s.node) for s in sizes)


def layout_of(tensor: torch.Tensor) -> tuple:
    """(shape, strides, storage offset) of `tensor`."""
    return tuple(tensor.shape), tuple(tensor.stride()), tensor.storage_offset()


def layout_key(layout: tuple) -> tuple:
    """A `layout_of` tuple compared without a guard: symbolic sizes as their expressions."""
    shape, stride, offset = layout
    return len(shape), size_keys((*shape, *stride, offset))


def storage_positions(shape, stride, offset: int) -> set:
    """The storage positions a layout of concrete sizes reads."""
    positions = {offset}
    for size, step in zip(shape, stride):
        positions = {p + i * step for p in positions for i in range(size)}
    return positions
