"""Symbolic sizes: the shape environment, its sympy functions, and the checks torch runs on
symbols (backed by a hint or unbacked).

Checked on torch 2.13 (the test suite).
"""
from __future__ import annotations

from torch.fx.experimental.symbolic_shapes import (DimDynamic, ShapeEnv, StatelessSymbolicContext,
                                                   free_unbacked_symbols, is_concrete_int)
from torch.utils._sympy.functions import (CeilToInt, CleanDiv, FloatPow, FloatTrueDiv, FloorDiv, FloorToInt,
                                          Identity, IntTrueDiv, Max, Min, Mod, PowByNatural, PythonMod, ToFloat,
                                          TruncToFloat, TruncToInt)

__all__ = ["DimDynamic", "ShapeEnv", "StatelessSymbolicContext", "free_unbacked_symbols", "is_concrete_int",
           "CeilToInt", "CleanDiv", "FloatPow", "FloatTrueDiv", "FloorDiv", "FloorToInt", "Identity", "IntTrueDiv",
           "Max", "Min", "Mod", "PowByNatural", "PythonMod", "ToFloat", "TruncToFloat", "TruncToInt"]
