"""The drop-in API (aot_function, aot_module, aot_module_simplified, aot_export_joint),
checked against eager on pytrees, non-tensors, kwargs, frozen parameters, unused inputs,
the inference path, optimizer steps and the per-signature cache."""
import copy

import pytest
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

import aotgraph
from aotgraph import JointGraph, aot_export_joint, aot_function, aot_module, aot_module_simplified, models
from parity import assert_close, assert_module_parity, assert_parity, assert_training_parity


def leaf(*shape, requires_grad=True, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator).requires_grad_(requires_grad)


def test_several_outputs():
    def fn(x, y):
        return x * y, x + y, (x @ y.t()).tanh()

    assert_parity(fn, (leaf(3, 4), leaf(3, 4, seed=1)))


def test_outputs_that_do_not_require_grad():
    def fn(x):
        return x.sin(), x.detach() * 3, torch.ones(2), x.argmax(dim=1), x > 0

    parity = assert_parity(fn, (leaf(3, 4),))
    requires_grad = [o.requires_grad for o in parity.compiled_out]
    assert requires_grad == [True, False, False, False, False]
    assert parity.compiled_out[3].dtype == torch.int64 and parity.compiled_out[4].dtype == torch.bool


def test_only_non_differentiable_outputs_of_a_grad_input():
    def fn(x):
        return x.argmax(), (x > 0).sum()

    parity = assert_parity(fn, (leaf(5),))
    assert parity.entries[0].joint.is_inference


def test_non_tensor_outputs():
    def fn(x, n):
        return x * n, n + 1, 1.5, None, True, "label", x.shape[0], x.shape

    parity = assert_parity(fn, (leaf(3, 2), 4))
    assert parity.compiled_out[1:] == (5, 1.5, None, True, "label", 3, (3, 2))
    assert type(parity.compiled_out[-1]) is torch.Size
    assert_parity(lambda x: (x.shape, x * 2), (leaf(3, 2),))


def test_dict_tuple_list_inputs_and_outputs():
    def fn(inputs, pair, items):
        a, b = inputs["a"], inputs["b"]
        return {"sum": a + pair[0], "list": [b * pair[1], items[0].exp()], "tuple": (a.sum(), items[1])}

    args = ({"a": leaf(2, 3), "b": leaf(2, 3, seed=1)}, (leaf(2, 3, seed=2), 2.0), [leaf(4, seed=3), 7])
    parity = assert_parity(fn, args)
    assert set(parity.compiled_out) == {"sum", "list", "tuple"}
    assert isinstance(parity.compiled_out["list"], list) and isinstance(parity.compiled_out["tuple"], tuple)


def test_kwargs():
    def fn(x, *, weight, bias=None, scale=1.0):
        out = F.linear(x, weight, bias) * scale
        return out.relu()

    assert_parity(fn, (leaf(4, 3),), {"weight": leaf(5, 3, seed=1), "bias": leaf(5, seed=2), "scale": 0.5})
    assert_parity(fn, (leaf(4, 3),), {"weight": leaf(5, 3, seed=1)})


def test_integer_and_non_grad_tensor_inputs():
    def fn(table, index, mask):
        return table[index] * mask

    mask = torch.tensor([1.0, 0.0, 2.0]).unsqueeze(1)
    assert_parity(fn, (leaf(6, 4), torch.tensor([0, 5, 5]), mask))


def test_gradients_flow_back_into_the_eager_graph_around_the_compiled_region():
    def fn(x, w):
        return (x @ w).tanh()

    grads = []
    for run in (fn, aot_function(fn)):
        base = leaf(3, 4)
        weight = nn.Parameter(leaf(4, 2, seed=1).detach())
        out = run(base * 2 + 1, weight)  # a non-leaf input, a Parameter input
        (out.sum() * 3).backward()
        grads.append((base.grad, weight.grad))
    assert_close(grads[1][0], grads[0][0], "grad of the eager leaf before the compiled region")
    assert_close(grads[1][1], grads[0][1], "grad of the Parameter input")


def test_the_same_tensor_passed_twice():
    def fn(a, b):
        return a * b + a

    x = leaf(3, 4)
    parity = assert_parity(fn, (x, x))
    assert parity.grads_compared == 2


def test_outputs_that_are_inputs_or_views_of_inputs():
    def fn(x, y):
        return x, x.t(), x[0], y.view(-1), x * 2

    parity = assert_parity(fn, (leaf(3, 4), leaf(2, 2, seed=1)))
    x = parity.compiled_out[0]
    assert parity.compiled_out[1]._base is x or parity.compiled_out[1]._base is x._base


def test_a_new_python_scalar_recompiles_with_its_value():
    def fn(x, power, flag):
        return x ** power if flag else -x

    compiled = aot_function(fn)
    x = leaf(3)
    for power, flag in ((2, True), (3, True), (3, False), (2, True)):
        assert_close(compiled(x, power, flag), fn(x, power, flag), f"x ** {power}, {flag}")
    assert len(compiled.aotgraph_entries) == 3


def test_requires_grad_change_recompiles():
    def fn(a, b):
        return a * b

    compiled = aot_function(fn)
    a, b = leaf(3), leaf(3, seed=1)
    compiled(a, b.detach()).sum().backward()
    assert b.grad is None
    compiled(a, b).sum().backward()
    assert_close(b.grad, a.detach(), "grad of b once it requires grad")
    assert len(compiled.aotgraph_entries) == 2


def test_parameters_with_requires_grad_false():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    model[0].weight.requires_grad_(False)
    parity = assert_module_parity(model, (leaf(3, 4),))
    compiled_module = parity.compiled.orig_module
    assert compiled_module[0].weight.grad is None
    assert compiled_module[0].bias.grad is not None


def test_inputs_unused_by_the_output_get_no_grad():
    def fn(x, unused, shape_only):
        return x * shape_only.shape[0]

    inputs = (leaf(3), leaf(3, seed=1), leaf(2, 2, seed=2))
    assert_parity(fn, inputs)
    compiled = aot_function(fn)
    args = [t.detach().clone().requires_grad_() for t in inputs]
    compiled(*args).sum().backward()
    assert args[0].grad is not None and args[1].grad is None and args[2].grad is None


def test_input_only_in_a_non_differentiable_output_gets_no_grad():
    def fn(x, y):
        return x * 2, y.argmax()

    parity = assert_parity(fn, (leaf(3), leaf(3, seed=1)))
    assert parity.grads_compared == 1


def test_backward_through_one_of_two_outputs():
    def fn(x):
        return x.sin(), x.cos()

    x_eager, x_compiled = leaf(4), leaf(4)
    fn(x_eager)[1].sum().backward()
    aot_function(fn)(x_compiled)[1].sum().backward()
    assert_close(x_compiled.grad, x_eager.grad, "grad through the second output only")


def test_inference_under_no_grad_compiles_no_backward():
    roles = []

    def recording_compiler(graph_module, example_inputs):
        roles.append(len(example_inputs))
        return graph_module.forward

    def fn(x, w):
        return (x @ w).relu()

    x, w = leaf(3, 4), leaf(4, 5, seed=1)
    compiled = aot_function(fn, fw_compiler=recording_compiler, bw_compiler=lambda gm, ex: 1 / 0)
    with torch.no_grad():
        out = compiled(x, w)
        expected = fn(x, w)
    assert_close(out, expected, "inference output")
    assert not out.requires_grad and out.grad_fn is None
    (entry,) = compiled.aotgraph_entries.values()
    assert entry.joint.is_inference and entry.partition.backward is None and entry.compiled.backward is None
    assert roles == [2]
    assert not any(n.name.startswith("tangents") for n in entry.joint.graph_module.graph.nodes)


def test_inference_mode():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x = leaf(3, 4)
    compiled = aot_module(model)
    with torch.inference_mode():
        out = compiled(x)
        expected = model(x)
    assert_close(out, expected, "output under inference_mode")
    (entry,) = compiled.aotgraph_entries.values()
    assert entry.joint.is_inference


def test_autocast_bfloat16():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        parity = assert_module_parity(model, (leaf(5, 8),))
    assert parity.compiled_out.dtype == torch.bfloat16


def test_no_grad_and_grad_mode_compile_separately():
    def fn(x):
        return x.exp()

    compiled = aot_function(fn)
    x = leaf(3)
    with torch.no_grad():
        assert not compiled(x).requires_grad
    assert compiled(x).requires_grad
    inference, training = compiled.aotgraph_entries.values()
    assert inference.joint.is_inference and not training.joint.is_inference


def test_aot_module_simplified_on_a_symbolically_traced_module():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.LayerNorm(8), nn.Linear(8, 3))
    graph_module = fx.symbolic_trace(model)
    assert isinstance(graph_module, fx.GraphModule)
    x_eager, x_compiled = leaf(5, 4), leaf(5, 4)
    eager_module = fx.symbolic_trace(model)
    compiled = aot_module_simplified(graph_module, (x_compiled,), fw_compiler=aotgraph.nop)
    out = compiled(x_compiled)
    expected = eager_module(x_eager)
    assert_close(out, expected, "output")
    assert type(out.grad_fn).__name__ == "CompiledFunctionBackward"
    tangent = torch.randn_like(expected)
    out.backward(tangent)
    expected.backward(tangent)
    assert_close(x_compiled.grad, x_eager.grad, "input grad")
    eager_params = dict(eager_module.named_parameters())
    compiled_params = dict(graph_module.named_parameters())
    assert set(compiled_params) == set(eager_params)
    for name, param in eager_params.items():
        assert_close(compiled_params[name].grad, param.grad, f"grad of {name}")
    assert len(compiled.aotgraph_entries) == 1


def test_aot_module_simplified_updates_buffers_in_train_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    eager = copy.deepcopy(model)
    graph_module = fx.symbolic_trace(model)
    x = torch.randn(2, 3, 6, 6)
    compiled = aot_module_simplified(graph_module, (x,), fw_compiler=aotgraph.nop)
    out, expected = compiled(x), eager(x)
    assert_close(out, expected, "output")
    tangent = torch.randn_like(expected)
    out.backward(tangent)
    expected.backward(tangent)
    for (name, buffer), (_, eager_buffer) in zip(graph_module.named_buffers(), eager.named_buffers()):
        assert_close(buffer, eager_buffer, name)
    for (name, param), (_, eager_param) in zip(graph_module.named_parameters(), eager.named_parameters()):
        assert_close(param.grad, eager_param.grad, f"grad of {name}")
    assert int(graph_module.get_buffer("1.num_batches_tracked")) == 1


def test_aot_export_joint_graph_lints():
    def fn(x, w, b):
        return F.layer_norm(x @ w + b, (3,)).sum(dim=0), x.shape[0]

    joint = aot_export_joint(fn, (leaf(2, 4), leaf(4, 3, seed=1), leaf(3, seed=2)))
    assert isinstance(joint, JointGraph)
    joint.graph_module.graph.lint()
    placeholders = [n.name for n in joint.graph_module.graph.find_nodes(op="placeholder")]
    assert placeholders == ["primals_1", "primals_2", "primals_3", "tangents_1"]
    assert joint.num_primals == 3 and joint.num_tangents == 1 and not joint.is_inference
    outputs = joint.graph_module.graph.find_nodes(op="output")[0].args[0]
    assert len(outputs) == joint.num_fwd_outputs + joint.num_primals
    assert [o.constant for o in joint.signature.outputs if not o.is_tensor] == [2]
    for node in joint.graph_module.graph.nodes:
        if node.op not in ("output",):
            assert "val" in node.meta, node


def test_aot_export_joint_is_runnable_and_matches_eager_grads():
    def fn(x, w):
        return (x @ w).sigmoid()

    x, w = leaf(2, 4), leaf(4, 3, seed=1)
    joint = aot_export_joint(fn, (x, w))
    tangent = torch.randn(2, 3)
    out, grad_x, grad_w = joint.graph_module(x.detach(), w.detach(), tangent)
    expected = fn(x, w)
    expected.backward(tangent)
    assert_close(out, expected.detach(), "joint forward output")
    assert_close(grad_x, x.grad, "joint grad of x")
    assert_close(grad_w, w.grad, "joint grad of w")


def _classifier():
    torch.manual_seed(0)

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))

        def forward(self, x, y):
            return F.cross_entropy(self.body(x), y)

    batches = [(torch.randn(8, 6), torch.randint(0, 4, (8,))) for _ in range(4)]
    return Classifier(), batches


def test_training_steps_with_sgd_match_eager():
    model, batches = _classifier()
    compiled = assert_training_parity(model, batches, lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9))
    assert len(compiled.aotgraph_entries) == 1


def test_training_steps_with_adam_match_eager():
    model, batches = _classifier()
    compiled = assert_training_parity(model, batches, lambda p: torch.optim.Adam(p, lr=0.05))
    assert len(compiled.aotgraph_entries) == 1


def test_recompiles_on_a_new_shape_but_not_on_the_same_shape():
    calls = []

    def counting_compiler(graph_module, example_inputs):
        calls.append(tuple(tuple(t.shape) for t in example_inputs))
        return graph_module.forward

    model = aot_module(nn.Linear(4, 2), fw_compiler=counting_compiler)
    model(leaf(3, 4)).sum().backward()
    model(leaf(3, 4, seed=1)).sum().backward()
    assert len(model.aotgraph_entries) == 1 and len(calls) == 2
    out = model(leaf(7, 4))
    assert out.shape == (7, 2)
    out.sum().backward()
    assert len(model.aotgraph_entries) == 2 and len(calls) == 4
    model(leaf(7, 4, seed=2))
    assert len(model.aotgraph_entries) == 2 and len(calls) == 4


def test_aot_module_passes_parameters_and_buffers_as_graph_inputs():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    compiled = aot_module(model)
    compiled(torch.randn(5, 4)).sum().backward()
    (entry,) = compiled.aotgraph_entries.values()
    state = len(list(model.parameters())) + len(list(model.buffers()))
    assert entry.joint.num_primals == state + 1
    assert not any(n.op == "get_attr" for n in entry.joint.graph_module.graph.nodes)


def test_train_and_eval_select_their_own_graph():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.3), nn.Linear(8, 2))
    eager = copy.deepcopy(model)
    compiled = aot_module(model)
    x = torch.randn(6, 4)
    for mode in ("train", "eval", "train", "eval"):
        getattr(model, mode)()
        getattr(eager, mode)()
        torch.manual_seed(1)
        out = compiled(x)
        torch.manual_seed(1)
        expected = eager(x)
        assert_close(out, expected, f"output in {mode} mode")
        assert_close(model[1].running_mean, eager[1].running_mean, f"running mean after {mode}")
    assert len(compiled.aotgraph_entries) == 2


def test_saved_tensors_are_released_after_backward():
    compiled = aot_function(lambda a: (a.sin() * a).exp().sum())
    out = compiled(leaf(3))
    assert type(out.grad_fn).__name__ == "CompiledFunctionBackward" and len(out.grad_fn.saved_tensors) > 0
    out.backward()
    try:
        out.grad_fn.saved_tensors
    except RuntimeError as error:
        assert "freed" in str(error)
    else:
        raise AssertionError("saved tensors are still held after backward")


def test_retain_graph_allows_a_second_backward_as_in_eager():
    def fn(x):
        return (x.sin() * x).sum()

    x_eager, x_compiled = leaf(3), leaf(3)
    for run, x in ((fn, x_eager), (aot_function(fn), x_compiled)):
        loss = run(x)
        loss.backward(retain_graph=True)
        loss.backward()
    assert_close(x_compiled.grad, x_eager.grad, "grad accumulated over two backwards")


def test_second_backward_without_retain_graph_errors_as_in_eager():
    def fn(x):
        return (x.sin() * x).sum()

    for run in (fn, aot_function(fn)):
        loss = run(leaf(3))
        loss.backward()
        try:
            loss.backward()
        except RuntimeError as error:
            assert "second time" in str(error) or "freed" in str(error), error
        else:
            raise AssertionError(f"{run}: a second backward did not raise")


@pytest.mark.parametrize("name", ["default_partition", "min_cut_rematerialization_partition"])
def test_torch_partition_functions_plug_in(name):
    # Drop-in: a partition_fn written for functorch.compile (here torch's own) works on our joint graph.
    import functorch.compile

    torch.manual_seed(0)
    model, inputs = models.gpt(layers=1, dim=32, seq=8)
    parity = assert_module_parity(model, inputs, partition_fn=getattr(functorch.compile, name))
    assert parity.entries[0].partition.saved


def test_a_lazy_module_runs_its_first_call_eagerly_then_compiled():
    """``nn.LazyLinear`` takes its shapes from its first input: that call runs the module eagerly
    (it is eager's first call, materializing the parameters); the calls after it run compiled,
    one compile, with eager's losses and gradients."""
    import copy

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.LazyLinear(6), torch.nn.ReLU(), torch.nn.LazyLinear(2))
    eager, ours = model, copy.deepcopy(model)
    compiled = aotgraph.aot_module(ours, "eager")
    for step in range(3):
        x = torch.randn(3, 5)
        losses = []
        for module in (eager, compiled):
            torch.manual_seed(1)  # the first call draws the lazy parameters' initial values
            loss = module(x).square().sum()
            loss.backward()
            losses.append(loss)
        torch.testing.assert_close(losses[1], losses[0])
        for a, b in zip(eager.parameters(), ours.parameters()):
            torch.testing.assert_close(b.grad, a.grad)
            a.grad = b.grad = None
    assert len(compiled.aotgraph_entries) == 1


@pytest.mark.parametrize("called_first", [False, True], ids=["cold", "after_a_call"])
def test_torch_func_transforms_over_a_compiled_function(called_first):
    def program(x):
        return x.sin().relu() * 2

    xs, tangents = torch.randn(5, 3), torch.randn(5, 3)
    compiled = aotgraph.aot_function(program, aotgraph.nop)
    if called_first:
        compiled(xs)
    torch.testing.assert_close(torch.vmap(compiled)(xs), torch.vmap(program)(xs))
    torch.testing.assert_close(torch.func.jvp(compiled, (xs,), (tangents,))[1],
                               torch.func.jvp(program, (xs,), (tangents,))[1])
    torch.testing.assert_close(torch.func.grad(lambda x: compiled(x).sum())(xs),
                               torch.func.grad(lambda x: program(x).sum())(xs))
