"""A size's range narrowed by a guard on it, without sympy's solver: the common guards of a
symbolic capture compare one symbol, or its floor division by a constant, with an integer
(``Eq(s0, 32)``: a channel count specialized; ``s0//4 >= 1``: a pooled size kept nonempty).

torch narrows the ranges after each guard (``ShapeEnv._refine_ranges``) by solving the
relation for each of its symbols with ``try_solve``, which builds new sympy relations: 0.5-2 ms
for each guard on an expression the process has not met, most of the guards' cost in a
process's first dynamic compile. For the forms here the solution is written directly, and the
range comes out as torch's solver makes it (the same bound, strict or not); anything else
returns None and goes to torch.

Checked on torch 2.13 (the test suite); torch 2.11's and 2.14.1's ``_refine_ranges`` narrow
the same way (their sources read).
"""
from __future__ import annotations

from typing import Optional

import sympy
from torch.utils._sympy.functions import FloorDiv
from torch.utils._sympy.value_ranges import ValueRanges

__all__ = ["solved_for_symbol", "refined_range"]

_MIRRORED = {sympy.Eq: sympy.Eq, sympy.Ge: sympy.Le, sympy.Gt: sympy.Lt, sympy.Le: sympy.Ge, sympy.Lt: sympy.Gt}


def solved_for_symbol(condition) -> Optional[tuple]:
    """``(symbol, relation, bound)`` where `condition` says ``relation(symbol, bound)`` with
    `bound` an int: a relation (``Eq``, ``Ge``, ``Gt``, ``Le``, ``Lt``) of a symbol with an
    integer, either side, or of ``symbol // k`` (k a positive integer) with an integer by an
    inequality (``s//k >= c`` is ``s >= c*k``; ``s//k <= c`` is ``s < (c + 1)*k``). None for
    any other condition (``Ne``, an equality of a floor division, two symbols...), as torch's
    solver gives no bound for those either."""
    relation = type(condition)
    if relation not in _MIRRORED:
        return None
    lhs, rhs = condition.args
    if lhs.is_Integer:
        lhs, rhs, relation = rhs, lhs, _MIRRORED[relation]
    if not rhs.is_Integer:
        return None
    bound = int(rhs)
    if isinstance(lhs, FloorDiv):
        base, divisor = lhs.args
        if not divisor.is_Integer or divisor <= 0 or relation is sympy.Eq:
            return None
        quotient = bound if relation in (sympy.Ge, sympy.Lt) else bound + 1
        lhs, bound = base, quotient * int(divisor)
        relation = sympy.Ge if relation in (sympy.Ge, sympy.Gt) else sympy.Lt
    if not lhs.is_Symbol:
        return None
    return lhs, relation, bound


def refined_range(current: ValueRanges, relation, bound: int) -> ValueRanges:
    """`current` narrowed by ``relation(symbol, bound)``, as ``ShapeEnv._refine_ranges``
    narrows it: a lower bound raised by ``Ge``/``Gt``/``Eq``, an upper one lowered by
    ``Le``/``Lt``/``Eq``, never widened."""
    lower, upper = current.lower, current.upper
    if relation in (sympy.Eq, sympy.Ge, sympy.Gt) and lower <= bound:
        lower = sympy.Integer(bound + (relation is sympy.Gt))
    if relation in (sympy.Eq, sympy.Le, sympy.Lt) and upper >= bound:
        upper = sympy.Integer(bound - (relation is sympy.Lt))
    return ValueRanges(lower, upper)
