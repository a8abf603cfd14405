"""Stage 4: compiled graphs + metadata -> a function of the user's flat inputs.

Training graphs run inside a generated ``torch.autograd.Function``; inference graphs
run directly. Around the graphs, the runtime writes mutated inputs back, re-applies
in-place layout changes, and rebuilds outputs that alias inputs as views of the real
inputs (so ``._base``, version counters and later in-place ops behave as in eager).
Everything that does not depend on the call's values is computed once, here.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ..artifacts import CompiledGraphs, OutputInfo, Signature

__all__ = ["build_runtime"]


def build_runtime(compiled: CompiledGraphs) -> Callable[[list], list]:
    partition = compiled.partition
    joint = partition.joint
    sig = joint.signature
    plan = _Plan(sig, joint.num_fwd_outputs)
    if joint.is_inference:
        run_graphs = _inference_runner(compiled.forward, plan)
    else:
        run_graphs = _training_runner(compiled, plan)

    def run(flat_inputs: list) -> list:
        primals = [flat_inputs[i] for i in plan.primal_positions]
        graph_outputs = run_graphs(primals)
        plan.write_back(primals, graph_outputs)
        return plan.user_outputs(primals, graph_outputs)

    return run


class _Plan:
    """Where each graph output goes: user outputs, mutated inputs, layout changes."""

    def __init__(self, sig: Signature, num_fwd_outputs: int):
        self.primal_positions = sig.primal_positions
        self.outputs: tuple[OutputInfo, ...] = sig.outputs
        self.num_user_tensors = len(sig.tensor_output_positions)
        self.mutated = sig.mutated_primals
        self.relaid = sig.metadata_mutated_primals
        self.relaid_meta = [sig.inputs[self.primal_positions[p]].meta for p in self.relaid]
        self.num_fwd_outputs = num_fwd_outputs
        primal_of_position = {pos: p for p, pos in enumerate(self.primal_positions)}
        self.alias_primal = [
            primal_of_position[o.base_input] if o.is_tensor and o.base_input is not None else None
            for o in self.outputs
        ]

    def write_back(self, primals: list, graph_outputs: list) -> None:
        if not self.mutated and not self.relaid:
            return
        start = self.num_user_tensors
        with torch.no_grad():
            for k, p in enumerate(self.mutated):
                new_value = graph_outputs[start + k]
                if new_value is not primals[p]:
                    primals[p].copy_(new_value)
        start += len(self.mutated)
        for k, p in enumerate(self.relaid):
            view = graph_outputs[start + k]
            with torch.no_grad():
                primals[p].as_strided_(view.shape, view.stride(), view.storage_offset())

    def user_outputs(self, primals: list, graph_outputs: list) -> list:
        flat, k = [], 0
        for info, alias_primal in zip(self.outputs, self.alias_primal):
            if not info.is_tensor:
                flat.append(info.constant)
                continue
            value = graph_outputs[k]
            k += 1
            if alias_primal is not None:
                value = _view_of_input(primals[alias_primal], info)
            flat.append(value)
        return flat


def _view_of_input(base: torch.Tensor, info: OutputInfo) -> torch.Tensor:
    """Rebuild an output that aliases an input as a real view of that input."""
    meta = info.meta
    if not meta.requires_grad:
        with torch.no_grad():
            view = base.as_strided(meta.shape, meta.stride, meta.storage_offset)
        return view.detach() if view.requires_grad else view
    return base.as_strided(meta.shape, meta.stride, meta.storage_offset)


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


_NULL = _Null()


def _inference_runner(forward: Callable, plan: _Plan):
    def run(primals: list) -> list:
        with torch.no_grad(), _no_autocast():
            return list(forward(list(primals)))

    return run


def _no_autocast():
    """Graphs already hold autocast's casts; running them under autocast would cast twice."""
    if torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda"):
        return torch._C._DisableAutocast()
    return _NULL


def _training_runner(compiled: CompiledGraphs, plan: _Plan):
    partition = compiled.partition
    sig = partition.joint.signature
    num_fwd = plan.num_fwd_outputs
    forward, backward = compiled.forward, compiled.backward

    forward_outputs = list(partition.forward.graph.find_nodes(op="output")[0].args[0])
    saved_names = [n.name for n in forward_outputs[num_fwd:]]
    saved_is_tensor = [isinstance(n.meta.get("val"), torch.Tensor) for n in forward_outputs[num_fwd:]]
    # Backward placeholders are matched by name: saved values, then tangents.
    backward_inputs = []
    for node in partition.backward.graph.find_nodes(op="placeholder"):
        if node.name.startswith("tangents"):
            backward_inputs.append(("tangent", int(node.name.split("_")[1]) - 1))
        else:
            backward_inputs.append(("saved", saved_names.index(node.name)))
    user_requires_grad = [o.requires_grad for o in sig.outputs if o.is_tensor]
    differentiable = [i for i, r in enumerate(user_requires_grad) if r]
    non_differentiable = [i for i in range(num_fwd) if i >= len(user_requires_grad) or not user_requires_grad[i]]
    tensor_saved = [i for i, t in enumerate(saved_is_tensor) if t]
    other_saved = [i for i, t in enumerate(saved_is_tensor) if not t]

    class CompiledFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *primals):
            with _no_autocast():
                outputs = forward(list(primals))
            saved = outputs[num_fwd:]
            ctx.save_for_backward(*[saved[i] for i in tensor_saved])
            ctx.other_saved = [saved[i] for i in other_saved]
            fwd_outputs = tuple(outputs[:num_fwd])
            ctx.mark_non_differentiable(*[fwd_outputs[i] for i in non_differentiable])
            return fwd_outputs

        @staticmethod
        def backward(ctx, *grad_outputs):
            saved = [None] * len(saved_is_tensor)
            for i, t in zip(tensor_saved, ctx.saved_tensors):
                saved[i] = t
            for i, v in zip(other_saved, ctx.other_saved):
                saved[i] = v
            tangents = [grad_outputs[i] for i in differentiable]
            args = [
                saved[index] if kind == "saved" else tangents[index].contiguous()
                for kind, index in backward_inputs
            ]
            # Early frees: `args` holds the only references, so a boxed backward that clears
            # it releases each saved tensor after its last use (unless retain_graph).
            del saved, tangents, grad_outputs
            ctx.maybe_clear_saved_tensors()
            with _no_autocast():
                grads = backward(args)
            return tuple(grads)

    def run(primals: list) -> list:
        return list(CompiledFunction.apply(*primals))

    return run
