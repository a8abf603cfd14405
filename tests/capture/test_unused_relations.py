"""aotgraph's own shape environment (`CaptureShapeEnv`) leaves unevaluated what torch builds and
throws away (a new symbol's ``s > 1``, simplification's remainders without divisibility
facts), and learns from a guard on a pooled size ``s // c`` against an integer the range
torch's solver finds; each patch is the calling thread's alone and undone afterwards."""
from __future__ import annotations

import itertools
import operator
import threading

import pytest
import sympy
import torch
import torch.fx.experimental.symbolic_shapes as symbolic_shapes
from torch.fx.experimental.symbolic_shapes import ShapeEnv
from torch._subclasses.fake_tensor import FakeTensorMode

from aotgraph.torch_private import symbolic
from aotgraph.torch_private.symbolic import (CleanDiv, FloorDiv, Mod, memoized_size_arithmetic, new_symbolic_fake_mode,
                                             symbolic_fake)

RELATIONS = {sympy.Ge: operator.ge, sympy.Gt: operator.gt, sympy.Le: operator.le, sympy.Lt: operator.lt,
             sympy.Eq: operator.eq}


@pytest.mark.parametrize("relation", list(RELATIONS))
@pytest.mark.parametrize("mirrored", [False, True])
def test_a_pooled_size_bound_holds_exactly_where_the_relation_does(relation, mirrored):
    env = new_symbolic_fake_mode(True).shape_env
    x = symbolic_fake(FakeTensorMode(shape_env=env), torch.randn(37), "x")
    s = x.shape[0].node.expr
    for c, k in itertools.product(range(1, 5), range(-2, 12)):
        size = FloorDiv(s, c) if c > 1 else s
        expr = relation(size, k, evaluate=False)
        if mirrored:  # k <mirrored rel> size: the same as size <rel> k
            expr = {sympy.Ge: sympy.Le, sympy.Gt: sympy.Lt, sympy.Le: sympy.Ge, sympy.Lt: sympy.Gt,
                    sympy.Eq: sympy.Eq}[relation](sympy.Integer(k), size, evaluate=False)
        bound = symbolic._pooled_size_bound(expr, env)
        if relation is sympy.Eq and c == 1:
            assert bound is None
            continue
        symbol, ranges = bound
        assert symbol == s
        if relation is sympy.Eq:  # (torch learns no range from it: nor do we)
            assert ranges == env.var_to_range[s]
            continue
        compare = RELATIONS[relation]
        for value in range(-3, 60):
            holds = compare(value // c, k)
            assert holds == (ranges.lower <= value <= ranges.upper), (expr, value, ranges)


@pytest.mark.parametrize("condition", [lambda n: n // 4 >= 1, lambda n: n // 8 > 2, lambda n: n // 2 <= 20,
                                       lambda n: n // 3 < 13, lambda n: n // 4 == 9, lambda n: n >= 10,
                                       lambda n: n < 40])
def test_a_guarded_pooled_size_narrows_the_range_as_torch_does(condition):
    """The range after the guard equals the one torch's refinement gives (none for an equation
    with a floor division, though it bounds the size); the guard is recorded."""
    ours, torchs = _states_after_guarding(condition, 37)
    assert ours == torchs
    assert ours[3] == 1


def _states_after_guarding(condition, size: int) -> list:
    """(the symbol's range, the replacements, the divisibility facts, the number of guards) of
    aotgraph's shape environment, then torch's, after `condition` of a size symbol whose hint
    is `size` was guarded."""
    states = []
    for mode in (new_symbolic_fake_mode(True), FakeTensorMode(shape_env=ShapeEnv(duck_shape=False))):
        x = symbolic_fake(mode, torch.randn(size), "x")
        symbol = x.shape[0].node._expr
        with memoized_size_arithmetic(direct_guards=True):
            assert condition(x.shape[0])
        env = mode.shape_env
        states.append((env.var_to_range[symbol], dict(env.replacements), set(env.divisible), len(env.guards)))
    return states


def test_a_new_symbols_relation_is_unevaluated_in_the_creating_thread_only():
    s = sympy.Symbol("s_test", positive=True, integer=True)
    seen = {}

    def other_thread():
        seen["other"] = s > 1

    with symbolic._symbol_relations_unevaluated():
        seen["own"] = s > 1
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        with symbolic._symbol_relations_unevaluated():  # nested: the outer patch holds
            seen["nested"] = s > 1
    assert "__gt__" not in vars(sympy.Symbol)
    assert seen["own"] == sympy.StrictGreaterThan(s, 1, evaluate=False)
    assert seen["other"] == sympy.StrictGreaterThan(s, 1)  # (evaluated; sympy cannot decide it either way)
    assert (s > 1) == seen["other"] and seen["nested"] == seen["own"]


def test_remainders_are_unbuilt_in_the_simplifying_thread_only():
    s = sympy.Symbol("s_test", positive=True, integer=True)
    seen = {}

    def other_thread():
        seen["other"] = symbolic_shapes.Mod(s - 1, 2)

    with symbolic._remainders_unbuilt():
        seen["own"] = symbolic_shapes.Mod(s - 1, 2)
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert symbolic_shapes.Mod is Mod
    assert seen["own"] is sympy.nan
    assert seen["other"] == Mod(s - 1, 2) and type(seen["other"]) is Mod


def test_simplify_without_divisibility_facts_gives_torchs_answer():
    """With and without remainders built, a strided size simplifies to the same expression;
    with a divisibility fact, torch's own path (the fact used)."""
    answers = []
    for unbuilt in (True, False):
        mode = new_symbolic_fake_mode(unbuilt)
        x = symbolic_fake(mode, torch.randn(36), "x")
        s = x.shape[0].node._expr
        env = mode.shape_env
        plain = env.simplify(sympy.Eq(FloorDiv(s - 1, 2) + 1, 1))
        assert env.evaluate_expr(sympy.Eq(Mod(s, 4), 0))  # a divisibility fact: s % 4 == 0
        with_fact = env.simplify(FloorDiv(s, 4) * 4)
        answers.append((plain, with_fact))
    assert answers[0] == answers[1]
    assert answers[0][1].has(CleanDiv)  # the fact used: s // 4 divides exactly


@pytest.mark.parametrize("condition", [lambda n: 2 * (n // 2) == n, lambda n: 2 * (n // 4) == n // 2,
                                       lambda n: 3 * (n // 3) == n])
def test_an_equation_torch_learns_nothing_from_leaves_the_environment_as_torch_does(condition, monkeypatch):
    """``Eq(2*(s//2), s)``: guarded, with the same range, replacements and divisibility facts as
    torch's own guard leaves (none learned)."""
    answers = []
    teaches_nothing = symbolic._teaches_nothing
    monkeypatch.setattr(symbolic, "_teaches_nothing", lambda *a: answers.append(teaches_nothing(*a)) or answers[-1])
    ours, torchs = _states_after_guarding(condition, 36)
    assert ours == torchs
    assert ours[3] == 1
    assert answers == [True]  # (the shortcut taken in aotgraph's environment)
