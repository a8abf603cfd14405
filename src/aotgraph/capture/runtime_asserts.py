"""What torch assumed about values known only at run time, checked on each call.

While the program runs on fake tensors, torch assumes facts about unbacked symbols (a value of
``.item()``, the length of ``nonzero``'s result): the program's own ``torch._check(n <
y.size(0))``, a meta function's (``x.new_zeros(n)`` needs ``n >= 0``, ``narrow(0, 0, n)`` needs
``n <= x.size(0)``), and bounds (``torch._check_is_size``, ``constrain_range``). The shape
environment defers them (`deferred_runtime_asserts`, `assumed_bounds`); eager raises where one
fails, and so must the compiled graphs. `insert_runtime_asserts` writes each whose unbacked
symbols the forward defines as ``aten._assert_scalar(condition, message)`` right after the node
defining the last of them, the condition computed from the symbols' nodes (`SymbolNodes`), as
torch's own graphs carry them. The eager compiler runs them as they are; Inductor checks the
same shape environment's asserts in its generated code. Switch: ``runtime_asserts``.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable, Optional

import sympy
import torch
import torch.fx as fx

from .. import config
from ..debug import logger
from ..graph.naming import is_primal
from ..graph.nodes import tangent_dependent
from ..graph.ops import RUNTIME_ASSERT
from ..torch_private.symbolic import (assumed_bounds, canonical_condition, deferred_runtime_asserts,
                                      free_unbacked_symbols)
from .node_meta import innermost_line
from .symbols import SymbolNodes

__all__ = ["insert_runtime_asserts"]


@dataclass(frozen=True)
class _Check:
    condition: sympy.Basic  # over the graph's symbols
    unbacked: frozenset  # its unbacked symbols: it runs once the forward has defined them all
    frames: Optional[Callable]  # () -> where it was assumed (traceback frames); None: a bound


def insert_runtime_asserts(graph: fx.Graph, shape_env, user_line: Callable) -> int:
    """Insert into joint or inference `graph` (before dead-code elimination) a runtime assert
    per condition `shape_env` assumed about unbacked symbols that forward nodes define
    (``meta["unbacked_bindings"]``), over symbols the graph can compute; return how many.
    `user_line(frames)`: the program's line ``file:line: code`` among traceback frames, or None."""
    if shape_env is None or not config.enabled("runtime_asserts") or not any(
            "unbacked_bindings" in node.meta for node in graph.nodes):
        return 0
    symbols = SymbolNodes(graph, shape_env)
    definitions, origin = _definitions(graph, symbols)
    if not definitions:
        return 0
    pending = _checks(shape_env, set(origin))
    unreadable = [c.condition for c in pending if not symbols.can_compute(c.condition)]
    if unreadable:
        logger.info("aotgraph capture: no runtime asserts on %s (a symbol the graph cannot read)", unreadable)
        pending = [c for c in pending if symbols.can_compute(c.condition)]
    inserted = 0
    defined_so_far: set = set()
    for anchor, found in definitions:
        defined_so_far |= found
        ready = [c for c in pending if c.unbacked <= defined_so_far]
        pending = [c for c in pending if not c.unbacked <= defined_so_far]
        with graph.inserting_before(anchor.next):
            for check in ready:
                condition = symbols.node_for_expr(check.condition)
                if condition is True:
                    continue
                node = graph.call_function(RUNTIME_ASSERT, (condition, _message(check, origin, user_line)))
                node.meta["val"] = None
                if "stack_trace" in anchor.meta:
                    node.meta["stack_trace"] = anchor.meta["stack_trace"]
                inserted += 1
    if inserted:
        logger.debug("aotgraph capture: %d runtime asserts on unbacked values", inserted)
    return inserted


def _definitions(graph: fx.Graph, symbols: SymbolNodes) -> tuple[list[tuple[fx.Node, frozenset]], dict]:
    """([(the last node reading the symbols, the unbacked symbols)] for each forward node defining
    unbacked symbols the graph can read, in graph order; {symbol: the node defining it}).
    `symbols` learns to read them, and the primals' sizes."""
    backward = tangent_dependent(graph)
    position = {n: i for i, n in enumerate(graph.nodes)}
    definitions, origin = [], {}
    for node in position:
        value = node.meta.get("val")
        if is_primal(node) and isinstance(value, torch.Tensor):
            symbols.add_input(node, value)
        bindings = node.meta.get("unbacked_bindings")
        if not bindings or node in backward:
            continue
        anchor = node
        if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
            for symbol, path in bindings.items():
                if not path:  # the value itself (``.item()``)
                    symbols.bind(symbol, node)
        elif isinstance(value, torch.Tensor):
            symbols.add_input(node, value)
        else:
            for user in node.users:
                if user.target is operator.getitem and isinstance(user.meta.get("val"), torch.Tensor):
                    symbols.add_input(user, user.meta["val"])
                    anchor = max(anchor, user, key=position.__getitem__)
        found = frozenset(s for s in bindings if symbols.can_compute(s))
        if found != frozenset(bindings):
            logger.info("aotgraph capture: no runtime asserts on %s (%s defines them where aotgraph cannot read "
                        "them)", sorted(map(str, set(bindings) - found)), node.format_node())
        if found:
            definitions.append((anchor, found))
            origin.update(dict.fromkeys(found, node))
    return definitions, origin


def _checks(shape_env, defined: set) -> list[_Check]:
    """The conditions to check, deferred asserts (the program's and meta functions') first,
    then each defined symbol's bounds, without repeats; only those over `defined` symbols."""
    checks, seen = [], set()
    for condition, frames in deferred_runtime_asserts(shape_env):
        unbacked = frozenset(free_unbacked_symbols(condition))
        if unbacked and unbacked <= defined and condition not in seen:
            seen.add(condition)
            checks.append(_Check(condition, unbacked, frames))
    for symbol in sorted(defined, key=str):
        lower, upper = assumed_bounds(shape_env, symbol)
        for condition in (None if lower is None else sympy.Ge(symbol, lower),
                          None if upper is None else sympy.Le(symbol, upper)):
            if condition is None or condition is sympy.true:
                continue
            condition = canonical_condition(condition)
            if condition not in seen:
                seen.add(condition)
                checks.append(_Check(condition, frozenset((symbol,)), None))
    return checks


def _message(check: _Check, origin: dict, user_line: Callable) -> str:
    """``Runtime assertion failed for expression u1 < 5``, where the program assumed it, and
    where each of its unbacked symbols comes from."""
    text = f"Runtime assertion failed for expression {check.condition}"
    sources, source_lines = [], set()
    for symbol in sorted(check.unbacked, key=str):
        node = origin[symbol]
        where = innermost_line(node.meta.get("stack_trace"))
        source_lines.add(where)
        op = getattr(node.target, "__name__", str(node.target))
        sources.append(f"{symbol} comes from {op}" + (f" at {where}" if where else ""))
    assumed = user_line(check.frames()) if check.frames is not None else None
    # Dynamo's graph checks what it deferred itself right after the symbol's op, with that op's line.
    if assumed and assumed not in source_lines:
        text += f", assumed at {assumed}"
    return f"{text} ({'; '.join(sources)})"
