"""The layout rules for symbolic sizes (capture/symbolic_layout_rules.py) give the layouts and
the size guards the fake mode gives in each case they answer, and decline the cases where the
fake mode has to decide something about the sizes (broadcasting, matching, promotion)."""
from __future__ import annotations

import inspect
import re
import sys

import pytest
import sympy
import torch
import torch._meta_registrations
import torch.fx.experimental.symbolic_shapes as symbolic_shapes

from aotgraph import config
from aotgraph.capture.fake_outputs import FakeOutputs
from aotgraph.capture.symbolic_layout_rules import POINTWISE, RULES
from aotgraph.torch_private.dispatch import enable_python_dispatcher
from aotgraph.torch_private.symbolic import (DimDynamic, Max, StatelessSymbolicContext, bound_sympy,
                                             new_symbolic_fake_mode)

aten = torch.ops.aten


def _sym(mode, *shape, dtype=torch.float32, name="x", last_static=True):
    """A fake of these sizes, each symbolic (but 0 and 1, and the last where `last_static`, as
    a model's feature dimension is)."""
    from torch._dynamo.source import LocalSource

    data = torch.randint(0, 8, shape) if dtype == torch.int64 else torch.randn(shape, dtype=dtype)
    dims = [DimDynamic.DYNAMIC] * len(shape)
    if last_static and len(shape) > 1:
        dims[-1] = DimDynamic.STATIC
    return mode.from_tensor(data, source=LocalSource(name), symbolic_context=StatelessSymbolicContext(dynamic_sizes=dims))


def _static(mode, *shape, dtype=torch.float32):
    return mode.from_tensor(torch.randn(shape, dtype=dtype), static_shapes=True)


def _ops(mode, fn):
    """`fn` run in the fake mode (to derive arguments sharing symbols)."""
    with mode:
        return fn()


def _flat(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _layout(t, args):
    if t is None:
        return None
    storages = [a.untyped_storage()._cdata for a in args if isinstance(a, torch.Tensor)]
    storage, nbytes = t.untyped_storage()._cdata, t.untyped_storage().nbytes()
    nbytes = nbytes if type(nbytes) is int else sympy.expand(nbytes.node.expr)  # (equal sizes, written two ways)
    return (t.dtype, [str(s) for s in t.shape], [_stride(s) for s in t.stride()], str(t.storage_offset()), t.device,
            str(nbytes), storages.index(storage) if storage in storages else None)


def _stride(stride) -> str:
    """A stride written one way: each ``Max(1, e)`` whose e the ranges show >= 1 read as e, the
    product expanded (torch's ``Max(1, s0//2)`` and a rule's ``s0//2`` are one value for every
    size the guards admit)."""
    if type(stride) is int:
        return str(stride)
    ranges = stride.node.shape_env.var_to_range
    expr = stride.node.expr.replace(
        lambda e: isinstance(e, Max) and len(e.args) == 2 and 1 in e.args
        and bound_sympy(e.args[1] if e.args[0] == 1 else e.args[0], ranges).lower >= 1,
        lambda e: e.args[1] if e.args[0] == 1 else e.args[0])
    return str(sympy.expand(expr))


def _answer(func, make_args, use_rules: bool, monkeypatch):
    """(layouts of the outputs, guards of the shape environment, whether a rule answered) for
    `func` on the arguments `make_args(mode)` makes in a fresh shape environment."""
    monkeypatch.setattr(config, "disabled", config.disabled - {"symbolic_layout_rules"} if use_rules
                        else config.disabled | {"symbolic_layout_rules"})
    mode = new_symbolic_fake_mode()
    args = make_args(mode)
    memo = FakeOutputs(mode)
    answered = []
    rule_outputs = memo._symbolic_rule_outputs

    def spy(*a):
        out = rule_outputs(*a)
        answered.append(out is not None)
        return out

    memo._symbolic_rule_outputs = spy
    flat_args = [t for a in args for t in (a if isinstance(a, list) else [a])]
    with mode, enable_python_dispatcher():  # (as capture runs: C++ composites of SymInts, an index's expand)
        out = memo.run(func, tuple(args), {}, lambda f, a, k: f(*a, **k))
    # (a conjunction guarded whole or as its parts is one condition: compared part by part)
    guards = sorted(str(part) for g in mode.shape_env.guards
                    for part in (g.expr.args if isinstance(g.expr, sympy.And) else (g.expr,)))
    return [_layout(t, flat_args) for t in _flat(out)], guards, any(answered)


def _x(mode, dtype=torch.float32):
    return _sym(mode, 3, 5, 8, dtype=dtype)


def _like(mode, x, dtype=None):
    return _ops(mode, lambda: torch.empty_like(x, dtype=dtype))


def _rows(mode, x, *rest, dtype=torch.float32):
    """A fresh tensor of x's first size, then `rest`."""
    return _ops(mode, lambda: torch.empty(x.shape[0], *rest, dtype=dtype))


def _pair(fn):
    """A case from ``fn(mode, x)`` with x a (s0, s1, 8) float32 fake."""
    return lambda mode: fn(mode, _x(mode))


def _grad_and_saved(mode, x, func):
    with mode:
        return [torch.empty_like(x), func(x)]


def _layer_norm_backward(mask, affine=True):
    def make(mode):
        x = _x(mode)
        weight, bias = (_static(mode, 8), _static(mode, 8)) if affine else (None, None)
        with mode:
            _, mean, rstd = aten.native_layer_norm(x, [8], weight, bias, 1e-5)
            return [torch.empty_like(x), x, [8], mean, rstd, weight, bias, mask]
    return make


def _image(mode, dtype=torch.float32, shape=(4, 3, 5, 6)):
    """(s0, C, s1, ...): batch and spatial sizes symbolic, the channels concrete."""
    from torch._dynamo.source import LocalSource

    dims = [DimDynamic.DYNAMIC, DimDynamic.STATIC] + [DimDynamic.DYNAMIC] * (len(shape) - 2)
    return mode.from_tensor(torch.randn(shape, dtype=dtype), source=LocalSource("image"),
                            symbolic_context=StatelessSymbolicContext(dynamic_sizes=dims))


_CONV_2D = ([1, 1], [1, 1], [1, 1], False, [0, 0])  # stride, padding, dilation, transposed, output padding


def _group_norm_args(mode, affine: bool):
    x = _image(mode, shape=(4, 6, 8, 7))
    weight, bias = (_static(mode, 6), _static(mode, 6)) if affine else (None, None)
    return [x, weight, bias, x.shape[0], 6, x.shape[2] * x.shape[3], 3, 1e-5]


def _group_norm_backward_args(mode, halved: bool = False):
    """Group norm's backward; `halved`: a gradient of sizes ``2*(s1//2)`` for the input's s1 (an
    upsampled decoder's, which a guard makes equal)."""
    x, weight, _, n, c, hxw, group, eps = _group_norm_args(mode, affine=True)
    with mode:
        _, mean, rstd = aten.native_group_norm(x, weight, None, n, c, hxw, group, eps)
        grad = torch.empty(x.shape[0], 6, 2 * (x.shape[2] // 2), x.shape[3]) if halved else torch.empty_like(x)
    return [grad, x, mean, rstd, weight, n, c, hxw, group, [True, True, True]]


def _batch_norm_backward(mode):
    x = _image(mode)
    weight, mean, var = _static(mode, 3), _static(mode, 3), _static(mode, 3)
    with mode:
        _, save_mean, save_invstd = aten._native_batch_norm_legit(x, weight, None, mean, var, True, 0.1, 1e-5)
        return [torch.empty_like(x), x, weight, mean, var, save_mean, save_invstd, True, 1e-5, [True, True, True]]


def _nll(mode, own_target_symbol: bool):
    x = _sym(mode, 6, 16)
    target = _sym(mode, 6, dtype=torch.int64, name="t") if own_target_symbol else _rows(mode, x, dtype=torch.int64)
    return x, target


def _nll_backward(own_target_symbol: bool):
    def make(mode):
        x, target = _nll(mode, own_target_symbol)
        with mode:
            _, total = aten.nll_loss_forward(x, target, None, 1, -100)
            return [torch.empty(()), x, target, None, 1, -100, total]
    return make


def _sliced(mode):
    """(s0, s1, 8) with strides (24*s1, 24, 1): a third of the last dimension of a dense tensor."""
    x = _sym(mode, 3, 5, 24)
    return _ops(mode, lambda: x[:, :, :8])


def _pooled(mode, channels=16, shape=(4, 16, 8, 6), by=2, dtype=torch.float32):
    """A fresh (s0, channels, s1//by, s2//by): sizes that may be 1 over the symbols' ranges."""
    x = _image(mode, shape=shape)
    return _ops(mode, lambda: torch.empty(x.shape[0], channels, x.shape[2] // by, x.shape[3] // by, dtype=dtype))


def _pool_backward(make_input, params):
    """max_pool2d_with_indices_backward's arguments for ``max_pool2d_with_indices(x, *params)``."""
    def make(mode):
        x = make_input(mode)
        with mode:
            out, indices = aten.max_pool2d_with_indices(x, *params)
            return [torch.empty_like(out), x, *params, *[[], [0], [1], False][len(params) - 1:], indices]
    return make


def _nearest_indices(mode, x, scale=2):
    """Nearest upsampling's index tensors for the dimensions after x's channels: (scale*d, 1, ..)."""
    spatial = x.shape[2:]
    with mode:
        return [torch.empty(scale * size, *[1] * (len(spatial) - 1 - k), dtype=torch.int64)
                for k, size in enumerate(spatial)]


def _upsample(make_input, scale=2):
    def make(mode):
        x = make_input(mode)
        return [x, [None, None, *_nearest_indices(mode, x, scale)]]
    return make


def _upsample_backward(make_input, accumulate=True, plain_strides=False):
    """_unsafe_index_put(x, indices, a gradient of the upsampled x's sizes, accumulate), x and the
    gradient fresh (so that no op on x has guarded its sizes yet); `plain_strides`: x's strides
    written as products of its sizes (a rule's answer), not ``Max(1, size)`` products."""
    def make(mode):
        x = make_input(mode)
        indices = _nearest_indices(mode, x)
        with mode:
            if plain_strides:
                x = torch.empty_strided(x.shape, [x.shape[1] * x.shape[2] * x.shape[3], x.shape[2] * x.shape[3],
                                                  x.shape[3], 1])
            grad = torch.empty(x.shape[0], x.shape[1], *[index.shape[0] for index in indices])
            return [x, [None, None, *indices], grad, accumulate]
    return make


def _concatenated(mode):
    """(s0, 3, s1 + s2, s3): a concatenation along dim 2 of two images of their own heights."""
    x, y = _image(mode, shape=(4, 3, 5, 6)), _sym(mode, 7, name="y")
    return _ops(mode, lambda: torch.empty(x.shape[0], 3, x.shape[2] + y.shape[0], x.shape[3])), x.shape[2]


def _channels_last(mode, shape=(4, 16, 8, 6)):
    return _ops(mode, lambda: _image(mode, shape=shape).contiguous(memory_format=torch.channels_last))


def _unbacked_image(mode):
    """A fresh (2, 16, u0, 6) of an unbacked height u0 >= 2 (a data-dependent size)."""
    height = mode.shape_env.create_unbacked_symint()
    with mode:
        torch._check(height >= 2)
        return torch.empty(2, 16, height, 6)


# Cases a rule answers: (op, arguments made in a fresh shape environment)
ANSWERED = {
    "add same shapes": (aten.add.Tensor, _pair(lambda m, x: [x, _like(m, x)])),
    "add of other symbols": (aten.add.Tensor, lambda m: [_x(m), _sym(m, 3, 5, 8, name="y")]),
    "add of a slice": (aten.add.Tensor, lambda m: (lambda x: [_ops(m, lambda: x[:, :, 8:16]), _sym(
        m, 3, 5, 8, name="y")])(_sym(m, 3, 5, 24))),
    "add bf16": (aten.add.Tensor, lambda m: (lambda x: [x, _like(m, x)])(_x(m, torch.bfloat16))),
    "add prepended dims": (aten.add.Tensor, _pair(lambda m, x: [x, _ops(m, lambda: torch.empty_like(x[0]))])),
    "mul scalar": (aten.mul.Tensor, _pair(lambda m, x: [x, 0.5])),
    "div by a size": (aten.div.Scalar, _pair(lambda m, x: [x, x.shape[0] * x.shape[1]])),
    "mul by a symbolic float": (aten.mul.Scalar, _pair(lambda m, x: [x, x.shape[0] / 2])),
    "gelu": (aten.gelu.default, _pair(lambda m, x: [x])),
    "gelu_backward": (aten.gelu_backward.default, _pair(lambda m, x: [_like(m, x), x])),
    "threshold_backward": (aten.threshold_backward.default, _pair(lambda m, x: [_like(m, x), x, 0])),
    "log_softmax": (aten._log_softmax.default, _pair(lambda m, x: [x, -1, False])),
    "log_softmax_backward": (aten._log_softmax_backward_data.default,
                             _pair(lambda m, x: [_like(m, x), x, -1, torch.float32])),
    "layer_norm": (aten.native_layer_norm.default, _pair(lambda m, x: [x, [8], _static(m, 8), _static(m, 8), 1e-5])),
    "layer_norm of a symbolic feature size": (aten.native_layer_norm.default, lambda m: [
        _sym(m, 3, 5, 8, last_static=False), [8], _static(m, 8), _static(m, 8), 1e-5]),
    "layer_norm no affine": (aten.native_layer_norm.default, _pair(lambda m, x: [x, [8], None, None, 1e-5])),
    "layer_norm_backward": (aten.native_layer_norm_backward.default, _layer_norm_backward([True, True, True])),
    "layer_norm_backward input only": (aten.native_layer_norm_backward.default,
                                       _layer_norm_backward([True, False, False], affine=False)),
    "group_norm": (aten.native_group_norm.default, lambda m: _group_norm_args(m, affine=True)),
    "group_norm no affine": (aten.native_group_norm.default, lambda m: _group_norm_args(m, affine=False)),
    "group_norm_backward": (aten.native_group_norm_backward.default, lambda m: _group_norm_backward_args(m)),
    "batch_norm": (aten._native_batch_norm_legit.default, lambda m: [
        _image(m), _static(m, 3), _static(m, 3),
        _static(m, 3), _static(m, 3), True, 0.1, 1e-5]),
    "batch_norm no stats": (aten._native_batch_norm_legit.no_stats, lambda m: [_image(m), None, None, True, 0.1, 1e-5]),
    "batch_norm_backward": (aten.native_batch_norm_backward.default, _batch_norm_backward),
    "mm": (aten.mm.default, lambda m: [_sym(m, 6, 8), _static(m, 8, 4)]),
    "mm symbolic inner": (aten.mm.default, lambda m: (lambda a: [a, _ops(m, lambda: a.t().clone())])(
        _sym(m, 6, 5, last_static=False))),
    "mm inner size made symbolic": (aten.mm.default, lambda m: [_sym(m, 6, 5, last_static=False), _static(m, 5, 4)]),
    "addmm inner size made symbolic": (aten.addmm.default, lambda m: [_static(m, 4), _sym(m, 6, 8, last_static=False),
                                                                      _static(m, 8, 4)]),
    "bmm": (aten.bmm.default, lambda m: (lambda a: [a, _rows(m, a, 8, 4)])(_sym(m, 3, 5, 8))),
    "addmm": (aten.addmm.default, lambda m: [_static(m, 4), _sym(m, 6, 8), _static(m, 8, 4)]),
    "view merge": (aten.view.default, _pair(lambda m, x: [x, [x.shape[0] * x.shape[1], 8]])),
    "view -1": (aten.view.default, _pair(lambda m, x: [x, [-1, 8]])),
    "view split last": (aten.view.default, _pair(lambda m, x: [x, [x.shape[0], x.shape[1], 2, 4]])),
    "view -1 symbolic": (aten.view.default, _pair(lambda m, x: [x, [x.shape[0], -1]])),
    "view inserting a 1": (aten.view.default, _pair(lambda m, x: [x, [x.shape[0], x.shape[1], 1, 8]])),
    "view inserting leading 1s": (aten.view.default, _pair(lambda m, x: [x, [1, x.shape[0], 1, x.shape[1], 8]])),
    "view merging a selected slice": (aten.view.default, lambda m: (lambda x: [
        _ops(m, lambda: x.select(2, 1)), [x.shape[0] * x.shape[1], 8]])(_sym(m, 3, 5, 4, 8))),
    "view splitting a merged size": (aten.view.default, lambda m: (lambda y: [
        _ops(m, lambda: y.view(-1, 8)), [y.shape[0], y.shape[1], 8]])(_sym(m, 3, 5, 8))),
    "view of a slice": (aten.view.default, lambda m: (lambda x: [x, [x.shape[0], x.shape[1], 2, 4]])(_sliced(m))),
    "unsafe_view": (aten._unsafe_view.default, _pair(lambda m, x: [x, [x.shape[0] * x.shape[1], 8]])),
    "transpose": (aten.transpose.int, _pair(lambda m, x: [x, 0, -1])),
    "t": (aten.t.default, lambda m: [_sym(m, 6, 5, last_static=False)]),
    "permute": (aten.permute.default, _pair(lambda m, x: [x, [2, 0, 1]])),
    "permute a slice": (aten.permute.default, lambda m: [_sliced(m), [1, 0, 2]]),
    "detach": (aten.detach.default, lambda m: [_sliced(m)]),
    "clone": (aten.clone.default, _pair(lambda m, x: [x])),
    "sum": (aten.sum.dim_IntList, _pair(lambda m, x: [x, [0, 1]])),
    "sum keepdim": (aten.sum.dim_IntList, _pair(lambda m, x: [x, [-1], True])),
    "mean": (aten.mean.dim, _pair(lambda m, x: [x, [-1, -2], True])),
    "expand a mean's gradient": (aten.expand.default, _pair(lambda m, x: [
        _ops(m, lambda: torch.empty(x.shape[0], x.shape[1], 1)), [x.shape[0], x.shape[1], 8]])),
    "expand -1 and a new leading size": (aten.expand.default, _pair(lambda m, x: [
        _ops(m, lambda: torch.empty(1, x.shape[1], 8)), [x.shape[0], 3, -1, x.shape[1], 8]])),
    "nll_loss": (aten.nll_loss_forward.default, lambda m: [*_nll(m, False), None, 1, -100]),
    "nll_loss target's own size": (aten.nll_loss_forward.default, lambda m: [*_nll(m, True), None, 1, -100]),
    "nll_loss none": (aten.nll_loss_forward.default, lambda m: [*_nll(m, False), None, 0, -100]),
    "nll_loss_backward": (aten.nll_loss_backward.default, _nll_backward(False)),
    "nll_loss_backward target's own size": (aten.nll_loss_backward.default, _nll_backward(True)),
    "embedding": (aten.embedding.default, lambda m: [_static(m, 16, 8), _sym(m, 3, 5, dtype=torch.int64)]),
    "embedding_dense_backward": (aten.embedding_dense_backward.default,
                                 lambda m: (lambda i: [_ops(m, lambda: torch.empty(*i.shape, 8)), i, 16, -1, False])(
                                     _sym(m, 3, 5, dtype=torch.int64))),
    "unsqueeze": (aten.unsqueeze.default, _pair(lambda m, x: [x, 1])),
    "unsqueeze at the end": (aten.unsqueeze.default, _pair(lambda m, x: [x, -1])),
    "unsqueeze a slice": (aten.unsqueeze.default, lambda m: [_sliced(m), 0]),
    "squeeze a 1": (aten.squeeze.dim, _pair(lambda m, x: [_ops(m, lambda: x.unsqueeze(1)), 1])),
    "squeeze a size that is not 1": (aten.squeeze.dim, _pair(lambda m, x: [x, 0])),
    "select": (aten.select.int, lambda m: [_sym(m, 3, 5, 8), 2, 3]),
    "select -1 of a symbolic size": (aten.select.int, _pair(lambda m, x: [x, 1, -1])),
    "select 1 of a slice": (aten.select.int, lambda m: [_sliced(m), 0, 1]),
    "stack": (aten.stack.default, _pair(lambda m, x: [[x, _like(m, x), _like(m, x)], -2])),
    "empty_like": (aten.empty_like.default, _pair(lambda m, x: [x])),
    "_to_copy": (aten._to_copy.default, _pair(lambda m, x: [x])),
    "fill": (aten.fill.Scalar, _pair(lambda m, x: [x, 1.5])),
    "fill of ints": (aten.fill.Scalar, lambda m: [_sym(m, 3, 5, dtype=torch.int64), 2]),
    "new_zeros": (aten.new_zeros.default, _pair(lambda m, x: [x, [x.shape[0], 4]])),
    "new_empty": (aten.new_empty.default, _pair(lambda m, x: [x, [2, x.shape[1]]])),
    "cat": (aten.cat.default, _pair(lambda m, x: [[x, _like(m, x)], -1])),
    "cat of own sizes": (aten.cat.default, lambda m: (lambda x: [[x, _ops(m, lambda: torch.empty(
        x.shape[0], 7, 8))], 1])(_x(m))),
    "split": (aten.split.Tensor, lambda m: [_sym(m, 3, 5, 24), 8, -1]),
    "split uneven": (aten.split.Tensor, lambda m: [_sym(m, 3, 5, 24), 10, 2]),
    "max_pool2d 2x2": (aten.max_pool2d_with_indices.default, lambda m: [_image(m, shape=(4, 16, 8, 6)), [2, 2]]),
    "max_pool2d of a pooled image, a guard": (aten.max_pool2d_with_indices.default, lambda m: [_pooled(m), [2, 2]]),
    "max_pool2d 3x3 stride 2 padded": (aten.max_pool2d_with_indices.default, lambda m: [
        _image(m, shape=(4, 16, 8, 6)), [3, 3], [2, 2], [1, 1]]),
    "max_pool2d one int each, dilated, a guard": (aten.max_pool2d_with_indices.default, lambda m: [
        _image(m, shape=(4, 16, 8, 6)), [3], [1], [0], [2], False]),
    "max_pool2d bf16": (aten.max_pool2d_with_indices.default, lambda m: [
        _image(m, torch.bfloat16, shape=(4, 16, 8, 6)), [2, 2]]),
    "max_pool2d_backward": (aten.max_pool2d_with_indices_backward.default, _pool_backward(
        lambda m: _image(m, shape=(4, 16, 8, 6)), ([2, 2],))),
    "max_pool2d_backward of a pooled image": (aten.max_pool2d_with_indices_backward.default, _pool_backward(
        _pooled, ([2, 2], [2, 2], [0, 0], [1, 1], False))),
    "max_pool2d_backward 3x3 stride 2 padded": (aten.max_pool2d_with_indices_backward.default, _pool_backward(
        lambda m: _image(m, shape=(4, 16, 8, 6)), ([3, 3], [2, 2], [1, 1]))),
    "_unsafe_index nearest 2x": (aten._unsafe_index.Tensor, _upsample(lambda m: _image(m, shape=(4, 16, 5, 6)))),
    "_unsafe_index nearest 2x of a pooled image, a guard": (aten._unsafe_index.Tensor, _upsample(_pooled)),
    "_unsafe_index nearest 3x, 1-d": (aten._unsafe_index.Tensor, _upsample(lambda m: _image(m, shape=(4, 16, 6)), 3)),
    "_unsafe_index nearest 2x, 3-d": (aten._unsafe_index.Tensor, _upsample(lambda m: _image(m, shape=(2, 8, 3, 4, 5)))),
    "_unsafe_index_put nearest 2x's gradient": (aten._unsafe_index_put.default, _upsample_backward(
        lambda m: _image(m, shape=(4, 16, 5, 6)))),
    "_unsafe_index_put of a pooled image's sizes, guards": (aten._unsafe_index_put.default, _upsample_backward(
        _pooled, accumulate=False)),
    "_unsafe_index_put of a pooled image's sizes, plain strides, guards": (
        aten._unsafe_index_put.default, _upsample_backward(_pooled, plain_strides=True)),
    "slice channels": (aten.slice.Tensor, lambda m: [_image(m, shape=(4, 48, 5, 6)), 1, 32, 48]),
    "slice channels from 0": (aten.slice.Tensor, lambda m: [_image(m, shape=(4, 48, 5, 6)), 1, 0, 32]),
    "slice channels past the end, a step": (aten.slice.Tensor, lambda m: [_image(m, shape=(4, 48, 5, 6)), 1, -5,
                                                                          100, 2]),
    "slice :4 of a symbolic size, a guard": (aten.slice.Tensor, lambda m: [_image(m), 2, 0, 4]),
    "slice 1: of a symbolic size": (aten.slice.Tensor, lambda m: [_image(m), 2, 1]),
    "slice :-1 of a symbolic size": (aten.slice.Tensor, lambda m: [_image(m), -1, None, -1]),
    "slice a concatenation's second part": (aten.slice.Tensor, lambda m: (lambda c, h: [c, 2, h, c.shape[2]])(
        *_concatenated(m))),
    "slice a concatenation's first part": (aten.slice.Tensor, lambda m: (lambda c, h: [c, 2, 0, h])(
        *_concatenated(m))),
    "slice from another symbol, guards": (aten.slice.Tensor, lambda m: [_image(m), 2, _sym(m, 3, name="y").shape[0]]),
    "slice of a slice": (aten.slice.Tensor, lambda m: [_sliced(m), 1, 1, None, 2]),
}

# Cases a rule declines: the fake mode decides (and guards) or refuses.
DECLINED = {
    "add broadcasting a 1": (aten.add.Tensor, _pair(lambda m, x: [x, _ops(m, lambda: torch.empty_like(x[:, :1]))])),
    "add promotion": (aten.add.Tensor, _pair(lambda m, x: [x, _like(m, x, torch.float64)])),
    "add of ints": (aten.add.Tensor, lambda m: (lambda x: [x, x])(_sym(m, 3, 5, dtype=torch.int64))),
    "gelu transposed": (aten.gelu.default, _pair(lambda m, x: [_ops(m, lambda: x.transpose(0, 1))])),
    "view of other symbols": (aten.view.default, lambda m: (lambda x, y: [x, [y.shape[0], -1]])(_x(m), _sym(m, 4, name="y"))),
    "view merging across a gap": (aten.view.default, lambda m: (lambda x: [
        _ops(m, lambda: x[:, :, :4]), [x.shape[0], -1]])(_sym(m, 3, 5, 8))),
    "view merging a slice": (aten.view.default, lambda m: (lambda x: [x, [x.shape[0], -1]])(_sliced(m))),
    "layer_norm half": (aten.native_layer_norm.default,
                        lambda m: [_x(m, torch.bfloat16), [8], None, None, 1e-5]),
    "convolution bf16": (aten.convolution.default, lambda m: [
        _image(m, torch.bfloat16), _static(m, 8, 3, 3, 3, dtype=torch.bfloat16), None, *_CONV_2D, 1]),
    "convolution channels last": (aten.convolution.default, lambda m: [
        _ops(m, lambda: _image(m).contiguous(memory_format=torch.channels_last)), _static(m, 8, 3, 3, 3), None,
        *_CONV_2D, 1]),
    "convolution transposed": (aten.convolution.default, lambda m: [
        _image(m), _static(m, 3, 8, 3, 3), None, [1, 1], [1, 1], [1, 1], True, [0, 0], 1]),
    "convolution one stride for all dims": (aten.convolution.default, lambda m: [
        _image(m), _static(m, 8, 3, 3, 3), None, [1], [1], [1], False, [0], 1]),
    "split of a symbolic size": (aten.split.Tensor, _pair(lambda m, x: [x, 2, 1])),
    "select of a symbolic size past 1": (aten.select.int, _pair(lambda m, x: [x, 0, 2])),
    "expand of a symbolic size": (aten.expand.default, lambda m: (lambda x, y: [x, [y.shape[0], 5, 8]])(
        _sym(m, 3, 5, 8), _sym(m, 4, name="y"))),
    "add of a symbolic bool": (aten.mul.Scalar, _pair(lambda m, x: [x, x.shape[0] > 2])),
    "max_pool2d ceil mode": (aten.max_pool2d_with_indices.default, lambda m: [
        _image(m, shape=(4, 16, 8, 6)), [2, 2], [2, 2], [0, 0], [1, 1], True]),
    "max_pool2d channels last": (aten.max_pool2d_with_indices.default, lambda m: [_channels_last(m), [2, 2]]),
    "max_pool2d 3-d input": (aten.max_pool2d_with_indices.default, lambda m: [_sym(m, 16, 8, 6), [2, 2]]),
    "max_pool2d one channel of a pooled image": (aten.max_pool2d_with_indices.default, lambda m: [
        _pooled(m, channels=1), [2, 2]]),
    "max_pool2d padding past half the kernel": (aten.max_pool2d_with_indices.default, lambda m: [
        _image(m, shape=(4, 16, 8, 6)), [2, 2], [2, 2], [2, 2]]),
    "max_pool2d_backward of a gradient of other sizes": (aten.max_pool2d_with_indices_backward.default, lambda m: (
        lambda x, g: [g, x, [2, 2], [], [0, 0], [1, 1], False, _ops(m, lambda: torch.empty_like(g, dtype=torch.int64))])(
        _image(m, shape=(4, 16, 8, 6)), _image(m, shape=(4, 16, 4, 3)))),
    "_unsafe_index of a size that may be 1": (aten._unsafe_index.Tensor, lambda m: (lambda x: [x, [
        None, None, _ops(m, lambda: torch.empty(x.shape[2] // 2, 1, dtype=torch.int64)),
        _ops(m, lambda: torch.empty(x.shape[3], dtype=torch.int64))]])(_image(m, shape=(4, 16, 5, 6)))),
    "_unsafe_index one channel": (aten._unsafe_index.Tensor, _upsample(lambda m: _image(m, shape=(4, 1, 5, 6)))),
    "_unsafe_index channels last": (aten._unsafe_index.Tensor, _upsample(_channels_last)),
    "_unsafe_index of the last dimension only": (aten._unsafe_index.Tensor, lambda m: (lambda x: [x, [
        None, None, None, _ops(m, lambda: torch.empty(2 * x.shape[3], dtype=torch.int64))]])(
        _image(m, shape=(4, 16, 5, 6)))),
    "_unsafe_index_put channels last": (aten._unsafe_index_put.default, _upsample_backward(_channels_last)),
    "_unsafe_index_put one channel of a pooled image": (aten._unsafe_index_put.default, _upsample_backward(
        lambda m: _pooled(m, channels=1))),
    "slice step 0": (aten.slice.Tensor, lambda m: [_image(m), 2, 0, 4, 0]),
    "slice of an unbacked size": (aten.slice.Tensor, lambda m: [_unbacked_image(m), 2, 0, 4]),
    "max_pool2d of an unbacked size": (aten.max_pool2d_with_indices.default, lambda m: [_unbacked_image(m), [2, 2]]),
    "_unsafe_index of an unbacked size": (aten._unsafe_index.Tensor, _upsample(_unbacked_image)),
    "_unsafe_index_put of an unbacked size": (aten._unsafe_index_put.default, lambda m: (lambda x: [
        x, [None, None, None, _ops(m, lambda: torch.empty(6, dtype=torch.int64))], x, False])(_unbacked_image(m))),
}


@pytest.mark.parametrize("dtype", [None, torch.float32])
def test_arange_rule_gives_the_fake_modes_layout_and_guards(dtype, monkeypatch):
    """A factory with its device: `arange` of a symbolic end (nearest upsampling's indices)."""
    answers = []
    for use_rules in (True, False):
        monkeypatch.setattr(config, "disabled", config.disabled - {"symbolic_layout_rules"} if use_rules
                            else config.disabled | {"symbolic_layout_rules"})
        mode = new_symbolic_fake_mode()
        x = _x(mode)
        memo, answered = FakeOutputs(mode), []
        rule_outputs = memo._symbolic_rule_outputs
        memo._symbolic_rule_outputs = lambda *a: answered.append(rule_outputs(*a)) or answered[-1]
        before = len(mode.shape_env.guards)
        with mode:
            out = memo.run(aten.arange.default, (x.shape[1] * 2,), {"dtype": dtype, "device": x.device},
                           lambda f, a, k: f(*a, **k))
        answers.append((_layout(out, [x]), [str(g.expr) for g in mode.shape_env.guards[before:]],
                        any(a is not None for a in answered)))
    (ruled, ruled_guards, answered), (without, fake_guards, fake_answered) = answers
    assert answered and not fake_answered and ruled == without and ruled_guards == fake_guards


def test_every_rule_is_tested():
    tested = {case[0] for case in (*ANSWERED.values(), *CONVOLUTIONS.values())} | {aten.arange.default}
    assert set(RULES) - tested <= POINTWISE | {aten._softmax.default, aten._softmax_backward_data.default,
                                               aten.alias.default}  # (their twins' cases, the pointwise test)


def _remainder_signs_tested() -> bool:
    """Whether torch's meta ``div_rtn`` (a pooling's output size) tests its remainder's sign (torch
    2.11: guards on the sizes' parity, ``Eq(Mod(s0 - 2, 2), 0)``, for values floor division gives
    alike; torch 2.13 floor-divides)."""
    try:
        return "r != 0" in inspect.getsource(torch._meta_registrations.div_rtn)
    except (AttributeError, OSError, TypeError):
        return False


_POOLS = {aten.max_pool2d_with_indices.default, aten.max_pool2d_with_indices_backward.default}


def _but_parities(guards):
    return [g for g in guards if not re.fullmatch(r"(Eq|Ne)\((Python)?Mod\(.*, \d+\), 0\)", g)]


@pytest.mark.parametrize("case", sorted(ANSWERED))
def test_rule_gives_the_fake_modes_layouts_and_guards(case, monkeypatch):
    func, make_args = ANSWERED[case]
    ruled = _answer(func, make_args, True, monkeypatch)
    without = _answer(func, make_args, False, monkeypatch)
    assert ruled[2] and not without[2]
    assert ruled[0] == without[0]  # dtype, sizes, strides, offset, device, storage bytes, storage shared
    if func in _POOLS and _remainder_signs_tested():  # (torch 2.11's parity guards: the rule has none)
        assert _but_parities(ruled[1]) == _but_parities(without[1])
    else:
        assert ruled[1] == without[1]  # the same size guards


@pytest.mark.parametrize("case", sorted(DECLINED))
def test_rule_declines_what_the_fake_mode_decides(case, monkeypatch):
    func, make_args = DECLINED[case]
    try:
        _, _, answered = _answer(func, make_args, True, monkeypatch)
    except (RuntimeError, ValueError):  # the fake mode refused (a view that cannot be one)
        return
    assert not answered


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("op", sorted(POINTWISE, key=str), ids=str)
def test_pointwise_rules_give_the_fake_modes_layouts(op, dtype, monkeypatch):
    arity = sum(1 for a in op._schema.arguments if str(a.type) == "Tensor")
    extra = {aten.threshold_backward.default: [0.0], aten.pow.Tensor_Scalar: [2.0]}.get(op, [])
    if not extra and any(str(a.type) == "number" and not a.has_default_value() for a in op._schema.arguments):
        extra = [0.5]

    def make(mode):
        x = _x(mode, dtype)
        return [x, *[_like(mode, x) for _ in range(arity - 1)], *extra]

    ruled = _answer(op, make, True, monkeypatch)
    without = _answer(op, make, False, monkeypatch)
    assert ruled[2]
    assert ruled[0] == without[0] and ruled[1] == without[1]


def _conv_backward_args(mode, x, weight, params, mask):
    """convolution_backward's arguments for the gradient of ``convolution(x, weight, ...)``."""
    with mode:
        out = aten.convolution(x, weight, None, *params, 1)
        return [torch.empty_like(out), x, weight, [weight.shape[0]], *params, 1, mask]


_STRIDE_2 = ([2, 2], [1, 1], [1, 1], False, [0, 0])
_DOWNSAMPLE = ([2, 2], [0, 0], [1, 1], False, [0, 0])  # a 1x1 convolution of stride 2
_WIDE = ([1, 1], [0, 0], [2, 2], False, [0, 0])  # a 7x7 kernel dilated by 2, no padding: a 13x13 extent

# Convolutions a rule answers: (op, arguments). Their layouts are compared by value (the fake
# mode writes an output's strides as ``Max(1, size)`` products), and their guards without the
# fake mode's backend choice.
CONVOLUTIONS = {
    "3x3 with bias": (aten.convolution.default, lambda m: [
        _image(m), _static(m, 8, 3, 3, 3), _static(m, 8), *_CONV_2D, 1]),
    "symbolic input channels": (aten.convolution.default, lambda m: [
        _sym(m, 4, 3, 5, 6, last_static=False), _static(m, 8, 3, 3, 3), None, *_CONV_2D, 1]),
    "3x3 stride 2": (aten.convolution.default, lambda m: [_image(m), _static(m, 8, 3, 3, 3), None, *_STRIDE_2, 1]),
    "1x1 stride 2": (aten.convolution.default, lambda m: [_image(m), _static(m, 8, 3, 1, 1), None, *_DOWNSAMPLE, 1]),
    "grouped": (aten.convolution.default, lambda m: [
        _image(m, shape=(4, 6, 9, 7)), _static(m, 6, 2, 3, 3), None, *_CONV_2D, 3]),
    "dilated 7x7, a guard on the image size": (aten.convolution.default, lambda m: [
        _image(m, shape=(2, 3, 20, 17)), _static(m, 4, 3, 7, 7), None, *_WIDE, 1]),
    "1d": (aten.convolution.default, lambda m: [
        _image(m, shape=(4, 3, 9)), _static(m, 5, 3, 3), None, [2], [1], [1], False, [0], 1]),
    "3d": (aten.convolution.default, lambda m: [
        _image(m, shape=(2, 3, 5, 6, 7)), _static(m, 4, 3, 3, 3, 3), None, [1, 2, 1], [1, 1, 1], [1, 1, 1],
        False, [0, 0, 0], 1]),
    "backward": (aten.convolution_backward.default, lambda m: _conv_backward_args(
        m, _image(m), _static(m, 8, 3, 3, 3), _CONV_2D, [True, True, True])),
    "backward stride 2, weight only": (aten.convolution_backward.default, lambda m: _conv_backward_args(
        m, _image(m), _static(m, 8, 3, 3, 3), _STRIDE_2, [False, True, False])),
    "backward of a gradient whose sizes are written otherwise": (aten.convolution_backward.default, lambda m: [
        _image(m), _image(m), _static(m, 3, 3, 3, 3), [3], *_CONV_2D, 1, [True, True, True]]),
    "backward 1x1 stride 2": (aten.convolution_backward.default, lambda m: _conv_backward_args(
        m, _image(m), _static(m, 8, 3, 1, 1), _DOWNSAMPLE, [True, True, False])),
}


# (torch 2.13's fake convolution asks has_guarding_hint of each size; torch 2.11's has_hint of the batch)
_GUARDING_HINTS = hasattr(symbolic_shapes, "has_guarding_hint")


def _raw_answer(func, make_args, use_rules: bool, monkeypatch, backend_choice: bool = True):
    """(per output (sizes, strides) as sympy expressions or ints, the guards the op added, whether
    a rule answered). Without `backend_choice` the fake mode's convolution skips its backend
    choice, as it does where a size has no hint."""
    monkeypatch.setattr(config, "disabled", config.disabled - {"symbolic_layout_rules"} if use_rules
                        else config.disabled | {"symbolic_layout_rules"})
    mode = new_symbolic_fake_mode()
    args = make_args(mode)
    before = len(mode.shape_env.guards)
    memo = FakeOutputs(mode)
    answered = []
    rule_outputs = memo._symbolic_rule_outputs
    memo._symbolic_rule_outputs = lambda *a: answered.append(rule_outputs(*a)) or answered[-1]
    with monkeypatch.context() as patch:
        if not backend_choice:
            if _GUARDING_HINTS:
                patch.setattr(symbolic_shapes, "has_guarding_hint", lambda size: False)
            else:  # torch < 2.13: the fake convolution asks has_hint of the batch size, as other code does
                has_hint = symbolic_shapes.has_hint

                def hint_but_the_convolutions(size):
                    caller = sys._getframe(1).f_code
                    return not (caller.co_name == "conv" and caller.co_filename.endswith("fake_impls.py")) \
                        and has_hint(size)

                patch.setattr(symbolic_shapes, "has_hint", hint_but_the_convolutions)
        with mode:
            out = memo.run(func, tuple(args), {}, lambda f, a, k: f(*a, **k))
    guards = {g.expr for g in mode.shape_env.guards[before:]}
    layouts = [None if t is None else (t.dtype, [_expr(v) for v in t.shape], [_expr(v) for v in t.stride()])
               for t in _flat(out)]
    return layouts, guards, any(a is not None for a in answered)


def _expr(value):
    return value if type(value) is int else value.node.expr


def _conjuncts(guards: set) -> set:
    return {part for g in guards for part in (g.args if isinstance(g, sympy.And) else (g,))}


def _values(layouts, assignment: dict):
    return [None if layout is None else (layout[0], *[[int(sympy.sympify(v).xreplace(assignment)) for v in part]
                                                      for part in layout[1:]]) for layout in layouts]


@pytest.mark.parametrize("case", sorted(CONVOLUTIONS))
def test_convolution_rules_give_the_fake_modes_layouts_and_guards_but_the_backend_choice(case, monkeypatch):
    func, make_args = CONVOLUTIONS[case]
    ruled, ruled_guards, answered = _raw_answer(func, make_args, True, monkeypatch)
    without, fake_guards, fake_answered = _raw_answer(func, make_args, False, monkeypatch)
    _, guards_but_the_choice, _ = _raw_answer(func, make_args, False, monkeypatch, backend_choice=False)
    assert answered and not fake_answered
    if func is aten.convolution.default and not _GUARDING_HINTS and ruled_guards != guards_but_the_choice:
        # torch < 2.13: its meta convolution run without the backend choice guards the output sizes
        # its own way (each >= 0, one > 0); with the choice it guards them as the rule does
        guards_but_the_choice = {g for g in fake_guards if str(g) != f"{ruled[0][1][0]} < 16"}
        ruled_guards, guards_but_the_choice = _conjuncts(ruled_guards), _conjuncts(guards_but_the_choice)
    assert ruled_guards == guards_but_the_choice
    if func is aten.convolution.default:  # what is left out: the choice's guard on the batch size
        batch = ruled[0][1][0]
        assert {str(g) for g in _conjuncts(fake_guards) - _conjuncts(guards_but_the_choice)} <= {f"{batch} < 16"}
    symbols = sorted({s for layout in without if layout for part in layout[1:] for v in part
                      for s in sympy.sympify(v).free_symbols}, key=str)
    for assignment in ({s: 13 for s in symbols}, {s: 20 + 3 * k for k, s in enumerate(symbols)},
                       {s: 64 - 5 * k for k, s in enumerate(symbols)}):
        assert _values(ruled, assignment) == _values(without, assignment)


def _halved_and_whole(mode):
    """A decoder's (s0, 6, 2*(s1//2), s2) slice of a concatenation, and an encoder's (s0, 6, s1, s2)."""
    y = _image(mode, shape=(4, 6, 8, 7))
    with mode:
        cat = torch.empty(y.shape[0], 18, 2 * (y.shape[2] // 2), y.shape[3])
    return [cat[:, 6:12], y]


WRITTEN_OTHERWISE = {
    "group_norm_backward": (aten.native_group_norm_backward.default,
                            lambda m: _group_norm_backward_args(m, halved=True)),
    "add": (aten.add.Tensor, _halved_and_whole),
    "cat": (aten.cat.default, lambda m: (lambda halved, whole: [[_ops(m, halved.clone), whole], 1])(
        *_halved_and_whole(m))),
}


@pytest.mark.parametrize("case", sorted(WRITTEN_OTHERWISE))
def test_rules_of_arguments_whose_sizes_are_written_otherwise(case, monkeypatch):
    """A decoder's sizes ``2*(s1//2)`` for an encoder's s1: the rule guards that they are equal
    (the kernel's one requirement; the fake mode adds that, and for group norm more, of its
    decomposition's views), and where that holds, the fake mode's guards hold too and the layouts
    agree (the fake mode may write its answer's sizes the other way)."""
    func, make = WRITTEN_OTHERWISE[case]
    ruled, ruled_guards, answered = _raw_answer(func, make, True, monkeypatch)
    without, fake_guards, fake_answered = _raw_answer(func, make, False, monkeypatch)
    assert answered and not fake_answered and len(ruled_guards) == 1
    symbols = sorted({s for g in (*ruled_guards, *fake_guards) for s in g.free_symbols}
                     | {s for layout in (*ruled, *without) if layout for part in layout[1:] for v in part
                        for s in sympy.sympify(v).free_symbols}, key=str)
    holds = lambda guards, values: all(bool(g.xreplace(values)) for g in guards)  # noqa: E731
    for assignment in ({s: 14 for s in symbols}, {s: 20 + 2 * k for k, s in enumerate(symbols)}):
        assert holds(ruled_guards, assignment) and holds(fake_guards, assignment)
        assert _values(ruled, assignment) == _values(without, assignment)
    odd = {s: 15 for s in symbols}
    assert not holds(ruled_guards, odd) and not holds(fake_guards, odd)


def test_the_convolution_rule_raises_the_fake_modes_error_for_a_too_small_image(monkeypatch):
    def make(mode):
        return [_image(mode), _static(mode, 4, 3, 9, 9), None, *_CONV_2D, 1]  # 5x6 padded by 1 < 9

    for use_rules in (True, False):
        with pytest.raises(RuntimeError):
            _raw_answer(aten.convolution.default, make, use_rules, monkeypatch)


def test_a_convnet_compiled_once_for_many_sizes_matches_eager():
    """ResNet-style blocks (convolution, batch norm in training, pooling) with symbolic batch and
    image sizes, where the convolution and batch norm rules answer: one compile, eager's losses, input and
    parameter gradients and running statistics at every size."""
    import copy

    from aotgraph import aot_module, models

    torch.manual_seed(0)
    model, _ = models.resnet(blocks=2, width=8)
    eager = copy.deepcopy(model)
    compiled = aot_module(model, fw_compiler="eager", dynamic=True)
    for batch, size in ((4, 16), (3, 12), (5, 20), (17, 12)):  # (17: past the fake mode's backend choice at 16)
        x = torch.randn(batch, 3, size, size)
        x_compiled, x_eager = x.clone().requires_grad_(), x.clone().requires_grad_()
        out, expected = compiled(x_compiled), eager(x_eager)
        torch.testing.assert_close(out, expected)
        out.sum().backward()
        expected.sum().backward()
        torch.testing.assert_close(x_compiled.grad, x_eager.grad)
        for (name, p), q in zip(model.named_parameters(), eager.parameters()):
            torch.testing.assert_close(p.grad, q.grad, msg=name)
        for b, c in zip(model.buffers(), eager.buffers()):
            torch.testing.assert_close(b, c)
    assert len(compiled.aotgraph_entries) == 1


def test_a_unet_compiled_once_for_many_sizes_matches_eager():
    """GroupNorm, SiLU, pooling, nearest upsampling and skip concatenations with symbolic batch
    and image sizes (the decoder's sizes written ``8*(s0//8)``, made equal to the encoder's by a
    guard): one compile where the group norm rules answer, eager's outputs and gradients."""
    import copy

    from aotgraph import aot_module, models

    torch.manual_seed(0)
    model, _ = models.unet(width=8, depth=2)
    eager = copy.deepcopy(model)
    compiled = aot_module(model, fw_compiler="eager", dynamic=True)
    for batch, size in ((2, 16), (3, 24), (2, 32)):
        x = torch.randn(batch, 3, size, size)
        out, expected = compiled(x), eager(x)
        torch.testing.assert_close(out, expected)
        out.square().sum().backward()
        expected.square().sum().backward()
        for (name, p), q in zip(model.named_parameters(), eager.parameters()):  # (sums of many float32 terms)
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5 * q.grad.abs().max().item(), msg=name)
        model.zero_grad()
        eager.zero_grad()
    assert len(compiled.aotgraph_entries) == 1


def test_cat_writes_sizes_known_equal_the_simplest_way(monkeypatch):
    """A concatenation of a decoder's ``2*(s1//2)`` and an encoder's s1 (guarded equal) is
    written with s1: the layers after it then have the layouts of the encoder's, which the
    fake-output memo answers."""
    func, make = WRITTEN_OTHERWISE["cat"]
    ruled, _, answered = _raw_answer(func, make, True, monkeypatch)
    ((_, shape, *_),) = ruled
    assert answered and "//" not in str(shape[2])


def test_fresh_strides_of_sizes_the_ranges_show_positive_are_written_as_products():
    """A rule's fresh ``torch.empty`` layout writes a stride ``Max(1, s1//2)`` as ``s1//2``
    where the ranges show s1//2 >= 1, as a pointwise op's output is written: one key for one
    layout, whichever rule made it."""
    from aotgraph.capture.symbolic_layout_rules import _fresh_empty, contiguous, sizes_of
    mode = new_symbolic_fake_mode()
    x = _image(mode, shape=(4, 3, 8, 6))
    with mode, sizes_of(mode.shape_env):
        pooled_shape = (x.shape[0], 3, x.shape[2] // 2, x.shape[3])
        _, _, strides, _, _ = _fresh_empty(pooled_shape, torch.float32)
        assert [str(s) for s in strides] == [str(s) for s in contiguous(pooled_shape)[0]]
        quarter = (x.shape[0], 3, x.shape[2] // 4, x.shape[3])  # may be 0: torch's Max(1, ...) kept
        assert "Max" in str(_fresh_empty(quarter, torch.float32)[2][1])
