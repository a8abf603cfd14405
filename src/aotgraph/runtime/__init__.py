"""Stage 4: compiled graphs + metadata -> a function of the user's flat inputs.

Training graphs run inside a generated ``torch.autograd.Function``; inference graphs
run directly. Around the graphs, the runtime writes mutated inputs back, re-applies
in-place layout changes, and rebuilds outputs that are views (of inputs, of other outputs,
of intermediates the forward returns as bases) by replaying the program's view ops on the
real base, outside the Function (so ``._base``, ``grad_fn``, version counters and later
in-place ops behave as in eager).
Everything that does not depend on the call's values is computed once, here.
"""
from __future__ import annotations

import operator
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.fx as fx
from torch.utils._pytree import tree_flatten, tree_unflatten

from .. import config
from ..artifacts import CompiledGraphs, OutputInfo, Signature, TensorMeta, ViewStep
from ..errors import CompilerError, UnsupportedOp
from ..graph.naming import primal_name
from ..graph.ops import bytes_needed
from ..graph.nodes import aliases_of_placeholders, placeholders_viewed
from ..graph.sizes import has_symbolic_sizes
from ..torch_private.autocast import DisableAutocast, any_autocast_enabled
from ..torch_private.views import set_creation_meta
from ..torch_private.versions import set_version

__all__ = ["build_runtime", "autocast_on", "ForwardFacts", "forward_facts"]


@dataclass(frozen=True)
class ForwardFacts:
    """What a training runtime reads of the forward graph, so that one can be built without
    the graph (a disk cache entry stores these and decodes its graphs only when read).

    `saved_is_tensor`: per saved value (the forward's outputs after its first
    ``num_fwd_outputs``, as the compiled forward returns them), whether it is a tensor.
    `tangent_layouts`: ``(shape, dtype, device)`` of each forward output a tangent is given
    for, in the backward's tangent order. `tangents_symbolic`: any of those has symbolic sizes.
    `copied_saved`: saved values that alias an input the runtime overwrites or relays.
    `refusal_primals`: primals requiring grad that some saved value is computed from.
    `tangents_of_grads`: per gradient the backward returns, the backward's tangents (positions in
    its tangent order) it reads, as a bit mask (0: none, or unknown).
    `viewed_primals`: primals (positions) some saved value is a view of, that the runtime writes
    nothing into: where the compiled forward makes its views without the input's version counter
    (Inductor's ``reinterpret_tensor``), the runtime checks their versions itself.
    `unread_primals`: primals (positions) requiring grad that the forward graph does not read
    (a tensor attribute the forward assigns before reading it: ``prune``'s ``weight``): the
    Function takes them detached, since in eager no gradient edge leads to them (linked, a
    backward reached the freed graph of the call that made them)."""

    saved_is_tensor: tuple
    tangent_layouts: tuple
    tangents_symbolic: bool
    copied_saved: tuple
    refusal_primals: tuple
    tangents_of_grads: tuple = ()
    viewed_primals: tuple = ()
    unread_primals: tuple = ()


def forward_facts(compiled: CompiledGraphs) -> Optional[ForwardFacts]:
    """The `ForwardFacts` of `compiled`'s forward graph (None for an inference entry, whose
    runtime reads no graph)."""
    joint = compiled.partition.joint
    if joint.is_inference:
        return None
    plan = _Plan(joint.signature, joint.num_fwd_outputs, compiled.mutations_in_graph)
    return _forward_facts(compiled.partition, plan)


def build_runtime(compiled: CompiledGraphs, facts: Optional[ForwardFacts] = None) -> Callable[..., Any]:
    """``call(*flat_inputs)``: the user's outputs in their pytree structure (``sig.out_spec``).
    `facts`: `forward_facts(compiled)` where known already (then the forward graph is not
    read); by default computed from the graph.

    When nothing needs rearranging (every input a tensor, every output a fresh tensor, no
    mutation), `call` is the autograd.Function's ``apply`` itself: no Python frame of ours
    runs between the caller and the Function.
    """
    call = _build_call(compiled, facts)
    mode = compiled.partition.joint.signature.grad_enabled_after
    return call if mode is None else _then_grad_mode(call, mode)


def _then_grad_mode(call: Callable, mode: bool) -> Callable:
    """`call`, then grad mode set to `mode`: the program's ``torch.set_grad_enabled(mode)``
    outlives the call in eager, so it does after the compiled call too."""
    def call_then_set_grad_mode(*flat_inputs):
        out = call(*flat_inputs)
        torch._C._set_grad_enabled(mode)
        return out

    return call_then_set_grad_mode


def _build_call(compiled: CompiledGraphs, facts: Optional[ForwardFacts]) -> Callable[..., Any]:
    partition = compiled.partition
    joint = partition.joint
    sig = joint.signature
    plan = _Plan(sig, joint.num_fwd_outputs, compiled.mutations_in_graph)
    unflatten = _unflattener(sig.out_spec)
    returns_leaf = plan.is_direct and sig.out_spec.is_leaf()
    if joint.is_inference:
        run_graphs = _inference_runner(compiled.forward)
    else:
        run_graphs = _training_runner(compiled, plan, returns_leaf, facts or _forward_facts(partition, plan))
        if not torch.is_grad_enabled():
            # Captured under no_grad (grad mode is in the cache key, so it runs under no_grad too), yet
            # differentiable: the program has enable_grad regions, and the Function must record.
            run_graphs = _under_enable_grad(run_graphs)
        if returns_leaf or (plan.is_direct and unflatten is tuple):
            return run_graphs  # the Function's forward returns the user's output as is

    if plan.is_direct:
        def call_direct(*flat_inputs):
            return unflatten(run_graphs(*flat_inputs))

        return call_direct

    def call(*flat_inputs):
        primals = flat_inputs if plan.every_input_primal else [flat_inputs[i] for i in plan.primal_positions]
        for p, flag in plan.flags_set:  # (before the graphs, as the program did before reading them)
            primals[p].requires_grad_(flag)
        if plan.storage_resizes:
            plan.give_memory(primals)
        graph_outputs = run_graphs(*primals)
        if plan.versions_bumped:  # written by the compiled forward itself, or by a write of the same value
            torch._C._increment_version([primals[p] for p in plan.versions_bumped])
        plan.write_back(primals, graph_outputs)
        if plan.storage_resizes:
            plan.resize_storages(primals)
        return unflatten(plan.user_outputs(primals, graph_outputs))

    return call


def _under_enable_grad(run_graphs: Callable) -> Callable:
    def run(*primals):
        with torch.enable_grad():
            return run_graphs(*primals)

    return run


def _unflattener(out_spec) -> Callable[[list], Any]:
    """``tree_unflatten(·, out_spec)``, short-cut for a single tensor and a flat tuple."""
    if out_spec.is_leaf():
        return operator.itemgetter(0)
    if out_spec == tree_flatten((0,) * out_spec.num_leaves)[1]:
        return tuple
    return lambda flat_out: tree_unflatten(flat_out, out_spec)


class _Plan:
    """Where each graph output goes: user outputs, mutated inputs, layout changes."""

    def __init__(self, sig: Signature, num_fwd_outputs: int, mutations_in_graph: tuple[int, ...] = ()):
        self.primal_positions = sig.primal_positions
        self.every_input_primal = tuple(self.primal_positions) == tuple(range(len(sig.inputs)))
        self.outputs: tuple[OutputInfo, ...] = sig.outputs
        self.num_user_tensors = len(sig.tensor_output_positions)
        self.mutated = sig.mutated_primals
        in_graph = set(mutations_in_graph)  # the forward graph writes these itself and does not return them
        # Version counters the runtime bumps after the graphs, as eager's in-place ops moved them (a
        # tensor saved for an earlier backward then reads as modified there): inputs the compiled
        # forward writes itself, and those the program moved with no write to replay (`moves_version`).
        self.versions_bumped = tuple(p for p in self.mutated if p in in_graph) \
            if config.enabled("versions_of_graph_writes") else ()
        self.versions_bumped += tuple(p for p, i in enumerate(self.primal_positions) if sig.inputs[i].moves_version)
        # Positions (in the joint's forward outputs) of the values the compiled forward leaves out.
        self.left_out = frozenset(self.num_user_tensors + k for k, p in enumerate(self.mutated) if p in in_graph)
        grad_mutated = set(sig.grad_mutated_primals)
        returned = [p for p in self.mutated if p not in in_graph]  # their new values follow the user outputs
        self.returned_with_grad = [p in grad_mutated for p in returned]
        self.relaid = sig.metadata_mutated_primals
        # Per relaid input: the program's in-place view ops, replayed on the real input.
        self.relayouts = [sig.inputs[self.primal_positions[p]].relayout for p in self.relaid]
        # Relaid inputs the program gave other memory (x.set_(y)): the runtime set_s them too.
        self.storage_replaced = {p: sig.inputs[self.primal_positions[p]] for p in self.relaid
                                 if sig.inputs[self.primal_positions[p]].replaces_storage}
        # Inputs whose storage the program resizes (FSDP's free and reallocate): primal, what it does.
        self.storage_resizes = [(p, sig.inputs[i].storage_resize) for p, i in enumerate(self.primal_positions)
                                if sig.inputs[i].storage_resize is not None]
        # Inputs whose requires_grad the program sets before reading them: primal, the flag.
        self.flags_set = [(p, sig.inputs[i].sets_requires_grad) for p, i in enumerate(self.primal_positions)
                          if sig.inputs[i].sets_requires_grad is not None]
        self.num_returned = len(returned)  # the runtime writes these back
        self.new_value_index = {p: self.num_user_tensors + k for k, p in enumerate(returned)}
        self.written_plain = [(k, p) for k, p in enumerate(returned) if p not in grad_mutated]
        self.written_with_grad = [(k, p) for k, p in enumerate(returned) if p in grad_mutated]
        self.num_fwd_outputs = num_fwd_outputs - len(self.left_out)
        self.first_base = self.num_user_tensors + self.num_returned + len(self.relaid)
        self.num_bases = len(sig.view_bases)
        # Outputs rebuilt from other outputs come after those, so a base is ready when read.
        # An output that is another output again (`is_output`) comes after those: that one may be rebuilt too.
        # So do outputs rebuilt from a later one (`capture._rebuild_from_later_outputs`).
        self.rebuilt_last = tuple(i for i, o in enumerate(self.outputs) if o.is_tensor and o.base_output is not None
                                  and (o.view_chain or o.layout_from_graph or o.base_output > i and not o.is_output))
        self.same_objects = tuple(i for i, o in enumerate(self.outputs) if o.is_tensor and o.is_output)
        # Outputs traced at the very layout of the output they view (two detaches of one view): the
        # traced layout of that output, to tell whether the compiler laid it out otherwise (`_view_of`).
        self.base_layouts = {i: _layout(o.meta) for i, o in enumerate(self.outputs)
                             if o.is_tensor and o.base_output is not None and _layout(o.meta) is not None
                             and _layout(o.meta) == _layout(self.outputs[o.base_output].meta)}
        primal_of_position = {pos: p for p, pos in enumerate(self.primal_positions)}
        self.alias_primal = [
            primal_of_position[o.base_input] if o.is_tensor and o.base_input is not None else None
            for o in self.outputs
        ]
        self.written_alias_primal = [
            primal_of_position[o.written_alias_of] if o.is_tensor and o.written_alias_of is not None else None
            for o in self.outputs
        ]
        # Outputs eager made as views that autograd refuses writes into, rebuilt here by as_strided
        # (symbolic sizes), and views made under no_grad: the runtime marks them so
        # (`OutputInfo.creation_meta`). (Views it rebuilds by the program's own view ops are
        # marked by them; marking those too broke outputs of inputs relaid after, seed 2099.)
        self.creation_metas = [(i, o.creation_meta) for i, o in enumerate(self.outputs)
                               if o.is_tensor and (o.creation_meta == "NO_GRAD_MODE" or o.creation_meta is not None
                                                   and o.layout_from_graph)]
        # Leaves the program made require grad (`OutputInfo.made_leaf`): made leaves here too.
        self.made_leaves = [i for i, o in enumerate(self.outputs) if o.is_tensor and o.made_leaf]
        # Nothing to rearrange: every input a tensor, every output a fresh tensor, no mutation.
        self.is_direct = (
            len(self.primal_positions) == len(sig.inputs)
            and all(o.is_tensor and o.python_scalar is None for o in self.outputs)
            and not any(p is not None for p in self.alias_primal)
            and all(o.base_output is None and o.base_of_outputs is None for o in self.outputs)
            and not self.mutated and not self.relaid and not self.storage_resizes and not self.flags_set
            and not self.made_leaves and not self.versions_bumped
        )

    def give_memory(self, primals: list) -> None:
        """Before the graphs: a freed input that the program gives memory gets it now, so the graphs
        never read or write freed memory (eager's memory there is uninitialized until written too)."""
        for p, resize in self.storage_resizes:
            storage = primals[p].untyped_storage()
            if storage.nbytes() >= bytes_needed(primals[p]):
                continue
            if resize.bytes_inside is not None:
                storage.resize_(resize.bytes_inside)
            elif not resize.arrives_freed:
                raise UnsupportedOp(
                    f"the input at flat position {self.primal_positions[p]} arrives with its storage freed "
                    f"({storage.nbytes()} bytes), but the function was compiled for it holding its memory and reads it",
                    "run", "give its storage its memory back before the call, or compile the function anew")

    def resize_storages(self, primals: list) -> None:
        """After the write-back: each resized input's storage gets the size the program left it with."""
        for p, resize in self.storage_resizes:
            storage = primals[p].untyped_storage()
            if storage.nbytes() != resize.bytes_after:
                storage.resize_(resize.bytes_after)

    def write_back(self, primals: list, graph_outputs: list) -> None:
        if not self.num_returned and not self.relaid:
            return
        start = self.num_user_tensors
        with torch.no_grad():  # one grad-mode switch for all plain writes (batch norm: 3 per layer)
            for k, p in self.written_plain:
                new_value = graph_outputs[start + k]
                if new_value is not primals[p]:
                    primals[p].copy_(new_value)
                else:  # the graph wrote it in place: its version moves as eager's in-place op moved it
                    torch._C._increment_version([new_value])
        for k, p in self.written_with_grad:  # autograd records the write, as it recorded eager's in-place op
            new_value = graph_outputs[start + k]
            if new_value is not primals[p]:
                primals[p].copy_(new_value)
            else:
                torch._C._increment_version([new_value])
        start += self.num_returned
        for k, p in enumerate(self.relaid):
            view = graph_outputs[start + k]
            replaced = self.storage_replaced.get(p)
            if replaced is not None:
                version = primals[p]._version
                with torch.no_grad():
                    if replaced.storage_source is None:
                        primals[p].set_(view)
                    else:  # after that input's own write-back, above
                        layout = replaced.storage_layout
                        primals[p].set_(primals[replaced.storage_source].untyped_storage(), layout.storage_offset,
                                        layout.shape, layout.stride)
                if replaced.keeps_version:  # `t.data = value`: eager's counter stays
                    set_version(primals[p], version)
                continue
            steps = self.relayouts[k] or (ViewStep(_AS_STRIDED_, (view.shape, view.stride(), view.storage_offset())),)
            # On an input requiring grad, autograd records each op as it did eager's (TBackward1, ...).
            with torch.set_grad_enabled(torch.is_grad_enabled() and primals[p].requires_grad):
                for step in steps:
                    step(primals[p])

    def user_outputs(self, primals: list, graph_outputs: list) -> list:
        flat, k = [], 0
        for info, alias_primal, written_alias in zip(self.outputs, self.alias_primal, self.written_alias_primal):
            if not info.is_tensor:
                flat.append(info.constant)
                continue
            value = graph_outputs[k]
            k += 1
            if written_alias is not None:  # `OutputInfo.written_alias_of`: the memory holds this value already
                meta, memory = info.meta, primals[written_alias].detach()
                if not info.layout_from_graph:  # (else: symbolic sizes, the input's whole memory in its layout)
                    memory = memory.as_strided(meta.shape, meta.stride, meta.storage_offset)
                value = memory.copy_(value)
            elif info.is_input:
                value = primals[alias_primal]
            elif alias_primal is not None:
                laid_out = value if info.layout_from_graph else None
                if laid_out is not None and alias_primal in self.new_value_index:
                    laid_out = _on_written_input(laid_out, primals[alias_primal],
                                                 graph_outputs[self.new_value_index[alias_primal]])
                value = _view_of(primals[alias_primal], info, laid_out)
            elif info.base_of_outputs is not None:
                base = graph_outputs[self.first_base + info.base_of_outputs]
                value = _laid_out_view(base, info, value) if info.layout_from_graph else _view_of(base, info)
            elif info.base_output is not None and info.base_output < len(flat) and not info.view_chain \
                    and not info.layout_from_graph and not info.is_output:
                value = _view_of(flat[info.base_output], info, base_layout=self.base_layouts.get(len(flat)))
            elif info.python_scalar is not None:
                value = value.item()
            flat.append(value)
        for i in self.rebuilt_last:
            info = self.outputs[i]
            base = flat[info.base_output]
            flat[i] = _laid_out_view(base, info, flat[i]) if info.layout_from_graph else _view_of(base, info)
        for i, made in self.creation_metas:
            if made == "NO_GRAD_MODE":  # eager's: requires grad as its base does, with no history
                with torch.no_grad():
                    p = self.alias_primal[i]
                    value = flat[i]
                    flat[i] = _ALIAS(value) if p is None else primals[p].as_strided(
                        value.shape, value.stride(), value.storage_offset())
            else:
                set_creation_meta(flat[i], made)
        for i in self.made_leaves:  # (a leaf of ours, or the graph's value as one: eager's has no history)
            value = flat[i]
            flat[i] = (value if value.is_leaf else value.detach()).requires_grad_()
        for i in self.same_objects:
            flat[i] = flat[self.outputs[i].base_output]
        return flat



_AS_STRIDED_ = torch.ops.aten.as_strided_.default
_ALIAS = torch.ops.aten.alias.default


def _view_of(base: torch.Tensor, info: OutputInfo, laid_out: Optional[torch.Tensor] = None,
             base_layout: Optional[tuple] = None) -> torch.Tensor:
    """Rebuild an output that is a view of `base` (an input, another output, a base the
    forward returned) as a real view of it: the program's view ops replayed, else as_strided
    (at the layout of `laid_out`, the graph's own output, for `OutputInfo.layout_from_graph`).
    `base_layout`: where the output was traced at the very layout of `base`, another output,
    that layout: where the compiler laid `base` out otherwise (Inductor picks an intermediate's
    layout, and an output viewing it follows), the output is an alias of `base` as the compiler
    laid it out (two detaches of one view: a write into one reaches the other)."""
    meta = info.meta
    if base_layout is not None and (tuple(base.shape), base.stride(), base.storage_offset()) != base_layout:
        laid_out = base
    if meta.requires_grad or not torch.is_grad_enabled() or not base.requires_grad:
        # As eager under no_grad: a view of a tensor requiring grad reports requires_grad (unless detached).
        # A view of a tensor requiring none is made in grad mode, as eager's: a later write with
        # gradients into its base gives it a history autograd can read (seed 3753).
        view = _replay(base, info, laid_out)
        return view.detach() if info.detached and view.requires_grad else view
    with torch.no_grad():
        view = _replay(base, info, laid_out)
    return view.detach() if view.requires_grad else view


def _layout(meta: TensorMeta) -> Optional[tuple]:
    """(shape, stride, storage offset) of `meta`, None where a size is symbolic."""
    layout = tuple(meta.shape), tuple(meta.stride), meta.storage_offset
    return layout if all(type(v) is int for v in (*layout[0], *layout[1], layout[2])) else None


def _laid_out_view(base: torch.Tensor, info: OutputInfo, laid_out: torch.Tensor) -> torch.Tensor:
    """An output made by view ops of symbolic arguments from `base`, another output or a base the
    forward returned (`OutputInfo.layout_from_graph`): a view of `base` at the layout of the
    graph's own output `laid_out`, where that is in `base`'s memory (a write into one then reaches
    the other's history, as eager's); else `laid_out` itself (a compiler that copied it)."""
    if laid_out.untyped_storage().data_ptr() != base.untyped_storage().data_ptr():
        return laid_out
    return _view_of(base, info, laid_out)


def _on_written_input(laid_out: torch.Tensor, base: torch.Tensor, new_value: torch.Tensor) -> torch.Tensor:
    """`laid_out`, the graph's output for a view of input `base` that the program wrote, moved
    onto `base`'s memory where it views the graph's `new_value` of that input (the written value,
    a tensor of the graph's own) laid out as `base` is: the same place in the input's memory,
    which holds that value once written back. Else `laid_out` as it is."""
    if laid_out.untyped_storage().data_ptr() != new_value.untyped_storage().data_ptr() \
            or laid_out.untyped_storage().data_ptr() == base.untyped_storage().data_ptr() \
            or new_value.shape != base.shape or new_value.stride() != base.stride():
        return laid_out
    offset = base.storage_offset() + laid_out.storage_offset() - new_value.storage_offset()
    return base.detach().as_strided(laid_out.shape, laid_out.stride(), offset)


def _replay(base: torch.Tensor, info: OutputInfo, laid_out: Optional[torch.Tensor] = None) -> torch.Tensor:
    if laid_out is not None:
        if laid_out.untyped_storage().data_ptr() != base.untyped_storage().data_ptr():
            raise CompilerError("the compiled forward returned a copy where the program returns a view of an input "
                                "with symbolic sizes", "runtime",
                                "return the view's memory from the compiler (eager and Inductor do), or compile with "
                                "static shapes (AOTGRAPH_DISABLE=symbolic_input_views compiles such graphs per size)")
        return base.as_strided(laid_out.shape, laid_out.stride(), laid_out.storage_offset())
    if not info.view_chain:
        meta = info.meta
        return base.as_strided(meta.shape, meta.stride, meta.storage_offset)
    for step in info.view_chain:
        base = step(base)
    return base


autocast_on: Callable[[], bool] = any_autocast_enabled


def _call_graph(graph: Callable, args: list):
    """Graphs already hold autocast's casts; running them under autocast would cast twice."""
    if autocast_on():
        with DisableAutocast():
            return graph(args)
    return graph(args)


def _inference_runner(forward: Callable):
    def run(*primals) -> list:
        with torch.no_grad():
            return list(_call_graph(forward, list(primals)))

    return run


def _primals_behind(graph: fx.Graph, values: list) -> list[int]:
    """Positions of the placeholders of `graph` that any of `values` is computed from."""
    seen: set = set()
    stack = [v for v in values if isinstance(v, fx.Node)]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(node.all_input_nodes)
    return [i for i, p in enumerate(graph.find_nodes(op="placeholder")) if p in seen]


def _differentiable_outputs(sig: Signature, plan: _Plan) -> list[int]:
    """Positions among the compiled forward's first outputs of those a gradient flows back to."""
    user_has_tangent = [o.has_tangent for o in sig.outputs if o.is_tensor]
    differentiable = [i for i, r in enumerate(user_has_tangent) if r]
    differentiable += [plan.num_user_tensors + k for k, g in enumerate(plan.returned_with_grad) if g]
    differentiable += [plan.first_base + k for k, b in enumerate(sig.view_bases) if b.requires_grad]
    return differentiable


def _tangent_order(partition, differentiable: list[int]) -> list[int]:
    """Tangent k of the backward: the gradient of this forward output (one of `differentiable`,
    see `_differentiable_outputs`), in the order its calling convention gives."""
    return [differentiable[k] for k in partition.convention.backward_tangents]


def _forward_facts(partition, plan: _Plan) -> ForwardFacts:
    """`ForwardFacts` read from `partition`'s forward graph."""
    sig = partition.joint.signature
    forward_outputs = [v for i, v in enumerate(partition.forward.graph.find_nodes(op="output")[0].args[0])
                       if i not in plan.left_out]  # as the compiled forward returns them
    saved_nodes = forward_outputs[plan.num_fwd_outputs:]
    differentiable = _differentiable_outputs(sig, plan)
    tangent_order = _tangent_order(partition, differentiable)
    tangent_values = [forward_outputs[i].meta["val"] for i in tangent_order]
    # Refusing a double backward links the gradients to the primals the saved values are
    # computed from (the backward reads those values as constants); the cache key fixes
    # which primals require grad. A gradient that reads no primal has no derivative to refuse.
    primal_requires_grad = [sig.inputs[i].requires_grad for i in sig.primal_positions]
    rewritten = {primal_name(p) for p in (*plan.mutated, *plan.relaid, *plan.versions_bumped,
                                          *sig.backward_written_primals)}
    rewritten |= {primal_name(p) for p, i in enumerate(sig.primal_positions) if sig.inputs[i].views_relaid}
    viewed = placeholders_viewed(saved_nodes) - rewritten
    return ForwardFacts(
        saved_is_tensor=tuple(isinstance(n.meta.get("val"), torch.Tensor) for n in saved_nodes),
        tangent_layouts=tuple((tuple(v.shape), v.dtype, v.device) for v in tangent_values),
        tangents_symbolic=any(has_symbolic_sizes(v) for v in tangent_values),
        # A saved value that aliases an input the runtime overwrites or relays keeps the old data.
        copied_saved=tuple(aliases_of_placeholders(saved_nodes, {primal_name(p) for p in (
            *plan.mutated, *plan.relaid, *plan.versions_bumped)} | {
            primal_name(p) for p, i in enumerate(sig.primal_positions) if sig.inputs[i].views_relaid})),
        viewed_primals=tuple(p for p in range(len(sig.primal_positions)) if primal_name(p) in viewed),
        refusal_primals=tuple(p for p in _primals_behind(partition.forward.graph, saved_nodes)
                              if primal_requires_grad[p]),
        unread_primals=_unread_primals(partition, plan, primal_requires_grad),
        tangents_of_grads=_tangents_of_grads(partition, len(sig.primal_positions)))


def _unread_primals(partition, plan: _Plan, requires_grad: list) -> tuple:
    """`ForwardFacts.unread_primals`: primals requiring grad that the forward graph does not read,
    the runtime writes nothing into, and the backward gives no gradient (a write under no_grad
    before the read leaves the placeholder unread, and eager's gradient still goes to the tensor)."""
    written = {*plan.mutated, *plan.relaid, *plan.versions_bumped, *partition.joint.signature.backward_written_primals}
    placeholders = partition.forward.graph.find_nodes(op="placeholder")
    grads = partition.backward.graph.find_nodes(op="output")[0].args[0][:len(placeholders)]
    return tuple(p for p, node in enumerate(placeholders) if requires_grad[p] and not node.users and p not in written
                 and p < len(grads) and not isinstance(grads[p], fx.Node))


def _tangents_of_grads(partition, num_grads: int) -> tuple:
    """`ForwardFacts.tangents_of_grads`: the tangents each gradient reads in `partition`'s backward
    graph, and those whose outputs' histories reach its primal in capture's autograd graph
    (`JointGraph.tangents_reaching_grads`: a decomposition may have folded a path that gives
    zeros into a constant, after which eager still gives a gradient, seed 6815)."""
    graph = partition.backward.graph
    num_tangents = len(partition.convention.backward_tangents)
    placeholders = graph.find_nodes(op="placeholder")
    mask_of = {node: 1 << k for k, node in enumerate(placeholders[len(placeholders) - num_tangents:])}
    for node in graph.nodes:
        if node.op != "placeholder":
            mask = 0
            for source in node.all_input_nodes:
                mask |= mask_of[source]
            mask_of[node] = mask
        elif node not in mask_of:
            mask_of[node] = 0
    grads = graph.find_nodes(op="output")[0].args[0][:num_grads]
    masks = [mask_of[g] if isinstance(g, fx.Node) else 0 for g in grads]
    reaching = partition.joint.tangents_reaching_grads
    if reaching:
        order = partition.convention.backward_tangents
        position = {t: k for k, t in enumerate(order)}
        in_order = order == tuple(range(len(order)))  # bit t is bit t (tangents past the last: none)
        for j, (g, joint_mask) in enumerate(zip(grads, reaching)):
            if isinstance(g, fx.Node) and joint_mask:
                masks[j] |= (joint_mask & ((1 << len(order)) - 1) if in_order else
                             sum(1 << position[t] for t in range(joint_mask.bit_length())
                                 if joint_mask >> t & 1 and t in position))
    return tuple(masks)


def _training_runner(compiled: CompiledGraphs, plan: _Plan, returns_leaf: bool, facts: ForwardFacts):
    """``apply(*primals)`` of a generated autograd.Function: the forward graph's first
    `num_fwd_outputs` outputs (the only one, not in a tuple, when `returns_leaf`). `facts`:
    what it needs of the forward graph."""
    partition = compiled.partition
    sig = partition.joint.signature
    num_fwd = plan.num_fwd_outputs
    forward, backward = compiled.forward, compiled.backward

    saved_is_tensor = list(facts.saved_is_tensor)
    differentiable = _differentiable_outputs(sig, plan)
    # The backward takes saved values, then tangents (tangent k: the gradient of the k-th
    # differentiable forward output), in the order its calling convention gives.
    convention = partition.convention
    saved_position = {name: i for i, name in enumerate(convention.saved_names)}
    saved_order = [saved_position[name] for name in convention.backward_saved_names]
    tangent_order = _tangent_order(partition, differentiable)
    # Slots of outputs that are views of a returned base: the runtime rebuilds them from the base,
    # so the Function returns None there (a compiler may hand back the base itself in that slot,
    # and marking it non-differentiable would cut the base's gradient).
    rebuilt_from_base = frozenset(i for i, o in enumerate(o for o in sig.outputs if o.is_tensor)
                                  if o.base_of_outputs is not None)
    # Of those, the ones laid out by the graph's own view (`OutputInfo.layout_from_graph`): the
    # Function returns a detached alias of it there, non-differentiable, for its layout and memory.
    laid_out_by_graph = frozenset(i for i, o in enumerate(o for o in sig.outputs if o.is_tensor)
                                  if o.base_of_outputs is not None and o.layout_from_graph)
    non_differentiable = [i for i in range(num_fwd) if i not in differentiable and i not in rebuilt_from_base]
    differentiable_slots = [i for i in range(num_fwd) if i in differentiable and i not in rebuilt_from_base]
    # Slots that could hold one object between them (`_one_object_per_slot`).
    may_share_objects = len(differentiable_slots) > 1 or bool(non_differentiable and differentiable_slots)
    # Outputs that alias nothing in eager may come out of a graph as views of its own buffers (a
    # functionalized write through a view ends in one): returned as such, autograd would take them
    # for views made inside a custom Function and refuse the caller's in-place writes into them.
    # (Views of inputs stay: a custom Function of the program returned them, as eager's does.)
    # The bases that outputs are rebuilt from count too: their views inherit what autograd takes them for.
    fresh = frozenset(i for i, o in enumerate(o for o in sig.outputs if o.is_tensor)
                      if o.base_input is None and o.base_output is None and o.base_of_outputs is None
                      and o.python_scalar is None) | frozenset(plan.first_base + k for k in range(plan.num_bases))
    # Outputs in an input's memory with a history of their own (`OutputInfo.written_alias_of`): the
    # runtime copies each into that memory with its gradient, reading its history after the inputs'
    # write-back. Handed out by the Function as a view of an input, or as the input itself, it would
    # be a view whose base that write-back modified, which autograd refuses to read (seeds 18560, 24429).
    own_history = frozenset(i for i, o in enumerate(o for o in sig.outputs if o.is_tensor)
                            if o.written_alias_of is not None)
    # Autograd would materialize a zero gradient for every output that gets none, the
    # non-differentiable ones included (new values of mutated buffers: one kernel each);
    # the backward makes zeros itself only for the tangents it reads.
    tangent_layouts = list(facts.tangent_layouts)
    # Symbolic sizes: the zeros take the shapes of this call's outputs, kept by the forward.
    symbolic_tangents = facts.tangents_symbolic
    # A gradient that reads only tangents autograd gave none (outputs the loss does not reach) is
    # None, as eager leaves such an input's .grad, not zeros (an optimizer then skips it).
    tangents_of_grads = [(j, mask) for j, mask in enumerate(facts.tangents_of_grads) if mask]
    tensor_saved = [i for i, t in enumerate(saved_is_tensor) if t]
    copied_saved = list(facts.copied_saved)
    other_saved = [i for i, t in enumerate(saved_is_tensor) if not t]
    saves_tensors_as_is = not other_saved and not copied_saved
    refusal_primals = list(facts.refusal_primals)
    viewed_primals = list(facts.viewed_primals) if compiled.checks_viewed_versions else []
    # Inputs a backward writes into: the backward graph returns their new values after the gradients.
    written_in_backward = sig.backward_written_primals
    num_grads = len(sig.primal_positions)

    class CompiledFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *primals):
            # Graphs already hold autocast's casts; running them under autocast would cast twice.
            if autocast_on():
                with DisableAutocast():
                    outputs = forward(list(primals))
            else:
                outputs = forward(list(primals))
            if saves_tensors_as_is:
                if saved_is_tensor:
                    ctx.save_for_backward(*outputs[num_fwd:])
            else:
                saved = list(outputs[num_fwd:])
                for i in copied_saved:
                    saved[i] = _copy_in_layout(saved[i])
                ctx.save_for_backward(*[saved[i] for i in tensor_saved])
                ctx.other_saved = [saved[i] for i in other_saved]
            if viewed_primals:
                ctx.viewed_versions = [(primals[p], primals[p]._version) for p in viewed_primals]
            if refusal_primals:
                # Weak: only a double backward needs them, and they must not outlive the graph.
                ctx.primal_refs = [weakref.ref(primals[p]) for p in refusal_primals]
            if written_in_backward:
                ctx.written_in_backward = [primals[p] for p in written_in_backward]
            if own_history or fresh and any(outputs[i]._is_view() for i in fresh):
                outputs = _views_of_inputs_only(outputs, fresh, primals, own_history)
            if returns_leaf:
                if non_differentiable:
                    ctx.mark_non_differentiable(outputs[0])
                return outputs[0]
            fwd_outputs = tuple(outputs[:num_fwd])
            if rebuilt_from_base:
                fwd_outputs = tuple(v.detach() if i in laid_out_by_graph else None if i in rebuilt_from_base else v
                                    for i, v in enumerate(fwd_outputs))
            if may_share_objects:
                fwd_outputs = _one_object_per_slot(fwd_outputs, differentiable_slots, non_differentiable)
            if non_differentiable or laid_out_by_graph:
                ctx.mark_non_differentiable(*[fwd_outputs[i] for i in (*non_differentiable, *laid_out_by_graph)])
            ctx.set_materialize_grads(False)
            if symbolic_tangents:
                ctx.tangent_shapes = [outputs[i].shape for i in tangent_order]
            return fwd_outputs

        @staticmethod
        @torch.compiler.disable(recursive=True)  # a backward inside a compiled step: Dynamo traced our code
        def backward(ctx, *grad_outputs):
            if viewed_primals:
                _check_versions(ctx.viewed_versions)
            if not other_saved:
                saved = ctx.saved_tensors
            else:
                saved = [None] * len(saved_is_tensor)
                for i, t in zip(tensor_saved, ctx.saved_tensors):
                    saved[i] = t
                for i, v in zip(other_saved, ctx.other_saved):
                    saved[i] = v
            args = [saved[i] for i in saved_order]
            absent = 0  # bit k: tangent k got no gradient
            for k, (i, (shape, dtype, device)) in enumerate(zip(tangent_order, tangent_layouts)):
                grad = grad_outputs[i]
                if grad is None:
                    absent |= 1 << k
                    grad = torch.zeros(ctx.tangent_shapes[k] if symbolic_tangents else shape, dtype=dtype,
                                       device=device)
                args.append(grad.contiguous())
            # Only under create_graph=True (grad mode on) can a second backward follow; only inputs
            # that require grad matter to its refusal. Dropping the rest lets the early frees work.
            second_order_links = ([a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
                                  if torch.is_grad_enabled() else None)
            # Early frees: `args` holds the only references, so a boxed backward that clears
            # it releases each saved tensor after its last use (unless retain_graph).
            del saved, grad_outputs
            if tensor_saved:
                ctx.maybe_clear_saved_tensors()
            if second_order_links is None:
                if written_in_backward:
                    grads = _written_back(_call_graph(backward, args), num_grads, ctx.written_in_backward, False)
                else:
                    grads = tuple(_call_graph(backward, args))
                return _without_ungiven(grads, tangents_of_grads, absent) if absent else grads
            with torch.no_grad():
                grads = tuple(_call_graph(backward, args))
                if written_in_backward:
                    grads = _written_back(grads, num_grads, ctx.written_in_backward, True)
                if absent:
                    grads = _without_ungiven(grads, tangents_of_grads, absent)
            if refusal_primals:
                second_order_links += [ref() for ref in ctx.primal_refs]
            return _refuse_second_order(grads, second_order_links)

    unread = facts.unread_primals
    if not unread:
        return CompiledFunction.apply

    def apply_without_unread_edges(*primals):
        primals = list(primals)
        for p in unread:
            primals[p] = primals[p].detach()
        return CompiledFunction.apply(*primals)

    return apply_without_unread_edges


def _copy_in_layout(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of `tensor` with its strides, which a compiled backward may assume (Inductor asserts
    them): ``clone()`` lays a view with gaps out afresh (a narrowed column of a written input,
    saved for the backward: fuzzer seed 16319)."""
    expanded = [d for d, (size, stride) in enumerate(zip(tensor.shape, tensor.stride())) if stride == 0 and size > 1]
    compact = tensor
    for d in expanded:  # an expanded view: its memory copied, then expanded again (seed 30160)
        compact = compact.narrow(d, 0, 1)
    copy = torch.empty_strided(compact.shape, compact.stride(), dtype=tensor.dtype, device=tensor.device)
    try:
        copy.copy_(compact)
    except RuntimeError:  # elements sharing memory otherwise: no copy keeps the strides
        return tensor.clone()
    return copy.expand(tensor.shape) if expanded else copy


def _one_object_per_slot(outputs: tuple, differentiable: list, non_differentiable: list) -> tuple:
    """`outputs` with an alias of its own (``detach()``) in each slot that holds the very tensor of
    a differentiable slot before it, and in each non-differentiable slot that holds the tensor of
    any differentiable one. Autograd numbers an object a Function returns twice by one slot only,
    so the other's gradient reaches the wrong tangent (seed 6512, a graph value returned twice;
    1485); and marking a tensor non-differentiable marks the object, cutting the other slot's
    gradient (1190, 6493). A compiler may hand back one tensor for two graph values too: Inductor
    lowers ``detach``, ``alias`` and views that keep the layout (a full ``as_strided``, a 1-d ``t``)
    to their input."""
    seen: set = set()
    shared = []
    for i in differentiable:
        if isinstance(outputs[i], torch.Tensor):
            if id(outputs[i]) in seen:
                shared.append(i)
            seen.add(id(outputs[i]))
    shared += [i for i in non_differentiable if id(outputs[i]) in seen]
    if not shared:
        return outputs
    outputs = list(outputs)
    for i in shared:
        outputs[i] = outputs[i].detach()
    return tuple(outputs)


def _check_versions(viewed_versions: list) -> None:
    """Autograd's check of a saved tensor, for inputs whose saved views the compiled forward made
    without their version counters: raises as eager's backward does where the caller wrote into
    one after the forward."""
    for primal, version in viewed_versions:
        if primal._version != version:
            raise RuntimeError(
                f"one of the variables needed for gradient computation has been modified by an inplace operation: "
                f"[{primal.type()} {list(primal.shape)}] is at version {primal._version}; expected version "
                f"{version} instead (aotgraph: an input of the compiled function, a view of which its forward saved "
                "for the backward; write into a clone of it instead, or after the backward)")


def _views_of_inputs_only(outputs, fresh: frozenset, primals: tuple, own_history: frozenset) -> list:
    """`outputs` with each of the `fresh` ones that is a view of no input (of a graph's own
    buffer) handed out as no view (``detach()``: the same memory); so is each of `own_history`
    that is an input or a view."""
    inputs = {id(p) for p in primals}
    return [v.detach() if i in own_history and (v._is_view() or id(v) in inputs)
            or i in fresh and v._is_view() and id(v._base) not in inputs else v
            for i, v in enumerate(outputs)]


def _without_ungiven(grads: tuple, tangents_of_grads: list, absent: int) -> tuple:
    """`grads` with None for each gradient whose tangents (a bit mask, `ForwardFacts.tangents_of_grads`)
    all got no gradient from autograd (bits of `absent`)."""
    dropped = [j for j, mask in tangents_of_grads if mask & absent == mask and grads[j] is not None]
    if not dropped:
        return grads
    grads = list(grads)
    for j in dropped:
        grads[j] = None
    return tuple(grads)


def _written_back(outputs, num_grads: int, inputs: list, create_graph: bool) -> tuple:
    """The backward graph's `num_grads` gradients, after writing the new values it returns after them
    into the `inputs` a backward wrote into, when the backward runs, as eager's backward wrote
    them. Under `create_graph`, eager's write into a leaf requiring grad raises; so does this one."""
    with torch.no_grad():
        for tensor, new_value in zip(inputs, outputs[num_grads:]):
            if create_graph and tensor.is_leaf and tensor.requires_grad:
                raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation "
                                   "(a backward of the compiled function writes into it, under create_graph=True)")
            tensor.copy_(new_value)
    return tuple(outputs[:num_grads])


class _SecondOrderRefused(torch.autograd.Function):
    """Passes gradients through and raises if they are differentiated: the compiled backward
    reads saved forward values as constants, so its own derivative would be silently wrong."""

    @staticmethod
    def forward(ctx, num_grads, *grads_then_links):
        return tuple(g.clone() if g is not None else None for g in grads_then_links[:num_grads])

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise UnsupportedOp(
            "differentiating a gradient of a compiled function (double backward, after create_graph=True)",
            "runtime",
            "take higher-order gradients of the uncompiled function, e.g. torch.func.grad(torch.func.grad(fn))",
        )


def _refuse_second_order(grads: tuple, reachable: list) -> tuple:
    """Under ``create_graph=True``, route the gradients through a node that refuses a second
    backward, linked to every live tensor that requires grad among the backward's inputs and
    the forward's primals, so a second backward toward any of them reaches the refusal."""
    if not torch.is_grad_enabled():
        return grads
    links = [t for t in reachable if isinstance(t, torch.Tensor) and t.requires_grad]
    if not links:
        return grads
    return _SecondOrderRefused.apply(len(grads), *grads, *links)
