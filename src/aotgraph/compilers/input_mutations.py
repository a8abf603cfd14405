"""Input mutations written by the forward graph itself, for compilers that fuse them.

By default the runtime writes each mutated input back after the forward (one ``copy_`` per
input, from Python). For Inductor, torch.compile's way is better: the forward graph ends with
``copy_(input, new_value)``, which Inductor fuses into the kernel computing the value (batch
norm's running statistics: three copies per layer that cost a kernel launch each otherwise).
Only plain data mutations move: not those autograd records (an input requiring grad), not
layout changes, not inputs whose old value a saved tensor still reads; not those whose new value
another output is a copy or a view of: Inductor drops copies it deems no-ops (a ``clone`` whose
source is no input), then computes the value in the input's memory, and that output would be the
input itself (``x.index_put_(...); return x.clone()``, fuzzer seed 15850; torch.compile returns
the input there); not those whose memory a functional write of another value starts from (Inductor
would write that value there first, `_written_into_by_another`). The values it writes leave the
forward's outputs: returning them too would cost Inductor a buffer each and the autograd.Function
an output each, every call (ResNet-50: 159 of both per step).
"""
from __future__ import annotations

import torch
import torch.fx as fx

from ..artifacts import Partition
from ..graph.naming import primal_name
from ..graph.nodes import aliases_of_placeholders, is_view_of_memory

aten = torch.ops.aten


def with_mutations_in_graph(parts: Partition) -> tuple[fx.GraphModule, tuple[int, ...]]:
    """(a copy of the forward graph that also writes the movable input mutations, the primal
    indices it writes). The copy's outputs are the forward's without those new values; the
    runtime's plan (`runtime._Plan`) indexes outputs accordingly."""
    sig = parts.joint.signature
    grad_mutated, relaid = set(sig.grad_mutated_primals), set(sig.metadata_mutated_primals)
    forward = parts.forward
    output = forward.graph.find_nodes(op="output")[0]
    outputs = list(output.args[0])
    saved = outputs[parts.joint.num_fwd_outputs:]
    first_value = len(sig.tensor_output_positions)
    placeholders = {n.name: n for n in forward.graph.find_nodes(op="placeholder")}
    # user outputs that are views of inputs: the runtime makes them again from the inputs, not the graph's value
    # (but those laid out by the graph's value, `OutputInfo.layout_from_graph`: the runtime finds them in the
    # memory of the written input's new value, which must then stay an output)
    rebuilt_from_inputs = {k for k, i in enumerate(sig.tensor_output_positions)
                           if sig.outputs[i].base_input is not None and not sig.outputs[i].layout_from_graph}
    positions: dict = {}  # output node -> its positions, but those of outputs the runtime makes again
    for i, o in enumerate(outputs):
        if isinstance(o, fx.Node) and i not in rebuilt_from_inputs:
            positions.setdefault(o, set()).add(i)
    movable = []
    for k, p in enumerate(sig.mutated_primals):
        name, value = primal_name(p), outputs[first_value + k]
        if (p in grad_mutated or p in relaid or name not in placeholders or not isinstance(value, fx.Node)
                or value is placeholders[name] or aliases_of_placeholders(saved, {name})
                or aliases_of_placeholders([value], set(placeholders))
                or _copied_to_outputs(value, first_value + k, positions)
                or _written_into_by_another(placeholders[name], value)):
            continue
        movable.append((p, placeholders[name], value))
    if not movable:
        return forward, ()
    graph, env = fx.Graph(), {}
    copied = list(graph.graph_copy(forward.graph, env))
    for _, placeholder, value in movable:  # appended: after every read of the old values
        write = graph.call_function(aten.copy_.default, (env[placeholder], env[value]))
        write.meta["val"] = placeholder.meta["val"]
        write.meta["original_aten"] = aten.copy_.default  # Inductor names the kernel it fuses into "..._copy_"
    moved_positions = {first_value + sig.mutated_primals.index(p) for p, _, _ in movable}
    graph.output(tuple(v for i, v in enumerate(copied) if i not in moved_positions))
    return fx.GraphModule(forward, graph), tuple(p for p, _, _ in movable)


# Ops Inductor may replace by their source (`remove_noop_ops`: same layout), besides views.
_NOOP_CANDIDATES = frozenset(
    op for op in (aten.clone, aten.alias, aten.detach, aten.slice_scatter, aten.repeat, aten.constant_pad_nd,
                  aten.ceil, aten.floor, aten.round, aten.trunc, aten.pow, aten.cat, aten.copy, aten._to_copy,
                  getattr(torch.ops.prims, "convert_element_type", None), getattr(torch.ops.prims, "device_put", None))
    if op is not None)


# Functional ops that Inductor computes in their first operand's memory where nothing reads it
# afterwards, an input among them where the graph copies a new value into it at its end.
_REINPLACEABLE = frozenset((aten.index_put.default, aten._unsafe_index_put.default, aten.slice_scatter.default,
                            aten.select_scatter.default, aten.diagonal_scatter.default, aten.as_strided_scatter.default))


def _written_into_by_another(placeholder: fx.Node, value: fx.Node) -> bool:
    """Whether a functional write into `placeholder` (or a view of it, or a copy Inductor may drop
    as a no-op) other than `value`, the input's new value, is in the graph: with ``copy_(input,
    value)`` at its end, Inductor takes the input's memory as free until then and writes that
    other value there, then overwrites it with `value` (``y = x.clone(); y[3:] /= 3;
    x.masked_fill_(...); return y``: Inductor drops the clone, and y came back as the input's new
    value; fuzzer seed 160)."""
    pending, seen = [placeholder], set()
    while pending:
        node = pending.pop()
        for user in node.users:
            if user in seen or user.op != "call_function":
                continue
            seen.add(user)
            if user.target in _REINPLACEABLE and user.args[0] is node and user is not value:
                return True
            if _same_memory(user):
                pending.append(user)  # (a copy that Inductor may drop as a no-op is the input to it)
    return False


def _copied_to_outputs(value: fx.Node, position: int, positions: dict) -> bool:
    """Whether `value` (the output at `position`) or a chain of views and possible no-op copies of
    it is an output at another of `positions` (output node -> its positions)."""
    pending, seen = [value], set()
    while pending:
        node = pending.pop()
        if positions.get(node, set()) - {position}:
            return True
        for user in node.users:
            if user not in seen and user.op == "call_function" and _same_memory(user):
                seen.add(user)
                pending.append(user)
    return False


def _same_memory(node: fx.Node) -> bool:
    """Whether `node` may be its first argument's memory after Inductor: a view, one output of a
    multi-output view (``split``'s getitem: seed 2330, a chunk of an input written in place and
    returned), or a copy Inductor may drop as a no-op."""
    return is_view_of_memory(node) or getattr(node.target, "overloadpacket", None) in _NOOP_CANDIDATES
