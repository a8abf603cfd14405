"""Guards on sizes: what a compile with symbolic sizes (``aot_function(..., dynamic=True)``)
assumed about them. The shape environment records each assumption the program and the
compilers made (sizes 0 and 1 specialized, equalities and relations between sizes,
divisibility, ranges); `SizeGuard` checks them all on a call, so a call outside them compiles
a new entry instead of running code that does not fit it."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from .. import config
from ..torch_private.symbolic import guards_expression, guards_hold
from .size_guard_code import size_guard_text

__all__ = ["SizeGuard", "ConcreteSizes", "size_guard"]


class SizeGuard:
    """The shape environment's guard expression over the tensors at `positions` (flat input
    positions), with the `Guard` interface `GuardSet` reads."""

    from_argument = True
    by_identity = False
    path = ()

    def __init__(self, positions: tuple[int, ...], code: Any, text: str):
        self.positions = positions
        self.code = code
        self.text = text
        self.label = "sizes"

    def holds(self, flat_args: Sequence[Any]) -> bool:
        return guards_hold(self.code, [flat_args[p] for p in self.positions])

    def describe_change(self, flat_args: Sequence[Any]) -> str:
        shapes = ", ".join(f"{p}: {tuple(flat_args[p].shape)}" for p in self.positions)
        text = self.text if len(self.text) <= 200 else self.text[:197] + "..."
        return f"sizes outside what the symbolic compile assumed ({text}); argument shapes {shapes}"


def size_guard(shape_env, fakes: Sequence[Any], static_positions: frozenset) -> Optional[SizeGuard]:
    """The guard of what `shape_env` assumed about the tensors among `fakes` (flat, as the call
    passes them) outside `static_positions` (whose sizes the cache key fixes); None when it
    assumed nothing."""
    positions = tuple(p for p, f in enumerate(fakes) if isinstance(f, torch.Tensor) and p not in static_positions)
    placeholders = [fakes[p] for p in positions]
    text = size_guard_text(shape_env, placeholders) if config.enabled("own_size_guard_text") else None
    if text is not None:
        return SizeGuard(positions, compile(text, "<aotgraph size guards>", "eval"), text) if text != "True" else None
    expression = guards_expression(shape_env, placeholders)
    return SizeGuard(positions, *expression) if expression is not None else None


class ConcreteSizes:
    """The exact layouts (shape, stride, storage offset) of the tensors at `positions`: the
    guard of an entry compiled for concrete sizes where a symbolic compile was refused."""

    from_argument = True
    by_identity = False
    path = ()
    label = "sizes"

    def __init__(self, flat_args: Sequence[Any], positions: tuple[int, ...]):
        self.positions = positions
        self.layouts = [_layout(flat_args[p]) for p in positions]

    def holds(self, flat_args: Sequence[Any]) -> bool:
        return all(_layout(flat_args[p]) == layout for p, layout in zip(self.positions, self.layouts))

    def describe_change(self, flat_args: Sequence[Any]) -> str:
        changed = [f"argument {p}: shape {layout[0]} -> {tuple(flat_args[p].shape)}"
                   for p, layout in zip(self.positions, self.layouts) if _layout(flat_args[p]) != layout]
        return "; ".join(changed) + " (compiled for concrete sizes)"


def _layout(tensor: torch.Tensor) -> tuple:
    return tuple(tensor.shape), tensor.stride(), tensor.storage_offset()
