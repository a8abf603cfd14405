"""Symbolic sizes the backward reads but cannot see: save them.

A compiler binds each symbol of a graph from its inputs: a SymInt input that is the symbol, or
a size, stride or storage offset of a tensor input that is exactly the symbol (Inductor asserts
this when it writes the graph's code). A backward can hold a value whose layout uses a symbol
that none of its inputs carries alone: a saved ``view(targets, [-1])`` of size ``s0*s1``, where
``s0`` and ``s1`` are the sizes of an input the backward does not read. `save_unbound_symbols`
makes the forward return each such symbol, read from the forward's inputs
(``aten.sym_size.int`` and friends), as a saved value, and the backward take it before its
tangents, as torch's partitioner does. Unbacked symbols are left alone: the node that makes
one binds it in whichever graph holds that node.
"""
from __future__ import annotations

from typing import Iterator

import sympy
import torch
import torch.fx as fx

from ..graph.naming import is_tangent
from ..torch_private.symbolic import free_unbacked_symbols, node_expression

__all__ = ["save_unbound_symbols", "save_sizes_not_tensors"]

aten = torch.ops.aten
# Ops reading a tensor's layout only, never its values.
_LAYOUT_READS = frozenset((aten.sym_size.int, aten.sym_stride.int, aten.sym_storage_offset.default,
                           aten.sym_numel.default))


def save_sizes_not_tensors(forward: fx.GraphModule, backward: fx.GraphModule, num_fwd_outputs: int) -> None:
    """A saved tensor that the backward reads only for its sizes (``sym_size(x, 1)`` to expand a
    gradient, with symbolic sizes) is saved as those sizes instead, as eager's autograd saves
    them: the tensor's memory is not held, and a caller's in-place write into that tensor after
    the forward (an input, or a view the caller was given) does not fail the backward's
    version check, where eager's backward runs. In place; the forward's saved outputs and the
    backward's placeholders change together."""
    output = forward.graph.find_nodes(op="output")[0]
    outputs = list(output.args[0])
    placeholders = [p for p in backward.graph.find_nodes(op="placeholder") if not is_tangent(p)]
    saved = outputs[num_fwd_outputs:]
    if len(saved) != len(placeholders):
        return  # (a partition function of another convention: left as it is)
    replaced = [k for k, p in enumerate(placeholders) if isinstance(p.meta.get("val"), torch.Tensor) and p.users
                and all(u.op == "call_function" and u.target in _LAYOUT_READS for u in p.users)]
    if not replaced:
        return
    taken = {n.name for n in forward.graph.nodes} | {n.name for n in backward.graph.nodes}
    first_tangent = next((p for p in backward.graph.find_nodes(op="placeholder") if is_tangent(p)), None)
    new_outputs = []
    for k in replaced:
        source, placeholder = saved[k], placeholders[k]
        for read in list(placeholder.users):
            with forward.graph.inserting_before(output):
                size = forward.graph.call_function(read.target, (source, *read.args[1:]), dict(read.kwargs))
            size.name, size.meta["val"] = _fresh(read.name, taken), read.meta.get("val")
            new_outputs.append(size)
            with backward.graph.inserting_before(first_tangent) if first_tangent is not None \
                    else backward.graph.inserting_after(placeholders[-1]):
                size_input = backward.graph.placeholder(size.name)
            size_input.meta["val"] = read.meta.get("val")
            read.replace_all_uses_with(size_input)
            backward.graph.erase_node(read)
        backward.graph.erase_node(placeholder)
    dropped = {num_fwd_outputs + k for k in replaced}
    output.args = ((*(o for i, o in enumerate(outputs) if i not in dropped), *new_outputs),)
    forward.recompile()
    backward.recompile()


def save_unbound_symbols(forward: fx.GraphModule, backward: fx.GraphModule) -> None:
    """Add to `forward`'s outputs (after the saved values) and to `backward`'s placeholders
    (before the tangents) every backed symbol the backward's values use but its inputs do not
    bind, where a forward input carries it. In place; nothing changes when all are bound."""
    readers = _readers_in(forward)
    if not readers:  # static sizes (or unbacked ones only): nothing to bind
        return
    placeholders = list(backward.graph.find_nodes(op="placeholder"))
    bound = {s for p in placeholders for s in _bindable(p.meta.get("val"))}
    expressions = {expr for n in backward.graph.nodes for expr in _expressions_in(n.meta.get("val"))}
    used = set().union(*(expr.free_symbols for expr in expressions))
    missing = sorted((s for s in used - bound if not free_unbacked_symbols(s)), key=str)
    if not missing:
        return
    output = forward.graph.find_nodes(op="output")[0]
    first_tangent = next((p for p in placeholders if is_tangent(p)), None)
    taken = {n.name for n in forward.graph.nodes} | {n.name for n in backward.graph.nodes}
    new_outputs = []
    for symbol in missing:
        if symbol not in readers:
            continue  # no forward input carries it: the compiler says so, as it would have
        source, op, dim, value = readers[symbol]
        name = _fresh(f"sym_{symbol}", taken)
        with forward.graph.inserting_before(output):
            node = forward.graph.call_function(op, (source,) if dim is None else (source, dim))
        node.name, node.meta["val"] = name, value
        new_outputs.append(node)
        if first_tangent is not None:
            with backward.graph.inserting_before(first_tangent):
                placeholder = backward.graph.placeholder(name)
        else:
            with backward.graph.inserting_after(placeholders[-1] if placeholders else None):
                placeholder = backward.graph.placeholder(name)
        placeholder.meta["val"] = value
    output.args = ((*output.args[0], *new_outputs),)
    forward.recompile()
    backward.recompile()


def _readers_in(forward: fx.GraphModule) -> dict:
    """symbol -> (input node, op reading it, dim or None, its SymInt) over the forward's inputs."""
    readers: dict = {}
    for node in forward.graph.find_nodes(op="placeholder"):
        value = node.meta.get("val")
        if not isinstance(value, torch.Tensor):
            continue
        candidates = [(size, aten.sym_size.int, dim) for dim, size in enumerate(value.shape)]
        candidates += [(stride, aten.sym_stride.int, dim) for dim, stride in enumerate(value.stride())]
        candidates.append((value.storage_offset(), aten.sym_storage_offset.default, None))
        for size, op, dim in candidates:
            if isinstance(size, torch.SymInt) and isinstance(size.node.expr, sympy.Symbol):
                readers.setdefault(size.node.expr, (node, op, dim, size))
    return readers


def _layout(value) -> Iterator:
    if isinstance(value, torch.Tensor):
        yield from value.shape
        yield from value.stride()
        yield value.storage_offset()
    elif isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        yield value


def _bindable(value) -> Iterator[sympy.Symbol]:
    for size in _layout(value):
        if isinstance(size, (torch.SymInt, torch.SymFloat, torch.SymBool)):
            expr = node_expression(size.node)
            if isinstance(expr, sympy.Symbol):
                yield expr


def _expressions_in(value) -> Iterator[sympy.Basic]:
    """The expressions of `value`'s symbolic sizes (many nodes share each: their symbols are
    then read once per expression)."""
    for size in _layout(value):
        if isinstance(size, (torch.SymInt, torch.SymFloat, torch.SymBool)):
            yield node_expression(size.node)


def _fresh(name: str, taken: set) -> str:
    candidate, number = name, 0
    while candidate in taken:
        number += 1
        candidate = f"{name}_{number}"
    taken.add(candidate)
    return candidate
