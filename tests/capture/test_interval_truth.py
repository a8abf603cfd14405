"""`interval_truth.decided_truth` answers only what every value of the symbols' ranges agrees
on: random size conditions are checked against their value at every point of small ranges
(and at sampled points of unbounded ones), and against the shape environment's own static
evaluation; and a dynamic capture with the decider gives the same graphs and guards as one
without it."""
from __future__ import annotations

import itertools
import random

import pytest
import sympy
import torch
from torch.fx.experimental.symbolic_shapes import ShapeEnv
from torch.utils._sympy.functions import FloorDiv, Max, Min, PythonMod
from torch.utils._sympy.numbers import int_oo
from torch.utils._sympy.value_ranges import ValueRanges

from aotgraph import models
from aotgraph.torch_private.interval_truth import decided_comparison, decided_truth

from symbolic_capture import codes_and_guards

S0, S1 = sympy.Symbol("s0", integer=True, positive=True), sympy.Symbol("s1", integer=True, positive=True)


def _term(rng: random.Random, depth: int):
    if depth == 0 or rng.random() < 0.25:
        return rng.choice([S0, S1, sympy.Integer(rng.randint(0, 9))])
    kind = rng.choice(["add", "mul", "floordiv", "mod", "max", "min", "neg", "pow"])
    a, b = _term(rng, depth - 1), _term(rng, depth - 1)
    if kind == "pow":
        return a ** rng.randint(1, 3)
    if kind == "add":
        return a + b
    if kind == "mul":
        return a * b
    if kind == "floordiv":
        return FloorDiv(a, sympy.Integer(rng.randint(1, 8)))
    if kind == "mod":
        return PythonMod(a, sympy.Integer(rng.randint(1, 8)))
    if kind == "neg":
        return -a + sympy.Integer(rng.randint(0, 9))
    return (Max if kind == "max" else Min)(a, b)


def _condition(rng: random.Random, depth: int = 3):
    kind = rng.choice([sympy.Eq, sympy.Ne, sympy.Lt, sympy.Le, sympy.Gt, sympy.Ge, "and", "or", "not"])
    if kind in ("and", "or"):
        parts = [_condition(rng, 2) for _ in range(2)]
        return sympy.And(*parts) if kind == "and" else sympy.Or(*parts)
    if kind == "not":
        return sympy.Not(_condition(rng, 2))
    return kind(_term(rng, depth), _term(rng, depth))


def _value(expr, s0: int, s1: int):
    """`expr` at s0, s1, evaluated with Python's ints (sympy's `subs` is too slow for the points)."""
    if expr is sympy.true or expr is sympy.false:
        return bool(expr)
    if expr.is_Integer:
        return int(expr)
    if expr.is_Symbol:
        return s0 if expr == S0 else s1
    args = [_value(a, s0, s1) for a in expr.args]
    kind = type(expr)
    if kind is sympy.Add:
        return sum(args)
    if kind is sympy.Mul:
        product = 1
        for a in args:
            product *= a
        return product
    operations = {sympy.Pow: lambda a, b: a ** b, FloorDiv: lambda a, b: a // b, PythonMod: lambda a, b: a % b, Max: max, Min: min,
                  sympy.Eq: lambda a, b: a == b, sympy.Ne: lambda a, b: a != b, sympy.Lt: lambda a, b: a < b,
                  sympy.Le: lambda a, b: a <= b, sympy.Gt: lambda a, b: a > b, sympy.Ge: lambda a, b: a >= b,
                  sympy.And: lambda *a: all(a), sympy.Or: lambda *a: any(a), sympy.Not: lambda a: not a}
    return operations[kind](*args)


RANGES = [((2, 9), (2, 9)), ((1, 5), (8, 12)), ((8, None), (2, None)), ((16, 40), (4, None))]


@pytest.mark.parametrize("seed", range(4))
def test_a_decided_answer_holds_at_every_point_of_the_ranges(seed):
    rng = random.Random(seed)
    decided = 0
    for _ in range(300):
        condition = _condition(rng)
        if condition in (sympy.true, sympy.false):
            continue
        (lo0, hi0), (lo1, hi1) = rng.choice(RANGES)
        ranges = {S0: ValueRanges(lo0, int_oo if hi0 is None else hi0),
                  S1: ValueRanges(lo1, int_oo if hi1 is None else hi1)}
        answer = decided_truth(condition, ranges)
        if answer is None:
            continue
        decided += 1
        points = itertools.product(range(lo0, (hi0 if hi0 is not None else lo0 + 60) + 1),
                                   range(lo1, (hi1 if hi1 is not None else lo1 + 60) + 1))
        for s0, s1 in points:
            assert _value(condition, s0, s1) is answer, (condition, ranges, s0, s1)
    assert decided > 30  # (the decider answers a good share: the test checks something)


@pytest.mark.parametrize("seed", range(2))
def test_a_decided_comparison_holds_at_every_point_of_the_ranges(seed):
    """`decided_comparison(kind, a, b)` (no relation built) answers only what every point agrees on,
    and an expression compared with itself is decided by the comparison."""
    rng = random.Random(100 + seed)
    decided = 0
    for _ in range(400):
        kind = rng.choice([sympy.Eq, sympy.Ne, sympy.Lt, sympy.Le, sympy.Gt, sympy.Ge])
        lhs = _term(rng, 3)
        rhs = lhs if rng.random() < 0.1 else _term(rng, 3)
        if rng.random() < 0.15:  # one term, two coefficients: c1*T against c2*T
            lhs, rhs = rng.randint(-3, 9) * rhs, rng.randint(-3, 9) * rhs
        elif rng.random() < 0.15:  # sides that differ by a constant: s0 - 1 against s0
            rhs = lhs + rng.randint(-3, 3)
        (lo0, hi0), (lo1, hi1) = rng.choice(RANGES)
        ranges = {S0: ValueRanges(lo0, int_oo if hi0 is None else hi0),
                  S1: ValueRanges(lo1, int_oo if hi1 is None else hi1)}
        answer = decided_comparison(kind, lhs, rhs, ranges)
        if answer is None:
            continue
        decided += 1
        for s0, s1 in itertools.product(range(lo0, (hi0 if hi0 is not None else lo0 + 40) + 1),
                                        range(lo1, (hi1 if hi1 is not None else lo1 + 40) + 1)):
            assert _value(kind(lhs, rhs, evaluate=False), s0, s1) is answer, (kind, lhs, rhs, ranges, s0, s1)
    assert decided > 60
    x = FloorDiv(S0, 8) * S1
    assert [decided_comparison(k, x, x, {}) for k in (sympy.Eq, sympy.Le, sympy.Ge, sympy.Ne, sympy.Lt, sympy.Gt)] \
        == [True, True, True, False, False, False]


def test_it_agrees_with_the_shape_environments_static_evaluation():
    rng = random.Random(7)
    shape_env = ShapeEnv()
    s0, s1 = (shape_env.create_unbacked_symint().node.expr for _ in range(2))
    shape_env.var_to_range[s0], shape_env.var_to_range[s1] = ValueRanges(2, int_oo), ValueRanges(8, int_oo)
    agreed = 0
    for _ in range(200):
        condition = _condition(rng).xreplace({S0: s0, S1: s1})
        if condition in (sympy.true, sympy.false):
            continue
        answer = decided_truth(condition, shape_env.var_to_range)
        theirs = shape_env._maybe_evaluate_static(condition)
        if answer is not None and theirs is not None:
            assert answer is bool(theirs), condition
            agreed += 1
    assert agreed > 20


def test_the_usual_layout_checks_are_decided():
    ranges = {S0: ValueRanges(8, int_oo), S1: ValueRanges(2, int_oo)}
    assert decided_truth(sympy.Eq(FloorDiv(S0, 2), 0), ranges) is False
    assert decided_truth(sympy.Lt(1, 32 * FloorDiv(S0, 2) * FloorDiv(S1, 2)), ranges) is True
    assert decided_truth(sympy.Ne(Max(1, 2 * FloorDiv(S0, 8)), 2 * FloorDiv(S0, 8)), ranges) is False
    assert decided_truth(sympy.Ne(Max(1, 2 * FloorDiv(S0, 8)) * Max(1, 2 * FloorDiv(S1, 2)),
                                  4 * FloorDiv(S0, 8) * FloorDiv(S1, 2)), ranges) is False
    assert decided_truth(sympy.Eq(FloorDiv(S1, 2), 1), ranges) is None  # s1 = 2 or 3: a guard's
    assert decided_truth(sympy.Eq(S0, 8 * FloorDiv(S0, 8)), ranges) is None
    assert decided_truth(sympy.Eq(S0, sympy.Symbol("t", integer=True)), ranges) is None  # no range
    # sides sharing a term: decided by their difference (torch's range refinement asserted on it)
    assert decided_truth(sympy.Le(S0, S0 + FloorDiv(S1 + 1, 2)), ranges) is True
    assert decided_truth(sympy.Gt(S0 - 1, S0 + FloorDiv(S1, 2)), ranges) is False


def test_a_dynamic_capture_gives_the_same_graphs_and_guards_with_and_without_it(monkeypatch):
    from aotgraph.torch_private import symbolic

    torch.manual_seed(0)
    model, inputs = models.unet()
    asked = []
    decide = symbolic.decided_truth
    monkeypatch.setattr(symbolic, "decided_truth", lambda *a: asked.append(1) or decide(*a))
    with_it = codes_and_guards(model, inputs)
    monkeypatch.setattr(symbolic, "decided_truth", lambda *a: None)
    without = codes_and_guards(model, inputs)
    assert len(asked) > 30  # (torch 2.13 asks 50-odd of these, 2.14 46)
    assert with_it == without
    assert any("//" in guard for guard in with_it[1])  # (the pooled sizes' guards are compared)


@pytest.mark.parametrize("name", ["unet", "resnet", "gpt"])
def test_a_dynamic_capture_gives_the_same_graphs_and_guards_with_relations_built_without_sympy(name, monkeypatch):
    """Relations between sizes are built as constants where the ranges decide them and
    unevaluated otherwise (`symbolic._relation_node`), not through sympy's evaluation: the same
    graphs and guards."""
    from aotgraph.torch_private import symbolic

    torch.manual_seed(0)
    model, inputs = getattr(models, name)()
    built = []
    relation_node = symbolic._relation_node
    monkeypatch.setattr(symbolic, "_relation_node", lambda *a: built.append(relation_node(*a)) or built[-1])
    with_it = codes_and_guards(model, inputs)
    monkeypatch.setattr(symbolic, "_relation_node", lambda *a: None)
    without = codes_and_guards(model, inputs)
    assert sum(node is not None and node.expr in (sympy.true, sympy.false) for node in built) > 5
    assert with_it == without


@pytest.mark.parametrize("seed", range(2))
def test_a_relation_left_unevaluated_is_never_answered_against_its_hint(seed):
    """Where `_relation_node` leaves a relation unevaluated, the shape environment's static
    evaluation of it finds no value or the one the hints give. (torch's canonical form of an
    unevaluated relation whose sides differ by a constant loses the constant's sign: it found
    ``s0 - 1 > s0`` true, and a padded slice's backward came out one element too long.)"""
    from torch._dynamo.source import LocalSource
    from torch.fx.experimental.sym_node import SymNode
    from torch.fx.experimental.symbolic_shapes import DimDynamic

    from aotgraph.torch_private.symbolic import _PYTHON_RELATIONS, _relation_node, new_symbolic_fake_mode

    rng = random.Random(300 + seed)
    shape_env = new_symbolic_fake_mode().shape_env
    hints = {S0: 7, S1: 12}
    symbols = {s: shape_env.create_symbol(hints[s], LocalSource(str(s)), DimDynamic.DYNAMIC) for s in (S0, S1)}
    left_open = 0
    for _ in range(300):
        kind = rng.choice([sympy.Eq, sympy.Ne, sympy.Lt, sympy.Le, sympy.Gt, sympy.Ge])
        lhs = _term(rng, 2)
        rhs = lhs + rng.randint(-3, 3) if rng.random() < 0.3 else _term(rng, 2)
        values = [int(side.xreplace(hints)) for side in (lhs, rhs)]
        if min(values) < 0 or any(isinstance(a, (PythonMod,)) for side in (lhs, rhs) for a in side.atoms(PythonMod)):
            continue
        lhs, rhs = (side.xreplace(symbols) for side in (lhs, rhs))
        nodes = [SymNode(side, shape_env, int, value) for side, value in zip((lhs, rhs), values)]
        node = _relation_node(kind, *nodes)
        truth = _PYTHON_RELATIONS[kind](*values)
        assert node.hint is truth, (kind, lhs, rhs)
        if node.expr in (sympy.true, sympy.false):
            assert (node.expr is sympy.true) is truth, (kind, lhs, rhs)
            continue
        left_open += 1
        static = shape_env._maybe_evaluate_static(node.expr)
        assert static is None or bool(static) is truth, (kind, lhs, rhs, static)
    assert left_open > 20


def test_equal_everywhere_sees_through_the_max_strides_carry():
    from aotgraph.torch_private.interval_truth import equal_everywhere

    ranges = {S0: ValueRanges(2, int_oo), S1: ValueRanges(2, int_oo)}
    half = FloorDiv(S1 + 1, 2)
    assert equal_everywhere(8 * S0 * Max(1, half), 8 * half * S0, ranges)
    assert not equal_everywhere(S0 * Max(1, FloorDiv(S1, 4)), S0 * FloorDiv(S1, 4), ranges)  # s1 < 4: 1 vs 0
    assert not equal_everywhere(S0, S1, ranges)
