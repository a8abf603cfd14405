"""Symbolic sizes: the shape environment, its sympy functions, and the checks torch runs on
symbols (backed by a hint or unbacked).

Checked on torch 2.13 (the test suite).
"""
from __future__ import annotations

import contextlib
import operator
import sys
import threading
import weakref
from typing import Iterator, Optional

import sympy
import torch
import torch.fx.experimental.symbolic_shapes as symbolic_shapes
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


def new_symbolic_fake_mode(unused_relations_unbuilt: bool = False):
    """A fake mode with a shape environment of its own; sizes of different inputs that happen
    to be equal get different symbols (no duck sizing): equalities are assumed only where the
    program needs them, and then guarded. `unused_relations_unbuilt`: see `CaptureShapeEnv`."""
    from ..torch_private.fake import FakeTensorMode

    shape_env = CaptureShapeEnv(duck_shape=False)
    shape_env.unused_relations_unbuilt = unused_relations_unbuilt
    _own_shape_envs[shape_env] = {}
    return FakeTensorMode(shape_env=shape_env)


class CaptureShapeEnv(ShapeEnv):
    """The shape environment of `new_symbolic_fake_mode`: torch's, except that while
    `memoized_size_arithmetic(direct_guards=True)` is in effect, a guard that a size equals a
    constant (``Eq(s1, 32)``: a feature dimension meeting a weight) narrows the symbol's range
    to that constant and replaces the symbol by it: what torch's range refinement and solver
    find for such a relation, without them (sympy derives the sign of ``s1 - 32`` afresh for
    each symbol it has not seen: a millisecond or more per specialized size, in a small
    model's first symbolic compile in a process).

    With `unused_relations_unbuilt` set (and no translation validation), two sympy objects
    whose values torch throws away are not evaluated: the relation ``s > 1`` that a new
    symbol's creation builds for the validator only (its evaluation derives the sign of
    ``s - 1``: about a millisecond for each new size in a process), and, while the environment
    knows no divisibility facts, the remainders ``Mod(base, divisor)`` that `simplify` builds
    for each floor division only to look them up among those facts (a millisecond or more for
    each new pooled or strided size). Both are patched for the length of the call, in the
    calling thread only (other threads see sympy's and torch's own)."""

    unused_relations_unbuilt = False

    def create_symbol(self, *args, **kwargs):
        if not self.unused_relations_unbuilt or self._translation_validation_enabled:
            return super().create_symbol(*args, **kwargs)
        with _symbol_relations_unevaluated():
            return super().create_symbol(*args, **kwargs)

    def simplify(self, expr, *args, **kwargs):  # (torch 2.14 adds keyword arguments)
        if (not self.unused_relations_unbuilt or self.divisible or not isinstance(expr, sympy.Basic)
                or not expr.has(FloorDiv) or expr.has(TruncToInt)):
            return super().simplify(expr, *args, **kwargs)
        with _remainders_unbuilt():
            return super().simplify(expr, *args, **kwargs)

    def _maybe_guard_rel(self, expr) -> None:
        if not _direct_guards_on:
            return super()._maybe_guard_rel(expr)
        specialized = _size_equal_to_constant(expr, self)
        if specialized is not None:
            symbol, value = specialized
            self._update_var_to_range(symbol, ValueRanges(value, value))
            self._set_replacement(symbol, value, "aotgraph: guarded equal to a constant")
            self._maybe_evaluate_static.cache_clear()
            return
        if _teaches_nothing(expr, self):
            return
        bounded = _pooled_size_bound(expr, self)
        if bounded is None:
            return super()._maybe_guard_rel(expr)
        symbol, bounds = bounded
        before = self.var_to_range[symbol]
        self._update_var_to_range(symbol, bounds)  # (intersects them with the range it has)
        if self.var_to_range[symbol] == before:
            return
        if self.var_to_range[symbol].is_singleton():
            self._set_replacement(symbol, self.var_to_range[symbol].lower, "aotgraph: range narrowed to one value")
        self._maybe_evaluate_static.cache_clear()


_patch_lock = threading.Lock()
_patching_thread: list = [None]  # the ident of the thread inside `_patched_for_this_thread`, else None


@contextlib.contextmanager
def _patched_for_this_thread(owner, name: str, replacement) -> Iterator[None]:
    """`owner.name` is `replacement` for the length of the block, unless a patch is in effect
    already (this thread's, or another's): then the block runs unpatched. `replacement` must
    behave as the original outside the patching thread (`_in_patching_thread`)."""
    if not _patch_lock.acquire(blocking=False):
        yield
        return
    had_own, original = name in vars(owner), vars(owner).get(name)
    _patching_thread[0] = threading.get_ident()
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        if had_own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)
        _patching_thread[0] = None
        _patch_lock.release()


def _in_patching_thread() -> bool:
    return _patching_thread[0] == threading.get_ident()  # (one read: another thread may end its patch meanwhile)


def _unevaluated_greater(self, other):
    """``self > other`` for a sympy Symbol: unevaluated against an integer in the patching thread."""
    if isinstance(other, (int, sympy.Integer)) and _in_patching_thread():
        return sympy.StrictGreaterThan(self, other, evaluate=False)
    return sympy.Expr.__gt__(self, other)


def _symbol_relations_unevaluated():
    return _patched_for_this_thread(sympy.Symbol, "__gt__", _unevaluated_greater)


class _RemainderUnbuilt(Mod):
    """torch's ``Mod`` as `simplify` sees it under `_remainders_unbuilt`: in the patching thread
    NaN (in no set of divisibility facts), elsewhere the remainder itself."""

    def __new__(cls, *args, **kwargs):
        return sympy.nan if _in_patching_thread() else Mod(*args, **kwargs)


def _remainders_unbuilt():
    return _patched_for_this_thread(symbolic_shapes, "Mod", _RemainderUnbuilt)


def _teaches_nothing(expr, shape_env) -> bool:
    """Whether torch's guard on `expr` learns nothing from it: an equation whose one free
    symbol (backed, not replaced) stands on both sides, with a floor division by a constant
    other than 1 and no remainder in it (``Eq(2*(s//2), s)``: a size that halving and doubling
    keeps, where a skip connection meets an upsampled one). Its range refinement cannot solve
    for a symbol on both sides, and its search for a replacement gives up at such a floor
    division."""
    if type(expr) is not sympy.Eq or expr.has(Mod):
        return False
    free = expr.free_symbols
    if len(free) != 1:
        return False
    (symbol,) = free
    if symbol not in _backed_values(shape_env) or symbol in shape_env.replacements:
        return False
    lhs, rhs = expr.args
    return lhs.has(symbol) and rhs.has(symbol) and any(div.args[1] != 1 for div in expr.atoms(FloorDiv))


_MIRRORED = {sympy.Ge: sympy.Le, sympy.Gt: sympy.Lt, sympy.Le: sympy.Ge, sympy.Lt: sympy.Gt, sympy.Eq: sympy.Eq}


def _pooled_size_bound(expr, shape_env) -> Optional[tuple]:
    """(symbol, ValueRanges) where `expr` relates ``s // c`` (a pooled or strided size; c a
    positive integer, 1 for ``s`` itself) to an integer k, for a backed integer symbol s of
    `shape_env` that it has not replaced: the values of s for which it holds (``s // c >= k``
    holds exactly for ``s >= c*k``; ``s // c < k`` for ``s <= c*k - 1``): what torch's guard
    on such a relation learns (its range refinement solves it for s), and no more: for
    ``s // c == k`` with c > 1, where torch's solver finds nothing and makes no replacement,
    s's range as it is. None for any other relation."""
    relation = type(expr)
    if relation not in _MIRRORED:
        return None
    size, k = expr.args
    if size.is_Integer:
        size, k, relation = k, size, _MIRRORED[relation]
    if not k.is_Integer:
        return None
    symbol, divisor = (size.args if isinstance(size, FloorDiv) else (size, sympy.Integer(1)))
    if not (symbol.is_Symbol and symbol.is_integer and divisor.is_Integer and divisor > 0):
        return None
    if symbol not in _backed_values(shape_env) or symbol in shape_env.replacements:
        return None
    if relation is sympy.Eq and divisor == 1:
        return None  # (`_size_equal_to_constant`'s, where its range holds k)
    if relation is sympy.Eq:
        return symbol, shape_env.var_to_range[symbol]
    c, k = int(divisor), int(k)
    lower, upper = {sympy.Ge: (c * k, int_oo), sympy.Gt: (c * (k + 1), int_oo), sympy.Le: (-int_oo, c * k + c - 1),
                    sympy.Lt: (-int_oo, c * k - 1)}[relation]
    return symbol, ValueRanges(lower, upper)


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
            built = _relation_node(relation, self, other) if relation is not None else \
                _floor_division_node(self, other) if name == "int_floordiv" else None
            result = memo[key] = built or original(self, other)
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


def _floor_division_node(self: SymNode, other: SymNode) -> Optional[SymNode]:
    """The node of ``self // c`` for a size symbol s (or ``s // b``) and an integer c >= 2:
    ``FloorDiv(s, c)`` (``FloorDiv(s, b*c)``) built without torch's evaluation of the floor
    division, which leaves it so (a symbol's quotient by c is not known to be an integer, and
    their greatest common divisor is 1) but asks sympy's assumptions system on the way, about
    a millisecond for each new pooled or strided size in a process. None for other nodes."""
    if self.pytype is not int or other.pytype is not int:
        return None
    base, divisor = node_expression(self), node_expression(other)
    if not (divisor.is_Integer and divisor >= 2):
        return None
    if isinstance(base, FloorDiv) and base.args[1].is_Integer and base.args[1] >= 2:
        base, divisor = base.args[0], base.args[1] * divisor
    if not (base.is_Symbol and base.is_integer and base.is_positive):
        return None
    hint = None if self.hint is None or other.hint is None else self.hint // other.hint
    return SymNode(FloorDiv(base, divisor, evaluate=False), self.shape_env, int, hint)


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
