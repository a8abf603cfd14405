"""`range_refinement` narrows a size's range as torch's solver does: random guards of one
symbol (or its floor division) against an integer, each true at the symbol's hint, leave the
same range and the same replacements in a shape environment with the switch as in one
without it; and every value the narrowed range keeps satisfies the guard, every value it
drops violates it (checked over a window of values)."""
from __future__ import annotations

import random

import pytest
import sympy
from torch._dynamo.source import LocalSource
from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv
from torch.utils._sympy.functions import FloorDiv
from torch.utils._sympy.value_ranges import ValueRanges

from aotgraph.torch_private.interval_truth import decided_truth
from aotgraph.torch_private.range_refinement import solved_for_symbol
from aotgraph.torch_private.symbolic import memoized_size_arithmetic, new_symbolic_fake_mode

_RELATIONS = (sympy.Eq, sympy.Ge, sympy.Gt, sympy.Le, sympy.Lt)


def _guard(rng: random.Random, symbol, hint: int):
    """A relation true at `hint`: of `symbol` or ``symbol // k`` with an integer, either side."""
    divisor = rng.choice([None, 2, 3, 4, 8])
    side = symbol if divisor is None else FloorDiv(symbol, divisor)
    value = hint if divisor is None else hint // divisor
    relation = rng.choice(_RELATIONS)
    bound = {sympy.Eq: value, sympy.Ge: value - rng.randint(0, 3), sympy.Gt: value - rng.randint(1, 3),
             sympy.Le: value + rng.randint(0, 3), sympy.Lt: value + rng.randint(1, 3)}[relation]
    if rng.random() < 0.5:
        return relation(side, sympy.Integer(bound), evaluate=False)
    mirrored = {sympy.Eq: sympy.Eq, sympy.Ge: sympy.Le, sympy.Gt: sympy.Lt, sympy.Le: sympy.Ge, sympy.Lt: sympy.Gt}
    return mirrored[relation](sympy.Integer(bound), side, evaluate=False)


def _refined(guard_of, hint: int, lower: int, direct: bool):
    shape_env = new_symbolic_fake_mode().shape_env
    symbol = shape_env.create_symbol(hint, LocalSource("x"), DimDynamic.DYNAMIC)
    if lower > 2:
        shape_env._update_var_to_range(symbol, ValueRanges(lower, shape_env.var_to_range[symbol].upper))
    guard = guard_of(symbol)
    if decided_truth(guard, shape_env.var_to_range) is not None:
        return None  # (decided by the ranges: never a guard)
    if direct:
        with memoized_size_arithmetic(direct_ranges=True):
            shape_env._refine_ranges(guard)
    else:
        ShapeEnv._refine_ranges(shape_env, guard)
    return guard, symbol, shape_env.var_to_range[symbol], dict(shape_env.replacements)


@pytest.mark.parametrize("seed", range(4))
def test_ranges_narrowed_as_torch_narrows_them(seed):
    rng = random.Random(seed)
    solved = 0
    for _ in range(60):
        hint, lower = rng.randint(2, 40), rng.choice([2, 2, 3, 5])
        hint = max(hint, lower)
        draw = rng.random()

        def guard_of(symbol):  # (the same guard for both shape environments)
            return _guard(random.Random(draw), symbol, hint)

        refined = _refined(guard_of, hint, lower, direct=True)
        if refined is None:
            continue
        guard, symbol, ours, our_replacements = refined
        _, _, torchs, torch_replacements = _refined(guard_of, hint, lower, direct=False)
        assert (ours.lower, ours.upper) == (torchs.lower, torchs.upper), guard
        assert our_replacements == torch_replacements, guard
        solved += solved_for_symbol(guard) is not None
        for value in range(lower, 80):  # kept values satisfy the guard; dropped ones violate it
            if solved_for_symbol(guard) is not None:
                assert bool(guard.subs(symbol, value)) == (ours.lower <= value <= ours.upper), (guard, value, ours)
    assert solved > 20  # (most of the guards take the direct path)


def test_forms_not_solved_go_to_torch():
    s = sympy.Symbol("s0", integer=True, positive=True)
    t = sympy.Symbol("s1", integer=True, positive=True)
    assert solved_for_symbol(sympy.Ne(s, 3)) is None
    assert solved_for_symbol(sympy.Eq(FloorDiv(s, 4), 2, evaluate=False)) is None
    assert solved_for_symbol(sympy.Ge(s, t)) is None
    assert solved_for_symbol(sympy.Ge(2 * s, 6)) is None
    assert solved_for_symbol(sympy.Ge(FloorDiv(s, t), 1)) is None
    assert solved_for_symbol(sympy.Gt(FloorDiv(s, 4), 1)) == (s, sympy.Ge, 8)
    assert solved_for_symbol(sympy.Le(FloorDiv(s, 4), 1)) == (s, sympy.Lt, 8)
    assert solved_for_symbol(sympy.Lt(3, s)) == (s, sympy.Gt, 3)
