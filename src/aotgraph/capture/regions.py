"""Regions captured and partitioned once, called once per occurrence.

A region is a subgraph that a program calls several times on operands of the same layout
(``torch.compiler.nested_compile_region``'s ``invoke_subgraph``). Its first occurrence is
captured as a program of its own (a `JointGraph`) and split by the pipeline's partition
(`SplitRegion`, handed to `capture`): a forward ``operands -> (*outputs, *saved)`` and a
backward ``(*saved, *output grads) -> operand grads``. Each occurrence then records two
nodes into the caller's graph, ``invoke_subgraph(region_forward, ...)`` and, when autograd
reaches it, ``invoke_subgraph(region_backward, ...)``: the outer partition saves each call's
saved values like any other forward value, and a compiler that knows ``invoke_subgraph``
(Inductor) compiles each region graph once.

Regions whose graphs are not plain functions of their operands (they write an operand that
needs a gradient, return an operand or a view of one, draw random numbers:
`unsafe_to_recompute`; or make an unbacked size, ``nonzero``'s length, which the caller's graph
could not read) are not reused: the caller records them inline (`region_of` returns None; a
marked region warns why). A region may write operands that need no gradient (a norm's running
statistics; switch ``region_buffer_writes``): its forward returns their new values after its
outputs, and each call copies them into its own operands in the caller's capture.

Operands may have symbolic sizes (switch ``symbolic_regions``): a region is keyed by its
operands' size expressions, so all its occurrences share the shape environment's symbols;
the region's graphs read the sizes they need from their own operands, and a size its
backward needs is passed by the caller's graph, which computes it from the same symbols.
"""
from __future__ import annotations

import contextlib
import operator
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional, Sequence

import torch
import torch.fx as fx
from torch.utils._pytree import tree_flatten, tree_leaves

from .. import config
from ..debug import logger
from ..artifacts import JointGraph, Partition, RegionUse, TensorMeta
from ..errors import AotGraphError
from ..graph.ops import is_view, unsafe_to_recompute
from ..graph.sizes import has_symbolic_sizes, known_equal, size_keys
from ..torch_private.dispatch import DisableTorchFunction, disable_current_modes, outside_capture_mode
from ..torch_private.fx import LazyGraphModule  # code made when first run: most of these graphs are rebuilt again

__all__ = ["Region", "Regions", "SplitRegion", "region_of", "not_plain", "call_region", "record_call", "Subgraph"]

SplitRegion = Callable[[JointGraph], Partition]  # the pipeline's partition of a region's joint graph
_invoke_subgraph = torch.ops.higher_order.invoke_subgraph


@dataclass(frozen=True)
class Region:
    """One region's graphs. `forward`: operands -> (*outputs, *written, *saved) (operands the
    backward reads are not among `saved`: each call passes its own). `backward` (None when
    nothing needs a gradient): (*saved in `backward_saved` order, *grads of the outputs in
    `backward_outputs`) -> the grads of the operands in `grad_operands`. `writes`: the operands
    the region writes in place (buffers that need no gradient, a norm's running statistics),
    whose new values `written` the forward returns after the outputs; each call copies them in."""

    name: str
    forward: fx.GraphModule
    backward: Optional[fx.GraphModule]
    outputs: tuple[TensorMeta, ...]
    saved: tuple[TensorMeta, ...]
    # per backward saved placeholder: ("operand", operand index), ("output", output index): an output
    # the caller's graph holds anyway (switch ``region_outputs_kept``), ("saved", index among `saved`) or
    # ("size", the SymInt): a symbolic size, an expression over the operands' symbols, which the
    # caller's graph computes (every occurrence's operands have the sizes of the first one's)
    backward_saved: tuple[tuple[str, Any], ...]
    backward_outputs: tuple[int, ...]  # per backward tangent placeholder: the output whose grad it is
    grad_operands: tuple[int, ...]  # operand index of each backward output
    grads: tuple[TensorMeta, ...]
    writes: tuple[int, ...] = ()  # operand index of each new value in `written`
    written: tuple[TensorMeta, ...] = ()


def region_of(name: str, program: Callable, operands: Sequence[torch.Tensor], *, capture: Callable,
              split: SplitRegion, automatic: bool = False) -> Optional[Region]:
    """`program(*operands)` captured (`capture(fn, flat_args, in_spec)`) and split once as
    region `name`; None where the region is not a plain function of its operands (`not_plain`:
    a warning says why for a region the program marked, a log line for one found
    `automatic`ally)."""
    with disable_current_modes():
        leaves = [o.detach().requires_grad_(o.requires_grad) for o in operands]
        flat, spec = tree_flatten((tuple(leaves), {}))
        try:
            joint = capture(lambda *args: tuple(tree_leaves(program(*args))), flat, spec)
        except (AotGraphError, RuntimeError) as error:  # RuntimeError: autograd's, an operand written in place
            # recorded inline, where the same error (if any) names the caller's line
            return _inline(name, f"its capture on its own failed ({str(error).splitlines()[0]})", automatic)
    why = not_plain(joint)
    if why is not None:
        return _inline(name, why, automatic)
    sig = joint.signature
    with disable_current_modes():  # the partition (and a compiler's joint passes) outside the caller's capture
        parts = split(joint)
    outputs = tuple(o.meta for o in sig.outputs)
    writes = tuple(sig.primal_positions[p] for p in sig.mutated_primals)
    written = tuple(TensorMeta.of(n.meta["val"]) for n in
                    parts.forward.graph.find_nodes(op="output")[0].args[0][len(outputs):len(outputs) + len(writes)])
    if parts.backward is None:
        return Region(name, parts.forward, None, outputs, (), (), (), (), (), writes, written)
    convention = parts.convention
    backward, saved_names = _views_recomputed(parts.forward, parts.backward, convention.backward_saved_names)
    returned = [n.name if isinstance(n, fx.Node) else None
                for n in parts.forward.graph.find_nodes(op="output")[0].args[0][:len(outputs)]]
    forward, saved_nodes = _saving_only(parts.forward, len(outputs) + len(writes),
                                        [n for n in saved_names if n not in returned])
    saved = tuple(TensorMeta.of(n.meta["val"]) for n in saved_nodes)
    operands_in_order = [n.name for n in parts.forward.graph.find_nodes(op="placeholder")]
    computed = [n.name for n in saved_nodes]
    values = {n.name: n.meta.get("val") for n in parts.forward.graph.nodes}
    differentiable = [k for k, o in enumerate(sig.outputs) if o.has_tangent]
    backward_saved = tuple(("operand", operands_in_order.index(n)) if n in operands_in_order
                           else ("output", returned.index(n)) if n in returned
                           else ("saved", computed.index(n)) if n in computed else ("size", values[n])
                           for n in saved_names)
    backward_outputs = tuple(differentiable[t] for t in convention.backward_tangents)
    if any(("operand", k) in backward_saved for k in writes):
        return _inline(name, "its backward reads an operand it writes", automatic)
    backward, grad_operands = _without_missing_grads(backward)
    grads = tuple(TensorMeta.of(n.meta["val"]) for n in backward.graph.find_nodes(op="output")[0].args[0])
    return Region(name, forward, backward, outputs, saved, backward_saved, backward_outputs, grad_operands, grads,
                  writes, written)


def _inline(name: str, why: str, automatic: bool) -> None:
    """Says that region `name` is compiled inline, and `why`: a warning for a region the program
    marked, a log line for one found automatically."""
    message = f"aotgraph: region {name} is compiled inline at each occurrence, not once: {why}"
    if automatic:
        logger.info(message)
    else:
        warnings.warn(message, stacklevel=3)


def not_plain(joint: JointGraph) -> Optional[str]:
    """Why `joint` (a region's capture) is not a plain function of its operands, which a
    region must be to be reused; None when it is."""
    sig = joint.signature
    if sig.view_bases:
        return "operands are views of one another"
    writable = config.enabled("region_buffer_writes")
    for k, i in enumerate(sig.inputs):
        if not i.is_tensor:
            return f"operand {k} is not a tensor"
        if i.mutates_metadata or (i.mutates_data and (i.requires_grad or i.mutates_with_grad or not writable)):
            return f"operand {k} is written in place" + (" and needs a gradient" if writable else "")
        if i.written_in_backward or i.replaces_storage or i.storage_resize is not None or i.relayout:
            return f"operand {k}'s storage or layout is changed"
    for k, o in enumerate(sig.outputs):
        if not o.is_tensor or o.base_input is not None or o.base_output is not None or o.view_chain:
            return f"output {k} is {'not a tensor' if not o.is_tensor else 'a view of an operand or output'}"
    for n in joint.graph_module.graph.nodes:
        if n.op != "call_function":
            continue
        unsafe = unsafe_to_recompute(n)
        if unsafe is not None:
            return f"{n.name} ({n.target}): {unsafe}"
        if "unbacked_bindings" in n.meta:
            return f"{n.name} ({n.target}) makes a data-dependent size"
    return None


def _saving_only(forward: fx.GraphModule, num_outputs: int, saved_names: Sequence[str]
                 ) -> tuple[fx.GraphModule, list[fx.Node]]:
    """`forward` returning its outputs and, of its saved values, only the computed ones the
    backward reads (`saved_names`): not the operands (the caller hands the backward its own;
    returned by the region, one would count as a second saved value); and those saved values."""
    output = forward.graph.find_nodes(op="output")[0]
    results = list(output.args[0])
    nodes = {n.name: n for n in forward.graph.nodes}
    computed = [nodes[name] for name in saved_names
                if nodes[name].op != "placeholder" and isinstance(nodes[name].meta.get("val"), torch.Tensor)]
    graph = fx.Graph()
    env: dict = {}
    for node in forward.graph.nodes:
        if node.op == "output":
            graph.output(tuple(env[n] for n in (*results[:num_outputs], *computed)))
        else:
            env[node] = graph.node_copy(node, env.__getitem__)
    return LazyGraphModule(forward, graph), computed


def _view_chain(node: fx.Node) -> Optional[list[fx.Node]]:
    """The view ops from their base (an operand or a value that is no view) to `node`, base
    first; None when `node` is no view (or a view op takes another graph value)."""
    chain = [node]
    while is_view(chain[-1]):
        current = chain[-1]
        if any(isinstance(a, fx.Node) for a in tree_leaves((current.args[1:], current.kwargs))):
            return None
        chain.append(current.args[0])
    return chain[::-1] if len(chain) > 1 else None


def _views_recomputed(forward: fx.GraphModule, backward: fx.GraphModule, saved_names: Sequence[str]
                              ) -> tuple[fx.GraphModule, list[str]]:
    """`backward` taking each saved value that is a view (``t(weight)``, a transposed
    activation) as its base and making the view itself (it costs nothing; saved, it would be a
    region output of its own, with bytes of its own in the caller's accounting, as if it did
    not share its base's memory); the saved names it now reads (bases included)."""
    forward_nodes = {n.name: n for n in forward.graph.nodes}
    chains = {name: _view_chain(forward_nodes[name]) for name in saved_names}
    if not any(chains.values()):
        return backward, list(saved_names)
    graph = fx.Graph()
    env: dict = {}
    placeholders: dict[str, fx.Node] = {}  # name -> placeholder of the new backward
    saved_now: list[str] = []
    views = []
    for node in backward.graph.find_nodes(op="placeholder"):
        chain = chains.get(node.name)
        source = node if chain is None else chain[0]
        if source.name not in placeholders:
            placeholders[source.name] = graph.placeholder(source.name)
            placeholders[source.name].meta = dict(source.meta)
            if source.name in chains or chain is not None:  # not a tangent
                saved_now.append(source.name)
        if chain is None:
            env[node] = placeholders[node.name]
        else:
            views.append((node, chain))
    for node, chain in views:
        value = placeholders[chain[0].name]
        for view in chain[1:]:
            value = graph.node_copy(view, lambda _, previous=value: previous)
        env[node] = value
    for node in backward.graph.nodes:
        if node.op != "placeholder":
            env[node] = graph.node_copy(node, env.__getitem__)
    return LazyGraphModule(backward, graph), saved_now


class Regions:
    """The regions of one capture, each captured and split on its first occurrence:
    ``get(identity, name, program, operands)`` -> its `Region`, or None (record it inline);
    `uses()`: the regions reused so far, with their occurrences."""

    def __init__(self, capture: Callable, split: SplitRegion):
        self.capture, self.split = capture, split
        self.known: dict[tuple, Optional[Region]] = {}
        self.used: dict[tuple, list] = {}  # key -> [automatic, occurrences, seconds]

    def get(self, identity: Any, name: str, program: Callable, operands: Sequence, *,
            automatic: bool = False) -> Optional[Region]:
        with DisableTorchFunction():  # the capture's torch-function mode would see every size read
            if not all(isinstance(o, torch.Tensor) for o in operands):
                return None
            layouts = tuple(TensorMeta.of(o) for o in operands)
        symbolic = any(type(s) is not int for m in layouts for s in (*m.shape, *m.stride, m.storage_offset))
        if symbolic and not config.enabled("symbolic_regions"):
            return None  # recorded inline
        key = (identity, tuple(_symbolic_layout_key(m) for m in layouts) if symbolic else layouts)
        if key not in self.known:
            unique = f"region_{len(self.known)}_{''.join(c if c.isalnum() else '_' for c in name)}"
            start = time.perf_counter()
            with outside_capture_mode() if config.enabled("region_mode_exit") else contextlib.nullcontext():
                self.known[key] = region_of(unique, program, operands, capture=self.capture, split=self.split,
                                            automatic=automatic)
            self.used[key] = [automatic, 0, time.perf_counter() - start]
        if self.known[key] is not None:
            self.used[key][1] += 1
        return self.known[key]

    def uses(self) -> tuple[RegionUse, ...]:
        return tuple(RegionUse(self.known[key].name, automatic, occurrences, seconds)
                     for key, (automatic, occurrences, seconds) in self.used.items() if self.known[key] is not None)


def _symbolic_layout_key(meta: TensorMeta) -> tuple:
    """What a region's graphs assume about an operand of symbolic sizes: its layout, each
    symbolic size as its expression (equal expressions are equal sizes, compared without a guard)."""
    return (size_keys(meta.shape), size_keys(meta.stride), size_keys((meta.storage_offset,)), meta.dtype, meta.device,
            meta.requires_grad)


def _without_missing_grads(backward: fx.GraphModule) -> tuple[fx.GraphModule, tuple[int, ...]]:
    """`backward` returning only the gradients it computes (no ``None``), and their operand indices."""
    output = backward.graph.find_nodes(op="output")[0]
    grads = list(output.args[0])
    present = tuple(k for k, g in enumerate(grads) if g is not None)
    graph = fx.Graph()
    env: dict = {}
    for node in backward.graph.nodes:
        if node.op == "output":
            graph.output(tuple(env[grads[k]] for k in present))
        else:
            env[node] = graph.node_copy(node, env.__getitem__)
    return LazyGraphModule(backward, graph), present


def call_region(recorder, region: Region, operands: Sequence[torch.Tensor]) -> tuple:
    """One occurrence of `region` on `operands` (fakes of the caller's capture): its forward
    recorded now, its backward when autograd reaches it. Returns the outputs (fakes). Without
    the capture's torch-function mode: the call records the region's graph, runs no program.
    The operands it writes get their new values by a ``copy_`` in the caller's capture, as if
    the program had written them there."""
    with DisableTorchFunction():
        results = _RegionCall.apply(recorder, region, *operands)
    outputs = results[:len(region.outputs)]
    for operand, value in zip(region.writes, results[len(region.outputs):]):
        operands[operand].copy_(value)
    return outputs


class _RegionCall(torch.autograd.Function):
    @staticmethod
    def forward(ctx, recorder, region: Region, *operands):
        results = record_call(recorder, _invoke_subgraph, (Subgraph(region.name, region.forward), region.name, *operands),
                              (*region.outputs, *region.written, *region.saved))
        returned = len(region.outputs) + len(region.written)
        outputs = results[:returned]  # with the written operands' new values
        ctx.recorder, ctx.region, ctx.saved, ctx.operands = recorder, region, results[returned:], operands
        # the graph's nodes of the outputs, not the outputs: a Function's outputs on its ctx form a cycle
        ctx.output_nodes = [recorder.node_for(o) for o in outputs[:len(region.outputs)]]
        ctx.mark_non_differentiable(*(o for o, meta in zip(outputs, (*region.outputs, *region.written))
                                      if not meta.requires_grad))
        return outputs

    @staticmethod
    def backward(ctx, *output_grads):
        region = ctx.region
        sources = {"operand": ctx.operands.__getitem__, "output": ctx.output_nodes.__getitem__,
                   "saved": ctx.saved.__getitem__, "size": lambda size: size}
        saved = [sources[kind](value) for kind, value in region.backward_saved]
        arguments = (*saved, *(_as_traced_tangent(output_grads[k]) for k in region.backward_outputs))
        computed = record_call(ctx.recorder, _invoke_subgraph, (Subgraph(region.name + "_backward", region.backward),
                                                                region.name + "_backward", *arguments),
                               region.grads)
        grads: list[Any] = [None] * (len(ctx.needs_input_grad) - 2)
        for operand, grad in zip(region.grad_operands, computed):
            grads[operand] = grad
        return None, None, *grads


def _as_traced_tangent(grad: Any) -> Any:
    """`grad` laid out as the region's capture traced its tangents: contiguous (a channels-last
    gradient from the caller is copied, recorded in the caller's graph; a region compiled on its
    own checks its inputs' strides). A gradient of symbolic sizes is copied unless its strides
    are contiguous for every value of its symbols (asked without a guard): the region's
    backward may view it as contiguous (``view(tangent, [s0*16, 192])``)."""
    if not isinstance(grad, torch.Tensor):
        return grad
    if not has_symbolic_sizes(grad):
        return grad.contiguous()
    return grad if _known_contiguous(grad) else grad.clone(memory_format=torch.contiguous_format)


def _known_contiguous(tensor: torch.Tensor) -> bool:
    expected = 1
    for size, stride in zip(reversed(tensor.shape), reversed(tensor.stride())):
        if not known_equal(size, 1) and not known_equal(stride, expected):
            return False
        expected = expected * size
    return True


class Subgraph(NamedTuple):
    """A graph module passed to a higher-order operator, under the attribute name it gets."""

    name: str
    module: fx.GraphModule


def record_call(recorder, target, arguments: Sequence, results: Sequence[TensorMeta]) -> tuple:
    """``target(*arguments)`` recorded into the caller's graph as one node (each `Subgraph`
    among `arguments` becomes an attribute of the graph, read by a ``get_attr`` node); returns
    fresh fakes of `results`, its outputs."""
    graph = recorder.graph
    args = []
    for argument in arguments:
        if isinstance(argument, Subgraph):
            recorder.constants.setdefault(argument.name, argument.module)
            args.append(_subgraph_node(recorder, argument.name))
        elif type(argument) in (list, tuple):
            args.append(type(argument)(recorder.node_for(a) for a in argument))
        else:
            args.append(recorder.node_for(argument))
    node = graph.call_function(target, tuple(args))
    fakes = tuple(recorder.fake_outputs.empty_strided(m.shape, m.stride, m.dtype, m.device) for m in results)
    node.meta["val"] = fakes
    for index, fake in enumerate(fakes):
        getter = graph.call_function(operator.getitem, (node, index))
        getter.meta["val"] = fake
        recorder.node_of[id(fake)] = getter
    return fakes


def _subgraph_node(recorder, name: str) -> fx.Node:
    """The ``get_attr`` node reading subgraph `name`: one per graph, shared by every call of a
    region (each call would otherwise add a node to the graphs that the partition copies and the
    compilers generate code for); a new one per call with the switch ``shared_subgraph_nodes`` off."""
    if not config.enabled("shared_subgraph_nodes"):
        return recorder.graph.get_attr(name)
    node = recorder.subgraph_nodes.get(name)
    if node is None:
        node = recorder.subgraph_nodes[name] = recorder.graph.get_attr(name)
    return node
