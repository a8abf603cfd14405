"""Why a function compiled again, and a warning when it compiles too often.

Each compiled entry keeps the `CallFacts` of the call that compiled it; a later compile
names what changed against the latest entry (an input's shape, dtype, a constant's value,
grad mode, autocast, or a guarded Python value). `RecompileWatch` warns once per function
when its entries pass `aotgraph.config.recompile_limit` (as Dynamo's recompile limit).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

from .. import config
from ..errors import RecompileWarning

__all__ = ["CallFacts", "RecompileWarning", "RecompileWatch", "call_facts", "describe_change", "facts_apart",
           "input_label"]


@dataclass(frozen=True)
class CallFacts:
    """What a call looked like, for messages: its argument structure, grad mode, autocast
    state, and per flat input a short description (tensor layout, or the constant)."""

    structure: Any
    grad_enabled: bool
    autocast: tuple
    inputs: tuple[tuple, ...]
    default_dtype: Optional[torch.dtype] = None


def call_facts(flat_args: Sequence[Any], structure: Any, grad_enabled: bool, autocast: tuple) -> CallFacts:
    return CallFacts(structure, grad_enabled, autocast, tuple(map(_input_facts, flat_args)), torch.get_default_dtype())


def _input_facts(value: Any) -> tuple:
    if isinstance(value, torch.Tensor):
        return (("shape", tuple(value.shape)), ("stride", value.stride()), ("storage offset", value.storage_offset()),
                ("dtype", value.dtype), ("device", value.device), ("requires_grad", value.requires_grad))
    return (("value", value if _printable(value) else f"a {type(value).__name__}"),)


def _printable(value: Any) -> bool:
    return isinstance(value, (int, float, bool, str, type(None), torch.dtype, torch.device))


def describe_change(before: CallFacts, after: CallFacts, input_names: Sequence[str] = ()) -> str:
    """What differs between two calls, in one phrase ("argument 0: shape (4, 8) -> (5, 8)")."""
    if before.structure != after.structure or len(before.inputs) != len(after.inputs):
        return "the arguments' structure changed (number or nesting of arguments)"
    if before.grad_enabled != after.grad_enabled:
        return f"grad mode changed: {_on(before.grad_enabled)} -> {_on(after.grad_enabled)}"
    if before.autocast != after.autocast:
        return f"autocast changed: {before.autocast} -> {after.autocast}"
    if before.default_dtype != after.default_dtype:
        return f"the default dtype changed: {before.default_dtype} -> {after.default_dtype}"
    for position, (old, new) in enumerate(zip(before.inputs, after.inputs)):
        if old == new:
            continue
        name = input_label(position, input_names)
        old_facts, new_facts = dict(old), dict(new)
        if old_facts.keys() != new_facts.keys():
            kind = lambda facts: "a tensor" if "shape" in facts else repr(facts["value"])  # noqa: E731
            return f"{name}: {kind(old_facts)} -> {kind(new_facts)}"
        changes = [f"{fact} {old_facts[fact]!r} -> {new_facts[fact]!r}" for fact in old_facts
                   if old_facts[fact] != new_facts[fact]]
        return f"{name}: {', '.join(changes)}"
    return "the inputs share memory differently (aliasing between inputs changed)"


def facts_apart(before: CallFacts, after: CallFacts) -> int:
    """How many facts differ between two calls (a changed argument structure counts as all)."""
    if before.structure != after.structure or len(before.inputs) != len(after.inputs):
        return 1 << 30
    apart = (before.grad_enabled != after.grad_enabled) + (before.autocast != after.autocast) \
        + (before.default_dtype != after.default_dtype)
    return apart + sum(a != b for old, new in zip(before.inputs, after.inputs) if old != new
                       for a, b in zip(old, new))


def input_label(position: int, input_names: Sequence[str] = ()) -> str:
    """A flat input's name in messages: its parameter/buffer name where known, else
    ``argument k`` counting after them."""
    if position < len(input_names):
        return input_names[position]
    return f"argument {position - len(input_names)}"


def _on(flag: bool) -> str:
    return "on" if flag else "off"


class RecompileWatch:
    """Counts one function's compiles and warns once when they pass the limit."""

    def __init__(self, name: str):
        self.name = name
        self.compiles = 0
        self.warned = False

    def compiled(self, reason: str) -> None:
        self.compiles += 1
        limit = config.recompile_limit
        if self.compiles > limit and not self.warned:
            self.warned = True
            warnings.warn(
                f"aotgraph: {self.name} has compiled {self.compiles} times, more than the recompile limit "
                f"({limit}); the latest: {reason}. Pass varying values as tensors, keep shapes fixed (pad or "
                "bucket them), or raise aotgraph.config.recompile_limit (AOTGRAPH_RECOMPILE_LIMIT)",
                RecompileWarning, stacklevel=4)
