"""A graph that calls regions (`capture.regions`), compiled around them: each region graph
compiled once, on its own, and the calling graph run as Python code that calls the compiled
regions (`boxed_code`).

For a compiler whose own work grows with every region call in a graph (Inductor lowers,
schedules and generates code for each ``invoke_subgraph`` call and for each of its outputs,
and propagates fake values through the region again at each call): compiled apart, a deep
model's compile is its regions' compile plus a Python graph that grows by a few lines a
call. The calling graph's own ops (an embedding, a loss) are compiled too, a stretch between
two region calls at a time, and the graph runs as a list of steps that frees each value at its
last read (`region_steps`; switch ``fused_between_regions``; off: the calling graph runs as
Python code, its own ops unfused as the eager compiler runs them, each value held by that
code until the call that reads it last returns). A compiler declares it wants this with
``CompilerTraits.compiles_regions_apart``; switch ``regions_compiled_apart``.
"""
from __future__ import annotations

import operator
from typing import Callable

import torch
import torch.fx as fx

from .. import config
from ..graph.sizes import has_symbolic_sizes
from ..torch_private.dynamo import TracingContext
from .boxed_code import boxed_graph_function_calling, region_modules
from .region_steps import stepped_graph_code

__all__ = ["compiled_around_regions", "compiles_around_regions", "regions_inlined"]

_INVOKE_SUBGRAPH = torch.ops.higher_order.invoke_subgraph


def compiles_around_regions(compiles_regions_apart: bool, graph_module: fx.GraphModule,
                            forced: Callable[[], bool] = lambda: False) -> bool:
    """Whether `graph_module` is compiled around its regions: it calls some, its compiler can,
    and switch ``regions_compiled_apart`` is on and the graph's sizes are concrete, or `forced()`
    (the compiler cannot compile them inside the graph, unless the switch is turned off by
    name). (With symbolic sizes Inductor compiles the regions inside the calling graph: on its
    own, a region graph's size expressions may name symbols its inputs do not carry.)"""
    if not compiles_regions_apart or "regions_compiled_apart" in config.disabled or not region_modules(graph_module):
        return False
    return (config.enabled("regions_compiled_apart") and not _has_symbolic_inputs(graph_module)) or forced()


def _has_symbolic_inputs(graph_module: fx.GraphModule) -> bool:
    return any(isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool))
               or (isinstance(value, torch.Tensor) and has_symbolic_sizes(value))
               for value in (node.meta.get("val") for node in graph_module.graph.find_nodes(op="placeholder")))


def regions_inlined(graph_module: fx.GraphModule) -> fx.GraphModule:
    """`graph_module` with each region call (``invoke_subgraph``) replaced by the nodes of the
    region's graph, on the call's operands: the flat graph, for a compiler that does better
    with it (`CompilerTraits.inlines_regions`). Regions calling regions are inlined too."""
    graph = fx.Graph()
    env: dict[fx.Node, object] = {}
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and node.target is _INVOKE_SUBGRAPH:
            region = regions_inlined(graph_module.get_submodule(node.args[0].target))
            operands = iter(node.args[2:])
            inner: dict[fx.Node, object] = {}
            for region_node in region.graph.nodes:
                if region_node.op == "placeholder":
                    inner[region_node] = env[next(operands)]
                elif region_node.op == "output":
                    env[node] = tuple(inner[v] if isinstance(v, fx.Node) else v for v in region_node.args[0])
                elif region_node.op == "get_attr":
                    raise ValueError(f"region {node.args[0].target} reads attribute {region_node.target}")
                else:
                    inner[region_node] = graph.node_copy(region_node, inner.__getitem__)
        elif (node.op == "call_function" and node.target is operator.getitem
              and isinstance(env.get(node.args[0]), tuple)):
            env[node] = env[node.args[0]][node.args[1]]
        elif node.op == "get_attr" and all(u.target is _INVOKE_SUBGRAPH for u in node.users):
            continue  # a region's graph: inlined at its calls
        else:
            env[node] = graph.node_copy(node, env.__getitem__)
    inlined = fx.GraphModule(graph_module, graph)
    inlined.meta = dict(graph_module.meta)
    return inlined


def compiled_around_regions(graph_module: fx.GraphModule, example_inputs: list,
                            compile_part: Callable[[fx.GraphModule, list], Callable], compiled: dict
                            ) -> Callable[[list], object]:
    """`graph_module`'s boxed code, calling each of its regions as ``compile_part(region,
    example_inputs)`` compiled it (boxed), and with ``fused_between_regions`` each stretch of
    its own ops between them too (`example_inputs`: the values of `graph_module`'s
    placeholders); `compiled` (region module -> its compiled code) is shared by the graphs of
    one partition, so a region is compiled once. `compile_part` keeps the traced strides of
    every output of the graph it compiles."""

    def apart(part: fx.GraphModule, inputs: list) -> Callable:
        # Its output strides are the part's own business: not the calling graph's report.
        with TracingContext.report_output_strides():
            return compile_part(part, inputs)

    def code_of(region: fx.GraphModule) -> Callable:
        if region not in compiled:
            compiled[region] = apart(region, [n.meta["val"] for n in region.graph.find_nodes(op="placeholder")])
        return compiled[region]

    if config.enabled("fused_between_regions"):
        return stepped_graph_code(graph_module, example_inputs, code_of, apart)
    return boxed_graph_function_calling(graph_module, code_of)
