"""functorch's parameter names are accepted exactly: misspelled ones raise TypeError, ignored
ones warn once, and budgets say unambiguously whether they are bytes or fractions."""
import math
import warnings

import pytest
import torch

import aotgraph
from aotgraph import BadArgument, aot_function, aot_module, aot_module_simplified, nop, partition_for
from aotgraph import api


def _graph_module():
    return torch.fx.symbolic_trace(torch.nn.Sequential(torch.nn.Linear(3, 3)))


def test_a_misspelled_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="partiton_fn"):
        aot_module_simplified(_graph_module(), (torch.randn(2, 3),), fw_compiler=nop, partiton_fn=None)
    with pytest.raises(TypeError, match="fw_compiller"):
        aot_function(lambda x: x, fw_compiller=nop)


def test_aot_module_checks_its_arguments_when_called_not_at_the_first_forward():
    with pytest.raises(TypeError, match="partiton_fn"):
        aot_module(torch.nn.Linear(2, 2), partiton_fn=None)
    with pytest.raises(BadArgument, match="unknown compiler 'bogus'"):
        aot_module(torch.nn.Linear(2, 2), "bogus")


@pytest.mark.parametrize("name, value", [("num_params_buffers", 3), ("keep_inference_input_mutations", True),
                                         ("cudagraphs", object()), ("disable_functionalization", True)])
def test_ignored_functorch_parameters_warn_once(name, value, monkeypatch):
    monkeypatch.setattr(api, "_warned_ignored", set())
    call = (lambda: aot_module_simplified(_graph_module(), (torch.randn(2, 3),), fw_compiler=nop, **{name: value})) \
        if name in ("cudagraphs",) else (lambda: aot_function(lambda x: x * 2, nop, **{name: value}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
        call()
    assert len([w for w in caught if name in str(w.message)]) == 1


def test_ignored_parameters_at_their_functorch_defaults_say_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aot_function(lambda x: x * 2, nop, num_params_buffers=0, keep_inference_input_mutations=False)(torch.ones(2))


def test_pre_grad_passes_run_on_the_module():
    seen = []

    def pass_(gm, args):
        seen.append(len(args))
        return gm

    forward = aot_module_simplified(_graph_module(), (torch.randn(2, 3),), fw_compiler=nop, pre_grad_passes=pass_)
    forward(torch.randn(2, 3))
    assert seen == [1]


@pytest.mark.parametrize("budget", [-3, -0.5, float("nan"), float("inf"), 2.0, 1.0000001, "half", True])
def test_bad_memory_budgets_are_refused_at_once(budget):
    with pytest.raises(BadArgument, match="budget"):
        partition_for(budget=budget)
    with pytest.raises(BadArgument, match="memory_budget"):
        aotgraph.backend(memory_budget=budget)


@pytest.mark.parametrize("budget", [-1, float("nan"), 1.5])
def test_bad_recompute_budgets_are_refused_at_once(budget):
    with pytest.raises(BadArgument, match="recompute_budget"):
        partition_for(recompute_budget=budget)


def test_an_int_budget_is_bytes_and_a_float_budget_a_fraction():
    torch.manual_seed(0)
    w1, w2 = torch.randn(64, 64, requires_grad=True), torch.randn(64, 64, requires_grad=True)

    def f(x):
        return ((x @ w1).sin() @ w2).cos().sum()

    def saved_bytes(partition_fn):
        compiled = aot_function(lambda x, a, b: ((x @ a).sin() @ b).cos().sum(), partition_fn=partition_fn)
        compiled(torch.randn(32, 64), w1, w2)
        return next(iter(compiled.aotgraph_entries.values())).partition.saved_bytes

    everything = saved_bytes(partition_for(budget=1.0))
    assert saved_bytes(partition_for(budget=2)) < everything  # two bytes: the smallest plan
    assert saved_bytes(partition_for(budget=10 ** 9)) == everything
    assert saved_bytes(partition_for(budget=0.0)) == saved_bytes(partition_for(budget=0))
    assert not math.isnan(everything)


def test_partition_for_refuses_two_budgets_and_a_policy_that_is_not_a_function():
    with pytest.raises(BadArgument, match="both"):
        partition_for(budget=0.5, recompute_budget=0)
    with pytest.raises(BadArgument, match="policy"):
        partition_for(policy="save everything")
