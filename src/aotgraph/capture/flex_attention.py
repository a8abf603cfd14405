"""``flex_attention`` (torch.nn.attention.flex_attention) recorded whole, with its backward.

The forward node is torch's own HOP, ``flex_attention(query, key, value, score_graph,
block_mask, scale, kernel_options, score_buffers, mask_buffers) -> (out, logsumexp,
max_scores)``; when autograd reaches it, the backward node is ``flex_attention_backward(query,
key, value, out, logsumexp, grad_out, grad_logsumexp, score_graph, joint_graph, block_mask,
scale, kernel_options, score_buffers, mask_buffers) -> (grad_query, grad_key, grad_value,
grads of the score buffers)``. So a compiler that knows the HOPs (Inductor) lowers them to its
fused kernels, and the "eager" compiler runs torch's dense implementations.

Each subgraph is captured here as an ATen graph of 0-dim tensors (as torch traces them):
- score graph: ``(score, b, h, q_idx, kv_idx, *score_buffers) -> score``;
- mask graph (the last element of `block_mask`): ``(b, h, q_idx, kv_idx, *mask_buffers) -> bool``;
- joint graph: ``(score, b, h, q_idx, kv_idx, grad_score, *score_buffers) -> (grad of score,
  None x 4, grad of each score buffer or None)``, the score graph's backward.

Score buffers (tensors score_mod closes over, lifted by Dynamo) may need gradients; mask
buffers may not (as in torch).
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
import torch.fx as fx

from ..artifacts import TensorMeta
from ..errors import BadArgument
from ..torch_private.dispatch import DisableTorchFunction, disable_current_modes
from ..torch_private.fake import FakeTensor, FakeTensorMode
from ..torch_private.flex_attention import TransformGetItemToIndex
from .control_flow import _captured, _fake_mode_of, _returning_one
from .higher_order import _call, unsupported_hop
from .regions import Subgraph

__all__ = ["record_flex_attention"]

_flex_attention = torch.ops.higher_order.flex_attention
_flex_attention_backward = torch.ops.higher_order.flex_attention_backward
_INDICES = 4  # b, h, q_idx, kv_idx


@dataclass(frozen=True)
class _FlexPlan:
    """What one flex_attention call's forward and backward nodes share (arguments other than
    query, key, value and the score buffers; fakes of this capture among them)."""

    score: Subgraph
    joint: Optional[Subgraph]  # None: nothing needs a gradient
    block_mask: tuple  # torch's tuple, its mask function a Subgraph
    scale: float
    kernel_options: dict
    mask_buffers: tuple
    outputs: tuple[TensorMeta, ...]  # out, logsumexp, max_scores
    grads: tuple[TensorMeta, ...]  # grad_query, grad_key, grad_value
    buffer_grads: tuple[Optional[TensorMeta], ...]  # per score buffer: its grad, None where it needs none


def record_flex_attention(recorder, capture: Callable, name: str, query, key, value, score_mod: Callable,
                          block_mask: tuple, scale: float, kernel_options: dict,
                          score_buffers: Sequence = (), mask_buffers: Sequence = ()) -> tuple:
    """One ``flex_attention`` HOP call, recorded (see the module docstring); returns fakes of
    ``(out, logsumexp, max_scores)``."""
    score_buffers, mask_buffers = tuple(score_buffers), tuple(mask_buffers)
    if any(isinstance(b, torch.Tensor) and b.requires_grad for b in mask_buffers):
        raise unsupported_hop("flex_attention", "a tensor its mask_mod reads needs a gradient",
                              "detach the tensors mask_mod reads (a mask has no gradient)")
    fake_mode = _fake_mode_of((query, key, value))
    with disable_current_modes(), fake_mode:
        score = query.new_zeros(())
        indices = tuple(query.new_zeros((), dtype=torch.int) for _ in range(_INDICES))
    score_graph = _scalar_graph(capture, score_mod, (score, *indices, *score_buffers))
    mask_graph = _scalar_graph(capture, block_mask[-1], (*indices, *mask_buffers))
    if torch.is_grad_enabled():
        _refuse_lost_gradients(score_graph, mask_graph)
    mask = (*block_mask[:-1], Subgraph(f"{name}_mask", mask_graph))
    needs_grad = tuple(isinstance(t, torch.Tensor) and t.requires_grad for t in (query, key, value, *score_buffers))
    differentiable = torch.is_grad_enabled() and any(needs_grad)
    joint = None
    if differentiable:
        joint = Subgraph(f"{name}_joint", _joint_graph(capture, score_mod, score, indices, score_buffers,
                                                         needs_grad[3:]))
    outputs, grads, buffer_grads = _layouts(fake_mode, (query, key, value, *score_buffers), score_graph,
                                            joint.module if joint else None, (*block_mask[:-1], mask_graph), scale,
                                            kernel_options, mask_buffers)
    plan = _FlexPlan(Subgraph(f"{name}_score", score_graph), joint, mask, scale, dict(kernel_options), mask_buffers,
                     outputs, grads, buffer_grads)
    if not differentiable:
        return _record_forward(recorder, plan, query, key, value, score_buffers)
    with DisableTorchFunction():  # the call records nodes, it runs no program
        return _FlexAttentionCall.apply(recorder, plan, query, key, value, *score_buffers)


def _layouts(fake_mode: FakeTensorMode, operands: Sequence, score_graph: fx.GraphModule,
             joint_graph: Optional[fx.GraphModule], block_mask: tuple, scale: float, kernel_options: dict,
             mask_buffers: Sequence) -> tuple[tuple, tuple, tuple]:
    """The layouts torch's fake implementations give the forward's outputs, and (with a
    `joint_graph`) the backward's grads of query, key, value and of each score buffer (None
    where it needs none). `operands`: query, key, value, *score buffers."""
    with disable_current_modes(), DisableTorchFunction(), fake_mode, torch.no_grad():
        plain = [_fake(fake_mode, t) for t in operands]
        plain_mask = tuple(_fake(fake_mode, t) for t in block_mask)
        plain_mask_buffers = tuple(_fake(fake_mode, t) for t in mask_buffers)
        results = _flex_attention(*plain[:3], score_graph, plain_mask, scale, kernel_options, tuple(plain[3:]),
                                  plain_mask_buffers)
        grads, buffer_grads = (), ()
        if joint_graph is not None:
            out, logsumexp, _ = results
            *grads, buffer_grads = _flex_attention_backward(
                *plain[:3], out, logsumexp, torch.empty_like(out), None, score_graph, joint_graph, plain_mask, scale,
                kernel_options, tuple(plain[3:]), plain_mask_buffers)
    differentiable = joint_graph is not None
    return (tuple(TensorMeta(*_layout(r), differentiable and k < 2) for k, r in enumerate(results)),  # not max_scores
            tuple(TensorMeta(*_layout(g), False) for g in grads),
            tuple(None if g is None else TensorMeta(*_layout(g), False) for g in buffer_grads))


def _refuse_lost_gradients(*graphs: fx.GraphModule) -> None:
    """A tensor that score_mod or mask_mod closes over (outside Dynamo, which passes such
    tensors as buffers) that requires grad would get one in eager and none from the graph."""
    for graph_module in graphs:
        for node in graph_module.graph.find_nodes(op="get_attr"):
            value = getattr(graph_module, node.target)
            if isinstance(value, torch.Tensor) and value.requires_grad:
                raise BadArgument(
                    f"flex_attention's score_mod or mask_mod reads a tensor of shape {tuple(value.shape)} that requires "
                    "grad and that it closes over, so its gradient would be lost", "capture",
                    "compile the program with torch.compile (Dynamo passes such tensors to flex_attention as "
                    "buffers, with their gradients), or detach the tensor")


def _fake(fake_mode: FakeTensorMode, value: Any) -> Any:
    """`value` detached, as a fake of `fake_mode` if it is a tensor (a block mask's tensors are
    real where the program closes over them)."""
    if not isinstance(value, torch.Tensor):
        return value
    return value.detach() if isinstance(value, FakeTensor) else fake_mode.from_tensor(value)


def _layout(t: torch.Tensor) -> tuple:
    return tuple(t.shape), tuple(t.stride()), t.storage_offset(), t.dtype, t.device


def _traced_as_torch_does(fn: Callable) -> Callable:
    """`fn` with indexing by a 0-dim integer tensor recorded as ``aten.index`` (torch's convention
    for score_mod and mask_mod)."""
    def traced(*args):
        with TransformGetItemToIndex():
            return _call(fn, args)
    return traced


def _scalar_graph(capture: Callable, fn: Callable, arguments: Sequence) -> fx.GraphModule:
    """`fn(*arguments)` (0-dim tensors and buffers in, one 0-dim tensor out) as an ATen graph returning it bare."""
    graph = _captured("flex_attention", capture, _traced_as_torch_does(fn), arguments)
    outputs = graph.graph_module.graph.find_nodes(op="output")[0].args[0]
    if len(outputs) != 1 or tuple(outputs[0].meta["val"].shape) != ():
        raise unsupported_hop("flex_attention", "its score_mod or mask_mod does not return one 0-dim tensor",
                              "return one value per (b, h, q_idx, kv_idx) from score_mod and mask_mod")
    return _returning_one(graph.graph_module)


def _joint_graph(capture: Callable, score_mod: Callable, score, indices: Sequence, score_buffers: Sequence,
                 buffers_need_grad: Sequence[bool]) -> fx.GraphModule:
    """The joint graph of `score_mod` in torch's layout (see the module docstring)."""
    count = len(score_buffers)
    traced = _traced_as_torch_does(score_mod)

    def gradients(score, *rest):
        index_values, grad_score, buffers = rest[:_INDICES], rest[_INDICES], rest[_INDICES + 1:]
        with torch.enable_grad():
            score = score.detach().requires_grad_(True)
            leaves = [b.detach().requires_grad_(need) if isinstance(b, torch.Tensor) else b
                      for b, need in zip(buffers, buffers_need_grad)]
            result = traced(score, *index_values, *leaves)
            wanted = [score, *(leaf for leaf, need in zip(leaves, buffers_need_grad) if need)]
            found = torch.autograd.grad(result, wanted, grad_score, allow_unused=True) if result.requires_grad \
                else [None] * len(wanted)
        return tuple(g if g is not None else torch.zeros_like(w) for g, w in zip(found, wanted))

    with disable_current_modes(), _fake_mode_of((score,)):
        grad_score = torch.empty_like(score)
    joint = _captured("flex_attention", capture, gradients, (score, *indices, grad_score, *score_buffers))
    return _with_missing_grads(joint.graph_module, buffers_need_grad)


def _with_missing_grads(graph_module: fx.GraphModule, buffers_need_grad: Sequence[bool]) -> fx.GraphModule:
    """`graph_module`, returning (grad of score, *grads of the buffers that need one), returning
    instead torch's layout: [grad of score, None x 4, per buffer its grad or None]."""
    graph = fx.Graph()
    env: dict = {}
    for node in graph_module.graph.nodes:
        if node.op != "output":
            env[node] = graph.node_copy(node, env.__getitem__)
            continue
        computed = iter(env[n] for n in node.args[0])
        grad_score = next(computed)
        # a list, as torch's joint graphs return (its dense backward maps over that structure)
        graph.output([grad_score, *[None] * _INDICES, *(next(computed) if need else None for need in buffers_need_grad)])
    return fx.GraphModule(graph_module, graph)


def _argument(recorder, value: Any) -> Any:
    """`value` as a node argument: a Subgraph read by a ``get_attr`` node, a tuple or list
    argument by argument, a tensor (or symbolic value) as its node, anything else as it is."""
    if isinstance(value, Subgraph):
        recorder.constants.setdefault(value.name, value.module)
        return recorder.graph.get_attr(value.name)
    if type(value) in (list, tuple):
        return type(value)(_argument(recorder, v) for v in value)
    return recorder.node_for(value)


def _record(recorder, target, arguments: Sequence, results: Sequence[TensorMeta],
            tail: Optional[Sequence[Optional[TensorMeta]]] = None) -> tuple[tuple, tuple]:
    """``target(*arguments)`` recorded as one node returning ``(*results, tail)`` when `tail` is
    given (flex_attention_backward's buffer grads), else ``(*results)``; returns fresh fakes of
    `results` and of `tail` (None where the tail holds None)."""
    graph = recorder.graph
    node = graph.call_function(target, tuple(_argument(recorder, a) for a in arguments))

    def fake_of(meta: Optional[TensorMeta], source: fx.Node, index: int):
        if meta is None:
            return None
        fake = recorder.fake_outputs.empty_strided(meta.shape, meta.stride, meta.dtype, meta.device)
        getter = graph.call_function(operator.getitem, (source, index))
        getter.meta["val"] = fake
        recorder.node_of[id(fake)] = getter
        return fake

    fakes = tuple(fake_of(m, node, k) for k, m in enumerate(results))
    if tail is None:
        node.meta["val"] = fakes
        return fakes, ()
    tail_node = graph.call_function(operator.getitem, (node, len(results))) if any(tail) else None
    tail_fakes = tuple(fake_of(m, tail_node, k) for k, m in enumerate(tail))
    if tail_node is not None:
        tail_node.meta["val"] = tail_fakes
    node.meta["val"] = (*fakes, tail_fakes)
    return fakes, tail_fakes


def _record_forward(recorder, plan: _FlexPlan, query, key, value, score_buffers: Sequence) -> tuple:
    fakes, _ = _record(recorder, _flex_attention, (query, key, value, plan.score, plan.block_mask, plan.scale,
                                                   plan.kernel_options, tuple(score_buffers), plan.mask_buffers),
                       plan.outputs)
    return fakes


class _FlexAttentionCall(torch.autograd.Function):
    @staticmethod
    def forward(ctx, recorder, plan: _FlexPlan, query, key, value, *score_buffers):
        ctx.set_materialize_grads(False)
        results = _record_forward(recorder, plan, query, key, value, score_buffers)
        ctx.recorder, ctx.plan, ctx.operands, ctx.results = recorder, plan, (query, key, value, *score_buffers), results
        ctx.mark_non_differentiable(results[2])  # max_scores
        return results

    @staticmethod
    def backward(ctx, grad_out, grad_logsumexp, _grad_max_scores):
        plan = ctx.plan
        query, key, value, *score_buffers = ctx.operands
        out, logsumexp, _ = ctx.results
        grads, buffer_grads = _record(
            ctx.recorder, _flex_attention_backward,
            (query, key, value, out, logsumexp, grad_out, grad_logsumexp, plan.score, plan.joint, plan.block_mask,
             plan.scale, plan.kernel_options, tuple(score_buffers), plan.mask_buffers),
            plan.grads, plan.buffer_grads)
        return None, None, *grads, *buffer_grads
