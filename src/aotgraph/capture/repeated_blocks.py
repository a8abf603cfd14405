"""Repeated blocks of a Dynamo graph found without a marker: each call becomes a region.

Dynamo inlines the modules it traces, so the graph the ``torch.compile`` backend receives
holds every layer of a deep model flat. `with_repeated_blocks` finds the calls of submodules
that repeat in it and returns the graph with each such call replaced by
``invoke_subgraph(subgraph, identifier, *operands)``, as Dynamo emits for a block marked with
``torch.compiler.nested_compile_region``: capture (`capture.higher_order`, `capture.regions`)
then captures and partitions each distinct block once, and calls it per occurrence.

A call of a submodule is the run of nodes whose ``nn_module_stack`` holds its key (Dynamo's
``id`` of the module, with ``@n`` for its n-th further call). Two calls are one region when
they have the same class, the same ops with the same targets and constant arguments, the same
wiring (each node's arguments as positions among the call's earlier nodes or among its
operands: the values it reads from outside, parameters included, in order of first read), the
same layouts of operands and results, and the same outputs (its values read after it). A call
is a candidate only when it is one contiguous run of the graph, reads only tensors from outside
(or SymInts that are sizes of those, as a dynamic graph's size inputs: read from the tensors
in the region) and hands only tensors out, calls a child module (a lone ``Linear`` is not worth a region),
holds no ``get_attr`` or ``call_module`` node, and neither draws random numbers (dropout in
training) nor writes in place (a norm's running statistics, an in-place method) nor reads a
tensor's data (``.item()``, except where the shape environment has fixed the value: a module's
float attribute under ``dynamic=True``, taken as a constant): the rules of
`capture.repeated_layers` for ``aot_module``. (With
switch ``region_buffer_writes`` on, in-place writes are left to the region's capture: it keeps
a block whose writes are of operands that need no gradient, a norm's running statistics, and
records the others inline.) Only
the outermost repeated calls are taken, where their structure repeats `MIN_REPEATS` times or
more (`SYMBOLIC_MIN_REPEATS` on operands of symbolic sizes). A block that changes grad mode or
autocast is no region, and blocks that such a change in the graph sets apart are regions apart
(a region is captured in the mode of its first call). A region that capture refuses anyway
(not a plain function of its operands: `capture.regions.region_of`) runs inline, as the flat
graph does.
"""
from __future__ import annotations

import operator
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F

from .. import config
from ..debug import logger
from ..graph.ops import op_facts
from ..graph.sizes import size_keys
from ..torch_private.dispatch import OpOverload
from .repeated_layers import MIN_REPEATS, SYMBOLIC_MIN_REPEATS

__all__ = ["with_repeated_blocks", "found_blocks", "Block"]

_invoke_subgraph = torch.ops.higher_order.invoke_subgraph
_CONSTANT_TYPES = (int, float, bool, str, type(None), torch.dtype, torch.device, torch.layout, torch.memory_format,
                   type(Ellipsis))
# Calls that change the state a region is captured in (grad mode, autocast): a block holding one is no
# region, and blocks on either side of one are regions apart (the first call's state is the region's).
_MODE_CHANGES = frozenset({"_set_grad_enabled", "_enter_autocast", "_exit_autocast", "_enter_inference_mode",
                           "_exit_inference_mode", "set_autocast_enabled"})
_DROPOUTS = {F.dropout: 2, F.dropout1d: 2, F.dropout2d: 2, F.dropout3d: 2, F.alpha_dropout: 2,
             F.feature_alpha_dropout: 2}  # -> the position of `training`
_IN_PLACE_OPERATORS = frozenset({operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ifloordiv,
                                 operator.imod, operator.ipow, operator.imatmul, operator.iand, operator.ior,
                                 operator.ixor, operator.ilshift, operator.irshift, operator.setitem})
# Tensor methods and functions whose results depend on the data (a region would hold an unbacked value).
_DATA_DEPENDENT = frozenset({"item", "tolist", "nonzero", "unique", "masked_select", "argwhere"})
_RANDOM_FUNCTIONS = frozenset({torch.rand, torch.randn, torch.randint, torch.rand_like, torch.randn_like,
                               torch.randint_like, torch.randperm, torch.bernoulli, torch.multinomial, torch.normal,
                               torch.poisson})


@dataclass(frozen=True)
class Block:
    """One call of a submodule: its Dynamo stack key, class name, depth in the module stack, nodes
    (graph order), operands (the tensors it reads from outside, in order of first read), outputs
    (its nodes read after it) and sizes: each SymInt it reads from outside (a dynamic graph's size
    input) as ``(node, operand index, dimension)``, a size of one of its operands, read there; and
    constants: each ``.item()`` call in it whose value the shape environment has fixed, with that
    value (a constant of the region)."""

    key: str
    class_name: str
    depth: int
    nodes: tuple[fx.Node, ...]
    operands: tuple[fx.Node, ...]
    outputs: tuple[fx.Node, ...]
    sizes: tuple[tuple[fx.Node, int, int], ...] = ()
    constants: tuple[tuple[fx.Node, Any], ...] = ()


class _NotABlock(Exception):
    """This call cannot be a region (kept flat)."""


def with_repeated_blocks(graph_module: fx.GraphModule) -> fx.GraphModule:
    """`graph_module` (a Dynamo graph) with each call of a repeated block replaced by an
    ``invoke_subgraph`` call of one subgraph per structure (each subgraph marked
    ``aotgraph_found``, for the report); `graph_module` itself, unchanged, where none is found.
    Never changes `graph_module`."""
    start = time.perf_counter()
    groups = found_blocks(graph_module.graph)
    if not groups:
        return graph_module
    first_node = {}
    attributes: dict[str, Any] = {}
    names: dict[int, str] = {}
    used_names: set[str] = set()
    for number, blocks in enumerate(groups):
        name = _unique_name(f"auto_{blocks[0].class_name}", used_names, graph_module)
        names[number] = name
        attributes[name] = _subgraph_of(blocks[0])
        for block in blocks:
            first_node[block.nodes[0]] = (number, block)
    skipped = {node for blocks in groups for block in blocks for node in block.nodes[1:]}
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    subgraph_nodes: dict[int, fx.Node] = {}
    for node in graph_module.graph.nodes:
        if node in first_node:
            number, block = first_node[node]
            if number not in subgraph_nodes:
                subgraph_nodes[number] = graph.get_attr(names[number])
            call = graph.call_function(_invoke_subgraph, (subgraph_nodes[number], names[number],
                                                          *(env[o] for o in block.operands)))
            call.meta = {k: v for k, v in node.meta.items() if k in ("nn_module_stack", "stack_trace")}
            call.meta["example_value"] = tuple(o.meta["example_value"] for o in block.outputs)
            for index, output in enumerate(block.outputs):
                env[output] = graph.call_function(operator.getitem, (call, index))
                env[output].meta = dict(output.meta)
        elif node not in skipped:
            env[node] = graph.node_copy(node, env.__getitem__)
    for node in graph_module.graph.find_nodes(op="get_attr"):
        attributes[node.target] = _attribute(graph_module, node.target)
    rewritten = fx.GraphModule(attributes, graph)
    rewritten.meta = dict(graph_module.meta)
    logger.info("aotgraph: repeated blocks found in the graph, each a region: %s (%.1f ms)",
                ", ".join(f"{names[number]} x{len(blocks)}" for number, blocks in enumerate(groups)),
                (time.perf_counter() - start) * 1e3)
    return rewritten


def found_blocks(graph: fx.Graph) -> list[list[Block]]:
    """The calls of `graph` to make regions, grouped by structure (each group two calls or more),
    outermost first (module docstring)."""
    order = {node: index for index, node in enumerate(graph.nodes)}
    mode_changes = 0
    mode_epoch = {}  # node -> the grad mode / autocast changes before it
    for node in graph.nodes:
        mode_changes += _changes_mode(node)
        mode_epoch[node] = mode_changes
    calls: dict[str, list[fx.Node]] = defaultdict(list)
    depth: dict[str, int] = {}
    class_of: dict[str, Any] = {}
    has_child: set[str] = set()
    for node in graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        stack = list((node.meta.get("nn_module_stack") or {}).items())
        for level, (key, (_, module_class)) in enumerate(stack):
            calls[key].append(node)
            depth[key], class_of[key] = level, module_class
            if level + 1 < len(stack):
                has_child.add(key)
    by_structure: dict[tuple, list[Block]] = defaultdict(list)
    for key in sorted(has_child, key=lambda k: (depth[k], order[calls[k][0]])):
        try:
            block, structure = _block_of(key, class_of[key], depth[key], calls[key], order)
            structure = (mode_epoch[block.nodes[0]], structure)
        except _NotABlock:
            continue
        by_structure[structure].append(block)
    repeated = [blocks for structure, blocks in by_structure.items() if len(blocks) >= MIN_REPEATS
                and (len(blocks) >= SYMBOLIC_MIN_REPEATS or not _symbolic(structure))]
    taken: list[list[Block]] = []
    covered: set[fx.Node] = set()
    for blocks in sorted(repeated, key=lambda bs: min((b.depth, order[b.nodes[0]]) for b in bs)):
        outer = [b for b in blocks if not covered.intersection(b.nodes)]
        if len(outer) >= MIN_REPEATS:
            taken.append(outer)
            covered.update(node for b in outer for node in b.nodes)
    return taken


def _block_of(key: str, module_class: Any, depth: int, nodes: list[fx.Node], order: dict) -> tuple[Block, tuple]:
    """The call `key` as a `Block` and its structure (the key of its region); raises
    `_NotABlock` where it cannot be one."""
    if order[nodes[-1]] - order[nodes[0]] + 1 != len(nodes):
        raise _NotABlock("not one contiguous run of the graph")
    local = {node: index for index, node in enumerate(nodes)}
    constants = _specialized_scalars(nodes)
    external = list(dict.fromkeys(i for node in nodes if node not in constants
                                  for i in node.all_input_nodes if i not in local))
    operands = {node: index for index, node in enumerate(n for n in external if isinstance(_value_of(n), torch.Tensor))}
    operand_layouts = tuple(_layout(_value_of(o)) for o in operands)
    sizes = {node: _size_of(node, operand_layouts) for node in external if node not in operands}

    def argument(value):
        if isinstance(value, fx.Node):
            if value in constants:
                return ("scalar", constants[value])
            if value in local:
                return ("node", local[value])
            if value in operands:
                return ("operand", operands[value])
            return ("size", *sizes[value])
        if isinstance(value, (tuple, list)):
            return (type(value).__name__, tuple(argument(v) for v in value))
        if isinstance(value, dict):
            return ("dict", tuple((k, argument(v)) for k, v in value.items()))
        if isinstance(value, slice):
            return ("slice", argument(value.start), argument(value.stop), argument(value.step))
        if isinstance(value, _CONSTANT_TYPES):
            return (type(value).__name__, value)
        raise _NotABlock(f"constant of type {type(value).__name__}")

    entries = []
    for node in nodes:
        if node in constants:
            entries.append(("scalar", constants[node]))
            continue
        if node.op not in ("call_function", "call_method") or "example_value" not in node.meta or _changes_mode(node):
            raise _NotABlock(f"{node.op} node {node.name}")
        if _draws_or_writes(node, constants):
            raise _NotABlock(f"{node.name} draws random numbers, writes in place or reads data")
        entries.append((node.op, node.target, argument(node.args), argument(node.kwargs),
                        _layout(node.meta["example_value"])))
    outputs = [node for node in nodes if any(user not in local for user in node.users)]
    if not outputs or not all(isinstance(node.meta["example_value"], torch.Tensor) for node in outputs):
        raise _NotABlock("hands out no tensor, or a value that is not a tensor")
    structure = (module_class, tuple(entries), operand_layouts, tuple(local[node] for node in outputs))
    block = Block(key, getattr(module_class, "__name__", str(module_class)), depth, tuple(nodes), tuple(operands),
                  tuple(outputs), tuple((node, *where) for node, where in sizes.items()), tuple(constants.items()))
    return block, structure


def _specialized_scalars(nodes: list[fx.Node]) -> dict[fx.Node, float | int | bool]:
    """The ``.item()`` calls among `nodes` whose value the shape environment has already fixed
    (its symbol replaced by a number under a guard Dynamo checks), each with that number. Under
    ``dynamic=True`` Dynamo hands a module's float attributes (a norm's ``eps`` and
    ``momentum``, dropout's ``p``) as 0-d tensors read with ``.item()``, and fixes those that
    reach a C++ ``double`` argument; a region takes them as the constants they are."""
    constants = {}
    for node in nodes:
        if node.op == "call_method" and node.target == "item":
            value = node.meta.get("example_value")
            if isinstance(value, (torch.SymFloat, torch.SymInt, torch.SymBool)):
                number = (value.node.maybe_as_float() if isinstance(value, torch.SymFloat) else
                          value.node.maybe_as_int() if isinstance(value, torch.SymInt) else value.node.maybe_as_bool())
                if number is not None:
                    constants[node] = number
    return constants


def _size_of(node: fx.Node, operand_layouts: tuple) -> tuple[int, int]:
    """``(operand index, dimension)`` of a tensor operand whose size is `node`'s value, a SymInt
    (the first such, in order); raises `_NotABlock` for any other value or a SymInt that is no
    operand's size (the region would need it as an operand of its own, which it does not take)."""
    value = _value_of(node)
    if isinstance(value, torch.SymInt):
        (expression,) = size_keys((value,))
        for index, layout in enumerate(operand_layouts):
            if expression in layout[1]:
                return index, layout[1].index(expression)
    raise _NotABlock(f"reads {node.name}, neither a tensor nor the size of one it reads")


def _value_of(node: fx.Node) -> Any:
    return node.meta.get("example_value", node.meta.get("val"))


def _layout(value: Any) -> tuple:
    """What a region assumes about a value: a tensor's layout (symbolic sizes as their
    expressions) and whether it needs a gradient; a sequence's items'; another value's type."""
    if isinstance(value, torch.Tensor):
        return ("tensor", size_keys(value.shape), size_keys(value.stride()), size_keys((value.storage_offset(),)),
                value.dtype, value.device, value.requires_grad)
    if isinstance(value, (tuple, list)):
        return ("sequence", tuple(_layout(v) for v in value))
    if isinstance(value, torch.SymInt):
        return ("symint", size_keys((value,)))
    return (type(value).__name__,)


def _symbolic(structure: tuple) -> bool:
    """Whether a structure's operands have a symbolic size, stride or offset."""
    _, (_, _, operand_layouts, _) = structure
    return any(type(size) is not int for layout in operand_layouts for sizes in layout[1:4] for size in sizes)


def _changes_mode(node: fx.Node) -> bool:
    return node.op == "call_function" and getattr(node.target, "__name__", None) in _MODE_CHANGES


def _draws_or_writes(node: fx.Node, constants: dict[fx.Node, Any]) -> bool:
    """Whether `node` draws random numbers, writes a tensor in place or reads a tensor's data
    (``.item()``), told from its target and arguments (Dynamo's graph holds torch functions and
    tensor methods, not ATen ops). With switch ``region_buffer_writes`` on, in-place writes are
    left to the region's capture, which keeps those of operands that need no gradient (a norm's
    running statistics) and records the others' blocks inline."""
    target = node.target
    args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: constants.get(n, n))
    writes_allowed = config.enabled("region_buffer_writes")
    if isinstance(target, OpOverload):  # an ATen op the program calls itself
        facts = op_facts(target)
        return (facts.random or (facts.mutable and not writes_allowed)
                or torch.Tag.data_dependent_output in target.tags)
    name = target if isinstance(target, str) else getattr(target, "__name__", "")
    if kwargs.get("out") is not None:
        return True
    if not writes_allowed and (name.endswith("_") and not name.endswith("__") or target in _IN_PLACE_OPERATORS
                               or kwargs.get("inplace")):
        return True
    if target in _RANDOM_FUNCTIONS or name in ("bernoulli", "multinomial") or name in _DATA_DEPENDENT:
        return True
    if target in _DROPOUTS:
        p = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
        training = args[_DROPOUTS[target]] if len(args) > _DROPOUTS[target] else kwargs.get("training", True)
        inplace = args[3] if len(args) > 3 else kwargs.get("inplace", False)
        return (inplace and not writes_allowed) or (training and p != 0)
    if target is F.scaled_dot_product_attention:
        dropout = args[4] if len(args) > 4 else kwargs.get("dropout_p", 0.0)
        return dropout != 0
    if target is F.batch_norm or target is F.instance_norm:
        running = [args[k] if len(args) > k else kwargs.get(n) for k, n in ((1, "running_mean"), (2, "running_var"))]
        position, name = (5, "training") if target is F.batch_norm else (5, "use_input_stats")
        training = args[position] if len(args) > position else kwargs.get(name, target is F.instance_norm)
        return bool(training) and any(r is not None for r in running) and not writes_allowed
    return False


def _subgraph_of(block: Block) -> fx.GraphModule:
    """``(*operands) -> (*outputs,)``: `block`'s nodes copied into a graph of their own."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for number, operand in enumerate(block.operands):
        env[operand] = graph.placeholder(f"operand_{number}")
        env[operand].meta = {"example_value": _value_of(operand)}
    for node, operand, dimension in block.sizes:
        env[node] = graph.call_method("size", (env[block.operands[operand]], dimension))
        env[node].meta = {"example_value": _value_of(node)}
    env.update(block.constants)
    for node in block.nodes:
        if node not in env:
            env[node] = graph.node_copy(node, env.__getitem__)
    graph.output(tuple(env[node] for node in block.outputs))
    subgraph = fx.GraphModule({}, graph, class_name=f"auto_{block.class_name}")
    subgraph.aotgraph_found = True  # found without a marker (`capture.higher_order` tells `capture.regions`)
    return subgraph


def _attribute(graph_module: fx.GraphModule, target: str) -> Any:
    value: Any = graph_module
    for name in target.split("."):
        value = getattr(value, name)
    return value


def _unique_name(name: str, used: set[str], graph_module: fx.GraphModule) -> str:
    name = "".join(c if c.isalnum() else "_" for c in name)
    candidate, number = name, 0
    while candidate in used or hasattr(graph_module, candidate):
        number += 1
        candidate = f"{name}_{number}"
    used.add(candidate)
    return candidate
