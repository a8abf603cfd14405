"""Torch functions recorded from above their composite while sizes are symbolic.

Some functions of ``torch.nn.functional`` reach the recorder through a composite that, with
symbolic sizes, spends most of the function's capture time on size arithmetic and checks
(``group_norm``'s C++ composite: its memory-format suggestion, contiguity, the product of the
spatial sizes, a dozen conditions calling back into Python each call; nearest upsampling's
Python decomposition: its scale as a float expression of the sizes). Where the arguments are
such that the composite's checks all pass, a rule here records what the composite would: the
native op it calls with the same arguments (same node, same autograd formula), or the ops of
its decomposition with the same values; or, for a composite that reads a size as an int
(``max_pool1d``: one compile per length), the native op it calls with the same values.
Anything else (static sizes, autocast on, a non-contiguous input, a size the rule would have
to decide) returns `DECLINED`, and the function runs as it is. Switch
``symbolic_function_rules``.

`RULES` maps a torch function to its rule; `HigherOrderCalls`, the capture's torch-function
mode, consults it.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F

from ..torch_private.autocast import any_autocast_enabled
from ..torch_private.interval_truth import equal_everywhere
from ..torch_private.symbolic import node_expression

__all__ = ["RULES", "DECLINED"]

DECLINED = object()
aten = torch.ops.aten


def _symbolic(t: torch.Tensor) -> bool:
    return any(type(size) is torch.SymInt for size in t.shape)


def _same(a, b) -> bool:
    """Whether two sizes are the same without asking the shape environment (no guard): equal
    ints, or SymInts of one expression (up to the ``Max(1, size)`` the ranges decide, as
    strides carry it)."""
    if type(a) is int or type(b) is int:
        return type(a) is type(b) and a == b
    return equal_everywhere(node_expression(a.node), node_expression(b.node), a.node.shape_env.var_to_range)


def _contiguous(t: torch.Tensor) -> Optional[list]:
    """`t`'s sizes where its strides are the row-major strides of its sizes (told from the
    expressions, so without a guard), else None."""
    sizes, strides = list(t.shape), t.stride()
    expected = 1
    for size, stride in zip(reversed(sizes), reversed(strides)):
        if not _same(stride, expected):
            return None
        expected = expected * size
    offset = t.storage_offset()
    return sizes if type(offset) is int and offset == 0 else None  # (a symbolic offset: no guard taken)


def _group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """``F.group_norm`` on a contiguous input of symbolic sizes with a static channel count
    divisible by `num_groups` (and a weight and bias of that many, or none): F.group_norm's own
    checks, then ``native_group_norm(input, weight, bias, N, C, H*W..., num_groups, eps)[0]``,
    what its composite calls once its checks pass."""
    if not isinstance(input, torch.Tensor) or input.dim() < 2 or any_autocast_enabled() \
            or not isinstance(num_groups, int) or num_groups <= 0 or not _symbolic(input) \
            or type(eps) not in (float, int):
        return DECLINED
    sizes = _contiguous(input)
    channels = input.shape[1]
    if sizes is None or type(channels) is not int or channels % num_groups:
        return DECLINED
    for affine in (weight, bias):
        if affine is not None and (not isinstance(affine, torch.Tensor) or affine.shape != (channels,)
                                   or affine.stride() != (1,) or affine.storage_offset() != 0
                                   or affine.dtype != input.dtype or affine.device != input.device):
            return DECLINED
    F._verify_batch_size([sizes[0] * channels // num_groups, num_groups] + sizes[2:])
    spatial = 1
    for size in sizes[2:]:
        spatial = spatial * size
    return aten.native_group_norm.default(input, weight, bias, sizes[0], channels, spatial, num_groups, float(eps))[0]


def _interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None, antialias=False):
    """``F.interpolate(x, scale_factor=k, mode="nearest")`` of a contiguous 4-d x of symbolic
    sizes (its channels and spatial sizes symbols, or ints of at least 2), k a whole number (or
    one per spatial size): the ops of
    torch's decomposition of ``upsample_nearest2d`` (each output index i reads input index
    ``int(float32(i) * (isize / (isize * k)))``, and ``isize / (isize * k)`` is the double
    ``1 / k`` for every isize), with that scale as a constant instead of an expression of the
    sizes; the decomposition's final ``contiguous`` is the identity for such an input."""
    if mode != "nearest" or size is not None or align_corners is not None or recompute_scale_factor \
            or antialias or not isinstance(input, torch.Tensor) or input.dim() != 4 or any_autocast_enabled() \
            or not _symbolic(input) or not input.dtype.is_floating_point:
        return DECLINED
    factors = list(scale_factor) if isinstance(scale_factor, (list, tuple)) else [scale_factor] * 2
    if len(factors) != 2 or not all(type(k) in (int, float) and k >= 1 and int(k) == k for k in factors):
        return DECLINED
    sizes = _contiguous(input)
    if sizes is None or any(type(s) is int and s < 2 for s in sizes[1:]):
        return DECLINED  # (where H*W may be 1, the decomposition's memory format would be decided)
    indices = []
    for d, (isize, k) in enumerate(zip(sizes[2:], factors)):
        k = int(k)
        output_indices = torch.arange(isize * k, dtype=torch.float32, device=input.device)
        input_indices = ((output_indices + 0.0) * (1.0 / k)).to(torch.int64)
        indices.append(input_indices.unsqueeze(-1) if d == 0 else input_indices)
    return aten._unsafe_index(input, [None, None, *indices])


def _max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """``F.max_pool1d`` (and ``max_pool1d_with_indices``) of symbolic sizes: as
    ``F.max_pool2d`` over the input with a height of 1 inserted, which is what eager's kernel
    for an input requiring grad runs (``max_pool1d_with_indices`` pools in 2-d; an index along a
    height of 1 is the 1-d index). Its C++ composite reads the length as an int, so a capture
    through it specialized every length (one compile per length, as torch.compile's)."""
    if not isinstance(input, torch.Tensor) or input.dim() not in (2, 3) or not _symbolic(input) \
            or any_autocast_enabled():
        return DECLINED
    one = [_one(v) for v in (kernel_size, stride if stride else kernel_size, padding, dilation)]
    if any(v is None for v in one):
        return DECLINED
    kernel, step, pad, dilate = one
    out = F.max_pool2d(input.unsqueeze(-2), (1, kernel), (1, step), (0, pad), (1, dilate), ceil_mode,
                       return_indices)
    return (out[0].squeeze(-2), out[1].squeeze(-2)) if return_indices else out.squeeze(-2)


def _one(value) -> Optional[int]:
    """A 1-d pooling argument as its int (an int, or a list or tuple of one); None otherwise."""
    if isinstance(value, (list, tuple)):
        value = value[0] if len(value) == 1 else None
    return value if type(value) is int else None


RULES: dict[Any, Any] = {F.group_norm: _group_norm, F.interpolate: _interpolate, F.max_pool1d: _max_pool1d,
                         F.max_pool1d_with_indices: _max_pool1d}
