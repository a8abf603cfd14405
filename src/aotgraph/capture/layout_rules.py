"""Output layouts of a few ops computed directly, for the capture's fake-output misses.

The meta kernels of group norm, batch norm, layer norm and their backwards are Python
decompositions: a miss runs some thirty ops on meta tensors, each through the dispatcher, to
learn three layouts that follow from the arguments' shapes alone (layer norm's: 5-15 ms); even
a pointwise op's meta kernel is Python (torch's reference: broadcasting, type promotion, stride
order; 0.1-0.3 ms a miss); the fake mode's rule for convolutions normalizes the arguments in
Python and asks the backend selection for a memory format. In a convnet every layer has its
own shapes, so nearly every one of these ops is a miss. A rule here answers only the case it
was checked for against eager and the fake mode (tests/capture/test_layout_rules.py): float32
or float64 arguments of one dtype on one device (convolutions, layer norm: the CPU), all with
contiguous strides and no empty dimension (batch norm: in training, and its backward asked for
all three gradients; pointwise ops and softmax: all arguments of one shape). There every output is a fresh
contiguous tensor of that dtype. Anything else returns None and the meta kernel or the fake
mode answers (switch ``layout_rules``).

A rule takes the op's arguments and the memo's layouts of its tensor arguments (in argument
order, see `fake_outputs.FakeOutputs._layout`) and returns, per output, ``(shape, dtype)`` of
a fresh contiguous tensor, or None for an output the op does not compute.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

aten = torch.ops.aten

_FULL_PRECISION = frozenset({torch.float32, torch.float64})
Outputs = Optional[tuple]  # per output: (shape, dtype) or None; None as a whole: no answer


def contiguous_strides(shape: tuple) -> tuple:
    """The strides ``torch.empty(shape)`` has (a size-1 dimension's too)."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def _plain_layouts(layouts: list) -> Optional[torch.dtype]:
    """The one full-precision dtype of `layouts` if they share it and a device, have integer
    sizes and are neither conjugated nor negated; else None."""
    dtype, device = layouts[0][0], layouts[0][4]
    if dtype not in _FULL_PRECISION:
        return None
    for layout in layouts:
        if layout[0] != dtype or layout[4] != device or layout[5] or layout[6] or layout[7]:
            return None
    return dtype


def _contiguous(layout: tuple) -> bool:
    """Contiguous strides (those of ``torch.empty``) and no empty dimension."""
    shape = layout[1]
    return all(size > 0 for size in shape) and layout[2] == contiguous_strides(shape)


def _group_norm(args: tuple, kwargs: dict, layouts: list) -> Outputs:
    """``native_group_norm(input, weight?, bias?, N, C, HxW, group, eps)``: the normalized
    input, then the mean and 1/std of each (sample, group)."""
    if kwargs or len(args) != 8:
        return None
    dtype = _plain_layouts(layouts)
    input_layout = layouts[0]
    n, c, hxw, group = args[3:7]
    if dtype is None or not _contiguous(input_layout) or not _valid_sizes(input_layout[1], n, c, hxw, group):
        return None
    if any(t is not None and tuple(t.shape) != (c,) for t in args[1:3]):
        return None
    return (input_layout[1], dtype), ((n, group), dtype), ((n, group), dtype)


def _group_norm_backward(args: tuple, kwargs: dict, layouts: list) -> Outputs:
    """``native_group_norm_backward(grad_out, input, mean, rstd, weight?, N, C, HxW, group,
    output_mask)``: the gradients of the input, weight and bias that `output_mask` asks for."""
    if kwargs or len(args) != 10:
        return None
    dtype = _plain_layouts(layouts)
    grad_layout, input_layout, mean, rstd, weight = layouts[0], layouts[1], args[2], args[3], args[4]
    n, c, hxw, group, mask = args[5:10]
    if dtype is None or not _contiguous(input_layout) or grad_layout[1] != input_layout[1] \
            or not _valid_sizes(input_layout[1], n, c, hxw, group):
        return None
    if tuple(mean.shape) != (n, group) or tuple(rstd.shape) != (n, group) \
            or (weight is not None and weight.numel() != c):
        return None
    shapes = (input_layout[1], (c,), (c,))
    return tuple((shape, dtype) if wanted else None for shape, wanted in zip(shapes, mask))


def _valid_sizes(shape: tuple, n, c, hxw, group) -> bool:
    numel = 1
    for size in shape:
        numel *= size
    return (len(shape) >= 2 and all(type(v) is int for v in (n, c, hxw, group)) and group > 0 and c % group == 0
            and shape[0] == n and shape[1] == c and numel == n * c * hxw)


def _convolution(args: tuple, kwargs: dict, layouts: list) -> Outputs:
    """``convolution(input, weight, bias?, stride, padding, dilation, transposed, output_padding,
    groups)``, not transposed, on the CPU: (N, C_out, *spatial sizes of the output)."""
    if kwargs or len(args) != 9 or args[6]:
        return None
    spatial = _convolution_sizes(layouts[0][1], layouts[1][1], args[3:6], args[8], layouts)
    if spatial is None or (args[2] is not None and tuple(args[2].shape) != (args[1].shape[0],)):
        return None
    return (((layouts[0][1][0], layouts[1][1][0], *spatial), layouts[0][0]),)


def _convolution_backward(args: tuple, kwargs: dict, layouts: list) -> Outputs:
    """``convolution_backward(grad_out, input, weight, bias_sizes?, stride, padding, dilation,
    transposed, output_padding, groups, output_mask)``, not transposed, on the CPU: the gradients
    of the input, weight and bias (of C_out) that `output_mask` asks for."""
    if kwargs or len(args) != 11 or args[7]:
        return None
    input_layout, weight_layout = layouts[1], layouts[2]
    spatial = _convolution_sizes(input_layout[1], weight_layout[1], args[4:7], args[9], layouts)
    if spatial is None or layouts[0][1] != (input_layout[1][0], weight_layout[1][0], *spatial):
        return None
    dtype = input_layout[0]
    shapes = (input_layout[1], weight_layout[1], (weight_layout[1][0],))
    return tuple((shape, dtype) if wanted else None for shape, wanted in zip(shapes, args[10]))


def _convolution_sizes(input_shape: tuple, weight_shape: tuple, params: tuple, groups,
                       layouts: list) -> Optional[tuple]:
    """The output's spatial sizes of a convolution of contiguous float32/64 CPU tensors (all of
    `layouts`) with matching ranks and channels, and one stride, padding and dilation (`params`)
    per spatial dimension; None otherwise."""
    if _plain_layouts(layouts) is None or layouts[0][4].type != "cpu" or not all(map(_contiguous, layouts)):
        return None
    rank = len(weight_shape) - 2
    if len(input_shape) != rank + 2 or rank not in (1, 2, 3) or type(groups) is not int or groups <= 0:
        return None
    stride, padding, dilation = params
    if not all(type(p) in (list, tuple) and len(p) == rank and all(type(v) is int for v in p) for p in params):
        return None
    if input_shape[1] != weight_shape[1] * groups or weight_shape[0] % groups:
        return None
    sizes = tuple((size + 2 * p - d * (k - 1) - 1) // s + 1
                  for size, k, s, p, d in zip(input_shape[2:], weight_shape[2:], stride, padding, dilation))
    return sizes if all(size > 0 for size in sizes) and min(stride) > 0 and min(dilation) > 0 \
        and min(padding) >= 0 else None


def _batch_norm(args: tuple, kwargs: dict, layouts: list) -> Outputs:
    """``_native_batch_norm_legit(input, weight?, bias?, running_mean, running_var, training,
    momentum, eps)`` (and ``.no_stats``, without the running statistics): the normalized input,
    then the saved mean and 1/std of each channel; in training only."""
    if kwargs or len(args) not in (6, 8):
        return None
    dtype = _plain_layouts(layouts)
    input_layout, training = layouts[0], args[-3]
    shape = input_layout[1]
    if dtype is None or training is not True or not _contiguous(input_layout) or len(shape) < 2:
        return None  # (outside training eager's CPU kernel saves statistics of C, the meta kernel of 0)
    if any(t is not None and tuple(t.shape) != (shape[1],) for t in args[1:-3]):
        return None
    saved = ((shape[1] if training else 0,), dtype)
    return (shape, dtype), saved, saved


def _batch_norm_backward(args: tuple, kwargs: dict, layouts: list) -> Outputs:
    """``native_batch_norm_backward(grad_out, input, weight?, running_mean?, running_var?,
    save_mean?, save_invstd?, train, eps, output_mask)``, in training, all three gradients asked for: those
    of the input, weight and bias."""
    if kwargs or len(args) != 10 or args[7] is not True or list(args[9]) != [True, True, True]:
        return None  # (eager's CPU kernel computes what the mask leaves out)
    dtype = _plain_layouts(layouts)
    grad_layout, input_layout = layouts[0], layouts[1]
    shape = input_layout[1]
    if dtype is None or not _contiguous(input_layout) or len(shape) < 2 or grad_layout[1] != shape:
        return None
    if any(t is not None and tuple(t.shape) != (shape[1],) for t in args[2:7]):
        return None
    return (shape, dtype), ((shape[1],), dtype), ((shape[1],), dtype)


def _layer_norm(args: tuple, kwargs: dict, layouts: list) -> Outputs:
    """``native_layer_norm(input, normalized_shape, weight?, bias?, eps)`` on the CPU: the
    normalized input, then the mean and 1/std of each row, with the normalized dimensions kept
    as 1s."""
    if kwargs or len(args) != 5:
        return None
    shape = _normalized_rows(layouts, args[0], args[1], args[2:4])
    if shape is None:
        return None
    dtype, statistics = layouts[0][0], shape[:len(shape) - len(args[1])] + (1,) * len(args[1])
    return (shape, dtype), (statistics, dtype), (statistics, dtype)


def _layer_norm_backward(args: tuple, kwargs: dict, layouts: list) -> Outputs:
    """``native_layer_norm_backward(grad_out, input, normalized_shape, mean, rstd, weight?,
    bias?, output_mask)`` on the CPU: the gradients of the input, weight and bias that
    `output_mask` asks for (eager refuses a mask asking for the gradient of a missing weight)."""
    if kwargs or len(args) != 8 or type(args[7]) not in (list, tuple) or len(args[7]) != 3:
        return None
    grad, normalized, mean, rstd, weight, bias, mask = args[0], args[2], args[3], args[4], args[5], args[6], args[7]
    shape = _normalized_rows(layouts, args[1], normalized, (weight, bias))
    if shape is None or tuple(grad.shape) != shape or (mask[1] and weight is None) or (mask[2] and bias is None):
        return None
    statistics = shape[:len(shape) - len(normalized)] + (1,) * len(normalized)
    if tuple(mean.shape) != statistics or tuple(rstd.shape) != statistics:
        return None
    dtype = layouts[0][0]
    shapes = (shape, tuple(normalized), tuple(normalized))
    return tuple((s, dtype) if wanted is True else None for s, wanted in zip(shapes, mask))


def _normalized_rows(layouts: list, input, normalized, affine: tuple) -> Optional[tuple]:
    """The input's shape where every tensor of `layouts` is a contiguous full-precision CPU
    tensor of one dtype, `normalized` (ints) is the input's trailing sizes and each tensor of
    `affine` (weight, bias) has that shape; else None."""
    if _plain_layouts(layouts) is None or layouts[0][4].type != "cpu" or not all(map(_contiguous, layouts)):
        return None
    shape = layouts[0][1]
    if type(normalized) not in (list, tuple) or not all(type(v) is int for v in normalized) \
            or not 0 < len(normalized) <= len(shape) or tuple(normalized) != shape[len(shape) - len(normalized):]:
        return None
    if any(t is not None and tuple(t.shape) != tuple(normalized) for t in affine):
        return None
    return shape


_POINTWISE_SCALARS = (int, float, bool, str, type(None))  # numbers, gelu's approximate, div's rounding_mode


def _same_layout_pointwise(args: tuple, kwargs: dict, layouts: list) -> Outputs:
    """A pointwise op of `POINTWISE` whose tensor arguments all have one shape, contiguous
    strides and one full-precision dtype, and whose other arguments are real numbers (or an
    option's string): no broadcasting, no type promotion (a Python number does not promote a
    float tensor), so its output is a fresh contiguous tensor of that shape and dtype."""
    if _plain_layouts(layouts) is None or not all(map(_contiguous, layouts)):
        return None
    shape = layouts[0][1]
    if any(layout[1] != shape for layout in layouts):
        return None
    plain = [v for v in (*args, *kwargs.values()) if not isinstance(v, torch.Tensor)]
    if not all(type(v) in _POINTWISE_SCALARS for v in plain):
        return None
    return ((shape, layouts[0][0]),)


def _softmax(args: tuple, kwargs: dict, layouts: list) -> Outputs:
    """``_softmax`` / ``_log_softmax(input, dim, half_to_float=False)`` of a contiguous
    full-precision input: a fresh tensor like it."""
    if kwargs or len(args) != 3 or args[2] is not False or type(args[1]) is not int:
        return None
    return _same_layout_pointwise((), {}, layouts)


def _softmax_backward(args: tuple, kwargs: dict, layouts: list) -> Outputs:
    """``_softmax_backward_data`` / ``_log_softmax_backward_data(grad_out, output, dim,
    input_dtype)`` of contiguous full-precision tensors of one shape, the input of their dtype:
    a fresh tensor like them."""
    if kwargs or len(args) != 4 or type(args[2]) is not int or args[3] != layouts[0][0]:
        return None
    return _same_layout_pointwise((), {}, layouts)


POINTWISE = frozenset({
    aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor, aten.add.Scalar, aten.sub.Scalar,
    aten.mul.Scalar, aten.div.Scalar, aten.rsub.Scalar, aten.neg.default, aten.exp.default, aten.sqrt.default,
    aten.rsqrt.default, aten.pow.Tensor_Scalar, aten.sigmoid.default, aten.tanh.default, aten.relu.default,
    aten.silu.default, aten.gelu.default, aten.sigmoid_backward.default, aten.tanh_backward.default,
    aten.gelu_backward.default, aten.silu_backward.default, aten.mish_backward.default, aten.fill.Scalar,
})

RULES: dict[object, Callable[[tuple, dict, list], Outputs]] = {
    **{op: _same_layout_pointwise for op in POINTWISE},
    aten._softmax.default: _softmax,
    aten._log_softmax.default: _softmax,
    aten._softmax_backward_data.default: _softmax_backward,
    aten._log_softmax_backward_data.default: _softmax_backward,
    aten.native_layer_norm.default: _layer_norm,
    aten.native_layer_norm_backward.default: _layer_norm_backward,
    aten._native_batch_norm_legit.default: _batch_norm,
    aten._native_batch_norm_legit.no_stats: _batch_norm,
    aten.native_batch_norm_backward.default: _batch_norm_backward,
    aten.native_group_norm.default: _group_norm,
    aten.native_group_norm_backward.default: _group_norm_backward,
    aten.convolution.default: _convolution,
    aten.convolution_backward.default: _convolution_backward,
}
