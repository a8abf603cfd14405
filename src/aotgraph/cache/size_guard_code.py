"""The Python text of a size guard, written from the shape environment's own records (the
layouts of the inputs' fakes, its guards, its symbols' ranges) without its guard producer.

``ShapeEnv.produce_guards_expression`` simplifies each guard again, evaluates it statically
again, rewrites congruences and prints through sympy's printers: 2-4 ms for a UNet's one
input, and 10-12 ms in a process's first dynamic compile (sympy's caches cold). What the guard
has to say is already written down: each input size either a symbol (the first place a
symbol appears is its source), or a number or an expression of earlier symbols (checked
equal), each guard a condition over those symbols, each symbol a range. `size_guard_text`
prints exactly that; it declines (None, and the caller asks torch) for anything it does not
print: a symbol with no source among the inputs, floats, functions outside the integer ones
below.

The ranges come first in the text, so a call with a size outside them (a 0 where the compile
assumed >= 2) fails the guard before a guard divides by that size.
"""
from __future__ import annotations

from typing import Optional

import sympy
import torch

from ..torch_private.interval_truth import decided_truth
from ..torch_private.symbolic import (CleanDiv, FloorDiv, Max, Min, Mod, PowByNatural, PythonMod, int_oo,
                                      node_expression)

__all__ = ["size_guard_text"]


class _Unprintable(Exception):
    pass


def size_guard_text(shape_env, placeholders: list) -> Optional[str]:
    """A Python condition over ``L['t0']``, ``L['t1']``... (the tensors `placeholders`, fakes of
    `shape_env`, stand for) that holds exactly where every size assumption of `shape_env` holds:
    each size, stride and storage offset as the fake has it (a new symbol, a number, or an
    expression of the symbols before it), each symbol in its range, each guard. "True" where
    nothing is assumed; None where this printer cannot say it (the caller asks torch)."""
    try:
        return _text(shape_env, placeholders)
    except _Unprintable:
        return None


def _text(shape_env, placeholders: list) -> str:
    sources: dict = {}  # symbol -> the Python text of where it is read
    equalities: list[tuple[str, object]] = []  # (source text, expression it must equal)
    for k, fake in enumerate(placeholders):
        tensor = f"L['t{k}']"
        places = [(f"{tensor}.size()[{d}]", size) for d, size in enumerate(fake.shape)]
        places += [(f"{tensor}.stride()[{d}]", stride) for d, stride in enumerate(fake.stride())]
        places.append((f"{tensor}.storage_offset()", fake.storage_offset()))
        for place, value in places:
            expr = node_expression(value.node) if isinstance(value, torch.SymInt) else value
            if isinstance(expr, sympy.Symbol) and expr not in sources:
                sources[expr] = place
            else:
                equalities.append((place, expr))
    ranges = shape_env.var_to_range
    conditions = []
    for symbol, place in sources.items():
        bounds = ranges.get(symbol)
        if bounds is None:
            raise _Unprintable
        if bounds.lower not in (-int_oo, -sympy.oo):
            conditions.append(f"{_integer(bounds.lower)} <= {place}")
        if bounds.upper not in (int_oo, sympy.oo):
            conditions.append(f"{place} <= {_integer(bounds.upper)}")
    conditions += [f"{place} == {_printed(expr, sources)}" for place, expr in equalities]
    issued: set = set()
    for guard in shape_env.guards:
        expr = shape_env.replace(guard.expr)
        if expr is sympy.true or expr in issued or decided_truth(expr, ranges) is True:
            continue  # (held by the ranges above, or already said)
        issued.add(expr)
        conditions.append(_printed(expr, sources))
    return " and ".join(conditions) if conditions else "True"


def _integer(value) -> int:
    if isinstance(value, (int, sympy.Integer)) and not isinstance(value, bool):
        return int(value)
    raise _Unprintable


_RELATIONS = {sympy.Eq: "==", sympy.Ne: "!=", sympy.Lt: "<", sympy.Le: "<=", sympy.Gt: ">", sympy.Ge: ">="}
_DIVISIONS = {FloorDiv: "//", CleanDiv: "//", Mod: "%", PythonMod: "%"}


def _printed(expr, sources: dict) -> str:
    """`expr` (an integer expression or a condition over `sources`' symbols) as Python text,
    every operation parenthesized."""
    if isinstance(expr, (int, sympy.Integer)) and not isinstance(expr, bool):
        return str(int(expr))
    if expr is sympy.true or expr is sympy.false:
        return str(bool(expr))
    if isinstance(expr, sympy.Symbol):
        place = sources.get(expr)
        if place is None:
            raise _Unprintable
        return place
    kind = type(expr)
    args = [_printed(arg, sources) for arg in expr.args]
    if kind is sympy.Add:
        return "(" + " + ".join(args) + ")"
    if kind is sympy.Mul:
        return "(" + "*".join(args) + ")"
    if kind in _DIVISIONS:
        return f"({args[0]} {_DIVISIONS[kind]} {args[1]})"
    if kind is Max or kind is Min:
        return f"{'max' if kind is Max else 'min'}({', '.join(args)})"
    if kind is PowByNatural or (kind is sympy.Pow and expr.exp.is_Integer and expr.exp >= 0):
        return f"({args[0]} ** {args[1]})"
    if kind in _RELATIONS:
        return f"({args[0]} {_RELATIONS[kind]} {args[1]})"
    if kind is sympy.And or kind is sympy.Or:
        return "(" + (" and " if kind is sympy.And else " or ").join(args) + ")"
    if kind is sympy.Not:
        return f"(not {args[0]})"
    raise _Unprintable
