"""Outputs that are views, and how the runtime regenerates them as real views.

Eager returns ``(x * 2).view(-1)`` as a view: its ``_base`` is the intermediate and its
``grad_fn`` a view node, so in-place writes into it work. A view returned from an
autograd.Function is marked as made there, and autograd refuses writes into it. So capture
walks each tensor output's node back through view ops (`graph.ops.is_view`) to the first
node that is not a view, its base, and keeps the walk as data (`ViewStep`s). The base is an
input, another output, or an intermediate that the forward returns in addition; the runtime
replays the steps on it outside the Function. A walk that does not replay to the output's
exact layout (symbolic sizes, multi-output views, dtype views) is dropped, and the runtime
falls back to ``as_strided`` where the output aliases an input or another output.
"""
from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass
from typing import Optional

import torch
import torch.fx as fx
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._pytree import tree_flatten

from ..artifacts import ViewStep
from ..graph.ops import is_view
from ..torch_private.dispatch import OpOverload
from .functional_ops import is_metadata_mutation, view_of_inplace_view


@dataclass(frozen=True)
class OutputView:
    """Where one output's view chain starts: exactly one of `primal` (a primal index),
    `output` (a tensor-output index) or `base` (an index into `OutputViews.base_fakes`).
    `after_relayout`: the chain starts from the primal in the layout the program's in-place
    view ops left it in (``x.t_(); x.chunk(2)[1]``), which the runtime gives it before
    rebuilding outputs; else from its layout on entry. `laid_out_by_graph`: view ops of
    symbolic arguments (``x.view(b, -1)``, Dynamo's dynamic ints) that the runtime cannot replay:
    `chain` is empty, and the runtime makes the view of its base at the layout of the graph's own
    output (`OutputInfo.layout_from_graph`)."""

    chain: tuple[ViewStep, ...]
    primal: Optional[int] = None
    output: Optional[int] = None
    base: Optional[int] = None
    after_relayout: bool = False
    laid_out_by_graph: bool = False


@dataclass(frozen=True)
class OutputViews:
    """Per tensor output, its `OutputView` or None; the intermediates the forward returns in
    addition (their nodes and the program's fakes, which carry autograd history)."""

    views: tuple[Optional[OutputView], ...]
    base_nodes: tuple[fx.Node, ...] = ()
    base_fakes: tuple[torch.Tensor, ...] = ()


def find_output_views(out_nodes: list, tensor_outs: list, placeholders: list, program_fakes: list, node_of: dict,
                      fake_mode, relaid_inputs: frozenset = frozenset(), final_layouts: Optional[dict] = None) -> OutputViews:
    """`program_fakes`: the tensor inputs as the program saw them; `node_of`: the recorder's
    map from ``id(fake)`` to the node of its latest value. A base
    written in place after the view was taken is returned as its latest node, which
    functionalization turns into the base's final value (the view in eager sees the write).
    `relaid_inputs`: names of the placeholders whose layout the program changes in place, which
    the runtime replays after rebuilding the outputs: a ``split`` output of such an input (or of
    one sharing its memory) is not rebuilt by ``split``, since autograd refuses a multi-output
    view whose base's layout changed since; a ``split`` output of another input is (autograd then
    refuses writes into it, as eager's: seed 3397). `final_layouts`: each input's last in-place
    view op (node -> its placeholder): a chain from there starts from the input as the runtime
    leaves it, relaid, and a ``split`` there is taken after the relayout, as eager's (seed 5443)."""
    input_storages = {StorageWeakRef(f.untyped_storage()) for f in program_fakes}
    relaid_storages = {StorageWeakRef(p.meta["val"].untyped_storage()) for p in placeholders if p.name in relaid_inputs}
    input_storages |= {StorageWeakRef(p.meta["val"].untyped_storage()) for p in placeholders}
    primal_of = {p: k for k, p in enumerate(placeholders)}
    output_of: dict = {}
    for k, node in enumerate(out_nodes):
        output_of.setdefault(node, k)
    for k, node in enumerate(out_nodes):  # an output written in place: its value is the tensor it wrote
        while _writes_in_place(node):
            node = node.args[0]
            output_of.setdefault(node, k)
    views: list = []
    base_nodes: list = []
    base_fakes: list = []
    for node, fake in zip(out_nodes, tensor_outs):
        walk = _walk(node, fake, fake_mode)
        if walk is not None and walk[0] in primal_of and (walk[1] is None or (
                any(step.index is not None for step in walk[1])
                and StorageWeakRef(walk[0].meta["val"].untyped_storage()) in relaid_storages)):
            walk = None  # (a view of an input with symbolic view ops: laid out from its layout, `capture.symbols`)
        if walk is None:
            views.append(None)
            continue
        base_node, chain, written = walk
        by_graph = chain is None
        chain = chain or ()
        relaid = final_layouts.get(base_node) if final_layouts else None
        primal = primal_of.get(base_node if relaid is None else relaid)
        if written and not fake.requires_grad:
            # An output requiring no grad, written in place after it was taken: rebuilt from an
            # input, another output, or a base requiring no grad; a base requiring grad would
            # become a differentiable output, and capture would record a backward eager never
            # runs (through a saved tensor written since).
            if primal is None and base_node not in output_of:
                base_val = base_node.meta.get("val")
                if base_node not in base_nodes and (not isinstance(base_val, torch.Tensor) or base_val.requires_grad
                                                    or StorageWeakRef(fake.untyped_storage()) in input_storages):
                    views.append(None)
                    continue
                if base_node not in base_nodes:
                    base_nodes.append(base_node)
                    base_fakes.append(base_val)
                views.append(OutputView(chain, base=base_nodes.index(base_node), laid_out_by_graph=by_graph))
                continue
        latest = node_of.get(id(fake._base)) if fake._base is not None else None
        if primal is not None:
            views.append(OutputView(chain, primal=primal, after_relayout=relaid is not None))
        elif base_node in output_of:
            views.append(OutputView(chain, output=output_of[base_node], laid_out_by_graph=by_graph))
        elif latest in output_of and _same_layout(latest, base_node):
            views.append(OutputView(chain, output=output_of[latest], laid_out_by_graph=by_graph))
        elif (latest is not None and _same_layout(latest, base_node)
              and StorageWeakRef(fake.untyped_storage()) not in input_storages):
            if latest not in base_nodes:
                base_nodes.append(latest)
                base_fakes.append(fake._base)
            views.append(OutputView(chain, base=base_nodes.index(latest), laid_out_by_graph=by_graph))
        else:
            views.append(None)
    views = _views_of_plain_outputs(views, out_nodes, tensor_outs, fake_mode)
    used = sorted({v.base for v in views if v is not None and v.base is not None})
    if len(used) < len(base_nodes):  # bases no output is made from now
        views = [v if v is None or v.base is None else dataclasses.replace(v, base=used.index(v.base)) for v in views]
        base_nodes, base_fakes = [base_nodes[b] for b in used], [base_fakes[b] for b in used]
    return OutputViews(tuple(views), tuple(base_nodes), tuple(base_fakes))


def _views_of_plain_outputs(views: list, out_nodes: list, tensor_outs: list, fake_mode) -> list:
    """`views` with each output made from an intermediate base made instead from another output that
    its walk passes (with no write in between), where that output is no view itself: its value is
    the graph's, in memory the intermediate's views share. A decomposition may make an op's result
    a view (Inductor's ``stack`` is a ``view`` of a ``clone``): ``y = stack(...); y.add_(y);
    return y, y.detach()`` gave the detached view memory apart from y (fuzzer seed 22600)."""
    values: dict = {}  # the nodes of each plain output's value: its node, and what its writes wrote
    for k, (node, view) in enumerate(zip(out_nodes, views)):
        if view is not None:
            continue
        values.setdefault(node, k)
        while _writes_in_place(node):
            node = node.args[0]
            values.setdefault(node, k)
    if not values:
        return views
    for m, view in enumerate(views):
        if view is None or view.base is None:
            continue
        stop_at = frozenset(n for n, k in values.items() if k != m)
        walk = _walk(out_nodes[m], tensor_outs[m], fake_mode, stop_at)
        if walk is not None and walk[0] in stop_at and not walk[2]:
            views[m] = OutputView(walk[1] or (), output=values[walk[0]], laid_out_by_graph=walk[1] is None)
    return views


def _writes_in_place(node: fx.Node) -> bool:
    """Whether `node` is an in-place op returning the tensor it wrote, its first argument."""
    if node.op != "call_function" or not isinstance(node.target, OpOverload) or not node.args \
            or not isinstance(node.args[0], fx.Node):
        return False
    returns = node.target._schema.returns
    return (len(returns) == 1 and returns[0].alias_info is not None and returns[0].alias_info.is_write
            and not is_metadata_mutation(node.target))  # (``t_`` changes the layout it returns)


def _same_layout(node: fx.Node, other: fx.Node) -> bool:
    a, b = node.meta.get("val"), other.meta.get("val")
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
            and (a.shape, a.stride(), a.storage_offset(), a.dtype) == (b.shape, b.stride(), b.storage_offset(), b.dtype))


def _is_multi_output_view(node: fx.Node) -> bool:
    """Whether `node` is a view op returning a list of views of its first argument (``split``, ``unbind``)."""
    if node.op != "call_function" or not isinstance(node.target, OpOverload):
        return False
    returns = node.target._schema.returns
    return (len(returns) == 1 and isinstance(returns[0].type, torch.ListType)
            and returns[0].alias_info is not None and not returns[0].alias_info.is_write)


def _relays_a_view(node: fx.Node) -> bool:
    """Whether `node` is an in-place view op (``t_``, ``unsqueeze_``) changing the layout of a view;
    of a tensor that is no view, it leaves a tensor that is none either, so the walk ends there."""
    if node.op != "call_function" or not is_metadata_mutation(node.target) or not node.args \
            or not isinstance(node.args[0], fx.Node) or not isinstance(node.args[0].meta.get("val"), torch.Tensor):
        return False
    source = node.args[0]
    return ((is_view(source) and isinstance(source.target, OpOverload)) or _relays_a_view(source)
            or (source.target is operator.getitem and isinstance(source.args[0], fx.Node)
                and _is_multi_output_view(source.args[0])))


def _walk(node: fx.Node, fake: torch.Tensor, fake_mode, stop_at: frozenset = frozenset()
          ) -> Optional[tuple[fx.Node, tuple[ViewStep, ...], bool]]:
    """(base node, view steps from it to `node`, whether an in-place op was passed on the way),
    or None where `node` is no view or the steps do not rebuild `fake`'s layout. In-place ops
    on the way are passed: they return the tensor they wrote. The walk ends early at a node of
    `stop_at` (after one step at least). The steps are None where a view op on the way takes
    symbolic arguments (sizes, Dynamo's dynamic ints): the base is known, the steps cannot be
    replayed, and `fake` shares the base's memory."""
    steps = []
    current = node
    written = False  # an in-place op passed: the output is a view written in place after it was taken
    symbolic = False  # a step of symbolic arguments passed
    while True:
        if steps and current in stop_at:
            break
        index = None
        if _writes_in_place(current):
            # ``v = y[0]; v.div_(2)``: the written view, rebuilt from its base's final value, as a
            # view of it (its memory shared with the base's other views, as eager's). For an
            # output requiring no grad, only from an input or another output (`find_output_views`).
            written, current = True, current.args[0]
            continue
        if _relays_a_view(current):
            # ``v = y[0]; v.t_()``: the view relaid in place, still a view of y in eager (seed 22892:
            # returned as a tensor of its own, the caller's later writes into it missed y's history)
            source = current.args[0]
            func, args = view_of_inplace_view(current.target, tuple(current.args[1:]), source.meta["val"].dim())
            steps.append(ViewStep(func, tuple(args), (), None))
            current = source
            continue
        if current.target is operator.getitem and isinstance(current.args[0], fx.Node) \
                and type(current.args[1]) is int and _is_multi_output_view(current.args[0]):
            current, index = current.args[0], current.args[1]  # ``split(x, 2)[1]``
        elif not (is_view(current) and isinstance(current.target, OpOverload)):
            break
        if written and current.target is torch.ops.aten.detach.default:
            return None  # ``x.detach().mul_(x)``: the write gave the detached view a history of its own
        source, *args = current.args
        leaves = tree_flatten((args, current.kwargs))[0]
        if not isinstance(source, fx.Node) or any(isinstance(a, torch.Tensor) for a in leaves):
            return None
        symbolic = symbolic or any(isinstance(a, (fx.Node, torch.SymInt)) for a in leaves)
        steps.append(ViewStep(current.target, tuple(args), tuple(current.kwargs.items()), index))
        current = source
    if not steps:
        return None
    steps.reverse()
    value = current.meta.get("val")
    if not isinstance(value, torch.Tensor):
        return None
    if symbolic:
        return (current, None, written) if isinstance(fake, torch.Tensor) and _same_memory(fake, value) else None
    try:
        with fake_mode, torch.no_grad():
            for step in steps:
                value = step(value)
    except RuntimeError:
        return None
    if not isinstance(value, torch.Tensor) or (value.shape, value.stride(), value.storage_offset(), value.dtype) != (
            fake.shape, fake.stride(), fake.storage_offset(), fake.dtype):
        return None
    return current, tuple(steps), written


def _same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    return StorageWeakRef(a.untyped_storage()) == StorageWeakRef(b.untyped_storage())
