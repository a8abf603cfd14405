"""Symbolic sizes: the shape environment, its sympy functions, and the checks torch runs on
symbols (backed by a hint or unbacked).

Checked on torch 2.13 (the test suite).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from torch.fx.experimental.proxy_tensor import get_proxy_mode
from torch.fx.experimental.sym_node import SymNode
from torch.fx.experimental.symbolic_shapes import (DimDynamic, ShapeEnv, StatelessSymbolicContext,
                                                   compute_unbacked_bindings, free_unbacked_symbols, is_concrete_int)
from torch.utils._sympy.functions import (CeilToInt, CleanDiv, FloatPow, FloatTrueDiv, FloorDiv, FloorToInt,
                                          Identity, IntTrueDiv, Max, Min, Mod, PowByNatural, PythonMod, ToFloat,
                                          TruncToFloat, TruncToInt)

__all__ = ["new_symbolic_fake_mode", "memoized_size_arithmetic", "symbolic_fake", "guards_expression", "guards_hold", "DimDynamic", "ShapeEnv", "compute_unbacked_bindings", "StatelessSymbolicContext", "free_unbacked_symbols", "is_concrete_int",
           "CeilToInt", "CleanDiv", "FloatPow", "FloatTrueDiv", "FloorDiv", "FloorToInt", "Identity", "IntTrueDiv",
           "Max", "Min", "Mod", "PowByNatural", "PythonMod", "ToFloat", "TruncToFloat", "TruncToInt"]


def new_symbolic_fake_mode():
    """A fake mode with a shape environment of its own; sizes of different inputs that happen
    to be equal get different symbols (no duck sizing): equalities are assumed only where the
    program needs them, and then guarded."""
    from ..torch_private.fake import FakeTensorMode

    return FakeTensorMode(shape_env=ShapeEnv(duck_shape=False))


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
_active_memo: list = []  # the memo of the outermost `memoized_size_arithmetic` in effect, if any


@contextlib.contextmanager
def memoized_size_arithmetic() -> Iterator[None]:
    """While in effect, a binary operation on two SymNodes whose expressions (raw, before the
    shape environment's replacements), Python types and summation flags were seen before returns
    the SymNode it returned then instead of building the sympy expression again. Every tensor
    made with symbolic sizes pays a dozen such operations in C++ (storage size, numel,
    contiguity); a capture repeats the same ones for every layer. The result is a pure function
    of those inputs (its expression and hint), so it is shared; guards are not affected (they
    are taken when a SymBool is evaluated, which still happens each time). Bypassed under a
    proxy mode (make_fx records the operations) and with translation validation (nodes carry
    their FX node). Also memoized: ``wrap_int`` (the constant node of an int), ``maybe_as_int``
    (keyed on the expression and the version of the shape environment's replacements) and ``expect_true``
    once it held (the guard or runtime assert it added holds for every later ask). Reentrant:
    an inner use shares the outer memo."""
    if _active_memo:
        yield
        return
    memo: dict = {}
    originals = {name: SymNode.__dict__[name]
                 for name in (*_MEMOIZED_OPERATIONS, "wrap_int", "maybe_as_int", "expect_true")}
    _active_memo.append(memo)
    for name in _MEMOIZED_OPERATIONS:
        setattr(SymNode, name, _memoized(name, originals[name], memo))
    SymNode.wrap_int = _memoized_constant(originals["wrap_int"], memo)
    SymNode.maybe_as_int = _memoized_as_int(originals["maybe_as_int"], memo)
    SymNode.expect_true = _memoized_expect_true(originals["expect_true"], memo)
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(SymNode, name, original)
        _active_memo.clear()


def _memoized(name: str, original, memo: dict):
    def operation(self, other):
        shape_env = self.shape_env
        if shape_env is None or shape_env._translation_validation_enabled or get_proxy_mode() is not None:
            return original(self, other)
        key = (name, self._expr, self.pytype, self._optimized_summation, other._expr, other.pytype,
               other._optimized_summation, id(shape_env))
        result = memo.get(key)
        if result is None:
            result = memo[key] = original(self, other)
        return result

    operation.__name__ = name
    return operation


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


def _memoized_as_int(original, memo: dict):
    def maybe_as_int(self):
        shape_env = self.shape_env
        if shape_env is None:
            return original(self)
        # The raw expression and the version of the replacements: what SymNode.expr reads.
        key = ("maybe_as_int", self._expr, id(shape_env), shape_env._replacements_version_counter)
        result = memo.get(key, memo)
        if result is memo:
            result = memo[key] = original(self)
        return result

    return maybe_as_int


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
