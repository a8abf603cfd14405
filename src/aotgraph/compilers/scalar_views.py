"""Views of Python scalars, computed before Inductor sees them.

A backward can take a view of a number the program passed to an op where a tensor goes:
``z.mul_(1j)``'s gradient is the incoming one times ``other.conj()``, and ``other`` is a
wrapped number, so the graph holds ``aten._conj.default(1j)``. Inductor runs ``_conj`` as a
fallback kernel, and torch 2.11's fallback kernel stops on a view (an argument with alias
information) of anything but a graph buffer ("'complex' object has no attribute
'get_name'"; torch 2.13 skips scalars there). Such a node reads no other node and gives a
0-dim tensor: it is replaced by ``aten.full`` of its value, computed now, of its dtype and
device, which Inductor lowers as a constant.

Also the float fill value of a new integer or bool tensor (``fill_(ints, 0.5)``, ``full``,
``full_like``, ``new_full``): cast to the dtype as eager casts it (`fill_values_in_dtype`),
since Inductor kept the float and computed what reads the tensor in float.
"""
from __future__ import annotations

from numbers import Number

import torch
import torch.fx as fx
from torch.utils import _pytree as pytree

from ..torch_private.dispatch import disable_current_modes

__all__ = ["scalar_views_as_constants", "fill_values_in_dtype"]

aten = torch.ops.aten
# Ops that fill a new tensor with a Python number: the position of that number among their arguments.
_FILL_VALUE_POSITION = {aten.full.default: 1, aten.full_like.default: 1, aten.fill.Scalar: 1, aten.new_full.default: 2}


def fill_values_in_dtype(graph_module: fx.GraphModule) -> bool:
    """Replace, in place, the float fill value of each ``full``/``full_like``/``fill``/``new_full``
    node of an integer or bool dtype by that value in the dtype (``0.5`` -> ``0``, as eager
    casts it): Inductor kept the float in its code, and an op reading the tensor (``cumsum``)
    computed in float (``fill_(ints, 0.5)``: 0.5, 1.0, ... of dtype float32 where eager gives
    int64 zeros; torch.compile's the same). Whether any was."""
    replaced = False
    for node in graph_module.graph.nodes:
        position = _FILL_VALUE_POSITION.get(node.target) if node.op == "call_function" else None
        value = node.meta.get("val") if position is not None and len(node.args) > position else None
        fill = node.args[position] if value is not None else None
        if type(fill) is not float or value.dtype.is_floating_point or value.dtype.is_complex \
                or fill != fill or fill in (float("inf"), float("-inf")):
            continue
        with disable_current_modes():
            cast = torch.tensor(fill, dtype=torch.float64).to(value.dtype).item()
        node.args = (*node.args[:position], cast, *node.args[position + 1:])
        replaced = True
    if replaced:
        graph_module.recompile()
    return replaced


def _tensor_slot(argument) -> bool:
    return isinstance(argument.type, torch.TensorType) or (
        isinstance(argument.type, torch.OptionalType) and isinstance(argument.type.getElementType(), torch.TensorType))


def _views_a_scalar(node: fx.Node) -> bool:
    """Whether `node` is an op whose view (aliasing) tensor argument is a Python number, reading
    no node, with a 0-dim result."""
    if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
        return False
    value = node.meta.get("val")
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        return False
    if any(isinstance(leaf, fx.Node) for leaf in pytree.tree_leaves((node.args, node.kwargs))):
        return False
    return any(argument.alias_info is not None and _tensor_slot(argument) and isinstance(arg, Number)
               for argument, arg in _bound(node))


def _bound(node: fx.Node) -> list:
    arguments = node.target._schema.arguments
    return [*zip(arguments, node.args),
            *((argument, node.kwargs[argument.name]) for argument in arguments if argument.name in node.kwargs)]


def _as_tensors(node: fx.Node, dtype: torch.dtype) -> tuple[list, dict]:
    """`node`'s arguments with each number in a tensor slot as a CPU tensor of `dtype`."""
    def real(argument, arg):
        return torch.scalar_tensor(arg, dtype=dtype) if _tensor_slot(argument) and isinstance(arg, Number) else arg

    bound = _bound(node)
    args = [real(argument, arg) for argument, arg in bound[:len(node.args)]]
    kwargs = {argument.name: real(argument, arg) for argument, arg in bound[len(node.args):]}
    return args, kwargs


def scalar_views_as_constants(graph_module: fx.GraphModule) -> bool:
    """Replace, in place, each node of `graph_module` that views a Python scalar (and reads no
    node) by ``aten.full`` of its value; whether any was."""
    graph = graph_module.graph
    replaced = False
    for node in [n for n in graph.nodes if _views_a_scalar(n)]:
        value = node.meta["val"]
        with disable_current_modes():
            args, kwargs = _as_tensors(node, value.dtype)
            try:
                scalar = node.target(*args, **kwargs).item()
            except Exception:  # (an op that wants other arguments: Inductor meets it as it is)
                continue
        with graph.inserting_before(node):
            full = graph.call_function(torch.ops.aten.full.default, ([], scalar), {
                "dtype": value.dtype, "layout": torch.strided, "device": value.device, "pin_memory": False})
        full.meta.update(node.meta)
        fake_mode = getattr(value, "fake_mode", None)
        if fake_mode is not None:
            with fake_mode:
                full.meta["val"] = torch.full([], scalar, dtype=value.dtype, device=value.device)
        node.replace_all_uses_with(full)
        graph.erase_node(node)
        replaced = True
    if replaced:
        graph_module.recompile()
    return replaced
