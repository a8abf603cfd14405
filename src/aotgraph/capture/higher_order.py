"""Higher-order operators (HOPs) met while capturing: each one recorded as plain ATen ops.

A HOP (``torch.ops.higher_order.*``) takes subgraphs as arguments. Torch's own rules for them
build their backward with torch's AOTAutograd, and the recorder, which sits below autograd,
would otherwise see them whole. `HigherOrderCalls` is a torch-function mode, active while a
program is captured, that meets each HOP call *above* autograd and answers it from `RULES` (and
the few plain torch functions `capture.function_rules` records from above their C++ composite):

- ``invoke_subgraph`` (``torch.compiler.nested_compile_region``, or a repeated block of a
  Dynamo graph, `capture.repeated_blocks`): a `capture.regions` region,
  captured and partitioned once and called per occurrence; or (switch ``region_reuse`` off, or
  a region that is not a plain function of its operands) called in place, so its ops, forward
  and backward, are recorded as the program's own;
- ``cond`` with a Python (or constant symbolic) predicate: the branch it takes, as eager runs it;
  with a tensor predicate: `capture.control_flow`, both branches captured once, one cond node;
- ``scan`` / ``associative_scan`` / ``map_impl`` (``torch._higher_order_ops.map``): unrolled over
  the scanned dimension (its length is a shape);
- ``while_loop``: `capture.control_flow`, inference only;
- ``flex_attention``: `capture.flex_attention`, one node forward and one ``flex_attention_backward`` node;
- ``triton_kernel_wrapper_mutation`` (a user Triton kernel): `capture.triton_kernels`, its functional form;
- HOPs that already capture through their own rules: passed on; ``tag_activation_checkpoint``
  (whose call no mode meets) checkpoints with the RNG state preserved (`public_apis_calling_operators`).

A HOP that reaches the recorder itself is refused there by `unsupported_hop`, with its name.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Optional, Sequence

import torch
from torch.utils._pytree import tree_flatten, tree_leaves, tree_unflatten

from .. import config
from ..errors import UnsupportedOp
from ..torch_private.dispatch import CaptureFunctionMode, HigherOrderOperator
from ..torch_private.checkpoint import checkpoint_preserving_rng_state, reentrant_checkpoint_unrolled
from ..torch_private.flex_attention import operator_called_directly
from ..torch_private.hop_calls import note_scan_outputs, operators_called_directly
from .data_assignment import DATA_SETTER, assign_data
from .function_rules import DECLINED, RULES as FUNCTION_RULES
from .regions import Regions, call_region

__all__ = ["HigherOrderCalls", "unsupported_hop", "public_apis_calling_operators", "RULES"]

# HOPs refused before torch's own rules run (these would fail deeper, with torch's message).
_REFUSED = {
    "flex_attention_backward": "call flex_attention (aotgraph records its backward), not its backward operator",
    "triton_kernel_wrapper_functional": "launch the user Triton kernel itself (aotgraph records it functionally), "
                                        "not torch's functional form of it",
}


def unsupported_hop(name: str, reason: str = "aotgraph has no rule for it", fix: str = "") -> UnsupportedOp:
    """The error for a higher-order operator that capture cannot record."""
    return UnsupportedOp(
        f"higher-order operator {name}: {reason}", "capture",
        fix or _REFUSED.get(name) or "call that part outside the compiled function (torch.compiler.disable), "
        "or compile it with torch.compile's own backends")


def public_apis_calling_operators() -> ContextManager:
    """While a program is captured, torch's public APIs that wrap a HOP in a nested
    ``torch.compile`` outside Dynamo (``flex_attention``, and `hop_calls`' ``torch.cond`` and the
    like) call the HOP itself, which `HigherOrderCalls` then meets (switch ``flex_attention_direct``), and Dynamo's
    ``tag_activation_checkpoint`` checkpoints with the RNG state preserved, so that a recompute
    in the backward draws the forward's numbers (switch ``checkpoint_rng_replay``), and the
    reentrant checkpoint runs as the non-reentrant one (its backward calls ``autograd.backward``,
    which the capture's ``autograd.grad`` refuses)."""
    stack = contextlib.ExitStack()
    stack.enter_context(operators_called_directly())  # torch.cond, while_loop, scan, map, associative_scan
    if config.enabled("flex_attention_direct"):
        stack.enter_context(operator_called_directly())
    if config.enabled("checkpoint_rng_replay"):
        stack.enter_context(checkpoint_preserving_rng_state())
    stack.enter_context(reentrant_checkpoint_unrolled())
    return stack


class HigherOrderCalls(CaptureFunctionMode):
    """Answers each HOP call of the program from `RULES` (re-entered, so nested HOPs are met
    too); every other torch function runs as it is. `recorder` is the capture's GraphRecorder,
    for the rules that record a HOP whole, with their subgraphs captured by `capture`;
    `regions` reuses ``invoke_subgraph`` regions."""

    def __init__(self, recorder, capture: Callable, regions: Optional[Regions] = None):
        super().__init__()
        self.recorder = recorder
        self.capture = capture  # capture(fn, flat_args, in_spec) -> JointGraph, for subgraphs
        self.regions = regions  # None: regions are recorded inline
        self.recorded = 0  # HOP nodes recorded whole so far: each names its subgraphs apart

    def next_name(self, hop: str) -> str:
        self.recorded += 1
        return f"{hop}_{self.recorded}"

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not isinstance(func, HigherOrderOperator):
            if func == DATA_SETTER and config.enabled("data_assignments"):
                return assign_data(*args)
            function_rule = FUNCTION_RULES.get(func)
            if function_rule is not None and config.enabled("symbolic_function_rules"):
                out = function_rule(*args, **kwargs)
                if out is not DECLINED:
                    return out
            return func(*args, **kwargs)
        name = func.name()
        if name in _REFUSED:
            raise unsupported_hop(name)
        rule = RULES.get(name)
        if rule is None:  # its own rules run; one that reaches the recorder is refused there
            try:
                return func(*args, **kwargs)
            except NotImplementedError as error:  # no kernel of its own for autograd, or for our modes
                raise unsupported_hop(name, f"torch has no rule for it here ({error})") from error
        with self:
            return rule(self, *args, **kwargs)


def _call(fn: Callable, operands: Sequence) -> Any:
    """`fn(*operands)`, for a subgraph that Dynamo made boxed (it takes one list) or plain."""
    if getattr(fn, "_boxed_call", False):
        return fn(list(operands))
    return fn(*operands)


def _leaves(fn: Callable, operands: Sequence) -> list:
    """The results of `fn(*operands)` as a flat list (a subgraph returns a tensor or a tree)."""
    return tree_leaves(_call(fn, operands))


def _invoke_subgraph(calls: HigherOrderCalls, subgraph, identifier, *operands):
    region = None
    if calls.regions is not None:
        region = calls.regions.get(subgraph, identifier or "subgraph", lambda *args: _call(subgraph, args), operands,
                                   automatic=getattr(subgraph, "aotgraph_found", False))
    if region is None:
        return _call(subgraph, operands)
    return call_region(calls.recorder, region, operands)


def _constant_predicate(pred) -> bool | None:
    """The predicate's value when capture knows it (a bool, or a SymBool with a constant), else None."""
    if isinstance(pred, (bool, int)):
        return bool(pred)
    if isinstance(pred, torch.SymBool) and pred.node.is_constant():
        return bool(pred.node.constant)
    return None


def _cond(calls: HigherOrderCalls, pred, true_fn, false_fn, operands):
    taken = _constant_predicate(pred)
    if taken is not None:
        return _call(true_fn if taken else false_fn, operands)
    from .control_flow import record_cond  # control_flow builds on this module's errors
    return record_cond(calls.recorder, calls.capture, calls.next_name("cond"), pred, true_fn, false_fn,
                       tuple(operands))


def _scan_length(name: str, xs: Sequence) -> int:
    if not xs:
        raise unsupported_hop(name, "it scans no tensors", "pass at least one tensor to scan over")
    length = xs[0].shape[0]
    if not isinstance(length, int) or length == 0:
        raise unsupported_hop(name, f"the scanned dimension has length {length}", "scan over a non-empty, static "
                              "dimension")
    return length


def _scan(calls: HigherOrderCalls, combine_fn, init, xs, additional_inputs):
    """``combine_fn(*carry, *x_slices, *additional) -> (*next_carry, *ys)`` over dimension 0 of
    `xs`, unrolled: returns ``(*final_carry, *stacked_ys)``."""
    carry, per_step = list(init), []
    for step in range(_scan_length("scan", xs)):
        raw = _call(combine_fn, (*carry, *(x[step] for x in xs), *additional_inputs))
        out = tree_leaves(raw)
        carry, ys = list(out[:len(init)]), out[len(init):]
        per_step.append(ys)
    if isinstance(raw, (tuple, list)) and len(raw) == 2:  # (next carry, ys) in the program's structures
        note_scan_outputs(tree_flatten(raw[0])[1], tree_flatten(raw[1])[1])
    return [*carry, *_stacked(per_step)]


def _associative_scan(calls: HigherOrderCalls, combine_fn, xs, additional_inputs):
    """The inclusive scan of `combine_fn` over dimension 0 of `xs`, left to right (the
    operator is associative: the order of application only moves rounding)."""
    acc = [x[0] for x in xs]
    per_step = [acc]
    for step in range(1, _scan_length("associative_scan", xs)):
        acc = _leaves(combine_fn, (*acc, *(x[step] for x in xs), *additional_inputs))
        per_step.append(acc)
    return _stacked(per_step)


def _map(calls: HigherOrderCalls, f, xs, pos_args, mutated_arg_indices: str = ""):
    """``f(*slices of xs, *pos_args)`` over dimension 0 of `xs`, unrolled: each output stacked.
    Writes into `pos_args` (torch 2.14 lists them in `mutated_arg_indices`) are recorded as they
    happen, step after step, as eager's loop makes them."""
    per_step, structure = [], None
    for step in range(_scan_length("map_impl", xs)):
        leaves, structure = tree_flatten(_call(f, (*(x[step] for x in xs), *pos_args)))
        per_step.append(leaves)
    # The body's own structure: a tuple from Dynamo's graphs, the user's (a bare tensor) from map() itself.
    return tree_unflatten(_stacked(per_step), structure)


def _stacked(per_step: Sequence[Sequence[torch.Tensor]]) -> list:
    """Per output, its values at every step stacked along a new dimension 0."""
    return [torch.stack([values[k] for values in per_step]) for k in range(len(per_step[0]))]


def _flex_attention(calls: HigherOrderCalls, query, key, value, score_mod, block_mask, scale, kernel_options,
                    score_mod_other_buffers=(), mask_mod_other_buffers=()):
    from .flex_attention import record_flex_attention
    return record_flex_attention(calls.recorder, calls.capture, calls.next_name("flex_attention"), query, key, value,
                                 score_mod, block_mask, scale, kernel_options, score_mod_other_buffers,
                                 mask_mod_other_buffers)


def _triton_kernel(calls: HigherOrderCalls, **launch):
    from .triton_kernels import record_triton_kernel
    return record_triton_kernel(calls.recorder, **launch)


def _while_loop(calls: HigherOrderCalls, cond_fn, body_fn, carried_inputs, additional_inputs, **kwargs):
    from .control_flow import record_while_loop
    return record_while_loop(calls.recorder, calls.capture, calls.next_name("while_loop"), cond_fn, body_fn,
                             tuple(carried_inputs), tuple(additional_inputs))


RULES: dict[str, Callable] = {
    "invoke_subgraph": _invoke_subgraph,
    "cond": _cond,
    "scan": _scan,
    "map_impl": _map,
    "associative_scan": _associative_scan,
    "while_loop": _while_loop,
    "flex_attention": _flex_attention,
    "triton_kernel_wrapper_mutation": _triton_kernel,
}
