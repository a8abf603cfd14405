"""What a joint-graph node costs to keep and to recompute, and whether recomputing it is safe.

`bytes_of(node)`: real bytes of its value (numel x itemsize); None when the value cannot be
saved as one tensor (a tuple, list or dict of results, as a user Triton kernel's functional
form returns: save its getitems instead).
`flops_of(node)`: a FLOP estimate; matmul, convolution and attention by formula, views 0,
everything else one per output element (pointwise) or per input element (reductions).
`recompute_ban(node)`: why the backward may never recompute it (a string), or None.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.fx as fx

from ..torch_private.dispatch import OpOverload, has_composite_implicit_kernel
from .sizes import size_hint as _int  # symbolic sizes count at their hints

aten = torch.ops.aten


def _numel(value) -> int:
    numel = 1
    for size in value.shape:
        numel *= _int(size)
    return numel


def bytes_of(node: fx.Node) -> Optional[int]:
    value = node.meta.get("val")
    if isinstance(value, torch.Tensor):
        return tensor_bytes(value)
    if isinstance(value, (tuple, list, dict)):
        return None
    return 8  # a symbol or scalar


def tensor_bytes(value) -> int:
    """Bytes of the tensors in `value` (a tensor, or a tuple or list of values), symbolic
    sizes at their hints; 0 where it holds none."""
    if isinstance(value, torch.Tensor):
        return _numel(value) * value.dtype.itemsize
    if isinstance(value, (tuple, list)):
        return sum(tensor_bytes(v) for v in value)
    return 0


def storage_of(value: torch.Tensor) -> tuple[int, int]:
    """(identity, bytes) of the storage behind `value`; a view shares its base's. The
    identity is the storage's address (``_cdata``), stable while the fake tensor lives."""
    storage = value.untyped_storage()
    return storage._cdata, _int(storage.nbytes())


def _shape(node_or_value) -> list[int]:
    value = node_or_value.meta["val"] if isinstance(node_or_value, fx.Node) else node_or_value
    return [_int(s) for s in value.shape]


def _out_numel(node: fx.Node) -> int:
    value = node.meta.get("val")
    if isinstance(value, torch.Tensor):
        return _numel(value)
    if isinstance(value, (tuple, list)):
        return sum(_numel(v) for v in value if isinstance(v, torch.Tensor))
    return 0


def _in_numel(node: fx.Node) -> int:
    return sum(_numel(a.meta["val"]) for a in node.all_input_nodes if isinstance(a.meta.get("val"), torch.Tensor))


def _mm(node):
    (m, k), n = _shape(node.args[0]), _shape(node.args[1])[1]
    return 2 * m * n * k


def _addmm(node):
    (m, k), n = _shape(node.args[1]), _shape(node.args[2])[1]
    return 2 * m * n * k + m * n


def _bmm(node):
    (b, m, k), n = _shape(node.args[0]), _shape(node.args[1])[2]
    return 2 * b * m * n * k


def _baddbmm(node):
    (b, m, k), n = _shape(node.args[1]), _shape(node.args[2])[2]
    return 2 * b * m * n * k + b * m * n


def _convolution(node):
    weight = _shape(node.args[1])
    out = node.meta["val"]
    per_output = 1
    for size in weight[1:]:  # in_channels / groups x kernel
        per_output *= size
    return 2 * _numel(out) * per_output


def _convolution_backward(node):
    grad_out, weight = _shape(node.args[0]), _shape(node.args[2])
    numel = 1
    for size in grad_out:
        numel *= size
    per_output = 1
    for size in weight[1:]:
        per_output *= size
    return 4 * numel * per_output  # grad input + grad weight


def _attention(node):
    batch, heads, q_len, head_dim = _shape(node.args[0])
    k_len = _shape(node.args[1])[2]
    return 4 * batch * heads * q_len * k_len * head_dim


def _attention_backward(node):
    query = next(a for a in node.args[1:] if isinstance(a, fx.Node))
    batch, heads, q_len, head_dim = _shape(query)
    return 10 * batch * heads * q_len * q_len * head_dim


_ATTENTION = [
    "_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_attention_math", "_flash_attention_forward", "_efficient_attention_forward",
]
_ATTENTION_BACKWARD = [name + "_backward" for name in _ATTENTION]

# FLOP formulas keyed by op packet name; other ops: see `flops_of`.
FLOP_RULES: dict[str, Callable[[fx.Node], int]] = {
    "mm": _mm, "addmm": _addmm, "bmm": _bmm, "baddbmm": _baddbmm,
    "convolution": _convolution, "_convolution": _convolution, "convolution_backward": _convolution_backward,
    **{name: _attention for name in _ATTENTION},
    **{name: _attention_backward for name in _ATTENTION_BACKWARD},
}

# Recomputing these is cheap: their cost is one pass over memory (reductions, norms, softmax,
# indexing, factories). Pointwise ops (torch.Tag.pointwise) and views are cheap too.
CHEAP_OPS = frozenset({
    "sum", "mean", "amax", "amin", "var", "var_mean", "std", "prod", "any", "all", "argmax", "argmin",
    "_softmax", "_log_softmax", "native_layer_norm", "_native_batch_norm_legit_functional",
    "_native_batch_norm_legit_no_training", "native_group_norm",
    "embedding", "index_select", "gather", "index", "cat", "stack", "_to_copy", "to", "clone", "contiguous",
    "_unsafe_view", "reshape", "repeat", "constant_pad_nd", "triu", "tril", "where", "masked_fill",
    "full", "full_like", "zeros", "zeros_like", "ones", "ones_like", "arange", "scalar_tensor",
    "lift_fresh_copy", "new_zeros", "new_ones", "new_full", "fill", "expand_copy", "view_copy",
    # Inductor's max-pool: the window offsets (int8) rebuild the int64 indices elementwise.
    "_low_memory_max_pool_offsets_to_indices",
})
_REDUCTIONS = frozenset({"sum", "mean", "amax", "amin", "var", "var_mean", "std", "prod", "any", "all",
                         "argmax", "argmin", "_softmax", "_log_softmax", "native_layer_norm",
                         "_native_batch_norm_legit_functional", "_native_batch_norm_legit_no_training",
                         "native_group_norm"})


@dataclass(frozen=True)
class OpFacts:
    """Every stage's per-op facts, read once per op from its schema and tags: the one table."""

    name: str  # packet name: ``mm`` for ``aten.mm.default``
    view: bool  # every result aliases an input, read-only
    random: bool  # torch.Tag.nondeterministic_seeded
    mutable: bool  # the schema writes an argument
    pointwise: bool  # torch.Tag.pointwise
    composite: bool  # has a CompositeImplicitAutograd kernel (decomposes into other ops)
    pure: bool  # no effect but its result: two calls on the same arguments can be merged (CSE)
    fake_memo: bool  # its fake outputs' layouts are a function of its arguments' layouts (capture's memo)
    meta_kernel_answer: bool  # a fake-output miss is answered by its meta kernel (see below)


# Ops whose fake outputs come from their meta kernel on a miss (capture/fake_outputs.py): the
# expensive misses of the model zoo, and functional pointwise ops and reductions. Their meta
# kernels are the ones eager's kernels compute output layouts with; tests/capture/
# test_fake_outputs.py checks each against eager, test_fake_outputs_opinfo.py the pointwise ops.
ON_META_KERNEL_FULL_PRECISION_ON_CPU = frozenset({
    aten._native_batch_norm_legit.default, aten._native_batch_norm_legit.no_stats, aten.native_batch_norm_backward.default,
})
_ON_META_KERNEL = ON_META_KERNEL_FULL_PRECISION_ON_CPU | frozenset({
    aten.view.default, aten._unsafe_view.default, aten.t.default, aten.transpose.int, aten.permute.default,
    aten.expand.default, aten.unsqueeze.default, aten.squeeze.default, aten.squeeze.dim, aten.squeeze.dims,
    aten.alias.default, aten.slice.Tensor, aten.select.int,
    aten.mm.default, aten.addmm.default, aten.bmm.default, aten.threshold_backward.default,
    aten.cat.default, aten.upsample_nearest2d.default, aten.upsample_nearest2d_backward.default,
    aten.max_pool2d_with_indices.default, aten.max_pool2d_with_indices_backward.default,
    aten.native_group_norm.default, aten.native_group_norm_backward.default,
})
# Inductor's max-pool prims (its max-pool decomposition's): their meta kernel is max pooling
# with indices plus index arithmetic, which the fake mode would run op by op.
_META_KERNEL_PRIMS = frozenset({"_low_memory_max_pool_with_offsets", "_low_memory_max_pool_offsets_to_indices"})
# Ops whose outputs' layouts depend on more than their arguments' layouts.
_NOT_FAKE_MEMO = frozenset({aten.lift_fresh.default, aten.lift_fresh_copy.default, aten.set_.source_Storage,
                            aten.set_.source_Storage_storage_offset, aten.resize_.default, aten.resize_as_.default})
_FACTS: dict = {}  # id(target) -> (target, facts): the entry keeps the target, so its id stays its own


def op_facts(target) -> OpFacts:
    """`OpFacts` of a call_function target (an OpOverload, getitem or a Python function), cached."""
    entry = _FACTS.get(id(target))  # by id: an OpOverload's own __hash__ is Python code
    if entry is not None and entry[0] is target:
        return entry[1]
    facts = _facts_of_op(target) if isinstance(target, OpOverload) else OpFacts(
        "getitem" if target is operator.getitem else getattr(target, "__name__", str(target)),
        False, False, False, False, False, target is operator.getitem, False, False)
    _FACTS[id(target)] = (target, facts)
    return facts


def _has_device_kernel(op: OpOverload) -> bool:
    """Whether a composite op has a CPU or CUDA kernel of its own (``silu_backward``)."""
    return any(torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), key) for key in ("CPU", "CUDA"))


def _facts_of_op(op: OpOverload) -> OpFacts:
    schema, tags = op._schema, op.tags
    name = schema.name.split("::")[-1]
    returns = schema.returns
    view = bool(returns) and all(r.alias_info is not None and not r.alias_info.is_write for r in returns)
    random, mutable = torch.Tag.nondeterministic_seeded in tags, schema.is_mutable
    composite = has_composite_implicit_kernel(op)
    pure = not (mutable or random or "empty" in name or name.startswith(("_assert", "sym_constrain"))
                or name == "print")
    fake_memo = (op.namespace in ("aten", "prims") and torch.Tag.data_dependent_output not in tags
                 and torch.Tag.inplace_view not in tags and op not in _NOT_FAKE_MEMO
                 and (not composite or _has_device_kernel(op))  # (capture records those whole: `recorder`)
                 # index with integer indices has a static shape; boolean ones raise and are never stored
                 and (torch.Tag.dynamic_output_shape not in tags or op is aten.index.Tensor))
    # Functional pointwise ops and reductions: their output layout and dtype come from one meta
    # function shared by every device's kernel (TensorIterator's).
    meta_kernel_answer = op in _ON_META_KERNEL or (op.namespace == "prims" and op._opname in _META_KERNEL_PRIMS) or (
        (torch.Tag.pointwise in tags or torch.Tag.reduction in tags) and not mutable
        and all(r.alias_info is None for r in returns))
    return OpFacts(name, view, random, mutable, torch.Tag.pointwise in tags, composite, pure, fake_memo,
                   meta_kernel_answer)


def op_name(node: fx.Node) -> str:
    """The op packet name (``mm`` for ``aten.mm.default``), ``getitem``, or the node's op kind."""
    return op_facts(node.target).name if node.op == "call_function" else node.op


def is_view(node: fx.Node) -> bool:
    return node.op == "call_function" and op_facts(node.target).view


def is_random(node: fx.Node) -> bool:
    """Whether `node` draws random numbers (attention with ``dropout_p == 0`` draws none)."""
    return node.op == "call_function" and op_facts(node.target).random and not _attention_without_dropout(node)


RUNTIME_ASSERT = aten._assert_scalar.default  # (condition, message): raises RuntimeError(message) where false


def is_runtime_assert(node: fx.Node) -> bool:
    """A check kept for its effect (it has no users): the partition keeps it in the forward."""
    return node.op == "call_function" and node.target is RUNTIME_ASSERT


def flops_of(node: fx.Node) -> int:
    if node.op != "call_function":
        return 0
    traits = op_facts(node.target)
    if traits.view or node.target is operator.getitem:
        return 0
    name = traits.name
    rule = FLOP_RULES.get(name)
    if rule is not None:
        return rule(node)
    if name in _REDUCTIONS:
        return _in_numel(node)
    return _out_numel(node)


def unsafe_to_recompute(node: fx.Node) -> Optional[str]:
    """Why recomputing `node` would change results (random draws, side effects), else None.
    No policy overrides this."""
    if node.op == "placeholder":
        return "graph input"
    if node.op != "call_function":
        return None
    traits = op_facts(node.target)
    if traits.random and not _attention_without_dropout(node):
        return "random op: backward must see the forward's draws"
    if traits.mutable:
        return "op with side effects"
    return None


def _attention_without_dropout(node: fx.Node) -> bool:
    """Attention ops carry the random tag for their dropout; with ``dropout_p == 0`` they
    draw nothing. So do some of their backwards (cuDNN's, the memory-efficient kernel's:
    they replay the forward's draws from its seed)."""
    if "attention" not in op_name(node):
        return False
    schema_args = node.target._schema.arguments
    position = next((i for i, a in enumerate(schema_args) if a.name == "dropout_p"), None)
    if position is None:
        return False
    dropout_p = node.args[position] if position < len(node.args) else node.kwargs.get("dropout_p", 0.0)
    return dropout_p == 0.0


def is_expensive(node: fx.Node) -> bool:
    """Matmul, convolution, attention: recomputed only when a memory budget pays for it."""
    return node.op == "call_function" and op_name(node) in FLOP_RULES


def recompute_ban(node: fx.Node) -> Optional[str]:
    """Why the default plan never recomputes `node`: unsafe, or not cheap (matmul, convolution,
    attention and any op outside the cheap table)."""
    unsafe = unsafe_to_recompute(node)
    if unsafe is not None or node.op != "call_function":
        return unsafe
    traits = op_facts(node.target)
    if node.target is operator.getitem or traits.view or traits.pointwise:
        return None
    name = traits.name
    if name in CHEAP_OPS:
        return None
    if name in FLOP_RULES:
        return f"compute-intensive ({name})"
    return f"not in the cheap-op table ({name})"


def bytes_needed(tensor: torch.Tensor) -> int:
    """The storage bytes `tensor`'s sizes, strides and offset reach."""
    if tensor.numel() == 0:
        return 0
    last = tensor.storage_offset() + sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride()))
    return (last + 1) * tensor.element_size()
