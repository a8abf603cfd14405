"""Symbolic sizes: the shape environment, its sympy functions, and the checks torch runs on
symbols (backed by a hint or unbacked).

Checked on torch 2.13 (the test suite).
"""
from __future__ import annotations

from torch.fx.experimental.symbolic_shapes import (DimDynamic, ShapeEnv, StatelessSymbolicContext,
                                                   compute_unbacked_bindings, free_unbacked_symbols, is_concrete_int)
from torch.utils._sympy.functions import (CeilToInt, CleanDiv, FloatPow, FloatTrueDiv, FloorDiv, FloorToInt,
                                          Identity, IntTrueDiv, Max, Min, Mod, PowByNatural, PythonMod, ToFloat,
                                          TruncToFloat, TruncToInt)

__all__ = ["new_symbolic_fake_mode", "symbolic_fake", "guards_expression", "guards_hold", "DimDynamic", "ShapeEnv", "compute_unbacked_bindings", "StatelessSymbolicContext", "free_unbacked_symbols", "is_concrete_int",
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
