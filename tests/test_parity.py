"""The parity checker itself must fail on wrong answers, or every test built on it is vacuous."""
import pytest
import torch

from parity import assert_parity, _assert_backward_is_compiled


def fn(x, w):
    return (x @ w).tanh(), x.sum(dim=1)


def inputs():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(3, 4, generator=generator, requires_grad=True), torch.randn(4, 2, generator=generator,
                                                                                   requires_grad=True)


def outputs_edited(edit):
    def compiler(graph_module, example_inputs):
        def run(*args):
            return edit(list(graph_module.forward(*args)))
        return run
    return compiler


def test_passes_on_the_real_pipeline():
    assert assert_parity(fn, inputs()).grads_compared == 2


def test_catches_a_wrong_forward_value():
    def nudge_first(outs):
        outs[0] = outs[0] + 1e-3
        return outs

    with pytest.raises(AssertionError, match="output 0"):
        assert_parity(fn, inputs(), fw_compiler=outputs_edited(nudge_first), bw_compiler="eager")


def test_catches_a_wrong_gradient():
    def scale_grads(grads):
        return [g * 1.001 if g is not None else None for g in grads]

    with pytest.raises(AssertionError, match="grad of input"):
        assert_parity(fn, inputs(), fw_compiler="eager", bw_compiler=outputs_edited(scale_grads))


def test_catches_a_missing_gradient():
    def drop_second(grads):
        return [grads[0], None]

    with pytest.raises(AssertionError, match="eager has a grad, aotgraph has None"):
        assert_parity(fn, inputs(), fw_compiler="eager", bw_compiler=outputs_edited(drop_second))


def test_catches_a_wrong_stride():
    def transpose_twice(outs):
        outs[0] = outs[0].t().contiguous().t()
        return outs

    with pytest.raises(AssertionError, match="stride"):
        assert_parity(fn, inputs(), fw_compiler=outputs_edited(transpose_twice), bw_compiler="eager")


def test_catches_a_backward_that_is_not_compiled():
    x = torch.randn(3, requires_grad=True)
    with pytest.raises(AssertionError, match="compiled backward"):
        _assert_backward_is_compiled([x.sin()])
