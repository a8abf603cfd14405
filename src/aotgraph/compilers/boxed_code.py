"""Graph code in the boxed calling convention, for early frees.

``fn(args_list)`` unpacks its inputs and clears the list, so the generated code's
``x = None`` after each last use really releases the tensor: nothing else holds it (a plain
``f(*args)`` call keeps every argument alive in the caller's argument tuple until it returns).
"""
from __future__ import annotations

from typing import Callable

import torch.fx as fx


class _ListArgsCodeGen(fx.graph.CodeGen):
    def gen_fn_def(self, free_vars, maybe_return_annotation, *args, **kwargs):
        names = [v.split(":")[0].split("=")[0].strip() for v in free_vars if v != "self"]
        header = f"def {getattr(self, '_func_name', 'forward')}(self, args_list){maybe_return_annotation}:"
        unpack = f"\n    {', '.join(names)}, = args_list" if names else ""
        return header + unpack + "\n    args_list.clear()"


def boxed_graph_function(graph_module: fx.GraphModule) -> Callable[[list], object]:
    """The graph's code as ``fn(args_list)`` bound to `graph_module`; the module is unchanged."""
    graph = graph_module.graph
    previous = graph._codegen  # restored below: the module keeps its own calling convention
    graph.set_codegen(_ListArgsCodeGen())
    try:
        code = graph.python_code(root_module="self")
    finally:
        graph.set_codegen(previous)
    namespace = dict(code.globals)
    exec(compile(code.src, f"<aotgraph boxed {type(graph_module).__name__}>", "exec"), namespace)
    function = namespace["forward"]

    def boxed(args_list: list):
        return function(graph_module, args_list)

    boxed._boxed_call = True
    return boxed
