"""The disk cache's key follows what a compile bakes in besides its inputs: tensor constants
by their contents, the user's code that a program graph, decomposition or policy reaches in
other modules and classes, a global module's weights, custom operators' Python formulas,
and torch's partitioner settings. Each case compiles a program, changes one such thing, and
compiles it again in a fresh compiled function (as a new process would): the second must
not load the first's entry, and must match eager."""
import sys
import textwrap

import pytest
import torch
import torch.fx as fx
import torch.nn as nn

import aotgraph
from aotgraph.partition import partition_for


def _cache_load(compiled) -> str:
    entry = list(compiled.aotgraph_entries.values())[-1]
    details = [r.detail for r in entry.log.records if r.stage == "cache load"]
    return details[-1] if details else "none"


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """`write(name, source)`: a fresh Python module of the user's, imported anew."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name: str, source: str):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        sys.modules.pop(name, None)
        return __import__(name)

    yield write


def test_a_closed_over_tensor_is_keyed_by_its_values():
    x = torch.randn(2, 8, requires_grad=True)
    for value in (2.0, 5.0):
        table = torch.full((8,), value)

        def f(x):
            return x * table

        compiled = aotgraph.aot_function(f, cache=True)
        out = compiled(x)
        torch.testing.assert_close(out, f(x))
        (grad,) = torch.autograd.grad(out.sum(), x)
        torch.testing.assert_close(grad, table.expand(2, 8))
        assert _cache_load(compiled) == "miss"
    again = aotgraph.aot_function(f, cache=True)
    torch.testing.assert_close(again(x), f(x))
    assert _cache_load(again).startswith("hit")  # the same values: a hit


def test_a_plain_tensor_attribute_of_a_module_is_an_input_not_a_stored_value():
    class Positional(nn.Module):
        def __init__(self, scale):
            super().__init__()
            self.lin = nn.Linear(8, 8)
            self.pe = torch.arange(8.0) * scale  # neither parameter nor buffer: a constant

        def forward(self, x):
            return self.lin(x) + self.pe

    x = torch.randn(3, 8)
    loads = []
    for scale in (1.0, 3.0):
        torch.manual_seed(0)
        model = Positional(scale)
        compiled = aotgraph.aot_module(model, cache=True)
        torch.testing.assert_close(compiled(x), model(x))
        loads.append(_cache_load(compiled))
    assert loads[0] == "miss" and loads[1].startswith("hit")  # aot_module passes it as an input: one entry serves


def _program_graph(leaf_type):
    class Tracer(fx.Tracer):
        def is_leaf_module(self, module, name):
            return isinstance(module, leaf_type) or super().is_leaf_module(module, name)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), leaf_type())
    return model, fx.GraphModule(model, Tracer().trace(model))


@pytest.mark.parametrize("edit", ["method", "class constant"])
def test_a_leaf_modules_methods_and_class_attributes_are_keyed(user_module, edit):
    x = torch.randn(4, 8)
    for body, factor in (("y.relu()", 2.0), ("y.tanh()", 2.0) if edit == "method" else ("y.relu()", 3.0)):
        leaves = user_module("leaves", f"""
            import torch
            class Leaf(torch.nn.Module):
                FACTOR = {factor}
                def forward(self, x):
                    return self.helper(x) * self.FACTOR
                def helper(self, y):
                    return {body}
            """)
        model, graph = _program_graph(leaves.Leaf)
        compiled = aotgraph.aot_module_simplified(graph, [x], fw_compiler="eager")
        torch.testing.assert_close(compiled(x), model(x))


def test_a_decomposition_calling_another_users_module_is_keyed_by_that_code(user_module):
    x = torch.randn(4, 8)
    torch.manual_seed(0)
    graph = fx.symbolic_trace(nn.Sequential(nn.Linear(8, 8), nn.GELU()))
    for k in (1.702, 3.0):
        approx = user_module("approx", f"""
            import torch
            def gelu(x):
                return x * torch.sigmoid({k} * x)
            """)

        def gelu_by_sigmoid(x, approximate="none"):
            return approx.gelu(x)

        table = {torch.ops.aten.gelu.default: gelu_by_sigmoid}
        cached = aotgraph.aot_module_simplified(graph, [x], fw_compiler="eager", decompositions=table)
        fresh = aotgraph.aot_module_simplified(graph, [x], fw_compiler="eager", decompositions=table, cache=False)
        torch.testing.assert_close(cached(x), fresh(x))


_GLOBAL_LINEAR = nn.Linear(8, 8).requires_grad_(False)


@torch.fx.wrap
def _apply_global_linear(x):
    return _GLOBAL_LINEAR(x)


def test_a_global_modules_weights_reached_through_a_wrapped_function_are_keyed():
    def program(x):
        return _apply_global_linear(x).sin()

    graph = fx.symbolic_trace(program)
    x = torch.randn(4, 8)
    for seed in (10, 11):
        torch.manual_seed(seed)
        _GLOBAL_LINEAR.weight.copy_(torch.randn(8, 8))
        compiled = aotgraph.aot_module_simplified(graph, [x], fw_compiler="eager")
        torch.testing.assert_close(compiled(x), program(x))


def test_a_custom_ops_autograd_formula_is_keyed(fresh_dynamo):
    """Through the backend the Dynamo graph names only the operator: its formula is keyed."""
    x = torch.randn(5, requires_grad=True)
    for k in (2.0, 7.0):
        @torch.library.custom_op("aotgraph_keys::square", mutates_args=())
        def square(t: torch.Tensor) -> torch.Tensor:
            return t * t

        @square.register_fake
        def _(t):
            return torch.empty_like(t)

        def backward(ctx, grad, k=k):
            (t,) = ctx.saved_tensors
            return grad * k * t

        square.register_autograd(backward, setup_context=lambda ctx, inputs, output: ctx.save_for_backward(*inputs))
        torch._dynamo.reset()
        compiled = torch.compile(lambda t: square(t).sum(), backend=aotgraph.backend(compiler="eager"))
        (grad,) = torch.autograd.grad(compiled(x), x)
        torch.testing.assert_close(grad, k * x.detach())


def test_an_operator_defined_in_python_without_custom_op_is_not_cached(fresh_dynamo):
    """Its Python kernels cannot be reached to key: the program compiles without the disk cache."""
    library = torch.library.Library("aotgraph_keys_lib", "DEF")
    library.define("triple(Tensor x) -> Tensor")
    library.impl("triple", lambda x: x * 3, "CompositeImplicitAutograd")
    graph = fx.symbolic_trace(lambda x: torch.ops.aotgraph_keys_lib.triple(x) + 1)
    x = torch.randn(4)
    compiled = aotgraph.aot_module_simplified(graph, [x], fw_compiler="eager")
    torch.testing.assert_close(compiled(x), x * 3 + 1)
    assert _cache_load(compiled) == "none"


def test_a_policy_delegating_to_another_users_module_is_keyed(user_module):
    def program(x, w):
        return ((x @ w).sin() @ w).cos().sum()

    x, w = torch.randn(4, 8), torch.randn(8, 8, requires_grad=True)
    saved = []
    for choice in ("SAVE", "RECOMPUTE"):
        rules = user_module("rules", f"""
            from aotgraph.partition import policies
            def decide(info):
                return policies.Decision.{choice}
            """)

        def policy(info):
            return rules.decide(info)

        compiled = aotgraph.aot_function(program, partition_fn=partition_for(policy=policy), cache=True)
        compiled(x, w).backward()
        saved.append(len(list(compiled.aotgraph_entries.values())[-1].partition.saved))
    assert saved[0] > saved[1], saved


def test_torchs_partitioner_settings_are_keyed_when_it_partitions():
    """torch's min-cut partitioner reads torch._functorch.config (its memory budget): keyed then."""
    from torch._functorch import config as functorch_config
    from torch._functorch.partitioners import min_cut_rematerialization_partition as torchs

    from aotgraph.cache.disk_keys import settings_key

    stages = dict(fw_compiler=aotgraph.nop, bw_compiler=aotgraph.nop, inference_compiler=aotgraph.nop,
                  partition_fn=torchs)
    keys = []
    for budget in (1.0, 0.5):
        with functorch_config.patch(activation_memory_budget=budget):
            keys.append(settings_key(stages, None, None).key)
    assert keys[0] != keys[1]
    own = dict(stages, partition_fn=aotgraph.default_partition)
    with functorch_config.patch(activation_memory_budget=0.5):
        assert settings_key(own, None, None).key == settings_key(own, None, None).key
