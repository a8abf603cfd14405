"""The torch.compile backend with the embedded eager compiler: training parity with eager
through Dynamo, graph breaks, recompiles, symbolic shapes, parameters lifted or not."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import aotgraph
from aotgraph import models
from aotgraph.backend import AotGraphBackend, aotgraph_backend
from aotgraph.compilers import CompilerTraits
from aotgraph.errors import BadArgument
from backend_training import assert_training_parity


pytestmark = pytest.mark.usefixtures("fresh_dynamo")


def steps_of(model_name: str, steps: int = 3, **sizes):
    """A zoo model and `steps` input tuples of the same shapes (fresh values each step)."""
    torch.manual_seed(0)
    model, first = models.MODELS[model_name](**sizes)
    inputs = [first]
    for _ in range(steps - 1):
        inputs.append(tuple(torch.randint_like(a, 0, int(a.max()) + 1) if not a.is_floating_point()
                            else torch.randn_like(a) for a in first))
    return model, inputs


def batch_sizes(backend: AotGraphBackend) -> list[int]:
    """The batch size each compiled entry was specialized to (its one input that needs no grad)."""
    return sorted(info.meta.shape[0] for entry in backend.entries for info in entry.joint.signature.inputs
                  if info.is_tensor and not info.requires_grad)


def compiled_with(backend: AotGraphBackend, **compile_options):
    return lambda module: torch.compile(module, backend=backend, **compile_options)


@pytest.mark.parametrize("partition", ["mincut", "default"])
@pytest.mark.parametrize("model_name", ["mlp", "gpt", "transformer", "resnet", "convnet_eval"])
def test_training_parity_eager_compiler(model_name, partition):
    model, inputs = steps_of(model_name)
    backend = aotgraph.backend(compiler="eager", partition=partition)
    assert_training_parity(model, inputs, compiled_with(backend, dynamic=False))
    assert backend.entries and not any(entry.joint.is_inference for entry in backend.entries)


def test_registered_by_name():
    assert torch._dynamo.lookup_backend("aotgraph") is aotgraph_backend
    assert "aotgraph" in torch._dynamo.list_backends()


def test_building_a_backend_warms_its_compiler_up_and_importing_aotgraph_builds_none():
    """A backend starts its compiler's warm-up (Inductor's compile workers) when it is built,
    before Dynamo traces; `import aotgraph` builds no backend (the one torch.compile finds by
    name is built when first looked up), so it starts nothing."""
    import subprocess
    import sys

    warmed = []

    def compiler(graph_module, example_inputs):
        return graph_module

    compiler.aotgraph_traits = CompilerTraits(warm_up=warmed.append)
    aotgraph.backend(compiler=compiler)
    assert warmed == [None]
    probe = ("import sys, aotgraph; "
             "print('aotgraph_backend' in vars(sys.modules['aotgraph.backend']), "
             "'torch._inductor.async_compile' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.split() == ["False", "False"]


class WithGraphBreak(nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.second = nn.Linear(8, 16), nn.Linear(16, 4)
        self.norm = nn.BatchNorm1d(16)

    def forward(self, x):
        hidden = torch.relu(self.norm(self.first(x)))
        torch._dynamo.graph_break()
        return self.second(hidden).tanh()


def test_graph_break_compiles_two_graphs():
    torch.manual_seed(0)
    model = WithGraphBreak()
    inputs = [(torch.randn(6, 8),) for _ in range(3)]
    backend = aotgraph.backend(compiler="eager")
    assert_training_parity(model, inputs, compiled_with(backend, dynamic=False))
    assert len(backend.entries) == 2


def test_print_is_a_graph_break(capsys):
    def f(x, w):
        y = (x @ w).sin()
        print("between graphs")
        return (y * 2).cos().sum()

    backend = aotgraph.backend(compiler="eager")
    x, w = torch.randn(3, 4), torch.randn(4, 5, requires_grad=True)
    w_ref = w.detach().clone().requires_grad_()
    out = torch.compile(f, backend=backend, dynamic=False)(x, w)
    out.backward()
    expected = f(x, w_ref)
    expected.backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(w.grad, w_ref.grad)
    assert "between graphs" in capsys.readouterr().out
    assert len(backend.entries) == 2


def test_new_shape_recompiles_with_static_shapes():
    model, _ = steps_of("mlp")
    inputs = [(torch.randn(8, 32),), (torch.randn(5, 32),), (torch.randn(8, 32),)]
    backend = aotgraph.backend(compiler="eager")
    assert_training_parity(model, inputs, compiled_with(backend, dynamic=False))
    assert batch_sizes(backend) == [5, 8]


def test_real_parameters_with_fake_inputs():
    """A GraphModule that holds its parameters and buffers (real tensors), compiled for fake
    example inputs of a caller's FakeTensorMode, as Dynamo does when it does not lift them."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    model, inputs = steps_of("resnet", blocks=2, width=8, batch=2, size=8)
    fake_mode = FakeTensorMode()
    forwards = []

    def compile_module(module):
        graph_module = torch.fx.symbolic_trace(module)
        fake_inputs = [fake_mode.from_tensor(a) for a in inputs[0]]
        forward = aotgraph.aot_module_simplified(graph_module, fake_inputs, fw_compiler="eager")
        assert len(forward.aotgraph_entries) == 1, "not compiled for the fake inputs"
        module.forward = forward
        forwards.append(forward)
        return module

    assert_training_parity(model, inputs, compile_module)
    assert len(forwards[0].aotgraph_entries) == 1, "real inputs did not reuse the entry compiled for fake ones"


def test_compiled_for_fake_inputs_that_are_mutated():
    """Fake example inputs (all sharing data_ptr 0) are distinct inputs, not aliases."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    def f(x, w, running):
        running.add_(x.detach().mean(0))
        return (x @ w).sum()

    compiled = aotgraph.aot_function(f)
    x, w, running = torch.randn(4, 3), torch.randn(3, 2, requires_grad=True), torch.zeros(3)
    fake_mode = FakeTensorMode()
    entry = compiled.aotgraph_compile(*[fake_mode.from_tensor(t) for t in (x, w, running)])
    assert entry.joint.signature.mutated_primals == (2,)
    running_ref = running.clone()
    torch.testing.assert_close(compiled(x, w, running), f(x, w, running_ref))
    torch.testing.assert_close(running, running_ref)
    assert list(compiled.aotgraph_entries.values()) == [entry]


def test_no_grad_call_compiles_inference_graph():
    model, inputs = steps_of("mlp")
    backend = aotgraph.backend(compiler="eager")
    compiled = torch.compile(model, backend=backend, dynamic=False)
    with torch.no_grad():
        out = compiled(*inputs[0])
        expected = model(*inputs[0])
    torch.testing.assert_close(out, expected)
    assert [entry.joint.is_inference for entry in backend.entries] == [True]


def test_mutated_input_written_back():
    def f(x, counter):
        counter.add_(1)
        return (x * counter).sum()

    backend = aotgraph.backend(compiler="eager")
    x = torch.randn(4, requires_grad=True)
    counter, counter_ref = torch.zeros(4), torch.zeros(4)
    compiled = torch.compile(f, backend=backend, dynamic=False)
    for _ in range(2):
        torch.testing.assert_close(compiled(x, counter), f(x, counter_ref))
    torch.testing.assert_close(counter, counter_ref)


def test_partition_function_passed_through():
    calls = []

    def counting_partition(joint_module, joint_inputs, *, num_fwd_outputs):
        calls.append(num_fwd_outputs)
        return aotgraph.default_partition(joint_module, joint_inputs, num_fwd_outputs=num_fwd_outputs)

    model, inputs = steps_of("mlp", steps=1)
    assert_training_parity(model, inputs, compiled_with(aotgraph.backend(compiler="eager", partition=counting_partition),
                                                        dynamic=False))
    assert calls == [1]


def plans(backend: AotGraphBackend) -> list:
    """The min-cut partitioner's plan of each compiled training graph."""
    return [entry.partition.plan for entry in backend.entries]


def test_memory_budget_and_policy_reach_the_partition():
    model, inputs = steps_of("gpt", steps=2)
    planned = {}
    for name, options in [("unconstrained", {}), ("budget", dict(memory_budget=0.5)),
                          ("save_nothing", dict(policy=aotgraph.save_nothing))]:
        torch._dynamo.reset()
        backend = aotgraph.backend(compiler="eager", **options)
        assert_training_parity(model, inputs, compiled_with(backend, dynamic=False))
        planned[name] = plans(backend)
    assert [p.budget for p in planned["unconstrained"]] == [None]
    assert [p.budget is not None for p in planned["budget"]] == [True]
    assert planned["budget"][0].saved_bytes <= planned["unconstrained"][0].saved_bytes
    assert planned["save_nothing"][0].saved_bytes < planned["unconstrained"][0].saved_bytes


def test_bad_options_are_clear_errors():
    with pytest.raises(BadArgument, match="unknown partition 'fancy'"):
        aotgraph.backend(partition="fancy")
    with pytest.raises(BadArgument, match="memory_budget needs a budget-aware partition"):
        aotgraph.backend(partition="default", memory_budget=0.5)
    with pytest.raises(BadArgument, match="unknown compiler 'tvm'"):
        aotgraph.backend(compiler="tvm")


def test_a_backward_inside_the_compiled_step_is_not_traced_by_dynamo():
    """``loss.backward()`` inside a compiled training step: Dynamo breaks the graph there and
    runs the backward eagerly, its frame hook still set, so the compiled forward's backward (our
    runtime's Python) would be traced and compiled as a program of the user's: one more graph and
    graph breaks in our code. Only the user's graph is compiled, as with torch's ``aot_eager``,
    and the gradients are eager's."""
    graphs = []

    def counting(graph_module, example_inputs):
        graphs.append(graph_module)
        return aotgraph.backend(compiler="eager")(graph_module, example_inputs)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    reference = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    reference.load_state_dict(model.state_dict())

    def train_step(x, y):
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    step = torch.compile(train_step, backend=counting)
    for _ in range(3):
        x, y = torch.randn(6, 8), torch.randint(0, 3, (6,))
        step(x, y)
        nn.functional.cross_entropy(reference(x), y).backward()
    assert len(graphs) == 1
    for ours, theirs in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(ours.grad, theirs.grad)
