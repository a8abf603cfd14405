"""compiler="inductor": our forward, backward and inference graphs compiled by TorchInductor
(CPU here), captured with Inductor's decompositions; parity with eager through
torch.compile and through aot_function. Models are tiny: Inductor's CPU compile is slow."""
from __future__ import annotations

import copy

import pytest
import torch

import aotgraph
from aotgraph import aot_function, aot_module, models
from aotgraph.compilers.torchinductor import inductor_decompositions
from backend_training import assert_close, assert_training_parity


pytestmark = pytest.mark.usefixtures("fresh_dynamo")


# Inductor fuses and reorders float arithmetic; eager's float32 tolerances scaled by this.
SCALE = 10.0

TINY = {
    "mlp": dict(layers=3, dim=16, batch=4),
    "gpt": dict(batch=2, seq=8, vocab=32, dim=16, heads=2, layers=1),
    "resnet": dict(blocks=2, width=4, batch=2, size=8),
}


def tiny_steps(model_name: str, steps: int = 3):
    torch.manual_seed(0)
    model, first = models.MODELS[model_name](**TINY[model_name])
    inputs = [first] + [tuple(torch.randint_like(a, 0, int(a.max()) + 1) if not a.is_floating_point()
                              else torch.randn_like(a) for a in first) for _ in range(steps - 1)]
    return model, inputs


@pytest.mark.parametrize("model_name", sorted(TINY))
def test_training_parity_through_torch_compile(model_name):
    model, inputs = tiny_steps(model_name)
    backend = aotgraph.backend(compiler="inductor")
    assert_training_parity(model, inputs, lambda m: torch.compile(m, backend=backend, dynamic=False), scale=SCALE)
    assert backend.entries
    for entry in backend.entries:
        assert not entry.joint.is_inference
        for graph in (entry.compiled.forward, entry.compiled.backward):
            # Inductor's code, or steps of it around regions compiled apart (convolution blocks)
            steps = getattr(graph, "aotgraph_steps", None)
            assert type(graph).__module__.startswith("torch._inductor") or steps is not None


def test_backend_by_name_uses_inductor():
    model, inputs = tiny_steps("mlp", steps=2)
    assert_training_parity(model, inputs, lambda m: torch.compile(m, backend="aotgraph", dynamic=False), scale=SCALE)
    entries = aotgraph.backend.__globals__["aotgraph_backend"].entries
    assert entries and type(entries[-1].compiled.forward).__module__.startswith("torch._inductor")


def test_inference_graph_under_no_grad():
    model, inputs = tiny_steps("resnet", steps=1)
    model.eval()
    backend = aotgraph.backend(compiler="inductor")
    compiled = torch.compile(model, backend=backend, dynamic=False)
    with torch.no_grad():
        assert_close(compiled(*inputs[0]), model(*inputs[0]), "output", SCALE)
    assert [entry.joint.is_inference for entry in backend.entries] == [True]


def test_aot_function_with_inductor_mutation_and_views():
    """Inductor's decompositions run inside the recorder; in-place ops, views and a mutated
    input still functionalize and write back."""

    def f(x, w, running):
        y = (x @ w).relu_()
        running.mul_(0.9).add_(y.detach().mean(0), alpha=0.1)
        return y.t().contiguous().sum(0), running.view(-1)[:2]

    compiled = aot_function(f, fw_compiler="inductor")
    x = torch.randn(4, 6)
    w = torch.randn(6, 3, requires_grad=True)
    running, running_ref = torch.zeros(3), torch.zeros(3)
    w_ref = w.detach().clone().requires_grad_()
    out, view = compiled(x, w, running)
    out_ref, view_ref = f(x, w_ref, running_ref)
    assert_close(out, out_ref, "output", SCALE)
    assert_close(view, view_ref, "view of the mutated input", SCALE)
    assert_close(running, running_ref, "mutated input", SCALE)
    out.sum().backward()
    out_ref.sum().backward()
    assert_close(w.grad, w_ref.grad, "w.grad", SCALE)
    entry = next(iter(compiled.aotgraph_entries.values()))
    assert type(entry.compiled.backward).__module__.startswith("torch._inductor")


def test_decomposition_table_is_inductors():
    table = inductor_decompositions()
    assert torch.ops.aten.native_layer_norm_backward.default in table
    assert torch.ops.aten.addmm.default in table


def test_inductor_decompositions_under_autocast_with_inplace_relu():
    """Under bf16 autocast, Inductor's BatchNorm decomposition converts dtypes with ``to``;
    an in-place ReLU on the converted output is an ordinary mutation, not a write through a view."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU(inplace=True))
    reference = copy.deepcopy(model)
    compiled = aot_module(model, decompositions=inductor_decompositions())
    x = torch.randn(2, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, expected = compiled(x), reference(x)
    out.float().sum().backward()
    expected.float().sum().backward()
    # Decomposed BatchNorm backward rounds in bf16 where eager's kernel does not (torch's own
    # decomposing backends give the same 0.8 % on the conv weight): compare relative norms.
    def assert_near(actual, reference, what):
        error = (actual.float() - reference.float()).norm() / reference.float().norm()
        assert error < 2e-2, f"{what}: relative error {error:.4f}"

    assert_near(out, expected, "output")
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert_near(p.grad, q.grad, f"{name}.grad")
    for (name, b), c in zip(model.named_buffers(), reference.buffers()):
        assert_near(b, c, name)


def test_backward_compiled_for_the_strides_the_forward_reports():
    """A forward compiler may lay saved values out its own way (Inductor does) and report
    the strides through torch's TracingContext; the backward is compiled for those strides."""
    from torch._guards import TracingContext

    from aotgraph import make_boxed_func

    seen_backward_strides = []

    def column_major_forward(graph_module, example_inputs):
        outputs = graph_module.graph.find_nodes(op="output")[0].args[0]
        relaid = [o.meta["val"].dim() == 2 for o in outputs]
        TracingContext.try_get().output_strides.extend(
            (1, o.meta["val"].shape[0]) if r else tuple(o.meta["val"].stride()) for o, r in zip(outputs, relaid))

        def run(*args):
            return [o.t().contiguous().t() if r else o for o, r in zip(graph_module(*args), relaid)]

        return make_boxed_func(run)

    def recording_backward(graph_module, example_inputs):
        seen_backward_strides.extend(tuple(t.stride()) for t in example_inputs)
        return make_boxed_func(graph_module.forward)

    def f(x, w):
        return (x @ w).tanh().sum()

    compiled = aot_function(f, fw_compiler=column_major_forward, bw_compiler=recording_backward)
    x, w = torch.randn(4, 6), torch.randn(6, 3, requires_grad=True)
    w_ref = w.detach().clone().requires_grad_()
    compiled(x, w).backward()
    f(x, w_ref).backward()
    assert_close(w.grad, w_ref.grad, "w.grad")
    entry = next(iter(compiled.aotgraph_entries.values()))
    saved_2d = [s for s in entry.partition.saved if s.meta is not None and len(s.meta.shape) == 2]
    assert saved_2d
    for saved in saved_2d:
        assert (1, saved.meta.shape[0]) in seen_backward_strides, f"{saved.name} not re-strided"


def test_out_overloads_are_functionalized_not_decomposed():
    """Inductor's table decomposes ``aten.mm`` for every overload; ``mm.out`` must go to its
    functional twin instead (the decomposition takes no ``out``)."""

    def f(x, w):
        result = torch.empty(x.shape[0], w.shape[1])
        torch.mm(x, w, out=result)
        return result * 2

    x, w = torch.randn(3, 4), torch.randn(4, 5)
    compiled = aot_function(f, decompositions=inductor_decompositions())
    assert_close(compiled(x, w), f(x, w), "output")


def test_every_gradient_is_a_user_visible_output(monkeypatch):
    """Gradients reach the user (.grad, or the backward of the graph before a graph break), so
    Inductor must give them eager's strides: all backward outputs are user-visible (torch.compile
    does the same). Left unmarked, Inductor pads rows on the GPU and the consumer copies them."""
    import torch._inductor.compile_fx as compile_fx

    seen = {}
    real = compile_fx.compile_fx_inner

    def recording(graph_module, example_inputs, **kwargs):
        output = graph_module.graph.find_nodes(op="output")[0]
        role = "backward" if kwargs.get("is_backward") else "forward"
        seen[role] = (output.meta["user_visible_output_idxs"],
                      [k for k, a in enumerate(output.args[0]) if isinstance(a, torch.fx.Node)])
        return real(graph_module, example_inputs, **kwargs)

    monkeypatch.setattr(compile_fx, "compile_fx_inner", recording)
    x, w = torch.randn(3, 5, requires_grad=True), torch.randn(5, 7, requires_grad=True)
    aot_function(lambda x, w: (x @ w).tanh().sum(), "inductor")(x, w).backward()
    visible, grads = seen["backward"]
    assert grads and visible == grads


def test_compile_workers_are_woken_for_gpu_graphs_only(monkeypatch):
    """On a GPU, Inductor compiles kernels in a worker pool that torch.compile wakes before
    tracing; without it every kernel compiles serially in this process."""
    from torch._inductor.async_compile import AsyncCompile
    from torch._subclasses.fake_tensor import FakeTensorMode

    from aotgraph.compilers.torchinductor import wake_compile_workers

    calls = []
    name = "wakeup" if hasattr(AsyncCompile, "wakeup") else "warm_pool"
    monkeypatch.setattr(AsyncCompile, name, staticmethod(lambda: calls.append(1)))
    wake_compile_workers([torch.randn(2), 3])
    assert calls == []
    with FakeTensorMode():
        on_gpu = torch.empty(2, device="cuda")
    wake_compile_workers([torch.randn(2), on_gpu])
    assert calls == [1]


def _forward_graphs_given_to_inductor(monkeypatch) -> list:
    import torch._inductor.compile_fx as compile_fx

    graphs, real = [], compile_fx.compile_fx_inner

    def recording(graph_module, example_inputs, **kwargs):
        if not kwargs.get("is_backward"):
            graphs.append(graph_module)
        return real(graph_module, example_inputs, **kwargs)

    monkeypatch.setattr(compile_fx, "compile_fx_inner", recording)
    return graphs


def _writes_to_inputs(graph_module) -> list:
    return [n.args[0].name for n in graph_module.graph.nodes
            if n.target is torch.ops.aten.copy_.default and n.args[0].op == "placeholder"]


def test_batch_norm_statistics_are_written_by_the_forward_graph(monkeypatch):
    """With Inductor the forward graph writes mutated buffers itself (fused into the kernel
    that computes them, as torch.compile does), and buffers still match eager's."""
    graphs = _forward_graphs_given_to_inductor(monkeypatch)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    reference = copy.deepcopy(model)
    compiled = aot_module(model, "inductor")
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    for _ in range(2):
        compiled(x).sum().backward()
        reference(x).sum().backward()
    assert len(_writes_to_inputs(graphs[0])) == 3  # running mean, running var, batches tracked
    written = {n.args[1] for n in graphs[0].graph.nodes if n.target is torch.ops.aten.copy_.default}
    returned = set(graphs[0].graph.find_nodes(op="output")[0].args[0])
    assert not written & returned  # written in place, not also returned (a buffer and an output each)
    for ours, theirs in zip(model.buffers(), reference.buffers()):
        torch.testing.assert_close(ours, theirs)
    for ours, theirs in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-4, atol=1e-5)


def test_a_buffer_mutated_after_its_old_value_was_used_matches_eager():
    """The backward needs a value computed from the buffer before its update; whichever side
    writes the update (graph or runtime), the gradient sees the old value, as in eager."""
    def fn(x, buf):
        y = x * (buf * 2)
        buf.add_(1)
        return y

    x, buf = torch.randn(4, requires_grad=True), torch.randn(4)
    old = buf.clone()
    compiled = aot_function(fn, "inductor", partition_fn=aotgraph.min_cut_rematerialization_partition)
    (grad,) = torch.autograd.grad(compiled(x, buf).sum(), x)
    torch.testing.assert_close(grad, old * 2)
    torch.testing.assert_close(buf, old + 1)


def test_in_graph_writes_beside_runtime_writes_and_layout_changes():
    """Outputs the forward graph no longer returns (its in-graph writes) shift every later
    output: a mutation autograd records, a layout change, saved values and gradients must
    still land where eager puts them."""
    def fn(x, w, buf, leaf_copy, relaid):
        buf.mul_(0.5).add_(x.detach().sum())      # written by the graph
        leaf_copy.mul_(w)                         # recorded by autograd: written by the runtime
        relaid.t_()                               # layout change
        y = (x * w).sin() + leaf_copy.sum()
        return y, relaid + 1

    def inputs():
        torch.manual_seed(0)
        x, w = torch.randn(3, 4, requires_grad=True), torch.randn(4, requires_grad=True)
        leaf_copy = torch.randn(4, requires_grad=True).clone()
        return x, w, torch.randn(4), leaf_copy, torch.randn(2, 3)

    ours, theirs = inputs(), inputs()
    compiled = aot_function(fn, "inductor", partition_fn=aotgraph.min_cut_rematerialization_partition)
    out, out_ref = compiled(*ours), fn(*theirs)
    (out[0].sum() + out[1].sum()).backward()
    (out_ref[0].sum() + out_ref[1].sum()).backward()
    for a, b in zip(out, out_ref):
        torch.testing.assert_close(a, b)
    for name, a, b in zip(("x", "w", "buf", "leaf_copy", "relaid"), ours, theirs):
        torch.testing.assert_close(a, b, msg=name)
        assert a.stride() == b.stride(), name
    for a, b in zip(ours[:2], theirs[:2]):
        torch.testing.assert_close(a.grad, b.grad)


def test_parameters_and_saved_values_are_static_inputs_for_inductor(monkeypatch):
    """Inductor checks the alignment of every non-static GPU input on every call; parameters
    (forward) and the forward's saved values (backward) keep their memory, so they are passed
    as static, as torch.compile passes them. Activations and tangents are not."""
    import torch._inductor.compile_fx as compile_fx

    calls, real = [], compile_fx.compile_fx_inner

    def recording(graph_module, example_inputs, **kwargs):
        names = [n.name for n in graph_module.graph.find_nodes(op="placeholder")]
        calls.append((kwargs.get("is_backward"), [names[i] for i in kwargs["static_input_idxs"]], names))
        return real(graph_module, example_inputs, **kwargs)

    monkeypatch.setattr(compile_fx, "compile_fx_inner", recording)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh())
    x = torch.randn(3, 4)
    aot_module(model, "inductor")(x).sum().backward()
    (_, fw_static, fw_names), (_, bw_static, bw_names) = sorted(calls, key=lambda c: bool(c[0]))
    assert fw_static == fw_names[:2]  # weight and bias; the input x is not static
    assert bw_static == [n for n in bw_names if not n.startswith("tangents")] and len(bw_static) < len(bw_names)


_MAX_POOL_SCRIPT = """
import torch, aotgraph
def f(x):
    return torch.nn.functional.max_pool2d(x.relu(), 3, 2, 1).square().sum()
x = torch.randn(2, 3, 16, 16, requires_grad=True)
compiled = aotgraph.aot_function(f, "inductor", partition_fn=aotgraph.min_cut_rematerialization_partition)
(grad,) = torch.autograd.grad(compiled(x), x)
torch.testing.assert_close(grad, torch.autograd.grad(f(x), x)[0])
entry = next(iter(compiled.aotgraph_entries.values()))
print(sorted(str(v.meta.dtype) for v in entry.partition.saved))
"""


def test_max_pool_in_a_fresh_process_saves_int8_window_offsets():
    """Inductor's max-pool decomposition asks its lowerings (imported here, not only after a
    torch.compile), and returns int8 window offsets: the plan saves those and rebuilds the
    int64 indices in the backward, as torch.compile does (ResNet-50: 12 MiB instead of 98)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _MAX_POOL_SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    saved_dtypes = result.stdout.strip().splitlines()[-1]
    assert "torch.int8" in saved_dtypes and "torch.int64" not in saved_dtypes, saved_dtypes


def test_buffer_reuse_is_judged_with_the_graphs_outputs_counted():
    """Inductor keeps a freed buffer for a later one of its size only if that keeps its peak
    estimate, which leaves out the outputs a forward holds to its end (the saved values). While
    we compile, the outputs' bytes count in the peak; afterwards Inductor's own method is back."""
    from types import SimpleNamespace

    from torch._inductor.codegen.wrapper import AllocateLine

    from aotgraph.compilers.torchinductor import _reuse_judged_with_outputs

    stock = AllocateLine.should_reuse_buffer
    estimate = SimpleNamespace(overall_peak_memory=100, peak_between=lambda free, alloc: 90,
                               _aotgraph_output_bytes=50)
    allocation = SimpleNamespace(comm_buffer=False, scheduler_node_index=9,
                                 wrapper=SimpleNamespace(estimate_peak=estimate))
    freed = SimpleNamespace(scheduler_node_index=2)
    assert not stock(allocation, freed, 20)  # 90 + 20 > 100: Inductor alone refuses
    with _reuse_judged_with_outputs():
        judged = AllocateLine.should_reuse_buffer
        assert judged(allocation, freed, 20)  # 110 <= 100 + 50
        assert not judged(allocation, freed, 70)  # 160 > 150
    assert AllocateLine.should_reuse_buffer is stock


@pytest.mark.parametrize("partition", [aotgraph.min_cut_rematerialization_partition, aotgraph.default_partition],
                         ids=["mincut", "default"])
def test_dropout_in_training_compiles_and_its_backward_uses_the_forwards_mask(partition):
    """Inductor lowers the graphs' random ops as fallbacks to eager's generator (the joint passes
    keep them, ``fallback_random``); it used to refuse them at lowering. Its decompositions draw
    the mask with ``rand`` where eager's kernel calls ``bernoulli_``, so the mask is not eager's
    (nor is torch.compile's): checked here are the rate and that the backward reuses the
    forward's mask."""
    p = 0.25

    def program(x, w):
        return torch.nn.functional.dropout(x * w, p=p, training=True)

    x = torch.ones(64, 64)
    w = torch.full((64,), 2.0, requires_grad=True)
    compiled = aot_function(program, "inductor", partition_fn=partition)
    torch.manual_seed(0)
    out = compiled(x, w)
    kept = out != 0
    assert 0.15 < 1 - kept.float().mean().item() < 0.35  # the drop rate is p
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 2.0 / (1 - p)))
    cotangent = torch.randn_like(out)
    (out * cotangent).sum().backward()
    expected = (cotangent * kept / (1 - p)).sum(0)  # d out / d w = x * mask / (1 - p)
    torch.testing.assert_close(w.grad, expected)
