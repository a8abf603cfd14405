"""Graph code in the boxed calling convention, for early frees.

``fn(args_list)`` unpacks its inputs and clears the list, so the generated code's
``x = None`` after each last use really releases the tensor: nothing else holds it (a plain
``f(*args)`` call keeps every argument alive in the caller's argument tuple until it returns).
"""
from __future__ import annotations

import functools
import re
from typing import Callable

import torch
import torch.fx as fx

from ..torch_private.dispatch import OpOverload


class _ListArgsCodeGen(fx.graph.CodeGen):
    def gen_fn_def(self, free_vars, maybe_return_annotation, *args, **kwargs):
        names = [v.split(":")[0].split("=")[0].strip() for v in free_vars if v != "self"]
        header = f"def {getattr(self, '_func_name', 'forward')}(self, args_list){maybe_return_annotation}:"
        unpack = f"\n    {', '.join(names)}, = args_list" if names else ""
        return header + unpack + "\n    args_list.clear()"


_OP_PATH = re.compile(r"(?<![\w.])torch\.ops\.(\w+)\.(\w+)\.(\w+)(?![\w.])")


def _ops_as_globals(src: str, namespace: dict) -> str:
    """`src` with each ``torch.ops.ns.name.overload`` replaced by a global bound to that same
    OpOverload: the same call, without four attribute lookups on every call of the graph."""

    def as_global(match: re.Match) -> str:
        ns, name, overload = match.groups()
        op = getattr(getattr(getattr(torch.ops, ns), name, None), overload, None)
        global_name = f"_op_{ns}_{name}_{overload}"
        if not isinstance(op, OpOverload) or namespace.get(global_name, op) is not op:
            return match.group(0)
        namespace[global_name] = op
        return global_name

    return _OP_PATH.sub(as_global, src)


_REGION_CALL = "torch.ops.higher_order.invoke_subgraph("


def _call_region(subgraph: fx.GraphModule, identifier: str, *operands):
    """``invoke_subgraph(subgraph, identifier, *operands)`` as eager runs it: the region's own
    code, without the higher-order operator's dispatch on every call."""
    return subgraph.forward(*operands)


def boxed_graph_function(graph_module: fx.GraphModule) -> Callable[[list], object]:
    """The graph's code as ``fn(args_list)`` bound to `graph_module`; the module is unchanged.
    Region calls (``invoke_subgraph``, `capture.regions`) call the region's code directly."""
    graph = graph_module.graph
    previous = graph._codegen  # restored below: the module keeps its own calling convention
    graph.set_codegen(_ListArgsCodeGen())
    try:
        code = graph.python_code(root_module="self")
    finally:
        graph.set_codegen(previous)
    namespace = dict(code.globals)
    src = _ops_as_globals(code.src, namespace)
    if _REGION_CALL in src:
        namespace["_call_region"] = _call_region
        src = src.replace(_REGION_CALL, "_call_region(")
    exec(compile(src, f"<aotgraph boxed {type(graph_module).__name__}>", "exec"), namespace)
    # A partial, not a closure: one Python frame fewer on every call of the graph.
    boxed = functools.partial(namespace["forward"], graph_module)
    boxed._boxed_call = True
    return boxed
