"""The symbols of a graph's input sizes, made SymInt inputs of their own for the compiler.

Inductor's FX graph cache keys a compiled graph by its code and its inputs' symbolic shapes,
and guards an entry with the guards Inductor added while compiling it, written over the
graph's SymInt inputs only (torch's graphs take every symbol of their tensors' sizes as one).
Ours need not: a backward gets saved tensors of size ``s0 + 1`` or a saved size ``2*s0``
without ``s0``. A guard on such a symbol (a grouped convolution's backward specializes
``s0 == 47``) is then dropped from the entry, or written with a Dynamo source that a lookup
cannot read: a later compile of the same graph at another size got the first size's code
(a size assertion at run time), or failed with ``KeyError``.

So before a compiler other than the embedded two compiles a graph (`compile_graph`; such a
compiler expects torch's convention), each backed symbol that no SymInt input binds gets a
placeholder of its own (and so does a data-dependent one that an input gives linearly: a
backward's saved ``u0 + 1``, whose kernels Inductor writes with ``u0``), appended after the
others, and the compiled graph's caller passes its value, read from the inputs at each call
(`SymbolReading`: a size, a stride or an int input, linear in the symbol). A symbol no input
gives that way (only inside a floor division, say) leaves ``readings`` None: Inductor then
compiles the graph without its FX graph cache.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import sympy
import torch
import torch.fx as fx

from ..torch_private.fx import LazyGraphModule
from ..torch_private.symbolic import free_unbacked_symbols

__all__ = ["SymbolReading", "unbound_symbol_readings", "with_symbol_inputs", "passing_symbols"]


class SymbolReading(NamedTuple):
    """Where a symbol's value is read at each call: ``(value - offset) // scale``, value being
    input `index`'s size or stride at `dim` (`what` ``"size"``/``"stride"``) or the int input
    itself (``"int"``)."""
    symbol: str
    index: int
    what: str
    dim: int
    scale: int
    offset: int

    def value(self, args: Sequence) -> int:
        arg = args[self.index]
        read = arg if self.what == "int" else (arg.size(self.dim) if self.what == "size" else arg.stride(self.dim))
        return (int(read) - self.offset) // self.scale


def unbound_symbol_readings(example_inputs: Sequence) -> Optional[tuple[SymbolReading, ...]]:
    """How to read, from a call's inputs, each backed symbol of `example_inputs`' sizes, strides
    and SymInts that no SymInt input is: () where every one is bound, None where one cannot be
    read (see the module's docstring)."""
    bound, needed, unbacked = set(), set(), set()
    for value in example_inputs:
        for expression in _expressions(value):
            if isinstance(value, torch.SymInt) and isinstance(expression, sympy.Symbol):
                bound.add(expression)
            data_dependent = free_unbacked_symbols(expression)
            needed |= expression.free_symbols - data_dependent
            unbacked |= data_dependent
    readings = []
    for symbol in sorted(needed - bound, key=str):
        reading = _reading_of(symbol, example_inputs)
        if reading is None:
            return None
        readings.append(reading)
    # A data-dependent symbol the graph gets only inside an expression (a backward's saved ``u0 + 1``):
    # Inductor's kernels may read it alone, so it is passed too where an input gives it.
    for symbol in sorted(unbacked - bound, key=str):
        reading = _reading_of(symbol, example_inputs, hinted=False)
        if reading is not None:
            readings.append(reading)
    return tuple(readings)


def with_symbol_inputs(graph_module: fx.GraphModule, example_inputs: Sequence,
                       readings: tuple[SymbolReading, ...]) -> tuple[fx.GraphModule, list]:
    """(a copy of `graph_module` with a SymInt placeholder appended for each of `readings`'
    symbols, `example_inputs` with their values appended); `graph_module` stays as it was."""
    graph = fx.Graph()
    graph.output(graph.graph_copy(graph_module.graph, {}))
    last = list(graph.find_nodes(op="placeholder"))[-1]
    values = [_symbolic_value(reading, example_inputs) for reading in readings]
    for reading, value in zip(readings, values):
        with graph.inserting_after(last):
            last = graph.placeholder(f"aotgraph_symbol_{reading.symbol}")
        last.meta["val"] = value
    return LazyGraphModule(graph_module, graph), [*example_inputs, *values]


def passing_symbols(compiled: Callable, readings: tuple[SymbolReading, ...]) -> Callable:
    """`compiled` (boxed), called with the values of `readings`' symbols appended to its inputs."""
    return _PassingSymbols(compiled, readings) if readings else compiled


class _PassingSymbols:
    """A boxed callable that appends its symbols' values to the inputs of `compiled`; other
    attributes are `compiled`'s (the disk cache and the report read them)."""

    _boxed_call = True

    def __init__(self, compiled: Callable, readings: tuple[SymbolReading, ...]):
        self.aotgraph_symbols_passed_to = compiled
        self.aotgraph_symbol_readings = readings

    def __call__(self, args: list):
        values = [reading.value(args) for reading in self.aotgraph_symbol_readings]
        args.extend(values)
        return self.aotgraph_symbols_passed_to(args)

    def __getattr__(self, name: str):
        if name.startswith("aotgraph_symbol"):  # not set yet (unpickling, copying)
            raise AttributeError(name)
        return getattr(self.aotgraph_symbols_passed_to, name)


def _expressions(value) -> list:
    if isinstance(value, torch.SymInt):
        return [value.node.expr]
    if isinstance(value, torch.Tensor):
        return [d.node.expr for d in (*value.shape, *value.stride()) if isinstance(d, torch.SymInt)]
    return []


def _reading_of(symbol: sympy.Symbol, example_inputs: Sequence, hinted: bool = True) -> Optional[SymbolReading]:
    """The simplest reading of `symbol`: an exact size first, then any linear size, stride or int."""
    candidates = []
    for index, value in enumerate(example_inputs):
        if isinstance(value, torch.Tensor):
            candidates += [(index, "size", dim, d) for dim, d in enumerate(value.shape)]
            candidates += [(index, "stride", dim, d) for dim, d in enumerate(value.stride())]
        elif isinstance(value, torch.SymInt):
            candidates.append((index, "int", 0, value))
    readings = []
    for index, what, dim, d in candidates:
        if not isinstance(d, torch.SymInt) or d.node.expr.free_symbols != {symbol} \
                or (hinted and not d.node.has_hint()):
            continue
        linear = _linear(d.node.expr, symbol)
        if linear is not None:
            readings.append(SymbolReading(str(symbol), index, what, dim, *linear))
    return min(readings, key=lambda r: (r.scale != 1 or r.offset != 0, r.what != "size"), default=None)


def _linear(expression, symbol) -> Optional[tuple[int, int]]:
    """(scale, offset) where `expression` is ``scale * symbol + offset`` with integers, scale > 0."""
    try:
        offset = expression.xreplace({symbol: sympy.Integer(0)})
        scale = expression.xreplace({symbol: sympy.Integer(1)}) - offset
        if not (offset.is_Integer and scale.is_Integer and scale > 0):
            return None
        if sympy.expand(expression - (scale * symbol + offset)) != 0:
            return None
    except (TypeError, ValueError, AttributeError):
        return None
    return int(scale), int(offset)


def _symbolic_value(reading: SymbolReading, example_inputs: Sequence) -> torch.SymInt:
    """The SymInt of `reading`'s symbol: the size that is exactly it, else a new node of it."""
    value = example_inputs[reading.index]
    read = value if reading.what == "int" else (value.size(reading.dim) if reading.what == "size"
                                                 else value.stride(reading.dim))
    if reading.scale == 1 and reading.offset == 0:
        return read
    node = read.node
    hint = None if node.hint is None else (int(node.hint) - reading.offset) // reading.scale
    symbol = next(iter(node.expr.free_symbols))
    return node.shape_env.create_symintnode(symbol, hint=hint)
