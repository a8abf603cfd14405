"""Rule tables for functionalization: the out-of-place twin of a mutating op, and how to
write a mutated view back into the tensor it views ("scatter" rules).

Keyed by op, like JAX's rule tables; a missing rule is an explicit UnsupportedOp.
"""
from __future__ import annotations

import functools
import math
import operator
from typing import Any, Callable, Optional

import torch
import torch.fx as fx

from ..errors import UnsupportedOp
from ..graph.sizes import has_symbolic_sizes

aten = torch.ops.aten


def mutated_arg_positions(func) -> tuple[int, ...]:
    """Positions (in the schema's argument list) of the arguments `func` writes to."""
    return tuple(
        i for i, arg in enumerate(func._schema.arguments) if arg.alias_info is not None and arg.alias_info.is_write
    )


def is_metadata_mutation(func) -> bool:
    """In-place view ops (``t_``, ``unsqueeze_``, ``as_strided_``): they change sizes/strides, not data."""
    return func in _INPLACE_VIEW_TO_VIEW


_INPLACE_VIEW_TO_VIEW = {
    aten.t_.default: aten.t.default,
    aten.transpose_.default: aten.transpose.int,
    aten.unsqueeze_.default: aten.unsqueeze.default,
    aten.squeeze_.default: aten.squeeze.default,
    aten.squeeze_.dim: aten.squeeze.dim,
    aten.squeeze_.dims: aten.squeeze.dims,
    aten.as_strided_.default: aten.as_strided.default,
    aten.swapdims_.default: aten.transpose.int,
    aten.swapaxes_.default: aten.transpose.int,
}


def view_of_inplace_view(func, args: tuple, ndim: int) -> tuple[Any, tuple]:
    """(view op, its arguments after the base) doing what in-place view op `func` did. ``t_``
    becomes a permute: ``aten.t`` is one of the ops Inductor requires decomposed."""
    if func is aten.t_.default:
        return aten.permute.default, (list(range(ndim))[::-1],)
    return _INPLACE_VIEW_TO_VIEW[func], args


# Multi-output mutating ops: functional twin, and which twin output holds each written argument.
_MULTI_MUTATION_TWINS: dict[Any, tuple[Any, dict[int, int], int]] = {
    # op: (twin, {written arg position: twin output index}, number of original outputs)
    aten._native_batch_norm_legit.default: (aten._native_batch_norm_legit_functional.default, {3: 3, 4: 4}, 3),
    aten._batch_norm_with_update.default: (aten._batch_norm_with_update_functional.default, {3: 4, 4: 5}, 4),
    aten.rrelu_with_noise.default: (aten.rrelu_with_noise_functional.default, {1: 1}, 1),
    # (quantization-aware training's default fake-quant, FusedMovingAvgObsFakeQuantize)
    aten._fused_moving_avg_obs_fq_helper.default: (aten._fused_moving_avg_obs_fq_helper_functional.default,
                                                   {3: 2, 4: 3, 5: 4, 6: 5}, 2),
}


def multi_mutation_twin(func):
    return _MULTI_MUTATION_TWINS.get(func)


def twin_refusal(func, args: tuple, kwargs: dict) -> Optional[str]:
    """Why `func`'s functional twin cannot stand for this call (`args`, `kwargs`: the values it
    was recorded with), or None. The per-channel fake-quant's first call resizes its observer's
    min/max to the input's channels, which the twin's fake kernel does not: the graph's sizes
    would be wrong."""
    if func is aten._fused_moving_avg_obs_fq_helper.default:
        x, running_min, channel_axis = args[0], args[3], args[10]
        per_channel = args[11] if len(args) > 11 else kwargs.get("per_row_fake_quant", False)
        if per_channel and running_min.numel() != x.shape[channel_axis]:
            return (f"{func}: the fake-quant observer's per-channel min/max have {running_min.numel()} values for "
                    f"{x.shape[channel_axis]} channels; its first call resizes them, which a compiled graph cannot")
    return None


def with_default_args(func, args: tuple) -> tuple:
    """`args` padded with the schema defaults of `func`'s omitted positional arguments
    (a twin may have no default where the in-place op had one: ``bernoulli_.float`` p=0.5)."""
    positional = [a for a in func._schema.arguments if not a.kwarg_only]
    if len(args) >= len(positional) or not all(a.has_default_value() for a in positional[len(args):]):
        return tuple(args)
    return tuple(args) + tuple(a.default_value for a in positional[len(args):])


@functools.lru_cache(maxsize=None)
def out_variant_twin(func) -> Optional[tuple[Any, tuple[str, ...]]]:
    """``(functional op, names of the out= arguments)`` for an out= overload such as
    ``aten.mm.out``: the overload of the same op taking exactly the other arguments."""
    schema = func._schema
    out_names = tuple(a.name for a in schema.arguments
                      if a.kwarg_only and a.alias_info is not None and a.alias_info.is_write)
    if not out_names or len(out_names) != len(schema.returns):
        return None
    wanted = [(a.name, str(a.type)) for a in schema.arguments if a.name not in out_names]
    packet = getattr(aten, schema.name.split("::")[1])
    for overload in packet.overloads():
        candidate = getattr(packet, overload)
        if candidate._schema.is_mutable or len(candidate._schema.returns) != len(out_names):
            continue
        if [(a.name, str(a.type)) for a in candidate._schema.arguments] == wanted:
            return candidate, out_names
    return None


@functools.lru_cache(maxsize=None)
def functional_twin(func) -> Optional[Any]:
    """The out-of-place op computing the new value of an in-place op's ``self``.

    ``aten.add_.Tensor -> aten.add.Tensor``; ``aten.bernoulli_.float -> aten.bernoulli.p``.
    Returns None when no twin with the same arguments exists.
    """
    name = func._schema.name.split("::")[1]
    if not name.endswith("_") or name.endswith("__"):
        return None
    # ``normal_`` has no ``normal`` of its arguments; torch's functionalization uses ``normal_functional``.
    packets = [p for p in (getattr(aten, name[:-1], None), getattr(aten, f"{name[:-1]}_functional", None)) if p]
    wanted = [(a.name, str(a.type)) for a in func._schema.arguments]
    for packet, overload in [(p, o) for p in packets for o in [func._overloadname]
                             + [o for o in p.overloads() if o != func._overloadname]]:
        candidate = getattr(packet, overload, None)
        if candidate is None or candidate._schema.is_mutable:
            continue
        got = [(a.name, str(a.type)) for a in candidate._schema.arguments]
        if [t for _, t in got] == [t for _, t in wanted] or got == wanted:
            return candidate
        if [t for _, t in got[: len(wanted)]] == [t for _, t in wanted] and all(
            a.has_default_value() for a in candidate._schema.arguments[len(wanted):]
        ):
            return candidate
    return None


# ---- scatter rules: write `new` (the updated view) into `parent` ------------------------
# Each rule gets (emit, parent, new, view_args, parent_val, view_val) where `emit(op, *args)`
# adds a node; view_args are the view op's arguments after the tensor.


def _reshape_back(emit, parent, new, args, parent_val, view_val):
    contiguous = emit(aten.clone.default, new, memory_format=torch.contiguous_format)
    return emit(aten.view.default, contiguous, list(parent_val.shape))


def _identity(emit, parent, new, args, parent_val, view_val):
    return new


def _select(emit, parent, new, args, parent_val, view_val):
    return emit(aten.select_scatter.default, parent, new, *args)


def _slice(emit, parent, new, args, parent_val, view_val):
    return emit(aten.slice_scatter.default, parent, new, *args)


def _diagonal(emit, parent, new, args, parent_val, view_val):
    return emit(aten.diagonal_scatter.default, parent, new, *args)


def _as_strided(emit, parent, new, args, parent_val, view_val):
    if parent_val.requires_grad and not _contiguous(parent_val):
        raise UnsupportedOp(  # torch's as_strided_scatter asserts so (its gradient needs it), at run time too
            f"an in-place op writes an as_strided view of a non-contiguous tensor of shape "
            f"{tuple(parent_val.shape)} that requires grad (inputs sharing memory are read as such views of "
            "their common base)", "capture",
            "make that tensor contiguous before the call (or clone the written view), or pass the base tensor "
            "once and take the views inside the function")
    relative = _relative_strided_args(parent, args)
    if relative is not None:
        # The offset and strides count in the memory's elements. Eager's scatter keeps the target's
        # memory and layout; Inductor's lowering writes into a fresh contiguous copy of the target,
        # where they point elsewhere or out of bounds (fuzzer seeds 16984, 17201: inputs that are
        # slices; 7158: an input of stride 2), and its reinplacing into the input's memory again
        # elsewhere. An index_put at the view's places counted in the target's own elements means
        # the same to all of them (a copy and a scatter at relative offsets did not: Inductor drops
        # the copy as a no-op on torch 2.11).
        return _scatter_by_index(emit, parent, new, *relative)
    return emit(aten.as_strided_scatter.default, parent, new, *args)


def _scatter_by_index(emit, target, new, sizes: list, strides: list, offset: int) -> Any:
    """`target` with `new` written at the places ``as_strided(sizes, strides, offset)`` takes of a
    contiguous copy of it: an index_put into its elements in order."""
    value = target.meta["val"]
    flat = emit(aten.reshape.default, target, [-1])
    index = None
    for dim, (size, stride) in enumerate(zip(sizes, strides)):
        if size == 1:
            continue
        shape = [1] * len(sizes)
        shape[dim] = size
        steps = emit(aten.arange.start_step, 0, size * stride, stride, dtype=torch.int64, device=value.device)
        steps = emit(aten.view.default, steps, shape)
        index = steps if index is None else emit(aten.add.Tensor, index, steps)
    if index is None:
        index = emit(aten.full.default, [1] * len(sizes), 0, dtype=torch.int64, device=value.device)
    index = emit(aten.add.Tensor, index, offset)
    written = emit(aten.index_put.default, flat, [index], new)
    return emit(aten.view.default, written, list(value.shape))


def _relative_strided_args(target: Any, args: tuple) -> Optional[tuple]:
    """``as_strided`` arguments (sizes, strides, offset in the memory's elements) counted in a
    contiguous copy of `target` instead; None where `target` is contiguous at offset 0 (nothing to
    change), or its elements are not evenly spaced in the memory (a transposed tensor), or sizes
    are symbolic."""
    value = target.meta.get("val") if isinstance(target, fx.Node) else None
    if len(args) < 3 or type(args[2]) is not int or not isinstance(value, torch.Tensor) or has_symbolic_sizes(value):
        return None
    if value.storage_offset() == 0 and value.is_contiguous():
        return None
    spacing, expected = None, 1
    for size, stride in reversed(list(zip(value.shape, value.stride()))):
        if size != 1:
            spacing = spacing or stride
            if stride <= 0 or stride != spacing * expected:
                return None
        expected *= size
    spacing = spacing or 1
    shift = args[2] - value.storage_offset()
    sizes, strides = list(args[0]), list(args[1])
    if shift < 0 or shift % spacing or any(st % spacing for sz, st in zip(sizes, strides) if sz != 1):
        return None
    return (sizes, [st // spacing for st in strides], shift // spacing)


def _contiguous(value) -> bool:
    """Whether `value` is contiguous; True where its sizes are symbolic (no guard added: torch's
    own check then decides)."""
    return has_symbolic_sizes(value) or value.is_contiguous()


def _transpose(emit, parent, new, args, parent_val, view_val):
    return emit(aten.transpose.int, new, *args)


def _lowest(dtype: torch.dtype):
    """The smallest value of `dtype` (False for bool)."""
    if dtype == torch.bool:
        return False
    return -math.inf if dtype.is_floating_point else torch.iinfo(dtype).min


def _t(emit, parent, new, args, parent_val, view_val):
    return emit(aten.t.default, new)


def _permute(emit, parent, new, args, parent_val, view_val):
    dims = [d % parent_val.dim() for d in args[0]]
    inverse = [dims.index(i) for i in range(len(dims))]
    return emit(aten.permute.default, new, inverse)


def _expand(emit, parent, new, args, parent_val, view_val):
    """Each element of `parent` takes the value written into its broadcast copies in `new`, or
    keeps its own where no copy changed. Several copies changed only by a write of one value into
    a view that overlaps itself (``fill_``, ``zero_``, ``masked_fill_`` of a scalar: eager
    refuses other writes there), so they agree: the largest is taken. Exact: nothing is added to
    a value (complex values, which have no order, are taken from the one copy changed)."""
    new_val = new.meta["val"]
    broadcast = emit(aten.expand.default, parent, list(new_val.shape))
    changed = emit(aten.ne.Tensor, new, broadcast)
    if new_val.is_floating_point() or new_val.is_complex():  # NaN != NaN: a NaN left in place is no change
        both_nan = emit(aten.logical_and.default, emit(aten.isnan.default, new), emit(aten.isnan.default, broadcast))
        changed = emit(aten.logical_and.default, changed, emit(aten.logical_not.default, both_nan))
    leading = new_val.dim() - parent_val.dim()
    dims = list(range(leading)) + [leading + d for d, size in enumerate(parent_val.shape)
                                   if isinstance(size, int) and size == 1]
    if not dims:
        return new
    sizes = list(parent_val.shape)
    if new_val.is_complex():
        written = emit(aten.where.self, changed, new, emit(aten.zeros_like.default, new))
        value = emit(aten.sum.dim_IntList, written, dims, True, dtype=parent_val.dtype)
    else:
        written = emit(aten.where.self, changed, new, emit(aten.full_like.default, new, _lowest(new_val.dtype)))
        value = emit(aten.amax.default, written, dims, True)
    value = emit(aten.view.default, value, sizes)
    count = emit(aten.sum.dim_IntList, changed, dims, True, dtype=torch.int32)
    any_written = emit(aten.view.default, emit(aten.gt.Scalar, count, 0), sizes)
    return emit(aten.where.self, any_written, value, parent)


def _as_real(emit, parent, new, args, parent_val, view_val):
    """A write into ``view_as_complex(parent)``: the parent's new value is its real view."""
    return emit(aten.view_as_real.default, new)


def _as_complex(emit, parent, new, args, parent_val, view_val):
    """A write into ``view_as_real(parent)``: the parent's new value is its complex view."""
    return emit(aten.view_as_complex.default, new)


SCATTER_RULES: dict[Any, Callable] = {
    aten.view_as_complex.default: _as_real,
    aten.view_as_real.default: _as_complex,
    aten.expand.default: _expand,
    aten.view.default: _reshape_back,
    aten._unsafe_view.default: _reshape_back,
    aten._reshape_alias.default: _reshape_back,
    aten.unsqueeze.default: _reshape_back,
    aten.squeeze.default: _reshape_back,
    aten.squeeze.dim: _reshape_back,
    aten.squeeze.dims: _reshape_back,
    aten.view_as.default: _reshape_back,
    aten.alias.default: _identity,
    aten.detach.default: _identity,
    aten.lift_fresh.default: _identity,
    aten.select.int: _select,
    aten.slice.Tensor: _slice,
    aten.diagonal.default: _diagonal,
    aten.as_strided.default: _as_strided,
    aten.transpose.int: _transpose,
    aten.t.default: _t,
    aten.permute.default: _permute,
}


def scatter_multi_output(emit, func, parent, new, args, index, parent_val):
    """Write element `index` of a multi-output view op (split, unbind, chunk) back into `parent`."""
    if func is aten.unbind.int:
        dim = args[0] if args else 0
        return emit(aten.select_scatter.default, parent, new, dim, index)
    if func in (aten.split.Tensor, aten.split_with_sizes.default):
        dim = args[1] if len(args) > 1 else 0
        size = parent_val.shape[dim]
        if func is aten.split.Tensor:
            start = index * args[0]
            end = min(start + args[0], size)
        else:
            start = sum(args[0][:index])
            end = start + args[0][index]
        return emit(aten.slice_scatter.default, parent, new, dim, start, end)
    return None


GETITEM = operator.getitem
AUTO_FUNCTIONALIZED = torch.ops.higher_order.auto_functionalized  # a custom op that writes, out of place
