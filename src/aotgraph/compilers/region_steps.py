"""A graph that calls regions, run as a list of steps: each region call runs its region's
compiled code, and each stretch of the graph's own ops between two region calls runs as one
graph of its own, compiled by the same compiler (Inductor: fused kernels, as in the whole graph).

The steps keep the memory of one compiled graph: a value leaves the step list before the step
that reads it last, so the boxed code of that step (which clears its argument list) holds the
only reference and frees it as soon as it is done with it; inputs nobody reads are dropped at
the start. A stretch's outputs (its values read after it) keep their traced strides, as a
region's do: ``compile_part`` compiles every output as one the caller sees. A stretch like an
earlier one of the graph (the same ops on inputs of the same layouts: a scale after every
layer) runs that one's code (switch ``stretch_memo``): the compile stays that of one layer.

The code carries its steps as data (``aotgraph_steps``, a `SteppedCode`), so that the disk cache
can store each step's compiled code and `code_of_steps` can run them again in another process.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.fx as fx

from .. import config
from ..errors import CompilerError
from ..graph.sizes import has_symbolic_sizes
from .background_builds import when_all_built
from .boxed_code import boxed_graph_function

__all__ = ["stepped_graph_code", "Step", "SteppedCode", "code_of_steps"]

_INVOKE_SUBGRAPH = torch.ops.higher_order.invoke_subgraph


@dataclass(frozen=True)
class Step:
    """``code(inputs)`` (boxed), its inputs read from `reads` (slots), the slots in `drops` cleared
    before it runs (read here for the last time), and output k stored in slot s for (k, s) in `writes`."""

    code: Callable[[list], Sequence]
    reads: tuple[int, ...]
    drops: tuple[int, ...]
    writes: tuple[tuple[int, int], ...]
    views: Optional[fx.GraphModule] = None  # a stretch of views alone, run as eager code: its graph


@dataclass(frozen=True)
class SteppedCode:
    """The steps of a stepped graph's code, as data: `num_inputs` arguments fill the first slots
    of an environment that starts as `template` (constants in their slots), the slots in
    `unread` are cleared at once, the steps run in order, and the slots `returned` are returned."""

    steps: tuple[Step, ...]
    num_inputs: int
    unread: tuple[int, ...]
    returned: tuple[int, ...]
    template: tuple


def stepped_graph_code(graph_module: fx.GraphModule, example_inputs: Sequence, region_code: Callable,
                       compile_part: Callable[[fx.GraphModule, list], Callable]) -> Callable[[list], list]:
    """`graph_module` as boxed code: ``region_code(region)`` for each region call, and each
    stretch of other ops compiled by ``compile_part(stretch, its example inputs)``; a stretch of
    views alone runs as eager code (nothing to fuse). `example_inputs`: the graph's placeholders'
    values (a backward's saved values restrided as the forward returns them)."""
    builder = _StepBuilder(graph_module, example_inputs, region_code, compile_part)
    for node in graph_module.graph.nodes:
        builder.add(node)
    return builder.code()


class _StepBuilder:
    def __init__(self, graph_module: fx.GraphModule, example_inputs: Sequence, region_code: Callable,
                 compile_part: Callable):
        self.graph_module, self.example_inputs = graph_module, list(example_inputs)
        self.region_code, self.compile_part = region_code, compile_part
        self.placeholder_positions = {n: i for i, n in enumerate(graph_module.graph.find_nodes(op="placeholder"))}
        self.stretch_code: dict[tuple, Callable] = {}  # `_stretch_key` -> its compiled code
        self.views_graphs: dict[int, fx.GraphModule] = {}  # id of a views-alone stretch's code -> its graph
        self.slot_of: dict[fx.Node, int] = {}
        self.constants: dict[int, object] = {}  # slot -> value: get_attr tensors, literal operands
        self.num_inputs = self.num_slots = 0
        self.stretch: list[fx.Node] = []
        self.steps: list[tuple[Callable, tuple, tuple]] = []  # (code, reads, writes); drops come last
        self.returned: tuple[int, ...] = ()

    def _new_slot(self, node=None) -> int:
        slot, self.num_slots = self.num_slots, self.num_slots + 1
        if node is not None:
            self.slot_of[node] = slot
        return slot

    def _read(self, value) -> int:
        if isinstance(value, fx.Node):
            if value not in self.slot_of and value.op == "get_attr":
                self.constants[self._new_slot(value)] = getattr(self.graph_module, value.target)
            return self.slot_of[value]
        slot = self._new_slot()
        self.constants[slot] = value
        return slot

    def add(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            self._new_slot(node)
            self.num_inputs += 1
        elif node.op == "get_attr":
            pass  # a region module, or a constant read where it is used
        elif node.op == "call_function" and node.target is _INVOKE_SUBGRAPH:
            self._close_stretch()
            region_name = node.args[0].target
            region = getattr(self.graph_module, region_name)
            writes = tuple((user.args[1], self._new_slot(user)) for user in node.users
                           if user.op == "call_function" and user.target is operator.getitem)
            if len(writes) != len(node.users):
                raise CompilerError(f"a call of region {region_name!r} is read other than by getitem: "
                                    f"{list(node.users)}", "compile",
                                    "report this graph; AOTGRAPH_DISABLE=fused_between_regions runs it as Python code")
            self.steps.append((self.region_code(region), tuple(self._read(a) for a in node.args[2:]), writes))
        elif node.op == "call_function" and node.target is operator.getitem and _reads_region_call(node):
            pass  # its slot was given at the region call
        elif node.op == "output":
            self._close_stretch()
            self.returned = tuple(self._read(value) for value in node.args[0])
        else:
            self.stretch.append(node)

    def _close_stretch(self) -> None:
        nodes, self.stretch = self.stretch, []
        if not nodes:
            return
        inside = set(nodes)
        graph, env, reads = fx.Graph(), {}, []
        example_inputs = []

        def value_of(node: fx.Node) -> fx.Node:
            if node not in env:
                if node.op == "get_attr":
                    env[node] = graph.get_attr(node.target)
                else:
                    env[node] = graph.placeholder(node.name)
                    env[node].meta = dict(node.meta)
                    reads.append(self._read(node))
                    position = self.placeholder_positions.get(node)
                    example_inputs.append(node.meta.get("val") if position is None else self.example_inputs[position])
            return env[node]

        for node in nodes:
            env[node] = graph.node_copy(node, value_of)
        outputs = [node for node in nodes if any(user not in inside for user in node.users)]
        graph.output(tuple(env[node] for node in outputs))
        stretch = fx.GraphModule(self.graph_module, graph)
        key = _stretch_key(graph, example_inputs) if config.enabled("stretch_memo") else None
        if key in self.stretch_code:
            code = self.stretch_code[key]
        else:
            if _views_alone(nodes):
                code = boxed_graph_function(stretch)
                self.views_graphs[id(code)] = stretch
            else:
                code = self.compile_part(stretch, example_inputs)
            if key is not None:
                self.stretch_code[key] = code
        self.steps.append((code, tuple(reads), tuple((k, self._new_slot(node)) for k, node in enumerate(outputs))))

    def code(self) -> Callable[[list], list]:
        last_read = {}
        for index, (_, reads, _) in enumerate(self.steps):
            for slot in reads:
                last_read[slot] = index
        for slot in self.returned:
            last_read.pop(slot, None)
        steps = tuple(Step(code, reads, tuple(s for s in set(reads) if last_read.get(s) == index), writes,
                            self.views_graphs.get(id(code)))
                      for index, (code, reads, writes) in enumerate(self.steps))
        unread = tuple(slot for slot in range(self.num_inputs) if slot not in last_read and slot not in self.returned)
        return code_of_steps(SteppedCode(steps, self.num_inputs, unread, self.returned,
                                         tuple(self.constants.get(slot) for slot in range(self.num_slots))))


def _reads_region_call(node: fx.Node) -> bool:
    return isinstance(node.args[0], fx.Node) and node.args[0].target is _INVOKE_SUBGRAPH


def _views_alone(nodes: list[fx.Node]) -> bool:
    return all(node.op == "call_function" and (node.target is operator.getitem or (
        isinstance(node.target, torch._ops.OpOverload) and node.target.is_view)) for node in nodes)


class _Read:
    """An argument that is the value of the stretch's node at `position`, in `_stretch_key`."""

    def __init__(self, position: int):
        self.position = position

    def __repr__(self) -> str:
        return f"<read {self.position}>"


def _stretch_key(graph: fx.Graph, example_inputs: list) -> Optional[tuple]:
    """What decides a stretch's compiled code: its ops, how they connect, their other arguments
    and the layouts of its inputs. None (compiled on its own) where an input is not a tensor of
    concrete sizes or the stretch reads a module attribute."""
    layouts = []
    for value in example_inputs:
        if not isinstance(value, torch.Tensor) or has_symbolic_sizes(value):
            return None
        layouts.append((tuple(value.shape), tuple(value.stride()), value.storage_offset(), value.dtype, value.device))
    position: dict[fx.Node, int] = {}
    ops = []
    for node in graph.nodes:
        if node.op == "get_attr":
            return None
        position[node] = len(position)
        if node.op != "placeholder":
            arguments = fx.node.map_arg((node.args, node.kwargs), lambda n: _Read(position[n]))
            ops.append((node.op, node.target, repr(arguments)))
    return tuple(layouts), tuple(ops)


def code_of_steps(stepped: SteppedCode) -> Callable[[list], list]:
    """The boxed code running `stepped` (which it carries as ``aotgraph_steps``). Where steps'
    code is being rebuilt in the background (``aotgraph_when_built``), so is the whole's."""
    steps, num_inputs, unread, returned = stepped.steps, stepped.num_inputs, stepped.unread, stepped.returned
    template = list(stepped.template)

    def run(args: list) -> list:
        env = template.copy()
        env[:num_inputs] = args
        args.clear()
        for slot in unread:
            env[slot] = None
        for step in steps:
            inputs = [env[slot] for slot in step.reads]
            for slot in step.drops:
                env[slot] = None
            outputs = step.code(inputs)
            for k, slot in step.writes:
                env[slot] = outputs[k]
            outputs = None  # the step's outputs live in their slots only, until their last read
        return [env[slot] for slot in returned]

    run._boxed_call = True
    run.aotgraph_steps = stepped
    building = {id(step.code): step.code for step in steps if hasattr(step.code, "aotgraph_when_built")}
    if building:
        run.aotgraph_when_built = lambda callback: when_all_built(building.values(), callback)
    return run
