"""A graph that calls regions (`capture.regions`), compiled around them: each region graph
compiled once, on its own, and the calling graph run as Python code that calls the compiled
regions (`boxed_code`).

For a compiler whose own work grows with every region call in a graph (Inductor lowers,
schedules and generates code for each ``invoke_subgraph`` call and for each of its outputs,
and propagates fake values through the region again at each call): compiled apart, a deep
model's compile is its regions' compile plus a Python graph that grows by a few lines a
call. The calling graph's own ops (an embedding, a loss) then run unfused, as the eager
compiler runs them. A compiler declares it wants this with
``CompilerTraits.compiles_regions_apart``; switch ``regions_compiled_apart``.
"""
from __future__ import annotations

from typing import Callable

import torch.fx as fx

from .. import config
from ..torch_private.dynamo import TracingContext
from .boxed_code import boxed_graph_function_calling, region_modules

__all__ = ["compiled_around_regions", "compiles_around_regions"]


def compiles_around_regions(compiles_regions_apart: bool, graph_module: fx.GraphModule) -> bool:
    """Whether `graph_module` is compiled around its regions: it calls some, and its compiler asks for it."""
    return compiles_regions_apart and config.enabled("regions_compiled_apart") and bool(region_modules(graph_module))


def compiled_around_regions(graph_module: fx.GraphModule, compile_region: Callable[[fx.GraphModule, list], Callable],
                            compiled: dict) -> Callable[[list], object]:
    """`graph_module`'s boxed code, calling each of its regions as ``compile_region(region,
    example_inputs)`` compiled it (boxed); `compiled` (region module -> its compiled code) is
    shared by the graphs of one partition, so a region is compiled once."""

    def code_of(region: fx.GraphModule) -> Callable:
        if region not in compiled:
            inputs = [n.meta["val"] for n in region.graph.find_nodes(op="placeholder")]
            # Its output strides are the region's own business: not the calling graph's report.
            with TracingContext.report_output_strides():
                compiled[region] = compile_region(region, inputs)
        return compiled[region]

    return boxed_graph_function_calling(graph_module, code_of)
