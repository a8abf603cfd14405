"""Graph code for the nop and eager compilers: in the boxed calling convention, for early frees;
region calls straight to each region's own code.

``fn(args_list)`` unpacks its inputs and clears the list, so the generated code's
``x = None`` after each last use really releases the tensor: nothing else holds it (a plain
``f(*args)`` call keeps every argument alive in the caller's argument tuple until it returns).
"""
from __future__ import annotations

import functools
import re
from typing import Callable, Optional

import torch
import torch.fx as fx

from .. import config
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
_INVOKE_SUBGRAPH = torch.ops.higher_order.invoke_subgraph


def region_modules(graph_module: fx.GraphModule) -> list[fx.GraphModule]:
    """The region graphs (`capture.regions`) that `graph_module` calls through ``invoke_subgraph``."""
    modules = {}
    for node in graph_module.graph.find_nodes(op="call_function", target=_INVOKE_SUBGRAPH):
        subgraph = node.args[0]
        if isinstance(subgraph, fx.Node) and subgraph.op == "get_attr":
            modules[subgraph.target] = graph_module.get_submodule(subgraph.target)
    return list(modules.values())


def _region_caller(code_of: dict, boxed: bool) -> Callable:
    """``invoke_subgraph(subgraph, identifier, *operands)`` as eager runs it: the region's
    code in `code_of` (region module -> its code, `boxed` or not), without the higher-order
    operator's dispatch on every call."""
    if boxed:
        def call_boxed_region(subgraph: fx.GraphModule, identifier: str, *operands):
            return code_of[subgraph](list(operands))

        return call_boxed_region

    def call_region(subgraph: fx.GraphModule, identifier: str, *operands):
        return code_of[subgraph](*operands)

    return call_region


def _graph_code(graph_module: fx.GraphModule, codegen: Optional[fx.graph.CodeGen], region_code: Callable
                ) -> Callable:
    """`graph_module`'s generated ``forward`` function (unbound), in `codegen`'s calling
    convention (None: the graph's own; otherwise the boxed one, with ops as globals), with each
    region call going to ``region_code(module)``, generated once per region, rather than
    through ``invoke_subgraph`` (switch ``direct_region_calls``)."""
    graph = graph_module.graph
    previous = graph._codegen  # restored below: the module keeps its own calling convention
    if codegen is not None:
        graph.set_codegen(codegen)
    try:
        code = graph.python_code(root_module="self")
    finally:
        graph.set_codegen(previous)
    namespace = dict(code.globals)
    src = _ops_as_globals(code.src, namespace) if codegen is not None else code.src
    if _REGION_CALL in src and config.enabled("direct_region_calls"):
        code_of = {module: region_code(module) for module in region_modules(graph_module)}
        namespace["_call_region"] = _region_caller(code_of, boxed=codegen is not None)
        src = src.replace(_REGION_CALL, "_call_region(")
    exec(compile(src, f"<aotgraph {type(graph_module).__name__}>", "exec"), namespace)
    return namespace["forward"]


def boxed_graph_function(graph_module: fx.GraphModule) -> Callable[[list], object]:
    """The graph's code as ``fn(args_list)`` bound to `graph_module`; the module is unchanged.
    Region calls (``invoke_subgraph``, `capture.regions`) run each region's own boxed code."""
    return boxed_graph_function_calling(graph_module, boxed_graph_function)


def boxed_graph_function_calling(graph_module: fx.GraphModule, region_code: Callable[[fx.GraphModule], Callable]
                                 ) -> Callable[[list], object]:
    """`boxed_graph_function`, with each region call running ``region_code(region)`` (boxed)."""
    forward = _graph_code(graph_module, _ListArgsCodeGen(), region_code)
    # A partial, not a closure: one Python frame fewer on every call of the graph.
    boxed = functools.partial(forward, graph_module)
    boxed._boxed_call = True
    return boxed


def plain_graph_function(graph_module: fx.GraphModule) -> Callable:
    """The graph's code as ``fn(*args)``, as ``GraphModule.forward`` runs it (for the nop
    compiler), except that region calls run each region's ``forward`` directly."""
    return functools.partial(_graph_code(graph_module, None, lambda region: region.forward), graph_module)
