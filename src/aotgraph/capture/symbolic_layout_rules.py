"""Output layouts of common ops on tensors of symbolic sizes, computed directly, for the
capture's fake-output misses under a shape environment.

With symbolic sizes a miss costs the fake mode 0.5-10 ms: its meta functions run in Python
(torch's references: broadcasting, type promotion, stride order; layer norm's decomposition op
by op), and each size and stride they compute is a sympy expression built, simplified and
compared through the shape environment. A dynamic capture meets every op's first occurrence
that way (a 2-layer GPT-style decoder: 63 misses, 80-90 ms, as long as its whole static
capture). A rule here answers from the arguments' own SymInts: a pointwise op's output has its
argument's sizes and strides, a transpose swaps them, a matmul's is (m, n) with strides (n, 1).

A rule answers only where every condition it needs holds for the size expressions as they are
written: equal shapes are equal expressions, contiguous strides are the products of the sizes
(torch's ``Max(1, size)`` factors read as the size), every size is >= 1 over its symbols'
ranges in the shape environment (a backed symbol is >= 2, the shape environment specializes 0
and 1; ``s0//8`` only once a guard has made s0 >= 8; an unbacked one may be 0). Where the fake
mode would have to decide something (broadcasting against a size that may be 1, a view whose
sizes do not provably match, dtype promotion), the rule declines and the fake mode answers and
adds its guards, or the rule makes the same check the same way (a matmul's inner sizes, a
convolution's kernel against its padded input), which adds the same guard. Two rules guard less
than the fake mode, each where that guard does not bear on the answer: a convolution leaves out
the fake mode's backend choice (its guard on the batch size picks the output's memory format,
contiguous for every CPU backend here); group norm's backward guards only that the gradient has
the input's sizes (the decomposition's views add guards of their own). Where a meta function
decides a size or stride through ``guard_or_false`` / ``guard_or_true`` or an ``if`` on a SymBool
(a slice's clamping of its bounds, the index gather's and ``empty_like``'s channels-last test),
the rule decides it from the ranges where they decide it, and otherwise makes that same call on
the same SymInts (the same guard). Fresh outputs that a meta function makes with ``torch.empty``
(pooling, the index gather) have its strides, products of ``Max(1, size)`` (`_fresh_empty`).
tests/capture/
test_symbolic_layout_rules.py checks each rule against the fake mode's answer and guards
(switch ``symbolic_layout_rules``).

A rule takes the op's arguments, the memo's layouts of its tensor arguments and those tensors
(in argument order, see `fake_outputs.FakeOutputs._layout`), and returns per output None (not
computed), ``(FRESH, shape, stride, numel, dtype)``: a fresh tensor of that layout, or
``(VIEW, k, shape, stride, offset)``: a view of the k-th tensor's storage; None as a whole: no
answer.
"""
from __future__ import annotations

import contextlib
import functools
import operator
import sys
import threading
import weakref
from typing import Callable, Iterator, Optional

import sympy
import torch

from ..graph.sizes import size_keys
from ..torch_private.fake import suggest_memory_format
from ..thread_values import held
from ..torch_private.symbolic import (Max, ValueRanges, bound_sympy, free_unbacked_symbols, guard_or_false,
                                      guard_or_true, int_oo, sym_and, sym_or)
from .layout_rules import POINTWISE as STATIC_POINTWISE

aten = torch.ops.aten

FRESH, VIEW = 0, 1
Outputs = Optional[tuple]
_FLOATS = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})
_FULL_PRECISION = frozenset({torch.float32, torch.float64})
_SCALARS = (int, float, bool, str, type(None))  # numbers, gelu's approximate, div's rounding_mode
# A symbolic int or float (a size dividing a mean's gradient, an upsampling's scale) promotes a
# floating tensor no more than a Python number does.
_SYMBOLIC_NUMBERS = (torch.SymInt, torch.SymFloat)


_answering = threading.local()  # .shape_env: the shape environment of the sizes a rule is given


@contextlib.contextmanager
def sizes_of(shape_env) -> Iterator[None]:
    """The rules called inside read the ranges of sizes' symbols from `shape_env` (see `_backed`)."""
    with held(_answering, "shape_env", shape_env):
        yield


_memos: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # shape environment -> its answers
_MEMO_WITHOUT_SHAPE_ENV: dict = {}


def _memo() -> dict:
    """The answers of `_backed` and `_dense` for the shape environment being answered for (they
    hold for it only: its ranges decide them)."""
    shape_env = getattr(_answering, "shape_env", None)
    if shape_env is None:
        return _MEMO_WITHOUT_SHAPE_ENV
    memo = _memos.get(shape_env)
    if memo is None:
        memo = _memos[shape_env] = {}
    return memo


def _backed(size) -> bool:
    """An int > 0, or an expression of backed symbols that is >= 1 for every value in their
    ranges (a symbol: the shape environment specializes sizes 0 and 1; ``s0//8`` once a guard
    has made s0 >= 8; not ``s0//8`` alone)."""
    if type(size) is int:
        return size > 0
    memo, version = _memo(), _guards_seen()
    known = memo.get(size)
    if known is None or (known is False and memo.get((size, "at")) != version):
        known = memo[size] = bool(_lower_bound(size) >= 1)
        memo[(size, "at")] = version  # (a False holds until a guard narrows the ranges: s0//8 >= 1)
    return known


def _guards_seen() -> int:
    shape_env = getattr(_answering, "shape_env", None)
    return len(shape_env.guards) if shape_env is not None else 0


def _lower_bound(expr):
    """The least value `expr` takes over its symbols' ranges (-oo with an unbacked symbol)."""
    if free_unbacked_symbols(expr):
        return -int_oo
    if expr.is_Symbol:
        return 1
    return _range(expr).lower


def _range(expr) -> ValueRanges:
    """The values `expr` (an int, or an expression without unbacked symbols) takes over its
    symbols' ranges in the shape environment; remembered until a guard narrows the ranges."""
    if type(expr) is int or expr.is_Integer:
        return ValueRanges(int(expr), int(expr))
    memo, version = _memo(), _guards_seen()
    key = ("range", expr)
    known = memo.get(key)
    if known is None or known[0] != version:
        shape_env = getattr(_answering, "shape_env", None)
        ranges = shape_env.var_to_range if shape_env is not None else {}
        known = memo[key] = (version, bound_sympy(expr, {s: ranges.get(s, ValueRanges(1, int_oo))
                                                         for s in expr.free_symbols}))
    return known[1]


def _product_at_least_two(sizes) -> bool:
    """Whether the product of `sizes` (ints and expressions, each >= 1: backed) is >= 2 for every
    value of their symbols: one of them is (an int >= 2, a symbol, or >= 2 over its range)."""
    return any(size >= 2 if type(size) is int else _at_least_two(size) for size in sizes)


def _dense(layout: tuple) -> bool:
    """Contiguous strides (those of ``torch.empty``), backed sizes and no empty dimension.
    (torch writes a contiguous stride as a product of ``Max(1, size)``, which stays where sympy
    cannot tell that the size is >= 1: such a factor is read as its size, every size being >= 1.)"""
    shape, stride = layout[1], layout[2]
    memo, version = _memo(), _guards_seen()
    key = ("dense", shape, stride)
    known = memo.get(key)
    if known is None or (known is False and memo.get((key, "at")) != version):
        known = memo[key] = _dense_sizes(shape, stride)
        memo[(key, "at")] = version  # (as `_backed`'s)
    return known


def _dense_sizes(shape: tuple, stride: tuple) -> bool:
    expected = 1
    for size, step in zip(reversed(shape), reversed(stride)):
        if not _backed(size) or (step != expected and without_max_of_one(step) != expected):
            return False
        if size != 1:
            expected = expected * size
    return True


@functools.lru_cache(maxsize=4096)
def without_max_of_one(expr):
    """`expr` with each ``Max(1, e)`` read as e (the caller knows every such e to be >= 1).
    Memoized: sympy's replace costs 0.1 ms, and a capture asks it of the same strides often."""
    if type(expr) is int or not expr.has(Max):
        return expr
    return expr.replace(lambda e: isinstance(e, Max) and len(e.args) == 2 and sympy.Integer(1) in e.args,
                        lambda e: e.args[1] if e.args[0] == 1 else e.args[0])


def _one_dtype(layouts: list, dtypes: frozenset) -> Optional[torch.dtype]:
    """The dtype of `layouts` if they share it (one of `dtypes`) and a device and are neither
    conjugated nor negated; else None."""
    dtype, device = layouts[0][0], layouts[0][4]
    if dtype not in dtypes:
        return None
    for layout in layouts:
        if layout[0] != dtype or layout[4] != device or layout[5] or layout[6]:
            return None
    return dtype


def contiguous(shape: tuple) -> tuple:
    """(strides, numel) of a fresh contiguous tensor of `shape` (ints and SymInts of backed,
    so non-zero, sizes), multiplying no SymInt by 1 (each product is a sympy expression)."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        if type(size) is not int:
            step = size if type(step) is int and step == 1 else step * size
        elif size != 1:
            step = step * size
    return tuple(reversed(strides)), step


def _fresh(shape: tuple, dtype: torch.dtype) -> tuple:
    strides, numel = contiguous(shape)
    return FRESH, tuple(shape), strides, numel, dtype


def _like(tensor: torch.Tensor, dtype: torch.dtype) -> tuple:
    """A fresh tensor of `tensor`'s (dense) layout."""
    return FRESH, tuple(tensor.shape), tuple(tensor.stride()), tensor.numel(), dtype


def _pointwise(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """A pointwise op of `POINTWISE` whose tensor arguments are of one floating dtype and whose
    other arguments are real numbers, SymInts or SymFloats (or an option's string): no
    promotion. Either all tensors are dense with shapes that are the last dimensions of one of
    them (the same expressions: broadcasting that only prepends dimensions), so a fresh tensor
    like the largest argument; or (`_same_sizes_in_order`) a fresh contiguous tensor."""
    dtype = _one_dtype(layouts, _FLOATS)
    if dtype is None or not all(type(v) in _SCALARS or type(v) in _SYMBOLIC_NUMBERS
                                for v in (*args, *kwargs.values()) if not isinstance(v, torch.Tensor)):
        return None
    if all(map(_dense, layouts)):
        largest = max(range(len(layouts)), key=lambda k: len(layouts[k][1]))
        shape = layouts[largest][1]
        if all(layout[1] == shape[len(shape) - len(layout[1]):] for layout in layouts):
            return (_like(tensors[largest], dtype),)
    if len(layouts) > 1 and _same_sizes_in_order(layouts, tensors):
        return (_fresh(tuple(tensors[0].shape), dtype),)
    return None


def _same_sizes_in_order(layouts: list, tensors: list) -> bool:
    """Whether the tensors have one rank, sizes >= 1 that are equal as the meta function's
    broadcasting decides it (see `_equal_sizes`: an encoder's ``s0//4`` and a decoder's
    ``2*(s0//8)``, equal by a guard), and each lays its dimensions out in order without overlap
    (a dense tensor, or a slice of one along a dimension: a concatenation's part). torch's
    pointwise output is then contiguous, of the first tensor's sizes."""
    rank = len(layouts[0][1])
    if any(len(layout[1]) != rank for layout in layouts) or rank == 0 or not all(map(_in_order, layouts)):
        return False
    first = tensors[0].shape
    return all(_equal_sizes(first[k], tensor.shape[k]) for tensor in tensors[1:] for k in range(rank))


def _in_order(layout: tuple) -> bool:
    """Sizes >= 1 and strides that each hold a whole number (>= 1) of the next dimension's extent:
    a dense layout, or one with gaps between the rows of a dimension (no overlap, in order)."""
    shape, stride = layout[1], _normalized_strides(layout[2])
    if not all(map(_backed, shape)) or stride[-1] != 1:
        return False
    for k in range(len(shape) - 1):
        ratio = sympy.sympify(stride[k]) / (sympy.sympify(stride[k + 1]) * shape[k + 1])
        if not (ratio.is_Integer and ratio >= 1):
            return False
    return True


def _softmax(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``_softmax`` / ``_log_softmax(input, dim, half_to_float=False)``."""
    if kwargs or len(args) != 3 or args[2] is not False or type(args[1]) is not int:
        return None
    return _pointwise((), {}, layouts, tensors)


def _softmax_backward(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``_softmax_backward_data`` / ``_log_softmax_backward_data(grad_out, output, dim, input_dtype)``
    with the input of their dtype."""
    if kwargs or len(args) != 4 or type(args[2]) is not int or args[3] != layouts[0][0]:
        return None
    return _pointwise((), {}, layouts, tensors)


def _layer_norm(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``native_layer_norm(input, normalized_shape, weight?, bias?, eps)`` on the CPU, full
    precision: the normalized input, then each row's mean and 1/std (normalized dims as 1s)."""
    if kwargs or len(args) != 5 or not _normalized_rows(layouts, tensors[0], args[1], args[2:4]):
        return None
    dtype, x = layouts[0][0], tensors[0]
    statistics = _fresh((*x.shape[:x.dim() - len(args[1])], *(1,) * len(args[1])), dtype)
    return _like(x, dtype), statistics, statistics


def _layer_norm_backward(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``native_layer_norm_backward(grad_out, input, normalized_shape, mean, rstd, weight?,
    bias?, output_mask)`` on the CPU, full precision: the gradients `output_mask` asks for."""
    if kwargs or len(args) != 8 or type(args[7]) not in (list, tuple) or len(args[7]) != 3:
        return None
    normalized, weight, bias, mask = args[2], args[5], args[6], args[7]
    # tensors: grad, input, mean, rstd, then weight and bias where given
    if not _normalized_rows(layouts[1:2] + layouts[4:], tensors[1], normalized, (weight, bias)) \
            or layouts[0][1] != layouts[1][1] \
            or not _dense(layouts[0]) or (mask[1] and weight is None) or (mask[2] and bias is None):
        return None
    dtype, x = layouts[0][0], tensors[1]
    statistics = (*layouts[1][1][:len(layouts[1][1]) - len(normalized)], *(1,) * len(normalized))
    if _one_dtype(layouts, _FULL_PRECISION) is None or layouts[2][1] != statistics or layouts[3][1] != statistics:
        return None
    outputs = (_like(x, dtype), _fresh(tuple(normalized), dtype), _fresh(tuple(normalized), dtype))
    return tuple(output if wanted is True else None for output, wanted in zip(outputs, mask))


def _normalized_rows(layouts: list, x: torch.Tensor, normalized, affine: tuple) -> bool:
    """Whether every tensor of `layouts` (the input x first, then the affine ones) is a dense
    full-precision CPU tensor of one dtype, `normalized` (ints) is x's trailing sizes (see
    `_equal_sizes`: a symbolic feature size gets the meta function's guard, ``Eq(s2, 64)``) and
    each tensor of `affine` has that shape."""
    if _one_dtype(layouts, _FULL_PRECISION) is None or layouts[0][4].type != "cpu" or not all(map(_dense, layouts)):
        return False
    shape = layouts[0][1]
    if type(normalized) not in (list, tuple) or not all(type(v) is int for v in normalized) \
            or not 0 < len(normalized) <= len(shape):
        return False
    rows = len(shape) - len(normalized)
    if tuple(normalized) != shape[rows:] and not all(_equal_sizes(x.shape[rows + k], size)
                                                     for k, size in enumerate(normalized)):
        return False
    return all(t is None or tuple(t.shape) == tuple(normalized) for t in affine)


def _batch_norm(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``_native_batch_norm_legit(input, weight?, bias?, running_mean, running_var, training,
    momentum, eps)`` (and ``.no_stats``) in training, of a dense full-precision CPU input with a
    concrete channel count: the normalized input, then each channel's mean and 1/std."""
    if kwargs or len(args) not in (6, 8) or args[-3] is not True:
        return None
    input_layout = layouts[0]
    shape = input_layout[1]
    if _one_dtype(layouts, _FULL_PRECISION) is None or input_layout[4].type != "cpu" or len(shape) < 2 \
            or type(shape[1]) is not int or not all(map(_dense, layouts)):
        return None
    if any(t is not None and tuple(t.shape) != (shape[1],) for t in args[1:-3]):
        return None
    saved = _fresh((shape[1],), input_layout[0])
    return _like(tensors[0], input_layout[0]), saved, saved


def _batch_norm_backward(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``native_batch_norm_backward(grad_out, input, weight?, running_mean?, running_var?,
    save_mean?, save_invstd?, train, eps, output_mask)`` in training, all three gradients asked
    for, dense full-precision CPU tensors, a concrete channel count."""
    if kwargs or len(args) != 10 or args[7] is not True or list(args[9]) != [True, True, True]:
        return None
    grad_layout, input_layout = layouts[0], layouts[1]
    shape = input_layout[1]
    if _one_dtype(layouts, _FULL_PRECISION) is None or input_layout[4].type != "cpu" or len(shape) < 2 \
            or type(shape[1]) is not int or grad_layout[1] != shape or not all(map(_dense, layouts)):
        return None
    if any(t is not None and tuple(t.shape) != (shape[1],) for t in args[2:7]):
        return None
    dtype = input_layout[0]
    return _like(tensors[1], dtype), _fresh((shape[1],), dtype), _fresh((shape[1],), dtype)


def _convolution(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``convolution(input, weight, bias?, stride, padding, dilation, transposed, output_padding,
    groups)``, not transposed, of dense full-precision CPU tensors with concrete kernel sizes:
    a fresh contiguous (N, C_out, *spatial sizes). The meta function's checks (the
    kernel fits the padded input, some output size is positive) are made as it makes them, so
    their guards are the same. The fake mode's backend choice is left out, and with it its guard
    on the batch size (``s0 < 16``): it serves only to pick the output's memory format, and for
    contiguous CPU arguments every CPU backend gives a contiguous output."""
    if kwargs or len(args) != 9 or args[6] is not False:
        return None
    spatial = _convolution_sizes(layouts, tensors[0], args[3:6], args[8])
    weight = layouts[1][1]
    if spatial is None or (args[2] is not None and layouts[2][1] != (weight[0],)):
        return None
    return (_fresh((tensors[0].shape[0], weight[0], *spatial), layouts[0][0]),)


def _convolution_backward(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``convolution_backward(grad_out, input, weight, bias_sizes?, stride, padding, dilation,
    transposed, output_padding, groups, output_mask)`` as `_convolution`, with a gradient of the
    input's dtype and device: the gradients of the input, weight and bias that `output_mask` asks
    for, fresh and contiguous. The meta function checks nothing here, the gradient's sizes (which
    a view's backward may write otherwise than the forward's output) neither."""
    if kwargs or len(args) != 11 or args[7] is not False or type(args[10]) not in (list, tuple) \
            or len(args[10]) != 3:
        return None
    x, weight = tensors[1], layouts[2][1]
    if not _convolution_arguments(layouts[1:], x, args[4:7], args[9], guard_channels=False) \
            or layouts[0][0] != layouts[1][0] or layouts[0][4] != layouts[1][4] or layouts[0][5] or layouts[0][6]:
        return None
    if args[10][2] and (type(args[3]) not in (list, tuple) or list(args[3]) != [weight[0]]):
        return None
    dtype = layouts[1][0]
    outputs = (_like(x, dtype), _fresh(weight, dtype), _fresh((weight[0],), dtype))
    return tuple(output if wanted is True else None for output, wanted in zip(outputs, args[10]))


def _convolution_arguments(layouts: list, x: torch.Tensor, params: tuple, groups, guard_channels: bool) -> bool:
    """Whether x and the weight (the first two of `layouts`, all dense full-precision CPU tensors
    of one dtype) have matching ranks, concrete kernel sizes, x's channels those of the kernel
    (by expression, the shape environment's replacements applied, or where `guard_channels` as the
    meta function decides it: symbolic channels get ``Eq(s1, 3)``), and `params` are one int
    stride, padding and dilation per spatial dimension."""
    if _one_dtype(layouts, _FULL_PRECISION) is None or layouts[0][4].type != "cpu" or not all(map(_dense, layouts)):
        return False
    kernel = layouts[1][1]
    rank = len(kernel) - 2
    if len(layouts[0][1]) != rank + 2 or rank not in (1, 2, 3) or not all(type(k) is int for k in kernel) \
            or type(groups) is not int or groups <= 0:
        return False
    if not all(type(p) in (list, tuple) and len(p) == rank and all(type(v) is int for v in p) for p in params):
        return False
    stride, padding, dilation = params
    if min(stride) <= 0 or min(dilation) <= 0 or min(padding) < 0 or kernel[0] % groups:
        return False
    channels = kernel[1] * groups
    if layouts[0][1][1] == channels or size_keys(x.shape[1:2])[0] == channels:  # (the latter: once guarded)
        return True
    return guard_channels and _equal_sizes(x.shape[1], channels)


def _convolution_sizes(layouts: list, x: torch.Tensor, params: tuple, groups) -> Optional[list]:
    """The output's spatial sizes (SymInts or ints) of a convolution of x by the weight (the
    first two of `layouts`) where `_convolution_arguments` holds, after the meta function's two
    checks; None otherwise."""
    if not _convolution_arguments(layouts, x, params, groups, guard_channels=True):
        return None
    kernel, (stride, padding, dilation), dims = layouts[1][1], params, x.shape[2:]
    # A kernel no wider than the padding on both sides and one element fits any input of size
    # >= 1 (a backed size), and every output size is then >= 1: the checks would hold without a
    # guard (3x3 padded by 1, 1x1, a 7x7 stem padded by 3), so they are not made.
    checked = not all(d * (k - 1) <= 2 * p and _backed(size)
                      for size, k, p, d in zip(layouts[0][1][2:], kernel[2:], padding, dilation))
    if checked:
        fits = [size + 2 * p >= d * (k - 1) + 1 for size, k, p, d in zip(dims, kernel[2:], padding, dilation)]
        torch._check(sym_and(*fits),
                     lambda: f"convolution: the kernel {kernel[2:]} is larger than the padded input {list(dims)}")
    # A "same" convolution (stride 1, the padding making up for the kernel: 3x3 padded by 1, 1x1)
    # keeps each size: the size itself, not five operations on it that sympy folds back to it.
    sizes = [size if s == 1 and 2 * p == d * (k - 1) else _window_count(size, k, s, p, d)
             for size, k, s, p, d in zip(dims, kernel[2:], stride, padding, dilation)]
    if checked:
        torch._check(sym_or(*[size > 0 for size in sizes]),
                     lambda: f"convolution: output size {sizes} is too small")
    return sizes


def _window_count(size, kernel: int, stride: int, padding: int, dilation: int):
    """How many windows a convolution or pooling (not in ceil mode) fits along a dimension of
    `size`: ``(size + 2*padding - dilation*(kernel - 1) - 1) // stride + 1``, as the meta
    functions compute it. Where the constant part c = 2*padding - dilation*(kernel - 1) - 1 is
    a multiple of the stride it is written ``size // stride + (c // stride + 1)``, the same
    value and the expression sympy folds the other form into (``(s0 - 2)//2 + 1`` is
    ``s0//2``), without sympy's floor division of a sum (a millisecond each for a new
    expression)."""
    constant = 2 * padding - dilation * (kernel - 1) - 1
    if constant % stride:
        return (size + constant) // stride + 1
    offset = constant // stride + 1
    quotient = size // stride if stride != 1 else size
    return quotient + offset if offset else quotient


def _group_norm(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``native_group_norm(input, weight?, bias?, N, C, HxW, group, eps)`` of a dense
    full-precision input whose sizes are (N, C, *rest) with HxW the product of rest, as
    expressions, C and group ints: the normalized input, then each (sample, group)'s mean and 1/std."""
    if kwargs or len(args) != 8 or not _group_sizes(layouts, tensors[0], args[3:7]):
        return None
    c = args[4]
    if any(t is not None and tuple(t.shape) != (c,) for t in args[1:3]):
        return None
    dtype, statistics = layouts[0][0], _fresh((args[3], args[6]), layouts[0][0])
    return _like(tensors[0], dtype), statistics, statistics


def _group_norm_backward(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``native_group_norm_backward(grad_out, input, mean, rstd, weight?, N, C, HxW, group,
    output_mask)`` as `_group_norm`, a dense gradient of the input's sizes (as the decomposition
    decides it, see `_equal_sizes`: a decoder's ``8*(s0//8)`` for an encoder's s0, equal by a
    guard), statistics of (N, group): the gradients of the input, weight and bias (of C) that
    `output_mask` asks for. An input of other strides (torch 2.14's group norm takes one as it is,
    earlier versions copy it first) whose suggested memory format is the contiguous one: its
    gradient is a fresh contiguous tensor, as eager's kernel makes it (`eager_layouts`); torch's
    decomposition would reshape that input, guarding on how its strides divide."""
    if kwargs or len(args) != 10 or type(args[9]) not in (list, tuple) or len(args[9]) != 3:
        return None
    n, c, _, group = args[5:9]
    # layouts: grad, input, mean, rstd, then the weight where given
    grad, x = tensors[0], tensors[1]
    input_layout = layouts[1]
    strided_input = not _dense(input_layout)
    if strided_input:
        if suggest_memory_format(x) != torch.contiguous_format:
            return None
        input_layout = (input_layout[0], input_layout[1], contiguous(input_layout[1])[0], *input_layout[3:])
    if not _group_sizes([input_layout, layouts[0], *layouts[2:]], x, args[5:9]) or grad.dim() != x.dim() \
            or (args[9][1] and args[4] is None):
        return None
    if not all(_equal_sizes(a, b) for a, b in zip(grad.shape, x.shape)):  # (the decomposition's check)
        return None
    statistics = size_keys((n, group))
    if layouts[2][1] != statistics or layouts[3][1] != statistics \
            or (args[4] is not None and layouts[4][1] != (c,)):
        return None
    dtype = layouts[1][0]
    input_gradient = _fresh(x.shape, dtype) if strided_input else _like(x, dtype)
    outputs = (input_gradient, _fresh((c,), dtype), _fresh((c,), dtype))
    return tuple(output if wanted is True else None for output, wanted in zip(outputs, args[9]))


def _group_sizes(layouts: list, x: torch.Tensor, sizes: tuple) -> bool:
    """Whether `layouts` (x's first) are dense full-precision CPU tensors of one dtype and
    `sizes` (N, C, HxW, group) are x's: N its first size and HxW the product of those after C, as
    expressions, C its (int) second, divided by the int group."""
    n, c, hxw, group = sizes
    if _one_dtype(layouts, _FULL_PRECISION) is None or layouts[0][4].type != "cpu" or not all(map(_dense, layouts)):
        return False
    if type(c) is not int or type(group) is not int or group <= 0 or c % group or x.dim() < 2:
        return False
    shape = layouts[0][1]
    inner = 1
    for size in shape[2:]:
        inner = inner * size
    return shape[1] == c and size_keys((n, hxw)) == (shape[0], inner)


def _matmul_operands(layouts: list, tensors: list, a: int, b: int, batch: int) -> Optional[torch.dtype]:
    """The dtype of ``mm``/``bmm`` operands at positions `a`, `b` (`batch` leading dimensions)
    of one floating dtype and device and backed sizes, whose inner (and batch) sizes are equal:
    as expressions, or else as the meta function decides it, through the shape environment
    (an input's feature size made symbolic, ``Eq(s1, 32)``, which then specializes it)."""
    dtype = _one_dtype(layouts, _FLOATS)
    left, right = layouts[a][1], layouts[b][1]
    if dtype is None or len(left) != 2 + batch or len(right) != 2 + batch or not all(map(_backed, (*left, *right))):
        return None
    x, y = tensors[a], tensors[b]
    pairs = [(k, k) for k in range(batch)] + [(batch + 1, batch)]
    if not all(_equal_sizes(x.shape[i], y.shape[j]) for i, j in pairs):
        return None
    return dtype


def _mm(args: tuple, kwargs: dict, layouts: list, tensors: list, batch: int = 0) -> Outputs:
    """``mm(a, b)``: a fresh contiguous (m, n); ``bmm`` (`batch` 1): (b, m, n)."""
    if kwargs or len(args) != 2 or _matmul_operands(layouts, tensors, 0, 1, batch) is None:
        return None
    a, b = tensors
    return (_fresh((*a.shape[:-1], b.shape[-1]), layouts[0][0]),)


def _bmm(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    return _mm(args, kwargs, layouts, tensors, batch=1)


def _addmm(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``addmm(bias, a, b, beta=1, alpha=1)`` with a bias of (n,) or (m, n): a fresh (m, n)."""
    if len(args) != 3 or set(kwargs) - {"beta", "alpha"} or not all(type(v) in (int, float) for v in kwargs.values()):
        return None
    m, n = layouts[1][1][0], layouts[2][1][-1]
    if layouts[0][1] not in ((n,), (m, n)) or _matmul_operands(layouts, tensors, 1, 2, 0) is None:
        return None
    return (_fresh((tensors[1].shape[0], tensors[2].shape[1]), layouts[0][0]),)


def _view(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``view`` / ``_unsafe_view(x, size)`` (ints, SymInts, one -1 at most, found as the
    quotient of x's elements by the other sizes) with strides as torch computes a view's (see
    `_view_strides`), on x's storage."""
    if kwargs or len(args) != 2 or type(args[1]) not in (list, tuple):
        return None
    x, size = tensors[0], list(args[1])
    keys = []
    for value in size:
        key = value if type(value) is int else value.node.expr if isinstance(value, torch.SymInt) else None
        if key is None or (key != -1 and not _backed(key)):
            return None
        keys.append(key)
    old_shape, old_stride = layouts[0][1], layouts[0][2]
    if keys.count(-1) > 1 or not old_shape or not all(map(_backed, old_shape)):
        return None
    numel, product = 1, 1
    for key in old_shape:
        numel = numel * key
    for key in keys:
        if key != -1:
            product = product * key
    if -1 in keys:
        inferred = keys.index(-1)
        rest = _exact_quotient(numel, product)
        rest_size = None if rest is None else _size_of(rest, x, size, inferred)
        if rest_size is None:
            return None
        size[inferred], keys[inferred] = rest_size, rest
    elif product != numel:
        return None
    strides = _view_strides(x, old_shape, _normalized_strides(old_stride), size, keys)
    return None if strides is None else ((VIEW, 0, tuple(size), tuple(strides), x.storage_offset()),)


def _view_strides(x: torch.Tensor, shape: tuple, stride: tuple, size: list, keys: list) -> Optional[list]:
    """The strides of x viewed as `size` (`keys` its expressions), as torch computes them: x's
    dimensions fall into chunks, each contiguous in itself (a dimension's stride is the next
    one's times its size, by expression; one of size 1 joins its neighbours); each chunk maps onto
    a run of new dimensions holding as many elements, by expression, laid out contiguously from
    the chunk's innermost stride. None where that mapping fails (a view torch would refuse, or
    one it would accept only by comparing sizes the expressions do not decide)."""
    strides: list = [None] * len(size)
    view_d = len(size) - 1
    base, base_key = x.stride()[-1], stride[-1]
    tensor_numel, tensor_key, view_numel, view_key = 1, 1, 1, 1
    for d in range(len(shape) - 1, -1, -1):
        tensor_numel, tensor_key = tensor_numel * x.shape[d], tensor_key * shape[d]
        if d > 0:
            if shape[d - 1] == 1:
                continue
            if type(shape[d - 1]) is not int and not _at_least_two(shape[d - 1]):
                return None  # (a size that may be 1 would join the chunk)
            if stride[d - 1] == tensor_key * base_key:
                continue
        while view_d >= 0 and (view_key != tensor_key or keys[view_d] == 1):
            strides[view_d] = view_numel * base
            view_numel, view_key = view_numel * size[view_d], view_key * keys[view_d]
            view_d -= 1
        if view_key != tensor_key:
            return None
        if d > 0:
            base, base_key = x.stride()[d - 1], stride[d - 1]
            tensor_numel, tensor_key, view_numel, view_key = 1, 1, 1, 1
    return strides if view_d == -1 else None


def _at_least_one(expr) -> bool:
    """A backed symbol, or an expression >= 1 over its symbols' ranges."""
    if expr.is_Symbol:
        return _backed(expr)
    return bool(_lower_bound(expr) >= 1)


def _at_least_one_as_max(size):
    """``max(size, 1)``: the size itself where its range shows it >= 1 (the same value, and the
    expression sympy's ``Max(1, size)`` folds to, without building that Max), else ``sym_max``."""
    if type(size) is int:
        return max(size, 1)
    return size if _at_least_one(size.node.expr) else torch.sym_max(size, 1)


def _at_least_two(expr) -> bool:
    """A backed symbol (the shape environment specializes 1), or an expression >= 2 over its
    symbols' ranges."""
    if expr.is_Symbol:
        return _backed(expr)
    return bool(_lower_bound(expr) >= 2)


def _normalized_strides(stride: tuple) -> tuple:
    return tuple(without_max_of_one(step) for step in stride)


def _exact_quotient(numel, product):
    """``numel / product`` (ints or sympy expressions of backed symbols) where it is a whole
    int or a product with no fraction left; else None."""
    if type(numel) is int and type(product) is int:
        return numel // product if product and numel % product == 0 else None
    quotient = sympy.sympify(numel) / product
    if quotient.as_numer_denom()[1] != 1 or not _backed(quotient):
        return None
    return quotient


def _size_of(expr, x: torch.Tensor, size: list, inferred: int):
    """An int or SymInt whose expression is `expr`: an int, one of x's sizes, or x's numel
    floor-divided by the other entries of `size` where that simplifies to `expr`."""
    if type(expr) is int or expr.is_Integer:
        return int(expr)
    for dim_size in x.shape:
        if type(dim_size) is not int and dim_size.node.expr == expr:
            return dim_size
    divisor = 1
    for k, value in enumerate(size):
        if k != inferred:
            divisor = divisor * value
    result = x.numel() // divisor
    return result if type(result) is not int and result.node.expr == expr else None


def _transpose(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``transpose(x, a, b)`` / ``t(x)``: x's sizes and strides with two dimensions swapped,
    on x's storage."""
    x = tensors[0]
    rank = x.dim()
    if kwargs or len(args) not in (1, 3) or (len(args) == 1 and rank > 2):
        return None
    a, b = args[1:3] if len(args) == 3 else (0, 1 if rank == 2 else 0)
    if type(a) is not int or type(b) is not int or not (-rank <= a < max(rank, 1) and -rank <= b < max(rank, 1)):
        return None
    order = list(range(rank))
    if rank:
        a, b = a % rank, b % rank
        order[a], order[b] = order[b], order[a]
    return _permuted(x, order)


def _permute(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``permute(x, dims)``: x's sizes and strides reordered, on x's storage."""
    x = tensors[0]
    rank = x.dim()
    if kwargs or len(args) != 2 or type(args[1]) not in (list, tuple) or len(args[1]) != rank \
            or not all(type(d) is int and -rank <= d < rank for d in args[1]):
        return None
    order = [d % rank for d in args[1]]
    return None if len(set(order)) != rank else _permuted(x, order)


def _permuted(x: torch.Tensor, order: list) -> tuple:
    shape, stride = x.shape, x.stride()
    return ((VIEW, 0, tuple(shape[d] for d in order), tuple(stride[d] for d in order), x.storage_offset()),)


def _alias(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``detach`` / ``alias(x)``: x's layout on x's storage."""
    x = tensors[0]
    if kwargs or len(args) != 1:
        return None
    return ((VIEW, 0, tuple(x.shape), tuple(x.stride()), x.storage_offset()),)


def _clone(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``clone(x)`` of a dense x (any memory format keeps a dense layout): a fresh one like it."""
    if len(args) != 1 or set(kwargs) - {"memory_format"} \
            or kwargs.get("memory_format") not in (None, torch.preserve_format, torch.contiguous_format) \
            or not _dense(layouts[0]):
        return None
    return (_like(tensors[0], layouts[0][0]),)


def _sum(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``sum.dim_IntList`` / ``mean.dim(x, dims, keepdim=False)`` of a dense floating x over
    distinct dims: a fresh contiguous tensor of the kept sizes."""
    if len(args) not in (2, 3) or kwargs or _one_dtype(layouts, _FLOATS) is None or not _dense(layouts[0]):
        return None
    x, dims = tensors[0], args[1]
    keepdim = args[2] if len(args) == 3 else False
    rank = x.dim()
    if type(dims) not in (list, tuple) or not dims or type(keepdim) is not bool \
            or not all(type(d) is int and -rank <= d < rank for d in dims):
        return None
    reduced = {d % rank for d in dims}
    if len(reduced) != len(dims):
        return None
    shape = tuple(1 if d in reduced else s for d, s in enumerate(x.shape) if keepdim or d not in reduced)
    return (_fresh(shape, layouts[0][0]),)


def _expand(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``expand(x, sizes)`` where each of x's sizes is kept (-1, or the same expression) or is a
    concrete 1 expanded, and any new leading dimension is backed: x's storage, stride 0 where
    expanded. (The meta function compares each size with 1 and with its target: here every
    comparison is decided by the expressions alone, so it adds no guard.)"""
    if len(args) != 2 or set(kwargs) - {"implicit"} or type(args[1]) not in (list, tuple):
        return None
    x, sizes = tensors[0], list(args[1])
    old_shape, new_keys = layouts[0][1], []
    for value in sizes:
        key = value if type(value) is int else value.node.expr if isinstance(value, torch.SymInt) else None
        if key is None:
            return None
        new_keys.append(key)
    lead = len(new_keys) - len(old_shape)
    if lead < 0 or not all(key != -1 and _backed(key) for key in new_keys[:lead]):
        return None
    shape, stride = list(sizes[:lead]), [0] * lead
    for k, (old, new) in enumerate(zip(old_shape, new_keys[lead:])):
        if new == -1 or new == old:
            shape.append(x.shape[k])
            stride.append(x.stride()[k])
        elif type(old) is int and old == 1 and _backed(new):
            shape.append(sizes[lead + k])
            stride.append(0)
        else:
            return None
    return ((VIEW, 0, tuple(shape), tuple(stride), x.storage_offset()),)


def _unsqueeze(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``unsqueeze(x, dim)``: a size 1 inserted, its stride the next dimension's size times
    stride (1 at the end), on x's storage, as torch lays it out."""
    x = tensors[0]
    rank = x.dim()
    if kwargs or len(args) != 2 or type(args[1]) is not int or not -rank - 1 <= args[1] <= rank:
        return None
    dim = args[1] % (rank + 1)
    shape, stride = list(x.shape), list(x.stride())
    stride.insert(dim, 1 if dim == rank else shape[dim] * stride[dim])
    shape.insert(dim, 1)
    return ((VIEW, 0, tuple(shape), tuple(stride), x.storage_offset()),)


def _squeeze(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``squeeze.dim(x, dim)``: the dimension removed where its size is a concrete 1, x's
    layout where it is provably not 1; on x's storage."""
    x = tensors[0]
    rank = x.dim()
    if kwargs or len(args) != 2 or type(args[1]) is not int or rank == 0 or not -rank <= args[1] < rank:
        return None
    dim, size = args[1] % rank, layouts[0][1][args[1] % rank]
    shape, stride = list(x.shape), list(x.stride())
    if size == 1:
        del shape[dim], stride[dim]
    elif type(size) is not int and not _at_least_two(size):
        return None
    return ((VIEW, 0, tuple(shape), tuple(stride), x.storage_offset()),)


def _select(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``select.int(x, dim, index)`` with an int index inside the dimension by its expression
    (a concrete size, or a backed one, >= 2, for index 0, 1, -1 or -2): the dimension dropped,
    the offset moved by index strides, on x's storage."""
    x = tensors[0]
    rank = x.dim()
    if kwargs or len(args) != 3 or type(args[1]) is not int or type(args[2]) is not int or rank == 0 \
            or not -rank <= args[1] < rank:
        return None
    dim, index = args[1] % rank, args[2]
    size = layouts[0][1][dim]
    if type(size) is int:
        if not -size <= index < size:
            return None
    elif not (-2 <= index < 2 and _at_least_two(size)):
        return None
    shape, stride = list(x.shape), list(x.stride())
    position = index if index >= 0 else shape[dim] + index
    offset = x.storage_offset()
    if not (type(position) is int and position == 0):
        offset = offset + position * stride[dim]
    del shape[dim], stride[dim]
    return ((VIEW, 0, tuple(shape), tuple(stride), offset),)


def _stack(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``stack(tensors, dim=0)`` of dense tensors of one shape (as expressions), dtype and device:
    a fresh contiguous tensor with a dimension of len(tensors) inserted at dim."""
    if kwargs or len(args) not in (1, 2) or not layouts or len(layouts) != len(args[0]):
        return None
    rank, dim = len(layouts[0][1]), args[1] if len(args) == 2 else 0
    if _one_dtype(layouts, _FLOATS) is None or type(dim) is not int or not -rank - 1 <= dim <= rank \
            or not all(map(_dense, layouts)) or any(layout[1] != layouts[0][1] for layout in layouts):
        return None
    shape = list(tensors[0].shape)
    shape.insert(dim % (rank + 1), len(tensors))
    return (_fresh(tuple(shape), layouts[0][0]),)


_PLAIN_OPTIONS = {"layout": (None, torch.strided), "pin_memory": (None, False), "non_blocking": (False,),
                  "memory_format": (None, torch.preserve_format)}


def _like_options(kwargs: dict, x: torch.Tensor) -> Optional[torch.dtype]:
    """The dtype of an ``empty_like``/``_to_copy``-style op on x whose other options change
    nothing of x's layout or device; None otherwise."""
    for name, value in kwargs.items():
        if name == "device":
            if value is not None and torch.device(value) != x.device:
                return None
        elif name != "dtype" and (name not in _PLAIN_OPTIONS or value not in _PLAIN_OPTIONS[name]):
            return None
    return kwargs.get("dtype") or x.dtype


def _empty_like(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``empty_like`` / ``_to_copy(x, dtype=?, ...)`` of a dense x, preserving its format: a
    fresh tensor of x's layout, of that dtype."""
    dtype = _like_options(kwargs, tensors[0]) if len(args) == 1 and _dense(layouts[0]) else None
    return None if dtype is None else (_like(tensors[0], dtype),)


def _fill(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``fill.Scalar(x, value)`` of a dense x: a fresh tensor like x, of x's dtype."""
    if kwargs or len(args) != 2 or type(args[1]) not in (int, float, bool) or not _dense(layouts[0]):
        return None
    return (_like(tensors[0], layouts[0][0]),)


def _new_zeros(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``new_zeros`` / ``new_empty(x, size, dtype=?, ...)`` with sizes that are ints or SymInts
    >= 1: a fresh contiguous tensor of that size, of that dtype or x's."""
    if len(args) != 2 or type(args[1]) not in (list, tuple):
        return None
    size = args[1]
    if not all(type(v) is int or isinstance(v, torch.SymInt) for v in size) or not all(map(_backed, size_keys(size))):
        return None
    dtype = _like_options({k: v for k, v in kwargs.items() if k != "memory_format"}, tensors[0])
    return None if dtype is None else (_fresh(tuple(size), dtype),)


def _arange(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``arange(end, dtype=?, device=...)`` of a size-like end (an int or SymInt >= 1): a fresh
    (end,) of that dtype, int64 by default, on that device (the memo keys a factory only with
    an explicit device)."""
    if len(args) != 1 or type(args[0]) not in (int, torch.SymInt) or set(kwargs) - {"dtype", "layout", "device",
                                                                                     "pin_memory"}:
        return None
    if kwargs.get("layout") not in (None, torch.strided) or kwargs.get("pin_memory") not in (None, False) \
            or not _backed(size_keys(args)[0]):
        return None
    return (_fresh((args[0],), kwargs.get("dtype") or torch.int64),)


def _nll_loss(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``nll_loss_forward(input (N, C), target (N,), weight?, reduction, ignore_index)`` of a
    full-precision input and an int64 target: the loss (N,) or 0-dim, and the total weight."""
    if kwargs or len(args) != 5 or args[2] is not None or args[3] not in (0, 1, 2) or len(layouts) != 2:
        return None
    (dtype, shape, *_), target = layouts
    if dtype not in _FULL_PRECISION or len(shape) != 2 or target[0] != torch.int64 or len(target[1]) != 1 \
            or target[4] != layouts[0][4] or not all(map(_backed, (*shape, *target[1]))) \
            or not _same_rows(tensors[0], tensors[1]):
        return None
    loss = (tensors[0].shape[0],) if args[3] == 0 else ()
    return _fresh(loss, dtype), _fresh((), dtype)


def _nll_loss_backward(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``nll_loss_backward(grad_out, input (N, C), target, weight?, reduction, ignore_index,
    total_weight)``, mean or sum: a fresh contiguous tensor of the input's sizes."""
    if kwargs or len(args) != 7 or args[3] is not None or args[4] not in (1, 2) or len(layouts) != 4:
        return None
    grad, x, target, total = layouts
    if x[0] not in _FULL_PRECISION or grad[0] != x[0] or total[0] != x[0] or grad[1] != () or total[1] != () \
            or len(x[1]) != 2 or target[0] != torch.int64 or len(target[1]) != 1 \
            or not all(map(_backed, (*x[1], *target[1]))) or not _same_rows(tensors[1], tensors[2]):
        return None
    return (_fresh(tuple(tensors[1].shape), x[0]),)


def _same_rows(x: torch.Tensor, target: torch.Tensor) -> bool:
    """Whether the loss's input and target have as many rows (see `_equal_sizes`)."""
    return _equal_sizes(x.shape[0], target.shape[0])


def _equal_sizes(a, b) -> bool:
    """Whether two sizes are equal, decided as a meta function's check decides it: equal
    expressions are, and otherwise the shape environment answers from the hints and guards on
    its answer (``Eq(s0*s1, s2*s3)``: a target with sizes of its own)."""
    first, second = size_keys((a, b))
    if first == second:
        return True
    return False if type(a) is int and type(b) is int else bool(a == b)


def _embedding(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``embedding(weight (V, D), indices, ...)`` of int64 indices: a fresh (*indices, D)."""
    if kwargs or not 2 <= len(args) <= 5 or len(layouts) != 2:
        return None
    weight, indices = layouts
    if weight[0] not in _FLOATS or len(weight[1]) != 2 or indices[0] != torch.int64 or weight[4] != indices[4] \
            or not all(map(_backed, (*weight[1], *indices[1]))):
        return None
    return (_fresh((*tensors[1].shape, tensors[0].shape[1]), weight[0]),)


def _embedding_backward(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``embedding_dense_backward(grad (..., D), indices, num_weights, padding_idx, scale)``,
    int64 indices: a fresh (num_weights, D)."""
    if kwargs or len(args) != 5 or type(args[2]) is not int or args[2] <= 0 or len(layouts) != 2:
        return None
    grad, indices = layouts
    if grad[0] not in _FLOATS or indices[0] != torch.int64 or grad[1][:-1] != indices[1] or grad[4] != indices[4] \
            or not all(map(_backed, grad[1])):
        return None
    return (_fresh((args[2], tensors[0].shape[-1]), grad[0]),)


def _cat(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``cat(tensors, dim=0)`` of dense tensors of one rank (>= 1), dtype and device, equal
    in every other dimension (as expressions, or as the meta function decides it, see
    `_equal_sizes`: a decoder's ``2*(s0//8)`` against an encoder's ``s0//4``): a fresh contiguous
    tensor of those sizes (each as `_simplest` writes it), the sizes along `dim` added."""
    if kwargs or len(args) not in (1, 2) or len(layouts) < 2 or len(layouts) != len(args[0]):
        return None
    rank, dim = len(layouts[0][1]), args[1] if len(args) == 2 else 0
    if _one_dtype(layouts, _FLOATS) is None or rank == 0 or type(dim) is not int or not -rank <= dim < rank \
            or not all(map(_dense, layouts)):
        return None
    dim %= rank
    first = layouts[0][1]
    if any(len(layout[1]) != rank for layout in layouts):
        return None
    for layout, tensor in zip(layouts[1:], tensors[1:]):
        if (layout[1][:dim] != first[:dim] or layout[1][dim + 1:] != first[dim + 1:]) and not all(
                _equal_sizes(tensors[0].shape[k], tensor.shape[k]) for k in range(rank) if k != dim):
            return None
    total = tensors[0].shape[dim]
    for tensor in tensors[1:]:
        total = total + tensor.shape[dim]
    shape = [_simplest([tensor.shape[k] for tensor in tensors]) for k in range(rank)]
    shape[dim] = total
    return (_fresh(tuple(shape), layouts[0][0]),)


def _simplest(sizes: list):
    """Of sizes known to be equal (guarded so), the one written most simply: an int, else the
    expression of the fewest terms (the first such). A skip connection's ``s0//4`` rather than
    the upsampled ``2*(s0//8)``: the layers after the concatenation then have the layouts of
    the encoder's layers of the same width, and the fake-output memo answers them."""
    best, best_terms = sizes[0], None
    for size in sizes:
        if type(size) is int:
            return size
        terms = sum(1 for _ in sympy.preorder_traversal(size.node.expr))
        if best_terms is None or terms < best_terms:
            best, best_terms = size, terms
    return best


def _split(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``split.Tensor(x, size, dim=0)`` along a dimension of concrete size: views of x, each
    `size` long (the last the rest), x's strides, offsets along `dim`."""
    if kwargs or len(args) not in (2, 3):
        return None
    x = tensors[0]
    rank, size, dim = x.dim(), args[1], args[2] if len(args) == 3 else 0
    if type(size) is not int or size <= 0 or type(dim) is not int or not -rank <= dim < rank:
        return None
    dim %= rank
    length = layouts[0][1][dim]
    if type(length) is not int or length == 0:
        return None
    shape, stride, offset = tuple(x.shape), tuple(x.stride()), x.storage_offset()
    views = []
    for start in range(0, length, size):
        piece = (*shape[:dim], min(size, length - start), *shape[dim + 1:])
        views.append((VIEW, 0, piece, stride, offset + start * stride[dim] if start else offset))
    return tuple(views)


def _empty_strides(shape: tuple) -> tuple:
    """The strides torch gives a fresh contiguous tensor of `shape` (``torch.empty``,
    ``new_empty``): each the next one's times that size, a symbolic size as ``Max(1, size)``
    (which sympy reads as the size where it knows that size >= 1: a symbol, not ``s0//2``), or
    as the size itself where its range shows it >= 1 (the same value for every size the guards
    admit, written as `contiguous` writes it: an op's outputs then have one layout whichever
    rule made them, and the fake-output memo answers the ops after them)."""
    strides = [1] * len(shape)
    for k in range(len(shape) - 2, -1, -1):
        size = shape[k + 1]
        factor = _at_least_one_as_max(size)
        strides[k] = factor if type(strides[k + 1]) is int and strides[k + 1] == 1 else strides[k + 1] * factor
    return tuple(strides)


def _fresh_empty(shape: tuple, dtype: torch.dtype) -> tuple:
    """A fresh tensor as ``torch.empty(shape)`` lays it out (see `_empty_strides`), on a storage
    of the product of the sizes."""
    return FRESH, tuple(shape), _empty_strides(shape), contiguous(shape)[1], dtype


def _pool_parameters(args: tuple) -> Optional[tuple]:
    """The (H, W) int pairs of ``max_pool2d``'s kernel, stride, padding and dilation (positions
    1-4 of `args`, torch's defaults where left out; one int for both; no stride: the kernel's),
    where each is valid as the meta function checks it (a kernel, stride and dilation > 0, a
    padding >= 0 and at most half the kernel); None otherwise."""
    given = list(args[1:5]) + [[], [0], [1]][len(args) - 2:]
    pairs = []
    for value in given:
        if type(value) not in (list, tuple) or not all(type(v) is int for v in value) \
                or len(value) not in ((0, 1, 2) if len(pairs) == 1 else (1, 2)):
            return None
        pairs.append((value[0], value[-1]) if value else pairs[0])
    kernel, stride, padding, dilation = pairs
    for k, s, p, d in zip(kernel, stride, padding, dilation):
        if k <= 0 or s <= 0 or d <= 0 or p < 0 or p > ((k - 1) * d + 1) // 2 or p > k // 2:
            return None
    return kernel, stride, padding, dilation


def _pooled_sizes(layout: tuple, x: torch.Tensor, args: tuple) -> Optional[list]:
    """The (H_out, W_out) of ``max_pool2d(x, *args[1:])`` for a dense floating CPU (N, C, H, W)
    x, not in ceil mode, after the meta function's check that both are >= 1 (made where the
    ranges do not decide it, so with its guard: one per size, which the shape environment
    takes faster than the meta function's conjunction of the two). None where the meta function would
    decide more: its memory format choice (channels last where C*H*W may be 1), ceil mode's
    guard, 3-d input; or would refuse (then it raises its error)."""
    parameters = _pool_parameters(args)
    ceil_mode = args[5] if len(args) == 6 else False
    if parameters is None or ceil_mode is not False or len(layout[1]) != 4 or layout[0] not in _FLOATS \
            or layout[4].type != "cpu" or layout[5] or layout[6] or not _dense(layout):
        return None
    if not _product_at_least_two(layout[1][1:]):
        return None  # (the meta function's memory format would depend on a guard)
    kernel, stride, padding, dilation = parameters
    sizes = [_window_count(size, k, s, p, d) for size, k, s, p, d in zip(x.shape[2:], kernel, stride, padding, dilation)]
    if all(type(size) is int for size in sizes):
        return sizes if min(sizes) >= 1 else None
    height, width = sizes
    if not all(map(_backed, size_keys(sizes))):
        for size in (height, width):
            _checked(size >= 1, lambda: f"max_pool2d: output size {sizes} is too small")
    return sizes


def _checked(condition, message: Callable[[], str]) -> None:
    """``torch._check(condition, message)``; for a condition over backed sizes as the guard
    ``bool(condition)`` takes, the same guard. (torch._check's path asks the shape environment's
    static evaluation three times before it guards, bool() once: a millisecond each for a new
    expression.)"""
    if type(condition) is bool or free_unbacked_symbols(condition.node.expr):
        torch._check(condition, message)
    elif not condition:
        raise RuntimeError(message())


def _max_pool2d(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``max_pool2d_with_indices(x, kernel_size, stride=[], padding=[0], dilation=[1],
    ceil_mode=False)`` where `_pooled_sizes` holds: fresh contiguous (N, C, H_out, W_out) maxima
    and int64 indices, laid out as ``torch.empty`` lays them out."""
    if kwargs or not 2 <= len(args) <= 6:
        return None
    x = tensors[0]
    sizes = _pooled_sizes(layouts[0], x, args)
    if sizes is None:
        return None
    shape = (x.shape[0], x.shape[1], *sizes)
    return _fresh_empty(shape, layouts[0][0]), _fresh_empty(shape, torch.int64)


def _max_pool2d_backward(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``max_pool2d_with_indices_backward(grad_out, x, kernel_size, stride, padding, dilation,
    ceil_mode, indices)`` where `_pooled_sizes` holds for x, with a gradient of x's dtype and
    int64 indices, both CPU, whose sizes are the pooled ones as expressions (the meta function's
    checks, then without a guard): a fresh contiguous tensor of x's sizes."""
    if kwargs or len(args) != 8 or len(layouts) != 3:
        return None
    x = tensors[1]
    grad_layout, x_layout, indices_layout = layouts
    if grad_layout[0] != x_layout[0] or indices_layout[0] != torch.int64 \
            or grad_layout[4] != x_layout[4] or indices_layout[4] != x_layout[4]:
        return None
    pooled = (x_layout[1][1], *_pooled_size_keys(x, args[1:7]))
    if pooled[1:] == (None, None) or grad_layout[1][1:] != pooled or indices_layout[1][1:] != pooled \
            or len(grad_layout[1]) != 4 or len(indices_layout[1]) != 4:
        return None
    if _pooled_sizes(x_layout, x, args[1:7]) is None:
        return None
    return (_fresh_empty(tuple(x.shape), x_layout[0]),)


def _pooled_size_keys(x: torch.Tensor, args: tuple) -> tuple:
    """The expressions of max_pool2d's output sizes for x (no check made), or (None, None)."""
    parameters = _pool_parameters(args)
    if parameters is None or x.dim() != 4:
        return None, None
    kernel, stride, padding, dilation = parameters
    return size_keys([_window_count(size, k, s, p, d)
                      for size, k, s, p, d in zip(x.shape[2:], kernel, stride, padding, dilation)])


def _unsafe_index(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``_unsafe_index(x, [None, None, *indices])`` (nearest upsampling's gather) of a dense
    floating CPU (N, C, ...) x of rank 3 to 5, C a concrete int >= 2, with an int64 index of x's
    device for each dimension after C, whose shapes broadcast (see `_broadcast_indices`) to one
    of that many dimensions: a fresh contiguous (N, C, *broadcast shape) of x's dtype, as the meta
    function lays it out. Its one decision about the sizes that the ranges may leave open (whether
    x's stride along C is 1: a channels-last layout) is made as it makes it, so with its guard."""
    if kwargs or len(args) != 2 or type(args[1]) not in (list, tuple):
        return None
    x, indices = tensors[0], args[1]
    shape, rank = layouts[0][1], len(layouts[0][1])
    if not 3 <= rank <= 5 or len(indices) != rank or indices[0] is not None or indices[1] is not None \
            or layouts[0][0] not in _FLOATS or layouts[0][4].type != "cpu" or layouts[0][5] or layouts[0][6] \
            or type(shape[1]) is not int or shape[1] < 2 or not _dense(layouts[0]):
        return None
    if any(layout[0] != torch.int64 or layout[4] != layouts[0][4] for layout in layouts[1:]) \
            or len(layouts) != rank - 1:
        return None
    broadcast = _broadcast_indices(tensors[1:])
    if broadcast is None or len(broadcast) != rank - 2 or not _ordered_channels(x):
        return None
    return (_fresh_empty((x.shape[0], x.shape[1], *broadcast), layouts[0][0]),)


def _broadcast_indices(indices: list) -> Optional[list]:
    """The broadcast shape of the index tensors where broadcasting decides nothing that the
    expressions do not: per dimension, every size that is not a concrete 1 is the same expression
    (an int >= 2 or an expression >= 2 over its symbols' ranges), and there is one. None otherwise."""
    rank = max(index.dim() for index in indices)
    shape = []
    for k in range(-rank, 0):
        sizes = [index.shape[k] for index in indices if index.dim() >= -k]
        wide = [size for size in sizes if not (type(size) is int and size == 1)]
        if not wide or len(set(size_keys(wide))) != 1:
            return None
        size = wide[0]
        if (type(size) is int and size < 2) or (type(size) is not int and not _at_least_two(size.node.expr)):
            return None
        shape.append(size)
    return shape


def _ordered_channels(x: torch.Tensor) -> bool:
    """Whether the index meta function's stride order of x's (dense) gathered view keeps (N, C)
    in order without a guard the ranges leave open: x's stride along N is C times its stride S
    along C (as written, so that their comparisons are decided); for a 4-d view, S != 1 (not
    channels last), decided by the sizes S multiplies or else as the meta function decides it
    (``guard_or_true``, with its guard; S == 1: no answer)."""
    channels, stride = x.shape[1], x.stride()[:2]
    outer, inner = size_keys(stride)
    if sympy.sympify(outer) != channels * sympy.sympify(inner):
        return False
    if x.dim() != 4 or _product_at_least_two(size_keys(x.shape[2:])):
        return True
    return type(inner) is not int and guard_or_true(stride[1] != 1)


def _unsafe_index_put(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``_unsafe_index_put(x, indices, values, accumulate=False)`` (nearest upsampling's
    gradient) of a floating x, int64 indices (or None) and values of x's dtype, all on x's
    device: the meta function's ``empty_like(x)``, which checks nothing about the sizes and
    lays its output out in x's order of strides: where `_in_own_order` finds x contiguous (and
    not channels last), a fresh tensor as ``torch.empty(x.shape)`` lays it out."""
    if kwargs or len(args) not in (3, 4) or type(args[1]) not in (list, tuple) \
            or (len(args) == 4 and type(args[3]) is not bool):
        return None
    x, values = layouts[0], layouts[-1]
    if x[0] not in _FLOATS or values[0] != x[0] or values[4] != x[4] or x[5] or x[6] or not _dense(x) \
            or len(layouts) != 2 + sum(index is not None for index in args[1]) \
            or any(layout[0] != torch.int64 or layout[4] != x[4] for layout in layouts[1:-1]) \
            or not _in_own_order(tensors[0]):
        return None
    return (_fresh_empty(tuple(tensors[0].shape), x[0]),)


def _in_own_order(x: torch.Tensor) -> bool:
    """Whether torch's order of an elementwise output's dimensions for x alone (its short cut
    in ``compute_elementwise_output_logical_to_physical_perm``) is x's own: x of >= 2 elements
    is contiguous and, 4-d, not also channels last. Each of its checks of a size or stride is
    decided by the expressions where they decide it (no guard), else as torch decides it
    (``guard_or_false`` / ``guard_or_true``, with its guard); False where torch would look
    further (then the fake mode answers)."""
    sizes = size_keys(x.shape)
    if x.dim() <= 1 or not _product_at_least_two(sizes):
        return False
    expected, expected_max = 1, 1
    for size, stride in reversed(tuple(zip(x.shape, x.stride()))):
        if _equals_one(size):
            continue
        if _differs(stride, expected) and _differs(stride, expected_max):
            return False
        expected_max = expected_max * _at_least_one_as_max(size)
        expected = expected * size
    if x.dim() != 4:
        return True
    channels, stride = x.shape[1], x.stride()[1]
    return not _equals_one(channels) and (_product_at_least_two(sizes[2:]) or _differs(stride, 1))


def _equals_one(size) -> bool:
    """``guard_or_false(size == 1)`` as torch makes it, without a call where the range decides."""
    if type(size) is int:
        return size == 1
    if _at_least_two(size.node.expr):
        return False
    return guard_or_false(size == 1)


def _differs(a, b) -> bool:
    """``guard_or_true(a != b)`` as torch makes it, without a call where the expressions decide
    it: the same expression, or a difference whose range excludes 0."""
    if type(a) is int and type(b) is int:
        return a != b
    first, second = size_keys((a, b))
    if first == second:
        return False
    difference = sympy.sympify(first) - second
    if not free_unbacked_symbols(difference):
        bounds = _range(difference)
        if bounds.lower > 0 or bounds.upper < 0:
            return True
    return guard_or_true(a != b)


def _slice(args: tuple, kwargs: dict, layouts: list, tensors: list) -> Outputs:
    """``slice.Tensor(x, dim=0, start=None, end=None, step=1)``, start and end ints, SymInts of
    backed symbols or None, an int step >= 1: x's layout with dim's size the clamped range's
    length (over step, rounded up), its stride times step, the offset moved by start strides; on
    x's storage. The decomposition torch's fake mode runs clamps start and end against 0 and
    dim's size; each comparison is made in its order (see `_decided`), so with its guards."""
    x = tensors[0]
    rank = x.dim()
    if kwargs or not 1 <= len(args) <= 5 or rank == 0 or layouts[0][5] or layouts[0][6]:
        return None
    dim, start, end, step = (*args[1:], *(0, None, None, 1)[len(args) - 1:])
    if type(dim) is not int or not -rank <= dim < rank or type(step) is not int or step < 1 \
            or not all(v is None or type(v) is int or _backed_symint(v) for v in (start, end)):
        return None
    dim %= rank
    size = x.shape[dim]
    if type(size) is not int and free_unbacked_symbols(size.node.expr):
        return None
    first, last = _clamped_range(size, start, end)
    sizes, strides = list(x.shape), list(x.stride())
    offset = x.storage_offset() + first * strides[dim]
    sizes[dim] = (last - first + step - 1) // step
    strides[dim] = strides[dim] * step
    return ((VIEW, 0, tuple(sizes), tuple(strides), offset),)


def _backed_symint(value) -> bool:
    return isinstance(value, torch.SymInt) and not free_unbacked_symbols(value.node.expr)


def _clamped_range(size, start, end) -> tuple:
    """(first, last) of ``slice``'s range as torch's decomposition clamps it to [0, size]: a
    negative bound counts from the end, start is kept within [0, size], end within [start,
    size]; no end (or sys.maxsize): size. Each comparison as `_decided` makes it."""
    first = 0 if start is None else start
    last = sys.maxsize if end is None else end
    if _decided(first, operator.lt, 0):
        first = first + size
    if _decided(last, operator.lt, 0):
        last = last + size
    if _decided(first, operator.lt, 0):
        first = 0
    elif _decided(first, operator.gt, size):
        first = size
    if type(last) is int and last == sys.maxsize:
        last = size
    elif _decided(last, operator.lt, first):
        last = first
    elif _decided(last, operator.gt, size):
        last = size
    return first, last


def _decided(a, comparison, b) -> bool:
    """``a < b`` or ``a > b`` (`comparison`) for ints and SymInts, decided as torch's ``if a < b``
    decides it: ints as they are; where the range of the difference of the expressions decides
    it, so (the shape environment then decides it alike, adding no guard); otherwise by the
    SymBool itself, which adds the guard torch adds."""
    if type(a) is int and type(b) is int:
        return comparison(a, b)
    difference = sympy.sympify(a if type(a) is int else a.node.expr) - (b if type(b) is int else b.node.expr)
    if not free_unbacked_symbols(difference):
        bounds = _range(difference)
        if comparison is operator.lt and (bounds.upper < 0 or bounds.lower >= 0):
            return bool(bounds.upper < 0)
        if comparison is operator.gt and (bounds.lower > 0 or bounds.upper <= 0):
            return bool(bounds.lower > 0)
    return bool(comparison(a, b))


# layout_rules' pointwise ops (but fill, whose scalar fills a tensor of its own dtype only as
# the fake mode decides), and relu's backward
POINTWISE = (STATIC_POINTWISE - {aten.fill.Scalar}) | {aten.threshold_backward.default}

RULES: dict[object, Callable[[tuple, dict, list, list], Outputs]] = {
    **{op: _pointwise for op in POINTWISE},
    aten._softmax.default: _softmax,
    aten._log_softmax.default: _softmax,
    aten._softmax_backward_data.default: _softmax_backward,
    aten._log_softmax_backward_data.default: _softmax_backward,
    aten.native_layer_norm.default: _layer_norm,
    aten.native_layer_norm_backward.default: _layer_norm_backward,
    aten.native_group_norm.default: _group_norm,
    aten.native_group_norm_backward.default: _group_norm_backward,
    aten._native_batch_norm_legit.default: _batch_norm,
    aten._native_batch_norm_legit.no_stats: _batch_norm,
    aten.native_batch_norm_backward.default: _batch_norm_backward,
    aten.convolution.default: _convolution,
    aten.convolution_backward.default: _convolution_backward,
    aten.mm.default: _mm,
    aten.bmm.default: _bmm,
    aten.addmm.default: _addmm,
    aten.view.default: _view,
    aten._unsafe_view.default: _view,
    aten.transpose.int: _transpose,
    aten.t.default: _transpose,
    aten.permute.default: _permute,
    aten.detach.default: _alias,
    aten.alias.default: _alias,
    aten.clone.default: _clone,
    aten.sum.dim_IntList: _sum,
    aten.mean.dim: _sum,
    aten.expand.default: _expand,
    aten.unsqueeze.default: _unsqueeze,
    aten.squeeze.dim: _squeeze,
    aten.select.int: _select,
    aten.stack.default: _stack,
    aten.empty_like.default: _empty_like,
    aten._to_copy.default: _empty_like,
    aten.fill.Scalar: _fill,
    aten.new_zeros.default: _new_zeros,
    aten.new_empty.default: _new_zeros,
    aten.arange.default: _arange,
    aten.nll_loss_forward.default: _nll_loss,
    aten.nll_loss_backward.default: _nll_loss_backward,
    aten.embedding.default: _embedding,
    aten.embedding_dense_backward.default: _embedding_backward,
    aten.cat.default: _cat,
    aten.split.Tensor: _split,
    aten.slice.Tensor: _slice,
    aten.max_pool2d_with_indices.default: _max_pool2d,
    aten.max_pool2d_with_indices_backward.default: _max_pool2d_backward,
    aten._unsafe_index.Tensor: _unsafe_index,
    aten._unsafe_index_put.default: _unsafe_index_put,
}
