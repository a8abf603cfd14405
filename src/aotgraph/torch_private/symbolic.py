"""Symbolic sizes: the shape environment, its sympy functions, and the checks torch runs on
symbols (backed by a hint or unbacked).

Checked on torch 2.13 (the test suite).
"""
from __future__ import annotations

import contextlib
import operator
import sys
import weakref
from typing import Iterator, Optional

import sympy
import torch
from torch.fx.experimental.proxy_tensor import get_proxy_mode
from torch.fx.experimental.sym_node import SymNode
from torch.fx.experimental.symbolic_shapes import (DimDynamic, GuardOnDataDependentSymNode, ShapeEnv,
                                                   StatelessSymbolicContext,
                                                   compute_unbacked_bindings, free_unbacked_symbols, guard_or_false,
                                                   guard_or_true, is_concrete_int, statically_known_true, sym_and,
                                                   sym_or)
from torch.utils._sympy.numbers import int_oo
from torch.utils._sympy.value_ranges import ValueRanges, bound_sympy

from .interval_truth import decided_comparison, decided_truth
from torch.utils._sympy.functions import (CeilToInt, CleanDiv, FloatPow, FloatTrueDiv, FloorDiv, FloorToInt,
                                          Identity, IntTrueDiv, Max, Min, Mod, PowByNatural, PythonMod, ToFloat,
                                          TruncToFloat, TruncToInt)

__all__ = ["CaptureShapeEnv", "GuardOnDataDependentSymNode", "SizeConditionTooLarge", "LARGEST_SIZE_CONDITION", "node_expression", "guards_suppressed", "deferred_runtime_asserts", "assumed_bounds", "canonical_condition", "new_symbolic_fake_mode", "has_symbols", "memoized_size_arithmetic", "symbolic_fake", "guards_expression", "guards_hold", "DimDynamic", "ShapeEnv", "compute_unbacked_bindings", "StatelessSymbolicContext", "free_unbacked_symbols", "is_concrete_int", "guard_or_false", "guard_or_true", "statically_known_true", "sym_and", "sym_or", "int_oo", "ValueRanges", "bound_sympy",
           "CeilToInt", "CleanDiv", "FloatPow", "FloatTrueDiv", "FloorDiv", "FloorToInt", "Identity", "IntTrueDiv",
           "Max", "Min", "Mod", "PowByNatural", "PythonMod", "ToFloat", "TruncToFloat", "TruncToInt"]


def node_expression(node: SymNode):
    """``node.expr``: its expression with the shape environment's replacements applied, read
    from the node's own cache where that holds for the environment's current replacements
    (``SymNode.expr`` first asks sympy whether the expression is a number, a walk over it that
    was the most of reading thousands of sizes' keys in a capture)."""
    version = getattr(node.shape_env, "_replacements_version_counter", None)
    if version is None:  # (torch 2.11: no count of the replacements)
        return node.expr
    if version == 0:
        return node._expr
    cached = getattr(node, "_expr_cache", None)
    if cached is not None and node._expr_ver == version:
        return cached
    return node.expr


def deferred_runtime_asserts(shape_env) -> list[tuple]:
    """(condition, frames) of each runtime assert `shape_env` deferred (``torch._check`` on an
    unbacked value, a meta function's assumption about one): the condition a sympy boolean
    over its symbols; frames, where it was deferred, as ``traceback.FrameSummary``s, innermost
    last (read lazily: call them only for the asserts you keep)."""
    return [(ra.expr, ra.stack.summary) for ras in shape_env.deferred_runtime_asserts.values() for ra in ras]


def assumed_bounds(shape_env, symbol) -> tuple[Optional[object], Optional[object]]:
    """(lower, upper): the bounds `shape_env` assumes for `symbol` (``constrain_range``, a
    size's ``>= 0``, what ``torch._check(u < 5)`` refined), each a sympy number, None where
    unbounded (an int's upper bound sys.maxsize - 1 is how a size says unbounded)."""
    from torch.utils._sympy.numbers import int_oo

    ranges = shape_env.var_to_range.get(symbol)
    if ranges is None:
        return None, None
    lower, upper = ranges.lower, ranges.upper
    unbounded = (int_oo, -int_oo, sympy.oo, -sympy.oo, sys.maxsize - 1)
    return (None if lower in unbounded or not lower.is_number else lower,
            None if upper in unbounded or not upper.is_number else upper)


def canonical_condition(condition):
    """`condition` (a sympy relation) in the form the shape environment stores its asserts in."""
    from torch.fx.experimental.symbolic_shapes import canonicalize_bool_expr

    return canonicalize_bool_expr(condition)


def new_symbolic_fake_mode():
    """A fake mode with a shape environment of its own; sizes of different inputs that happen
    to be equal get different symbols (no duck sizing): equalities are assumed only where the
    program needs them, and then guarded."""
    from ..torch_private.fake import FakeTensorMode

    shape_env = CaptureShapeEnv(duck_shape=False)
    _own_shape_envs[shape_env] = {}
    return FakeTensorMode(shape_env=shape_env)


class CaptureShapeEnv(ShapeEnv):
    """The shape environment of `new_symbolic_fake_mode`: torch's, except that while
    `memoized_size_arithmetic(direct_guards=True)` is in effect, a guard that a size equals a
    constant (``Eq(s1, 32)``: a feature dimension meeting a weight) narrows the symbol's range
    to that constant and replaces the symbol by it: what torch's range refinement and solver
    find for such a relation, without them (sympy derives the sign of ``s1 - 32`` afresh for
    each symbol it has not seen: a millisecond or more per specialized size, in a small
    model's first symbolic compile in a process)."""

    def _maybe_guard_rel(self, expr) -> None:
        specialized = _size_equal_to_constant(expr, self) if _direct_guards_on else None
        if specialized is None:
            return super()._maybe_guard_rel(expr)
        symbol, value = specialized
        self._update_var_to_range(symbol, ValueRanges(value, value))
        self._set_replacement(symbol, value, "aotgraph: guarded equal to a constant")
        self._maybe_evaluate_static.cache_clear()


def _size_equal_to_constant(expr, shape_env) -> Optional[tuple]:
    """(symbol, integer) where `expr` is ``Eq(symbol, integer)`` for a backed integer symbol of
    `shape_env` whose range holds that integer; None otherwise."""
    if not isinstance(expr, sympy.Eq):
        return None
    lhs, rhs = expr.args
    if lhs.is_Integer and rhs.is_Symbol:
        lhs, rhs = rhs, lhs
    if not (lhs.is_Symbol and rhs.is_Integer and lhs.is_integer) or lhs not in _backed_values(shape_env):
        return None
    ranges = shape_env.var_to_range.get(lhs)
    return (lhs, rhs) if ranges is not None and ranges.lower <= rhs <= ranges.upper else None


def symbolic_fake(fake_mode, tensor, name: str):
    """A fake of `tensor` whose every size (and so its strides and storage offset) is a symbol
    of `fake_mode`'s shape environment, named after `name`; sizes 0 and 1 stay concrete (the
    shape environment specializes them)."""
    from torch._dynamo.source import LocalSource

    context = StatelessSymbolicContext(dynamic_sizes=[DimDynamic.DYNAMIC] * tensor.dim())
    return fake_mode.from_tensor(tensor, source=LocalSource(name), symbolic_context=context)


def guards_expression(shape_env, placeholders: list):
    """(compiled code, its text) of what `shape_env` assumed about the sizes of `placeholders`
    (fakes), sizes that stayed concrete included, read by `guards_hold` with the call's values in
    their place; None when it assumed nothing."""
    text = shape_env.produce_guards_expression(placeholders, ignore_static=False)
    return (compile(text, "<aotgraph size guards>", "eval"), text) if text else None


def guards_hold(code, values: list) -> bool:
    from torch.fx.experimental.symbolic_shapes import SYMPY_INTERP

    return eval(code, SYMPY_INTERP, {"L": {f"t{i}": v for i, v in enumerate(values)}})


# SymNode's binary operations that C++ calls (by name) for every size computation on SymInts.
_MEMOIZED_OPERATIONS = ("add", "sub", "mul", "mod", "int_floordiv", "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_",
                        "sym_max", "sym_min")
# SymNode's evaluations of a SymBool: answered once for a node with a hint (its value is fixed).
_MEMOIZED_EVALUATIONS = ("guard_bool", "guard_or_false", "guard_or_true")
_PROXY = torch._C._TorchDispatchModeKey.PROXY
_active_memo: list = []  # the memo of the outermost `memoized_size_arithmetic` in effect, if any
_direct_guards_on: list = []  # [True] while the outermost one in effect has `direct_guards`


@contextlib.contextmanager
def memoized_size_arithmetic(direct_guards: bool = False) -> Iterator[None]:
    """While in effect, a binary operation on two SymNodes whose expressions (raw, before the
    shape environment's replacements), Python types and summation flags were seen before returns
    the SymNode it returned then instead of building the sympy expression again. Every tensor
    made with symbolic sizes pays a dozen such operations in C++ (storage size, numel,
    contiguity); a capture repeats the same ones for every layer. The result is a pure function
    of those inputs (its expression and hint), so it is shared. A first level keyed on the two
    nodes themselves (kept alive by the memo, so their ids stay theirs) skips hashing the
    expressions: C++ mostly hands back the same nodes. Also memoized: ``wrap_int`` (the
    constant node of an int), ``maybe_as_int`` (per node and version of the shape
    environment's replacements), ``expect_true`` once it held (the guard or runtime assert it
    added holds for every later ask), and ``guard_bool`` / ``guard_or_false`` /
    ``guard_or_true`` of a node with a hint (the guard is taken the first time; the value
    cannot change). A condition the symbols' ranges decide is answered by interval
    arithmetic (`interval_truth`) before the shape environment is asked, without a guard (the
    ranges are guarded themselves). Not used while a proxy mode is on (make_fx records the operations, and a
    pre-dispatch one there at entry turns the memo off) nor with translation validation (nodes
    carry their FX node). Reentrant: an inner use shares the outer memo. An evaluation answered
    while the shape environment suppressed guards is not kept: its guard was not recorded.
    `direct_guards`: in a shape environment of `new_symbolic_fake_mode`, a condition on backed
    sizes with floor divisions or remainders by constants in it (pooled or strided sizes) that
    the ranges leave open, evaluated to take its guard, is
    guarded on its value without the shape environment's static evaluation first (its
    simplification with the earlier guards as axioms, a millisecond or more for each new
    condition). That evaluation can only find the value the sizes' hints give: where it would
    have found the condition implied by earlier guards, the guard is one more that they
    imply. The same for a relation of one backed symbol with an integer (``Eq(s0, 32)``, a
    size specialized), which only earlier guards on that symbol could decide, and they made
    its range (which the intervals read first) or replaced it; once guarded, such a relation
    narrows and replaces the symbol without torch's solver (`CaptureShapeEnv`). (Other conditions go to it
    still: its expansion finds a storage's bounds against its layout's true, and its axioms
    ``1 % s1``, where intervals cannot.)"""
    if _active_memo or get_proxy_mode() is not None:
        yield
        return
    memo: dict = {}
    patched = {name: SymNode.__dict__[name] for name in
               (*_MEMOIZED_OPERATIONS, *_MEMOIZED_EVALUATIONS, "wrap_int", "maybe_as_int", "expect_true")}
    _active_memo.append(memo)
    if direct_guards:
        _direct_guards_on.append(True)
    for name in _MEMOIZED_OPERATIONS:
        setattr(SymNode, name, _memoized(name, patched[name], memo))
    for name in _MEMOIZED_EVALUATIONS:
        setattr(SymNode, name, _memoized_evaluation(patched[name]))
    SymNode.wrap_int = _memoized_constant(patched["wrap_int"], memo)
    SymNode.maybe_as_int = _memoized_as_int(patched["maybe_as_int"])
    SymNode.expect_true = _memoized_expect_true(patched["expect_true"], memo)
    evaluate_sym_node = ShapeEnv.__dict__["evaluate_sym_node"]
    maybe_evaluate_static = ShapeEnv.__dict__["_maybe_evaluate_static"]
    ShapeEnv.evaluate_sym_node = _decided_first(evaluate_sym_node, direct_guards)
    if direct_guards:
        ShapeEnv._maybe_evaluate_static = _skippable_once(maybe_evaluate_static)
    try:
        yield
    finally:
        for name, original in patched.items():
            setattr(SymNode, name, original)
        ShapeEnv.evaluate_sym_node = evaluate_sym_node
        ShapeEnv._maybe_evaluate_static = maybe_evaluate_static
        _active_memo.clear()
        _direct_guards_on.clear()


def guards_suppressed(tensor: torch.Tensor):
    """A context in which checks on `tensor`'s symbolic sizes record no guard (its fake mode's
    shape environment's ``suppress_guards``); a plain context where it has none."""
    shape_env = getattr(getattr(tensor, "fake_mode", None), "shape_env", None)
    return shape_env.suppress_guards() if shape_env is not None else contextlib.nullcontext()


def _guards_suppressed():
    """Whether the shape environment records no guards just now (``ShapeEnv.suppress_guards``);
    None where this torch cannot say (then no evaluation is kept)."""
    suppressed = getattr(ShapeEnv, "_suppress_guards_tls", None)
    return None if suppressed is None else suppressed()


def _plain(node) -> bool:
    """Whether `node`'s operations may be memoized: a shape environment, no translation
    validation, no proxy mode recording them."""
    shape_env = node.shape_env
    return (shape_env is not None and not shape_env._translation_validation_enabled
            and torch._C._get_dispatch_mode(_PROXY) is None)


def _memoized(name: str, original, memo: dict):
    by_nodes: dict = {}  # (id(self), id(other)) -> (self, other, result)
    relation = _RELATIONS.get(name)

    def operation(self, other):
        known = by_nodes.get((id(self), id(other)))
        if known is not None and _plain(self):
            return known[2]
        if not _plain(self):
            return original(self, other)
        key = (name, self._expr, self.pytype, getattr(self, "_optimized_summation", None), other._expr,
               other.pytype, getattr(other, "_optimized_summation", None), id(self.shape_env))
        result = memo.get(key)
        if result is None:
            result = memo[key] = (_relation_node(relation, self, other) if relation is not None else None) \
                or original(self, other)
        by_nodes[(id(self), id(other))] = (self, other, result)
        return result

    operation.__name__ = name
    return operation


_RELATIONS = {"eq": sympy.Eq, "ne": sympy.Ne, "lt": sympy.Lt, "le": sympy.Le, "gt": sympy.Gt, "ge": sympy.Ge}
_PYTHON_RELATIONS = {sympy.Eq: operator.eq, sympy.Ne: operator.ne, sympy.Lt: operator.lt, sympy.Le: operator.le,
                     sympy.Gt: operator.gt, sympy.Ge: operator.ge}


def _relation_node(relation, self: SymNode, other: SymNode) -> Optional[SymNode]:
    """The SymBool node of ``relation(self, other)`` for two integer nodes, built without
    sympy's evaluation of the relation: where the symbols' ranges decide it
    (`interval_truth.decided_comparison`), the constant sympy gives it where it decides it too
    (``numel >= 0``, ``Eq(s0, s0)``), and the same constant where only the ranges do
    (``Eq(s0*s1, 1)`` with both >= 2); otherwise the relation unevaluated (``Eq(2*(s0//8),
    s0//4)``), which evaluating it later decides or guards as it would the evaluated one (torch
    builds its relations on unbacked sizes so too). None for other nodes (floats). sympy's
    evaluation asks its assumptions system, about a millisecond for each expression it has not
    met before in the process: torch's C++ checks of every new symbolic size (``size >= 0``,
    contiguity's ``size == 1``, autograd's size checks) paid that in a process's first dynamic
    capture."""
    if self.pytype is not int or other.pytype is not int:
        return None
    lhs, rhs = node_expression(self), node_expression(other)
    truth = decided_comparison(relation, lhs, rhs, self.shape_env.var_to_range)
    if truth is not None:
        return SymNode(sympy.true if truth else sympy.false, self.shape_env, bool, truth)
    hint = None if self.hint is None or other.hint is None else _PYTHON_RELATIONS[relation](self.hint, other.hint)
    return SymNode(relation(lhs, rhs, evaluate=False), self.shape_env, bool, hint)


def _memoized_constant(original, memo: dict):
    """``SymNode.wrap_int``: the node of a plain int that C++ combines with a SymInt, one per
    value (such a node is a constant: its expression, hint and value are the int)."""
    def wrap_int(self, num):
        key = ("wrap_int", type(num), num, id(self.shape_env))
        result = memo.get(key)
        if result is None:
            result = memo[key] = original(self, num)
        return result

    return wrap_int


def _memoized_as_int(original):
    by_node: dict = {}  # id(node) -> (node, replacements version, answer)

    def maybe_as_int(self):
        shape_env = self.shape_env
        if shape_env is None:
            return original(self)
        # SymNode.expr applies the replacements: the answer holds for one version of them
        # (torch 2.11 counts none: no memo there).
        version = getattr(shape_env, "_replacements_version_counter", None)
        if version is None:
            return original(self)
        known = by_node.get(id(self))
        if known is not None and known[1] == version:
            return known[2]
        answer = original(self)
        by_node[id(self)] = (self, version, answer)
        return answer

    return maybe_as_int


def _memoized_evaluation(original):
    by_node: dict = {}  # id(node) -> (node, value)

    def evaluation(self, file, line):
        known = by_node.get(id(self))
        if known is not None:
            return known[1]
        value = original(self, file, line)
        if self.has_hint() and _plain(self) and _guards_suppressed() is False:  # its guard is recorded
            by_node[id(self)] = (self, value)
        return value

    evaluation.__name__ = original.__name__
    return evaluation


def _decided_first(original, direct_guards: bool):
    """``ShapeEnv.evaluate_sym_node``, answering a SymBool its symbols' ranges decide without
    the shape environment's own (slower) static evaluation; everything else goes to it (with
    `direct_guards`, a guard on a backed condition skipping that static evaluation)."""
    def evaluate_sym_node(self, sym_node, size_oblivious=False, fallback_value=None):
        if sym_node.pytype is bool and not self._translation_validation_enabled \
                and torch._C._get_dispatch_mode(_PROXY) is None:
            expr = node_expression(sym_node)
            truth = decided_truth(expr, self.var_to_range)
            if truth is not None:
                return sympy.true if truth else sympy.false
            if _more_terms_than(expr, LARGEST_SIZE_CONDITION):
                raise SizeConditionTooLarge(expr)
            guarded = _own_shape_envs.get(self) if direct_guards else None
            if guarded is not None and not size_oblivious and sym_node.has_hint() \
                    and (_divides_by_constants(expr) or _symbol_against_constant(expr)) \
                    and expr.free_symbols <= _backed_values(self).keys():
                value = guarded.get(expr)
                if value is None:
                    _static_evaluation_skipped.append(self)
                    try:
                        value = guarded[expr] = original(self, sym_node, size_oblivious, fallback_value)
                    except AssertionError:  # torch's range refinement, met with a relation its static
                        value = None        # evaluation would have decided first: asked that way
                    finally:
                        _static_evaluation_skipped.clear()
                    if value is None:
                        value = guarded[expr] = original(self, sym_node, size_oblivious, fallback_value)
                return value
        return original(self, sym_node, size_oblivious, fallback_value)

    return evaluate_sym_node


LARGEST_SIZE_CONDITION = 200  # terms (sympy nodes) of a condition on sizes asked while capturing


class SizeConditionTooLarge(RuntimeError):
    """A condition on symbolic sizes of more than `LARGEST_SIZE_CONDITION` terms was asked
    while capturing. torch's evaluation of such a condition takes from tenths of a second to
    seconds (Swin's padding to whole windows nests floor divisions and remainders that every
    reshape multiplies together: 2000 conditions of up to 1300 terms, 30-50 s for a capture
    that takes 0.4 s with static sizes). The conditions of common programs have fewer than 10
    terms."""

    def __init__(self, condition):
        text = str(condition)
        super().__init__(f"a condition on symbolic sizes of more than {LARGEST_SIZE_CONDITION} terms "
                         f"({text[:160]}{'...' if len(text) > 160 else ''})")


def _more_terms_than(expr, limit: int) -> bool:
    """Whether `expr` has more than `limit` nodes (counted up to limit + 1)."""
    count, stack = 0, [expr]
    while stack:
        count += 1
        if count > limit:
            return True
        stack.extend(stack.pop().args)
    return False


def _divides_by_constants(expr) -> bool:
    """Whether `expr` has a floor division or remainder, each by a constant (``s0//8``)."""
    divisions = expr.atoms(FloorDiv, Mod, PythonMod)
    return bool(divisions) and all(division.args[1].is_Integer for division in divisions)


def _symbol_against_constant(expr) -> bool:
    """Whether `expr` is a relation of a symbol with an integer (``Eq(s0, 32)``, ``s0 >= 2``)."""
    if not isinstance(expr, sympy.Rel) or len(expr.args) != 2:
        return False
    lhs, rhs = expr.args
    return (lhs.is_Symbol and rhs.is_Integer) or (lhs.is_Integer and rhs.is_Symbol)


def has_symbols(fake_mode) -> bool:
    """Whether `fake_mode`'s shape environment (if any) has made a backed symbol."""
    shape_env = getattr(fake_mode, "shape_env", None)
    return shape_env is not None and bool(_backed_values(shape_env))


def _backed_values(shape_env) -> dict:
    """The hints of `shape_env`'s backed symbols (``backed_var_to_val``; ``var_to_val`` where torch has no such attribute)."""
    values = getattr(shape_env, "backed_var_to_val", None)
    return values if values is not None else shape_env.var_to_val


_static_evaluation_skipped: list = []  # the shape environment whose next static evaluation is skipped
# Shape environments of `new_symbolic_fake_mode` (no guards but the capture's) -> the value of each
# condition guarded directly. Another's (Dynamo's) holds the guards of its own trace, which its
# static evaluation finds the capture's conditions implied by: direct guards would add them again.
_own_shape_envs: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _skippable_once(original):
    """``ShapeEnv._maybe_evaluate_static``, answering "not known statically" (None) to the first
    plain call after `_decided_first` asked for it, the one the guard's evaluation makes."""
    def maybe_evaluate_static(self, expr, **kwargs):
        if _static_evaluation_skipped and _static_evaluation_skipped[0] is self \
                and set(kwargs) <= {"size_oblivious"} and not kwargs.get("size_oblivious"):
            _static_evaluation_skipped.clear()
            return None
        return original(self, expr, **kwargs)

    for name in ("cache_clear", "cache_info"):
        if hasattr(original, name):
            setattr(maybe_evaluate_static, name, getattr(original, name))
    return maybe_evaluate_static


def _memoized_expect_true(original, memo: dict):
    def expect_true(self, file, line):
        shape_env = self.shape_env
        key = ("expect_true", self._expr, id(shape_env))
        if shape_env is None or shape_env._translation_validation_enabled or key not in memo:
            held = original(self, file, line)
            if held is True and shape_env is not None:
                memo[key] = True
            return held
        return True

    return expect_true
