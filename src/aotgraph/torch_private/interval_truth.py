"""A cheap answer to "is this size condition true for every value the shape environment admits?":
interval arithmetic over the symbols' ranges (``ShapeEnv.var_to_range``).

torch answers the same question (``ShapeEnv._maybe_evaluate_static``) by simplifying the
expression and bounding it with ``bound_sympy``, a few hundred microseconds each; a symbolic
capture asks it over a hundred times (every layout check C++ makes on symbolic sizes, most of
them decided by the ranges alone: ``Eq(s0//2, 0)`` with ``s0 >= 2``). An answer here holds
for every value of the ranges, which the compiled code's guards (and, for unbacked symbols, its
runtime asserts) enforce, so it needs no guard of its own. Where torch decides too, the answers
agree; a few conditions torch guards instead (a product of sizes it expands into a polynomial,
whose bounds then come out loose: ``1 < C*(2*H + k - 5)``) are decided here from their factored
form, and that redundant guard is not taken. Where the intervals do not decide, the answer is
None and torch is asked.

Checked on torch 2.13 (the test suite).
"""
from __future__ import annotations

import math
from typing import Optional

import sympy
from torch.utils._sympy.functions import FloorDiv, Max, Min, Mod, PowByNatural, PythonMod
from torch.utils._sympy.numbers import int_oo

__all__ = ["decided_truth", "decided_comparison", "equal_everywhere"]

_INF = math.inf


def decided_truth(expr, ranges: dict) -> Optional[bool]:
    """True or False where `expr` (a sympy condition over integer symbols) holds for every
    value of its symbols in `ranges` (symbol -> ``ValueRanges``) or for none; None where the
    intervals do not decide, where a symbol has no range, or for any function not handled
    (float arithmetic, unbacked symbols' unknown ranges...)."""
    try:
        return _truth(expr, ranges)
    except _Undecided:
        return None


def decided_comparison(kind, lhs, rhs, ranges: dict) -> Optional[bool]:
    """`decided_truth` of ``kind(lhs, rhs)`` (a sympy relation class: ``sympy.Eq``,
    ``sympy.Ge``...) without building that relation: True where it holds for every value of
    the symbols in `ranges`, False where for none, None where the intervals do not decide (or
    `lhs` and `rhs` are not integer expressions). An expression compared with itself is
    decided by the comparison alone, two that differ by a constant by that constant."""
    if lhs == rhs:
        return kind in _REFLEXIVE
    compare = _COMPARISONS.get(kind)
    if compare is None:
        return None
    try:
        answer = compare(_interval(lhs, ranges), _interval(rhs, ranges))
        if answer is None:
            (c_lhs, term), (c_rhs, other_term) = lhs.as_coeff_Mul(), rhs.as_coeff_Mul()
            if term == other_term and c_lhs.is_Integer and c_rhs.is_Integer and _interval(term, ranges)[0] > 0:
                # (c1*T against c2*T with T >= 1: as c1 against c2, ``Eq(192*s0, 64*s0)``)
                answer = compare((int(c_lhs),) * 2, (int(c_rhs),) * 2)
        if answer is None:
            # Sides that differ by a constant (``s0 - 1 > s0``), as sympy's evaluation decides
            # them: left unevaluated, torch's canonical form of the relation loses the
            # constant's sign (``0 < 1``) and its static evaluation answers it wrongly.
            difference = lhs - rhs
            if difference.is_Integer:
                answer = compare((int(difference),) * 2, (0, 0))
        return answer
    except _Undecided:
        return None


def equal_everywhere(lhs, rhs, ranges: dict) -> bool:
    """Whether the integer expressions `lhs` and `rhs` are the same expression once each
    ``Max``/``Min`` the ranges decide is replaced by the argument it picks (a stride written
    ``s1*Max(1, s2)`` is ``s1*s2`` where ``s2 >= 1``): then equal for every value of the
    symbols. False where that does not show it (not a proof that they differ)."""
    if lhs == rhs:
        return True
    try:
        return _equal_reduced(lhs, rhs, ranges) is True
    except _Undecided:
        return False


class _Undecided(Exception):
    pass


def _bound(value) -> float | int:
    if value is int_oo or value == int_oo:
        return _INF
    if value is -int_oo or value == -int_oo:
        return -_INF
    if isinstance(value, (int, sympy.Integer)):
        return int(value)
    raise _Undecided


def _truth(expr, ranges: dict) -> bool:
    if expr is sympy.true:
        return True
    if expr is sympy.false:
        return False
    kind = type(expr)
    if kind is sympy.And or kind is sympy.Or:
        deciding = kind is sympy.Or  # (one True decides an Or, one False an And)
        answers = [_answer(arg, ranges) for arg in expr.args]
        if deciding in answers:
            return deciding
        if None in answers:
            raise _Undecided
        return not deciding
    if kind is sympy.Not:
        return not _truth(expr.args[0], ranges)
    compare = _COMPARISONS.get(kind)
    if compare is None:
        raise _Undecided
    answer = compare(_interval(expr.lhs, ranges), _interval(expr.rhs, ranges))
    if answer is None and (kind is sympy.Eq or kind is sympy.Ne):
        answer = _equal_reduced(expr.lhs, expr.rhs, ranges)
        if answer is not None and kind is sympy.Ne:
            answer = not answer
    elif answer is None:
        # Sides sharing terms (``s0 <= s0 + (s1 + 1)//2``): their difference, with those terms
        # gone, against 0. (Left to torch, such a relation reached its range refinement, which
        # asserts on the relation its solver makes of it: seed 2742.)
        answer = compare(_interval(expr.lhs - expr.rhs, ranges), (0, 0))
    if answer is None:
        raise _Undecided
    return answer


def _equal_reduced(lhs, rhs, ranges: dict) -> Optional[bool]:
    """Whether `lhs` equals `rhs` once each ``Max``/``Min`` in them is replaced by the argument
    the ranges say it picks (``Max(1, 2*(s0//8))`` is ``2*(s0//8)`` where ``s0 >= 8``): True
    where the two are then the same expression, False where they differ by a nonzero constant,
    None otherwise."""
    lhs, rhs = _reduced(lhs, ranges), _reduced(rhs, ranges)
    if lhs == rhs:
        return True
    difference = lhs - rhs
    return False if difference.is_Integer and difference != 0 else None


def _reduced(expr, ranges: dict):
    if expr.is_Integer or expr.is_Symbol:
        return expr
    kind = type(expr)
    if kind is Max or kind is Min:
        bounds = [_interval(arg, ranges) for arg in expr.args]
        for k, (low, high) in enumerate(bounds):
            others = bounds[:k] + bounds[k + 1:]
            if (kind is Max and all(low >= o_high for _, o_high in others)) or \
                    (kind is Min and all(high <= o_low for o_low, _ in others)):
                return _reduced(expr.args[k], ranges)
        return expr
    if kind is sympy.Add or kind is sympy.Mul or kind is FloorDiv:
        args = [_reduced(arg, ranges) for arg in expr.args]
        return kind(*args) if any(a is not b for a, b in zip(args, expr.args)) else expr
    return expr


def _answer(expr, ranges: dict) -> Optional[bool]:
    try:
        return _truth(expr, ranges)
    except _Undecided:
        return None


def _equal(a, b) -> Optional[bool]:
    if a[1] < b[0] or b[1] < a[0]:
        return False
    if a[0] == a[1] == b[0] == b[1]:
        return True
    return None


def _less(a, b) -> Optional[bool]:
    if a[1] < b[0]:
        return True
    if a[0] >= b[1]:
        return False
    return None


def _less_equal(a, b) -> Optional[bool]:
    if a[1] <= b[0]:
        return True
    if a[0] > b[1]:
        return False
    return None


def _negated(answer: Optional[bool]) -> Optional[bool]:
    return None if answer is None else not answer


_COMPARISONS = {
    sympy.Eq: _equal,
    sympy.Ne: lambda a, b: _negated(_equal(a, b)),
    sympy.Lt: _less,
    sympy.Le: _less_equal,
    sympy.Gt: lambda a, b: _less(b, a),
    sympy.Ge: lambda a, b: _less_equal(b, a),
}


_REFLEXIVE = frozenset({sympy.Eq, sympy.Le, sympy.Ge})


def _interval(expr, ranges: dict) -> tuple:
    """(least, greatest) value of the integer expression `expr` over `ranges`; raises
    `_Undecided` for anything not handled."""
    if expr.is_Integer:
        value = int(expr)
        return value, value
    if expr.is_Symbol:
        found = ranges.get(expr)
        if found is None:
            raise _Undecided
        return _bound(found.lower), _bound(found.upper)
    kind = type(expr)
    if kind is sympy.Add:
        low = high = 0
        for arg in expr.args:
            a_low, a_high = _interval(arg, ranges)
            low, high = low + a_low, high + a_high
        if low != low or high != high:  # -inf + inf
            raise _Undecided
        return low, high
    if kind is sympy.Mul:
        low = high = 1
        for arg in expr.args:
            a_low, a_high = _interval(arg, ranges)
            corners = [_times(x, y) for x in (low, high) for y in (a_low, a_high)]
            low, high = min(corners), max(corners)
        return low, high
    if kind is FloorDiv:
        (low, high), (d_low, d_high) = _interval(expr.args[0], ranges), _interval(expr.args[1], ranges)
        if d_low != d_high or not d_low > 0:
            raise _Undecided
        return _floor_divided(low, d_low), _floor_divided(high, d_low)
    if kind is PythonMod or kind is Mod:
        (low, high), (d_low, d_high) = _interval(expr.args[0], ranges), _interval(expr.args[1], ranges)
        if d_low != d_high or not d_low > 0 or low < 0:
            raise _Undecided
        return (low, high) if high < d_low else (0, d_low - 1)
    if kind is Max or kind is Min:
        pick = max if kind is Max else min
        bounds = [_interval(arg, ranges) for arg in expr.args]
        return pick(b[0] for b in bounds), pick(b[1] for b in bounds)
    if (kind is sympy.Pow or kind is PowByNatural) and expr.args[1].is_Integer and expr.args[1] >= 1:
        (low, high), exponent = _interval(expr.args[0], ranges), int(expr.args[1])
        if low >= 0 or exponent % 2:  # (monotonic there)
            return low ** exponent, high ** exponent
        return (high ** exponent, low ** exponent) if high <= 0 else (0, max(low ** exponent, high ** exponent))
    raise _Undecided


def _times(x, y):
    if x == 0 or y == 0:  # a bound of 0 is a value, not a limit: 0 * inf is 0 here
        return 0
    return x * y


def _floor_divided(value, divisor: int):
    return value if value in (_INF, -_INF) else value // divisor
