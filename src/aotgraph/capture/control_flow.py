"""``torch.cond`` on a tensor predicate and ``while_loop``: their subgraphs captured once each,
as programs of their own, and recorded into the caller's graph as one HOP node.

cond: the forward node is ``cond(pred, true_forward, false_forward, operands)``; when autograd
reaches it, the backward node is ``cond(pred, true_backward, false_backward, (*operands,
*output grads))``, each branch's backward recomputing its forward (as torch's own cond does),
so gradients flow through the branch taken at run time and zeros to operands it does not read.
while_loop: inference only, ``while_loop(cond_graph, body_graph, carried, additional)``.

Branches and bodies must be plain functions of their operands (no mutation of an operand):
otherwise an UnsupportedOp says which and what to do. An operand or a view the subgraph returns
is returned as a copy (a subgraph returns fresh tensors).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.fx as fx
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._pytree import tree_flatten, tree_leaves, tree_unflatten

from ..artifacts import JointGraph, TensorMeta
from ..torch_private.dispatch import disable_current_modes
from .higher_order import unsupported_hop
from .regions import Subgraph, record_call

__all__ = ["record_cond", "record_while_loop"]

_cond = torch.ops.higher_order.cond
_while_loop = torch.ops.higher_order.while_loop


def _captured(hop: str, capture: Callable, program: Callable, arguments: Sequence,
              structure: Optional[list] = None) -> JointGraph:
    """`program(*arguments)` (flat tensors in, flat tensors out) captured as an inference graph;
    the pytree structure of what `program` returns appended to `structure`, where given."""
    def flat_program(*args):
        results, spec = tree_flatten(program(*args))
        if structure is not None:
            structure.append(spec)
        return _fresh_results(results, args)

    with disable_current_modes(), torch.no_grad():
        leaves = [a.detach() if isinstance(a, torch.Tensor) else a for a in arguments]
        flat, spec = tree_flatten((tuple(leaves), {}))
        joint = capture(flat_program, flat, spec)
    sig = joint.signature
    if any(i.mutates_data or i.mutates_metadata for i in sig.inputs):
        raise unsupported_hop(hop, "a subgraph mutates one of its operands", "clone the operand inside the subgraph "
                              "before writing into it")
    if sig.view_bases or any(not o.is_tensor or o.base_input is not None or o.base_output is not None or o.view_chain
                             for o in sig.outputs):
        raise unsupported_hop(hop, "a subgraph returns a non-tensor or a view of another output",
                              "return fresh tensors from each subgraph (e.g. .clone())")
    return joint


def _fresh_results(results: list, operands: Sequence) -> tuple:
    """`results` with each operand, and each view (of an operand or of a value the subgraph
    computed), replaced by a copy: a HOP's subgraph returns fresh tensors. ``F.linear``'s weight
    gradient is a transpose of a product, a branch may return ``h.t()``, the backward of a branch
    ``a + b`` returns its output's gradient, an operand, and flex_attention's default score_mod
    returns its score."""
    memory = {StorageWeakRef(a.untyped_storage()) for a in operands if isinstance(a, torch.Tensor)}
    return tuple(r.clone() if isinstance(r, torch.Tensor) and (r._is_view() or StorageWeakRef(r.untyped_storage())
                                                                in memory) else r for r in results)


def _returning_one(graph_module: fx.GraphModule) -> fx.GraphModule:
    """`graph_module`, which returns a 1-tuple, returning its one value bare (while_loop's condition)."""
    graph = fx.Graph()
    env: dict = {}
    for node in graph_module.graph.nodes:
        if node.op == "output":
            graph.output(env[node.args[0][0]])
        else:
            env[node] = graph.node_copy(node, env.__getitem__)
    return fx.GraphModule(graph_module, graph)


def _output_metas(joint: JointGraph) -> tuple[TensorMeta, ...]:
    return tuple(TensorMeta.of(n.meta["val"]) for n in joint.graph_module.graph.find_nodes(op="output")[0].args[0])


def _on_tensors(fn, operands: Sequence, positions: list[int]) -> Callable:
    """`fn` called with `operands` as a program of the tensors at `positions` only, the other
    operands fixed (the symbolic sizes Dynamo passes along under dynamic shapes: the subgraph
    reads them from its tensors' sizes, as a region does)."""
    if len(positions) == len(operands):
        return fn

    def program(*tensors):
        merged = list(operands)
        for k, tensor in zip(positions, tensors):
            merged[k] = tensor
        return fn(*merged)

    return program


def record_cond(recorder, capture: Callable, name: str, pred: torch.Tensor, true_fn, false_fn,
                operands: Sequence) -> tuple:
    """One ``torch.cond`` with a tensor predicate, recorded (see the module docstring)."""
    positions = [k for k, o in enumerate(operands) if isinstance(o, torch.Tensor)]
    true_fn, false_fn = (_on_tensors(fn, operands, positions) for fn in (true_fn, false_fn))
    operands = tuple(operands[k] for k in positions)
    structure: list = []  # the true branch's: a tuple from Dynamo's graphs, the user's own from torch.cond
    branches = [_captured("cond", capture, fn, operands, structure if fn is true_fn else None)
                for fn in (true_fn, false_fn)]
    metas = [_output_metas(b) for b in branches]
    if [(m.shape, m.dtype) for m in metas[0]] != [(m.shape, m.dtype) for m in metas[1]]:
        raise unsupported_hop("cond", "its branches return tensors of different shapes or dtypes",
                              "make both branches return the same shapes and dtypes")
    needs_grad = tuple(isinstance(o, torch.Tensor) and o.requires_grad for o in operands)
    differentiable = torch.is_grad_enabled() and any(needs_grad)
    outputs = tuple(TensorMeta(m.shape, m.stride, m.storage_offset, m.dtype, m.device,
                               differentiable and m.dtype.is_floating_point) for m in metas[0])
    forward = (Subgraph(f"{name}_true", branches[0].graph_module), Subgraph(f"{name}_false", branches[1].graph_module))
    if not differentiable:
        return tree_unflatten(list(record_call(recorder, _cond, (pred, *forward, list(operands)), outputs)),
                              structure[0])
    backward = [_branch_backward(capture, fn, operands, outputs, needs_grad) for fn in (true_fn, false_fn)]
    grads = _output_metas(backward[0])
    plan = (forward, (Subgraph(f"{name}_true_backward", backward[0].graph_module),
                      Subgraph(f"{name}_false_backward", backward[1].graph_module)), outputs, grads, needs_grad)
    return tree_unflatten(list(_CondCall.apply(recorder, plan, pred, *operands)), structure[0])


def _branch_backward(capture: Callable, branch, operands: Sequence, outputs: Sequence[TensorMeta],
                     needs_grad: tuple[bool, ...]) -> JointGraph:
    """``(*operands, *output grads) -> grads of the operands that need one`` of `branch`,
    recomputing its forward; zeros for operands it does not read."""
    count = len(operands)

    def gradients(*arguments):
        with torch.enable_grad():
            leaves = [a.detach().requires_grad_(need) for a, need in zip(arguments[:count], needs_grad)]
            results = tree_leaves(branch(*leaves))
            pairs = [(r, g) for r, g, meta in zip(results, arguments[count:], outputs)
                     if meta.requires_grad and r.requires_grad]
            wanted = [leaf for leaf, need in zip(leaves, needs_grad) if need]
            found = torch.autograd.grad([r for r, _ in pairs], wanted, [g for _, g in pairs], allow_unused=True) \
                if pairs else [None] * len(wanted)
        return tuple(g if g is not None else torch.zeros_like(leaf) for g, leaf in zip(found, wanted))

    with disable_current_modes(), _fake_mode_of(operands):
        output_grads = [torch.empty_strided(m.shape, m.stride, dtype=m.dtype, device=m.device) for m in outputs]
    return _captured("cond", capture, gradients, (*operands, *output_grads))


def _fake_mode_of(tensors: Sequence):
    """The fake mode of the first fake among `tensors` (the capture's)."""
    return next(t.fake_mode for t in tensors if hasattr(t, "fake_mode"))


class _CondCall(torch.autograd.Function):
    @staticmethod
    def forward(ctx, recorder, plan, pred, *operands):
        forward, _, outputs, _, _ = plan
        ctx.recorder, ctx.plan, ctx.pred, ctx.operands = recorder, plan, pred, operands
        results = record_call(recorder, _cond, (pred, *forward, list(operands)), outputs)
        ctx.mark_non_differentiable(*(r for r, meta in zip(results, outputs) if not meta.requires_grad))
        return results

    @staticmethod
    def backward(ctx, *output_grads):
        _, backward, outputs, grads, needs_grad = ctx.plan
        arguments = [*ctx.operands, *(g for g, meta in zip(output_grads, outputs))]
        computed = iter(record_call(ctx.recorder, _cond, (ctx.pred, *backward, arguments), grads))
        return None, None, None, *(next(computed) if need else None for need in needs_grad)


def record_while_loop(recorder, capture: Callable, name: str, cond_fn, body_fn, carried: Sequence,
                      additional: Sequence) -> tuple:
    """One ``while_loop``, for inference: refused where a gradient would flow through it."""
    operands = (*carried, *additional)
    if torch.is_grad_enabled() and any(isinstance(o, torch.Tensor) and o.requires_grad for o in operands):
        raise unsupported_hop("while_loop", "gradients through a while_loop are not supported",
                              "run the loop under torch.no_grad(), or detach its inputs")
    if not all(isinstance(o, torch.Tensor) for o in operands):
        raise unsupported_hop("while_loop", "it carries values that are not tensors", "carry tensors only")
    condition = _captured("while_loop", capture, cond_fn, operands)
    if [(m.shape, m.dtype) for m in _output_metas(condition)] != [((), torch.bool)]:
        raise unsupported_hop("while_loop", "its condition does not return one boolean scalar tensor",
                              "return a 0-dim bool tensor from the condition")
    body = _captured("while_loop", capture, body_fn, operands)
    carried_metas = tuple(TensorMeta.of(c) for c in carried)
    if [(m.shape, m.dtype) for m in _output_metas(body)] != [(m.shape, m.dtype) for m in carried_metas]:
        raise unsupported_hop("while_loop", "its body returns tensors of other shapes or dtypes than it carries",
                              "return the carried values in the same shapes and dtypes")
    return record_call(recorder, _while_loop, (Subgraph(f"{name}_cond", _returning_one(condition.graph_module)),
                                               Subgraph(f"{name}_body", body.graph_module), list(carried),
                                               list(additional)), carried_metas)
