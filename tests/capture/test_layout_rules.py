"""The layout rules (capture/layout_rules.py) give the layouts eager and the meta kernel give,
decline every case outside the one they were checked for, and leave a captured UNet's and
ResNet's graphs as they are without them."""
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import aotgraph
from aotgraph import config, models
from aotgraph.capture.fake_outputs import FakeOutputs
from aotgraph.capture.layout_rules import POINTWISE, contiguous_strides
from parity import assert_module_parity

aten = torch.ops.aten


def _layout(t):
    return None if t is None else (t.dtype, tuple(t.shape), t.stride(), t.storage_offset(), t.device,
                                   t.requires_grad, t.untyped_storage().nbytes())


def _group_norm_args(shape, groups, dtype, affine, memory_format=torch.contiguous_format):
    n, c = shape[:2]
    hxw = 1
    for size in shape[2:]:
        hxw *= size
    x = torch.randn(shape, dtype=dtype).contiguous(memory_format=memory_format)
    weight, bias = (torch.randn(c, dtype=dtype), torch.randn(c, dtype=dtype)) if affine else (None, None)
    forward = (x, weight, bias, n, c, hxw, groups, 1e-5)
    _, mean, rstd = aten.native_group_norm(*forward)
    return forward, (torch.randn_like(x), x, mean, rstd, weight, n, c, hxw, groups)


SHAPES = [((2, 8, 5, 5), 2), ((1, 8, 5, 5), 2), ((2, 8, 1, 5), 4), ((2, 8, 1, 1), 8), ((2, 8, 5), 2), ((2, 4), 1),
          ((3, 6, 2, 2, 2), 3)]
MASKS = [[True, True, True], [True, False, False], [False, True, True]]


def _memo_run(func, args, use_rules: bool, monkeypatch):
    """`func` on fakes of `args` through a fresh memo, with the rules on or off: its outputs and
    whether the rule answered."""
    monkeypatch.setattr(config, "disabled", config.disabled - {"layout_rules"} if use_rules
                        else config.disabled | {"layout_rules"})
    mode = FakeTensorMode()
    memo = FakeOutputs(mode)
    answered = []
    rule_outputs = memo._layout_rule_outputs

    def spy(*a):
        out = rule_outputs(*a)
        answered.append(out is not None)
        return out

    memo._layout_rule_outputs = spy
    fakes = [mode.from_tensor(a, static_shapes=True) if isinstance(a, torch.Tensor) else a for a in args]
    with mode:
        out = memo.run(func, tuple(fakes), {}, lambda f, a, k: f(*a, **k))
    return out, any(answered)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape, groups", SHAPES)
def test_group_norm_rules_match_eager_and_the_meta_kernel(shape, groups, affine, dtype, monkeypatch):
    torch.manual_seed(0)
    forward, backward = _group_norm_args(shape, groups, dtype, affine)
    cases = [(aten.native_group_norm.default, forward)]
    cases += [(aten.native_group_norm_backward.default, (*backward, mask if affine else [mask[0], False, False]))
              for mask in MASKS]
    for func, args in cases:
        eager = [_layout(t) for t in func(*args)]
        ruled, answered = _memo_run(func, args, True, monkeypatch)
        assert answered, func
        without, answered_without = _memo_run(func, args, False, monkeypatch)
        assert not answered_without
        assert [_layout(t) for t in ruled] == eager == [_layout(t) for t in without], func


DECLINED = {
    "channels last": dict(shape=(2, 8, 5, 5), dtype=torch.float32, memory_format=torch.channels_last),
    "bfloat16": dict(shape=(2, 8, 5, 5), dtype=torch.bfloat16),
    "half": dict(shape=(2, 8, 5, 5), dtype=torch.half),
}


@pytest.mark.parametrize("case", list(DECLINED))
def test_group_norm_rules_decline_other_layouts_and_dtypes(case, monkeypatch):
    spec = DECLINED[case]
    torch.manual_seed(0)
    forward, backward = _group_norm_args(spec["shape"], 2, spec["dtype"], True,
                                         spec.get("memory_format", torch.contiguous_format))
    for func, args in [(aten.native_group_norm.default, forward),
                       (aten.native_group_norm_backward.default, (*backward, [True, True, True]))]:
        eager = [_layout(t) for t in func(*args)]
        out, answered = _memo_run(func, args, True, monkeypatch)
        assert not answered, func
        assert [_layout(t) for t in out] == eager, func


# (input shape, weight shape, stride, padding, dilation, groups, bias)
CONVOLUTIONS = [
    ((2, 3, 8, 8), (4, 3, 3, 3), [1, 1], [1, 1], [1, 1], 1, True),
    ((1, 4, 7, 9), (6, 2, 3, 2), [2, 1], [0, 1], [1, 2], 2, False),
    ((2, 8, 5, 5), (4, 8, 1, 1), [1, 1], [0, 0], [1, 1], 1, True),
    ((2, 1, 5, 5), (1, 1, 1, 1), [1, 1], [0, 0], [1, 1], 1, True),
    ((3, 4, 1, 1), (5, 4, 1, 1), [1, 1], [0, 0], [1, 1], 1, True),
    ((2, 4, 6, 6), (4, 1, 3, 3), [2, 2], [1, 1], [1, 1], 4, True),
    ((2, 3, 10), (4, 3, 3), [2], [1], [1], 1, True),
    ((1, 2, 4, 5, 6), (3, 2, 2, 2, 2), [1, 2, 1], [0, 1, 1], [1, 1, 2], 1, True),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", range(len(CONVOLUTIONS)))
def test_convolution_rules_match_eager_and_the_fake_mode(case, dtype, monkeypatch):
    input_shape, weight_shape, stride, padding, dilation, groups, with_bias = CONVOLUTIONS[case]
    torch.manual_seed(0)
    x, weight = torch.randn(input_shape, dtype=dtype), torch.randn(weight_shape, dtype=dtype)
    bias = torch.randn(weight_shape[0], dtype=dtype) if with_bias else None
    params = (stride, padding, dilation, False, [0] * len(stride), groups)
    out = aten.convolution(x, weight, bias, *params)
    cases = [(aten.convolution.default, (x, weight, bias, *params))]
    cases += [(aten.convolution_backward.default,
               (torch.randn_like(out), x, weight, [weight_shape[0]] if with_bias else None, *params,
                [mask[0], mask[1], mask[2] and with_bias])) for mask in MASKS]
    for func, args in cases:
        eager = [_layout(t) for t in _tuple(func(*args))]
        ruled, answered = _memo_run(func, args, True, monkeypatch)
        assert answered, func
        without, _ = _memo_run(func, args, False, monkeypatch)
        assert [_layout(t) for t in _tuple(ruled)] == eager == [_layout(t) for t in _tuple(without)], func


def _tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def test_convolution_rules_decline_channels_last_transposed_and_low_precision(monkeypatch):
    torch.manual_seed(0)
    x, weight = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    plain = ([1, 1], [1, 1], [1, 1], False, [0, 0], 1)
    declined = [
        (x.contiguous(memory_format=torch.channels_last), weight, None, *plain),
        (x, weight.contiguous(memory_format=torch.channels_last), None, *plain),
        (x.bfloat16(), weight.bfloat16(), None, *plain),
        (x, torch.randn(3, 4, 3, 3), None, [1, 1], [1, 1], [1, 1], True, [0, 0], 1),
    ]
    for args in declined:
        eager = _layout(aten.convolution(*args))
        out, answered = _memo_run(aten.convolution.default, args, True, monkeypatch)
        assert not answered
        assert _layout(out) == eager


BATCH_NORM_SHAPES = [(4, 3, 5, 5), (1, 3, 2, 2), (4, 3), (2, 3, 7), (2, 3, 1, 1), (2, 2, 3, 2, 2)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", BATCH_NORM_SHAPES)
def test_batch_norm_rules_match_eager_and_the_meta_kernel(shape, affine, training, dtype, monkeypatch):
    torch.manual_seed(0)
    c = shape[1]
    x = torch.randn(shape, dtype=dtype)
    weight, bias = (torch.randn(c, dtype=dtype), torch.randn(c, dtype=dtype)) if affine else (None, None)
    running = (torch.zeros(c, dtype=dtype), torch.ones(c, dtype=dtype))
    out, mean, invstd = aten._native_batch_norm_legit(x, weight, bias, *running, training, 0.1, 1e-5)
    cases = [(aten._native_batch_norm_legit.default, (x, weight, bias, *running, training, 0.1, 1e-5))]
    if training:
        cases.append((aten._native_batch_norm_legit.no_stats, (x, weight, bias, training, 0.1, 1e-5)))
    saved = (mean, invstd) if training else (None, None)
    cases += [(aten.native_batch_norm_backward.default,
               (torch.randn_like(x), x, weight, *running, *saved, training, 1e-5, mask)) for mask in MASKS]
    for func, args in cases:
        eager = [_layout(t) for t in func(*args)]
        ruled, answered = _memo_run(func, args, True, monkeypatch)
        # Declined: outside training, and a backward that does not ask for all three gradients.
        assert answered == (training and args[-1] in (1e-5, [True, True, True])), func
        without, _ = _memo_run(func, args, False, monkeypatch)
        assert [_layout(t) for t in ruled] == [_layout(t) for t in without], func
        if answered:  # (where declined, the meta kernel's answer differs from eager's CPU kernel)
            assert [_layout(t) for t in ruled] == eager, func


def test_mixed_dtypes_are_declined(monkeypatch):
    x = torch.randn(2, 8, 4, 4)
    args = (x, torch.randn(8, dtype=torch.float64), torch.randn(8), 2, 8, 16, 2, 1e-5)
    _, answered = _memo_run(aten.native_group_norm.default, args, True, monkeypatch)
    assert not answered


def test_contiguous_strides_are_torchs():
    for shape in [(2, 3), (1, 4, 1), (2, 1, 1, 5), (3,), ()]:
        assert contiguous_strides(shape) == torch.empty(shape).stride(), shape


# (input shape, normalized shape)
LAYER_NORMS = [((4, 16, 64), (64,)), ((2, 3, 4, 5), (4, 5)), ((8,), (8,)), ((1, 1, 6), (6,)), ((2, 3, 4), (2, 3, 4))]
AFFINE = {"weight and bias": (True, True), "none": (False, False), "weight only": (True, False),
          "bias only": (False, True)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("affine", list(AFFINE))
@pytest.mark.parametrize("shape, normalized", LAYER_NORMS)
def test_layer_norm_rules_match_eager_and_the_meta_kernel(shape, normalized, affine, dtype, monkeypatch):
    torch.manual_seed(0)
    with_weight, with_bias = AFFINE[affine]
    x = torch.randn(shape, dtype=dtype)
    weight = torch.randn(normalized, dtype=dtype) if with_weight else None
    bias = torch.randn(normalized, dtype=dtype) if with_bias else None
    forward = (x, list(normalized), weight, bias, 1e-5)
    _, mean, rstd = aten.native_layer_norm(*forward)
    cases = [(aten.native_layer_norm.default, forward)]
    cases += [(aten.native_layer_norm_backward.default,
               (torch.randn_like(x), x, list(normalized), mean, rstd, weight, bias,
                [mask[0], mask[1] and with_weight, mask[2] and with_bias])) for mask in MASKS]
    for func, args in cases:
        eager = [_layout(t) for t in func(*args)]
        ruled, answered = _memo_run(func, args, True, monkeypatch)
        assert answered, func
        without, _ = _memo_run(func, args, False, monkeypatch)
        assert [_layout(t) for t in ruled] == eager == [_layout(t) for t in without], func


def test_layer_norm_rules_decline_other_layouts_dtypes_and_masks(monkeypatch):
    torch.manual_seed(0)
    x = torch.randn(4, 6, 8)
    declined = [
        (aten.native_layer_norm.default, (x.transpose(0, 1), [8], None, None, 1e-5)),
        (aten.native_layer_norm.default, (x.bfloat16(), [8], None, None, 1e-5)),
        (aten.native_layer_norm.default, (torch.randn(0, 8), [8], None, None, 1e-5)),
        (aten.native_layer_norm.default, (x, [8], torch.randn(16)[::2], None, 1e-5)),  # a strided weight
    ]
    for func, args in declined:
        eager = [_layout(t) for t in func(*args)]
        out, answered = _memo_run(func, args, True, monkeypatch)
        assert not answered, args[0].shape
        assert [_layout(t) for t in out] == eager
    _, mean, rstd = aten.native_layer_norm(x, [8], None, None, 1e-5)
    # A mask asking for the gradient of a missing weight: eager refuses it, the rule too.
    args = (torch.randn_like(x), x, [8], mean, rstd, None, None, [True, True, False])
    _, answered = _memo_run(aten.native_layer_norm_backward.default, args, True, monkeypatch)
    assert not answered


# (op, arguments as a function of two same-shape float tensors a and b)
POINTWISE_CALLS = [
    (aten.add.Tensor, lambda a, b: (a, b)), (aten.sub.Tensor, lambda a, b: (a, b)),
    (aten.mul.Tensor, lambda a, b: (a, b)), (aten.div.Tensor, lambda a, b: (a, b)),
    (aten.add.Scalar, lambda a, b: (a, 2)), (aten.sub.Scalar, lambda a, b: (a, 0.5)),
    (aten.mul.Scalar, lambda a, b: (a, True)), (aten.div.Scalar, lambda a, b: (a, 3)),
    (aten.rsub.Scalar, lambda a, b: (a, 1)), (aten.neg.default, lambda a, b: (a,)),
    (aten.exp.default, lambda a, b: (a,)), (aten.sqrt.default, lambda a, b: (a,)),
    (aten.rsqrt.default, lambda a, b: (a,)), (aten.pow.Tensor_Scalar, lambda a, b: (a, 2)),
    (aten.sigmoid.default, lambda a, b: (a,)), (aten.tanh.default, lambda a, b: (a,)),
    (aten.relu.default, lambda a, b: (a,)), (aten.silu.default, lambda a, b: (a,)),
    (aten.gelu.default, lambda a, b: (a,)), (aten.sigmoid_backward.default, lambda a, b: (a, b)),
    (aten.tanh_backward.default, lambda a, b: (a, b)), (aten.gelu_backward.default, lambda a, b: (a, b)),
    (aten.fill.Scalar, lambda a, b: (a, 1.5)), (aten.silu_backward.default, lambda a, b: (a, b)),
    (aten.mish_backward.default, lambda a, b: (a, b)),
]


def test_every_pointwise_rule_is_tested():
    assert {func for func, _ in POINTWISE_CALLS} == POINTWISE


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 3, 4), (5,), (1, 1), ()])
@pytest.mark.parametrize("case", range(len(POINTWISE_CALLS)))
def test_pointwise_rules_match_eager_and_the_meta_kernel(case, shape, dtype, monkeypatch):
    func, make_args = POINTWISE_CALLS[case]
    torch.manual_seed(0)
    args = make_args(torch.rand(shape, dtype=dtype) + 0.5, torch.rand(shape, dtype=dtype) + 0.5)
    eager = _layout(func(*args))
    ruled, answered = _memo_run(func, args, True, monkeypatch)
    assert answered
    without, _ = _memo_run(func, args, False, monkeypatch)
    assert _layout(ruled) == eager == _layout(without)


def test_pointwise_rules_decline_broadcasting_promotion_and_other_layouts(monkeypatch):
    a = torch.randn(3, 4)
    declined = [
        (aten.add.Tensor, (a, torch.randn(4))),  # broadcasting
        (aten.mul.Tensor, (a, torch.randn(3, 4, dtype=torch.float64))),  # promotion
        (aten.add.Scalar, (a.to(torch.int64), 0.5)),  # an integer tensor and a float
        (aten.mul.Tensor, (a.t(), torch.randn(4, 3))),  # transposed strides
        (aten.sigmoid.default, (a.bfloat16(),)),
        (aten.mul.Scalar, (a, 1j)),  # a complex number
    ]
    for func, args in declined:
        eager = _layout(func(*args))
        out, answered = _memo_run(func, args, True, monkeypatch)
        assert not answered, (func, args)
        assert _layout(out) == eager, (func, args)


SOFTMAXES = [(aten._softmax.default, aten._softmax_backward_data.default),
             (aten._log_softmax.default, aten._log_softmax_backward_data.default)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape, dim", [((4, 16, 64), -1), ((3, 5), 0), ((7,), 0), ((2, 1, 3), 1)])
@pytest.mark.parametrize("forward, backward", SOFTMAXES)
def test_softmax_rules_match_eager_and_the_meta_kernel(forward, backward, shape, dim, dtype, monkeypatch):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=dtype)
    out = forward(x, dim, False)
    for func, args in [(forward, (x, dim, False)), (backward, (torch.randn_like(out), out, dim, dtype))]:
        eager = _layout(func(*args))
        ruled, answered = _memo_run(func, args, True, monkeypatch)
        assert answered, func
        without, _ = _memo_run(func, args, False, monkeypatch)
        assert _layout(ruled) == eager == _layout(without), func


def test_softmax_rules_decline_other_layouts_and_dtypes(monkeypatch):
    x = torch.randn(4, 6)
    out = aten._softmax(x, 1, False)
    declined = [(aten._softmax.default, (x.t(), 1, False)), (aten._softmax.default, (x.bfloat16(), 1, False)),
                (aten._softmax_backward_data.default, (out.t().contiguous().t(), out, 1, torch.float32))]
    for func, args in declined:
        eager = _layout(func(*args))
        ruled, answered = _memo_run(func, args, True, monkeypatch)
        assert not answered, args
        assert _layout(ruled) == eager


MODELS = {"unet": lambda: models.unet(batch=2, size=16, width=8, depth=2),
          "resnet": lambda: models.resnet(blocks=2, width=8, batch=4, size=16),
          "moe": lambda: models.moe(batch=2, seq=4, dim=16, experts=2, layers=2)}


def _joint_and_graphs(model_name, disabled, monkeypatch):
    monkeypatch.setattr(config, "disabled", config.disabled | disabled)
    torch.manual_seed(0)
    model, inputs = MODELS[model_name]()
    compiled = aotgraph.aot_module(model, aotgraph.nop, aotgraph.nop)
    compiled(*inputs).sum().backward()
    entry = next(iter(compiled.aotgraph_entries.values()))
    graph = entry.joint.graph_module.graph
    vals = [_layout(n.meta["val"]) if isinstance(n.meta.get("val"), torch.Tensor) else None for n in graph.nodes]
    return str(graph), vals


@pytest.mark.parametrize("model_name", list(MODELS))
def test_graphs_are_the_same_without_the_rules(model_name, monkeypatch):
    with_rules = _joint_and_graphs(model_name, frozenset(), monkeypatch)
    without = _joint_and_graphs(model_name, frozenset({"layout_rules"}), monkeypatch)
    assert with_rules == without


def test_unet_matches_eager():
    torch.manual_seed(0)
    model, inputs = models.unet(batch=2, size=16, width=8, depth=2)
    # The upsampling's backward is recorded decomposed (an index_put that accumulates), so the
    # first convolution's weight gradient sums in another order than eager's kernel: 2e-5 apart.
    parity = assert_module_parity(model, inputs, scale=30.0)
    assert parity.grads_compared == len(list(model.parameters()))
