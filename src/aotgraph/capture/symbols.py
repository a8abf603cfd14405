"""Symbolic sizes in the joint graph: each SymInt, SymFloat or SymBool an op reads becomes a node.

A size the program hands to an op (``x.view(s0 * 4, -1)``) is a SymInt whose expression
(sympy, over the shape environment's symbols) says how it follows from the inputs. `SymbolNodes`
turns it into graph nodes: each free symbol reads a size, stride or storage offset of an input
(``aten.sym_size.int(primals_3, 0)``, made on first use) or is the result of the op that
produced it (an unbacked symbol: ``.item()``, the length of ``nonzero``'s result); arithmetic
on them is recorded as the ``operator`` / ``math`` / ``torch.sym_*`` calls make_fx records.
Equal expressions share one node. Every node's ``meta["val"]`` is the symbolic value.
"""
from __future__ import annotations

import dataclasses
import math
import operator
from typing import Any, Callable, Optional

import sympy
import torch
import torch.fx as fx

from ..errors import UnsupportedOp
from ..graph.sizes import SYMBOLIC_TYPES, is_symbolic
from ..torch_private.symbolic import (CeilToInt, compute_unbacked_bindings, CleanDiv, FloatPow, FloatTrueDiv, FloorDiv, FloorToInt, Identity,
                                      IntTrueDiv, Max, Min, Mod, PowByNatural, PythonMod, ToFloat, TruncToFloat,
                                      TruncToInt)

__all__ = ["SymbolNodes", "refuse_symbolic_replays", "input_views_laid_out_by_graph"]

aten = torch.ops.aten

# sympy function -> the Python call that computes it on ints and floats (and on SymInts).
_CALLS: dict[Any, Callable] = {
    FloorDiv: operator.floordiv, CleanDiv: operator.floordiv, Mod: operator.mod, PythonMod: operator.mod,
    PowByNatural: operator.pow, FloatPow: operator.pow, IntTrueDiv: operator.truediv,
    FloatTrueDiv: operator.truediv, FloorToInt: math.floor, CeilToInt: math.ceil, TruncToInt: math.trunc,
    TruncToFloat: math.trunc, ToFloat: torch.sym_float,
    sympy.Eq: operator.eq, sympy.Ne: operator.ne, sympy.Lt: operator.lt, sympy.Le: operator.le,
    sympy.Gt: operator.gt, sympy.Ge: operator.ge, sympy.Not: torch.sym_not,
}
# n-ary sympy functions (``Min(s0, s1, 4)``), computed pairwise.
_FOLDED = {sympy.Add: operator.add, sympy.Mul: operator.mul, Max: torch.sym_max, Min: torch.sym_min,
           sympy.And: operator.and_, sympy.Or: operator.or_}


class SymbolNodes:
    """Per capture: the node of each symbolic value the graph reads (see the module docstring).

    `add_input` makes the symbols of an input's layout readable; `bind_results` says which node
    an unbacked symbol comes from; `node_for` returns the node computing a symbolic value
    (a constant comes back as a plain Python number)."""

    def __init__(self, graph: fx.Graph, shape_env=None):
        self.graph = graph
        self.shape_env = shape_env
        self._source_of: dict[sympy.Symbol, tuple] = {}  # symbol -> (tensor node, sym op, dim, value)
        self._node_of: dict[sympy.Basic, fx.Node] = {}

    def add_input(self, node: fx.Node, fake: torch.Tensor) -> None:
        for dim, size in enumerate(fake.shape):
            self._note(size, (node, aten.sym_size.int, dim))
        for dim, stride in enumerate(fake.stride()):
            self._note(stride, (node, aten.sym_stride.int, dim))
        self._note(fake.storage_offset(), (node, aten.sym_storage_offset.default, None))

    def _note(self, value, source: tuple) -> None:
        if isinstance(value, torch.SymInt):
            expr = value.node.expr
            if isinstance(expr, sympy.Symbol) and expr not in self._source_of:
                self._source_of[expr] = (*source, value)

    def has_fresh_unbacked(self) -> bool:
        """Whether the op just run made unbacked symbols (``.item()``, ``nonzero``) not yet bound."""
        return self.shape_env is not None and bool(self.shape_env.pending_fresh_unbacked_symbols)

    def bind_results(self, node: fx.Node, out: Any, out_nodes: list) -> None:
        """`node` (its tensor results at `out_nodes`) made fresh unbacked symbols: each is read
        from the node itself (a scalar) or from a size of a result, and ``meta["unbacked_bindings"]``
        says where, as in torch's graphs (compilers read it to learn where a symbol is defined)."""
        bindings = compute_unbacked_bindings(self.shape_env, out)
        if bindings:
            node.meta["unbacked_bindings"] = bindings
        if isinstance(out, SYMBOLIC_TYPES):
            if isinstance(out.node.expr, sympy.Symbol):
                self.bind(out.node.expr, node)
            return
        results = [out] if isinstance(out, torch.Tensor) else list(out)
        for value, value_node in zip(results, out_nodes):
            if isinstance(value, torch.Tensor) and value_node is not None:
                self.add_input(value_node, value)

    def is_unbound_symbol(self, value: Any) -> bool:
        """Whether `value` is a SymInt/SymFloat/SymBool whose expression is a symbol that no input
        size and no node gives yet (``.item()`` of a fake that remembers its value as a symbol:
        Dynamo's unspecialized float, passed as a 0-d tensor)."""
        return (isinstance(value, SYMBOLIC_TYPES) and isinstance(value.node.expr, sympy.Symbol)
                and not self.can_compute(value.node.expr))

    def bind(self, symbol: sympy.Symbol, node: fx.Node) -> None:
        """`node`'s value is `symbol` (a scalar an op returned)."""
        self._node_of.setdefault(symbol, node)

    def note_node(self, node: fx.Node) -> None:
        """`node` computes a value: if it is symbolic, later reads of its expression use it."""
        value = node.meta.get("val")
        if isinstance(value, SYMBOLIC_TYPES) and not value.node.expr.is_number:
            self._node_of.setdefault(value.node.expr, node)

    def can_compute(self, expr: sympy.Basic) -> bool:
        """Whether every symbol of `expr` is read from an input or bound to a node."""
        return all(s in self._node_of or s in self._source_of for s in expr.free_symbols)

    def node_for(self, value: Any) -> Any:
        """The node computing symbolic `value`, or its Python number if it is a constant."""
        expr = value.node.expr
        if expr.is_number:
            return _number(expr, value)
        return self.node_for_expr(expr)

    def node_for_expr(self, expr: sympy.Basic) -> Any:
        """The node computing sympy `expr` over the graph's symbols (`can_compute`), made at the
        graph's insertion point where no node computes it yet; a constant as a Python number."""
        node = self._node_of.get(expr)
        return node if node is not None else self._build(expr)

    def _build(self, expr: sympy.Basic) -> Any:
        node = self._node_of.get(expr)
        if node is not None:
            return node
        if expr.is_number:
            return _number(expr, None)
        if isinstance(expr, sympy.Symbol):
            node = self._read_input_size(expr)
        elif type(expr) in _FOLDED:
            call = _FOLDED[type(expr)]
            terms = [self._build(a) for a in _ordered_args(expr)]
            node = terms[0]
            for term in terms[1:]:
                node = self._call(call, (node, term))
        elif isinstance(expr, sympy.Pow) and expr.exp.is_Integer and expr.exp >= 0:
            node = self._call(operator.pow, (self._build(expr.base), int(expr.exp)))
        elif isinstance(expr, Identity):
            return self._build(expr.args[0])
        elif type(expr) in _CALLS:
            node = self._call(_CALLS[type(expr)], tuple(self._build(a) for a in expr.args))
        else:
            raise UnsupportedOp(f"the symbolic size {expr} ({type(expr).__name__}) cannot be recorded as a graph "
                                "node", "capture", "compile with static shapes (dynamic=False)")
        self._node_of[expr] = node
        return node

    def _read_input_size(self, symbol: sympy.Symbol) -> fx.Node:
        source = self._source_of.get(symbol)
        if source is None:
            raise UnsupportedOp(
                f"the symbolic size {symbol} is neither a size of an input tensor nor the result of a recorded op "
                "(a dynamic int argument?)", "capture",
                "pass that value as a tensor size or as a static int (torch.compile(dynamic=False) or mark it static)")
        tensor_node, op, dim, value = source
        args = (tensor_node,) if dim is None else (tensor_node, dim)
        node = self.graph.call_function(op, args)
        node.meta["val"] = value
        return node

    def _call(self, fn: Callable, args: tuple) -> fx.Node:
        values = [a.meta["val"] if isinstance(a, fx.Node) else a for a in args]
        node = self.graph.call_function(fn, args)
        node.meta["val"] = fn(*values)
        return node


def _ordered_args(expr: sympy.Basic) -> list:
    """Arguments with the constant last (``s0 * 4``, ``s0 + -1``): the first term is a node."""
    args = list(expr.args)
    return [a for a in args if not a.is_number] + [a for a in args if a.is_number]


def _number(expr: sympy.Basic, value: Optional[Any]) -> Any:
    if isinstance(value, torch.SymBool) or expr in (sympy.true, sympy.false):
        return bool(expr)
    if isinstance(value, torch.SymFloat) or not expr.is_Integer:
        return float(expr)
    return int(expr)


def input_views_laid_out_by_graph(signature):
    """`signature` with each output that is a view of an input, whose view ops (or layout)
    hold symbolic sizes, rebuilt from the layout of the graph's own output at each call
    (`OutputInfo.layout_from_graph`) rather than by replaying them: a graph ending in
    ``x.reshape(batch, seq, hidden)`` serves every size (it compiled per size before).
    UnsupportedOp (the caller compiles per concrete size) where that input is relaid in place.
    So is an alias of another output at a layout of symbolic sizes (``v.detach()`` beside ``v``)."""
    outputs = list(signature.outputs)
    for position, info in enumerate(outputs):
        if info.is_tensor and info.base_output is not None and not info.is_output and not info.view_chain \
                and not info.layout_from_graph \
                and _holds_symbol((info.meta.shape, info.meta.stride, info.meta.storage_offset)):
            outputs[position] = dataclasses.replace(info, layout_from_graph=True)
            continue
        if not info.is_tensor or info.base_input is None or info.is_input or info.base_output is not None \
                or info.base_of_outputs is not None:
            continue
        replayed = _replayed(info.view_chain) if info.view_chain else (info.meta.shape, info.meta.stride,
                                                                       info.meta.storage_offset)
        if _holds_symbol(replayed):
            if signature.inputs[info.base_input].mutates_metadata:
                # The runtime relays that input before it makes the outputs, and finds this one by
                # its place in the input's memory on entry, which a symbolic layout does not tell.
                raise UnsupportedOp(f"output {position} views input {info.base_input}, which the program relays "
                                    "in place, with symbolic sizes", "capture",
                                    "compile with static shapes, or return a copy (.clone())")
            outputs[position] = dataclasses.replace(info, view_chain=(), layout_from_graph=True)
    return dataclasses.replace(signature, outputs=tuple(outputs)) if outputs != list(signature.outputs) else signature


def refuse_symbolic_replays(signature) -> None:
    """What the runtime rebuilds outside the graphs from the signature alone (views of inputs
    and outputs replayed from their view ops or layouts, in-place layout changes) must be
    concrete: with symbolic sizes there, raise UnsupportedOp (the caller then compiles per
    concrete signature). Symbolic Python numbers among the outputs are graph outputs (capture
    records them as 0-d tensors); a torch.Size of symbolic sizes is not."""
    for position, info in enumerate(signature.outputs):
        if not info.is_tensor:
            if _holds_symbol(info.constant):
                raise UnsupportedOp(f"output {position} holds symbolic sizes ({info.constant})", "capture",
                                    "return the sizes as separate ints, or compile with static shapes")
            continue
        rebuilt = ((info.base_input is not None and not info.is_input) or info.base_of_outputs is not None
                   or (info.base_output is not None and not info.is_output)) and not info.layout_from_graph
        if rebuilt and (_holds_symbol(_replayed(info.view_chain)) if info.view_chain
                        else _holds_symbol((info.meta.shape, info.meta.stride, info.meta.storage_offset))):
            raise UnsupportedOp(f"output {position} is a view the runtime rebuilds with symbolic sizes", "capture",
                                "return a copy (.clone()), or compile with static shapes")
    for position, info in enumerate(signature.inputs):
        if info.is_tensor and _holds_symbol(_replayed(info.relayout)):
            raise UnsupportedOp(f"input {position} changes layout in place with symbolic sizes", "capture",
                                "use an out-of-place view, or compile with static shapes")
        layout = info.storage_layout if info.is_tensor else None
        if layout is not None and _holds_symbol((layout.shape, layout.stride, layout.storage_offset)):
            raise UnsupportedOp(f"input {position} is set_ to another input's memory with symbolic sizes", "capture",
                                "compile with static shapes")


def _replayed(steps) -> list:
    return [(step.args, step.kwargs) for step in steps]


def _holds_symbol(value: Any) -> bool:
    if isinstance(value, (list, tuple, torch.Size)):
        return any(_holds_symbol(v) for v in value)
    return is_symbolic(value)
