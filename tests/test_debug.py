"""Debug levels print what they promise, and each switch of `aotgraph.config.SWITCHES` really
turns its memo, fast path or patch off (each test fails if the switch does nothing), while
results stay equal to eager."""
import copy
import functools
import gc
import logging
import os
import subprocess
import sys

import textwrap
import threading

import pytest
import torch

import aotgraph
from aotgraph import api, capture, config, models
from aotgraph.capture import fake_outputs, inputs, repeated_layers
from aotgraph.cache import size_guards
from aotgraph.torch_private import symbolic
from aotgraph.compilers import background_builds, boxed_code, build_rng, extern_kernel_bindings, stored_builds


def _program(x, w):
    return (x @ w).sin().sum() + (x @ w).sin().mean()


def _args():
    torch.manual_seed(0)
    return torch.randn(4, 8), torch.randn(8, 8, requires_grad=True)


def _check(compiled):
    x, w = _args()
    out = compiled(x, w)
    out.backward()
    w_eager = w.detach().clone().requires_grad_()
    expected = _program(x, w_eager)
    expected.backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(w.grad, w_eager.grad)


def _disable(monkeypatch, switch):
    monkeypatch.setattr(config, "disabled", config.disabled | {switch})


def _spy(monkeypatch, owner, name):
    calls = []
    original = getattr(owner, name)

    @functools.wraps(original)
    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return calls


@pytest.mark.parametrize("level, expected, absent", [
    (1, ["aotgraph compiling _program: first call", "aotgraph capture:", "aotgraph partition:"], ["joint graph:"]),
    (2, ["aotgraph joint graph: joint", "inputs", "saved for backward:"], ["graph code"]),
    (3, ["--- forward graph code ---", "--- backward graph code ---", "torch.ops.aten.sin"], []),
])
def test_debug_levels(level, expected, absent, monkeypatch, caplog):
    monkeypatch.setattr(config, "debug_level", level)
    with caplog.at_level(logging.INFO, logger="aotgraph"):
        _check(aotgraph.aot_function(_program))
    text = "\n".join(caplog.messages)
    for piece in expected:
        assert piece in text, piece
    for piece in absent:
        assert piece not in text, piece


def test_the_environment_sets_the_level_and_the_switches():
    env = {**os.environ, "AOTGRAPH_DEBUG": "3", "AOTGRAPH_DISABLE": "cse,fast_path"}
    probe = ("import torch, aotgraph; print(sorted(aotgraph.config.disabled)); "
             "aotgraph.aot_function(lambda x: x.sin() * 2)(torch.ones(2))")
    run = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "['cse', 'fast_path']"
    assert "--- forward graph code ---" in run.stderr


def test_an_unknown_switch_is_refused_at_import():
    env = {**os.environ, "AOTGRAPH_DISABLE": "fast_pth"}
    run = subprocess.run([sys.executable, "-c", "import aotgraph"], env=env, capture_output=True, text=True)
    assert run.returncode != 0 and "fast_pth" in run.stderr and "fast_path" in run.stderr


@pytest.mark.parametrize("disabled", [False, True])
def test_fast_path_switch(disabled, monkeypatch):
    if disabled:
        _disable(monkeypatch, "fast_path")
    keys = _spy(monkeypatch, api, "plain_args_key")
    compiled = aotgraph.aot_function(lambda x: x * 2)
    x = torch.ones(3)
    for _ in range(4):
        torch.testing.assert_close(compiled(x), x * 2)
    assert len(keys) == (4 if disabled else 1)


# Switches whose memo or fast path is one function: off, that function is never called.
# (owner, function, whether the program is compiled with symbolic sizes)
SPIED = {
    "fake_memo": (fake_outputs.FakeOutputs, "_recipe_of", False),
    "meta_kernel_answers": (fake_outputs.FakeOutputs, "_meta_kernel_outputs", False),
    "direct_fakes": (inputs, "_fake_of_plain_leaf", False),
    "boxed_code": (boxed_code, "boxed_graph_function", False),
    # symbolic layouts keyed (and checked for fresh symbols) only with the switch on
    "symbolic_fake_memo": (fake_outputs, "_has_new_symbols", True),
    "size_arithmetic_memo": (capture, "memoized_size_arithmetic", True),
    "strided_builds": (fake_outputs, "_storage_numel", True),
    "symbolic_layout_rules": (fake_outputs.FakeOutputs, "_symbolic_rule_outputs", True),
    "own_size_guard_text": (size_guards, "size_guard_text", True),
    "direct_guards": (symbolic, "_skippable_once", True),
    "unused_relations_unbuilt": (symbolic, "_symbol_relations_unevaluated", True),
}


@pytest.mark.parametrize("disabled", [False, True])
@pytest.mark.parametrize("switch", sorted(SPIED))
def test_spied_switch(switch, disabled, monkeypatch):
    if disabled:
        _disable(monkeypatch, switch)
    owner, name, dynamic = SPIED[switch]
    calls = _spy(monkeypatch, owner, name)
    _check(aotgraph.aot_function(_program, dynamic=dynamic))
    assert (len(calls) == 0) == disabled


@pytest.mark.parametrize("disabled", [False, True])
def test_cse_switch(disabled, monkeypatch):
    if disabled:
        _disable(monkeypatch, "cse")
    compiled = aotgraph.aot_function(_program)
    _check(compiled)
    joint = next(iter(compiled.aotgraph_entries.values())).joint
    sines = [n for n in joint.graph_module.graph.nodes if n.target is torch.ops.aten.sin.default]
    assert len(sines) == (2 if disabled else 1)


@pytest.mark.parametrize("disabled", [False, True])
def test_gc_pause_switch(disabled, monkeypatch):
    if disabled:
        _disable(monkeypatch, "gc_pause")
    seen = []

    def program(x, w):
        seen.append(gc.isenabled())  # runs once, at capture
        return _program(x, w)

    assert gc.isenabled()
    aotgraph.aot_function(program)(*_args())
    assert seen == [disabled] and gc.isenabled()


@pytest.mark.parametrize("disabled", [False, True])
def test_gc_freeze_switch(disabled, monkeypatch):
    if disabled:
        _disable(monkeypatch, "gc_freeze")
    seen = []

    def program(x, w):
        seen.append(gc.get_freeze_count() > 0)  # runs once, at capture
        return _program(x, w)

    if gc.get_freeze_count():  # (a run on the GPU machine, torch 2.11, failed here after the CUDA tests)
        pytest.skip("the heap is frozen already, by an earlier compile: a compile then leaves it as it is")
    _check(aotgraph.aot_function(program))
    assert seen == [not disabled] and gc.get_freeze_count() == 0


@pytest.mark.parametrize("disabled", [False, True])
def test_trace_heap_frozen_switch(disabled, monkeypatch):
    from torch._dynamo.callback import callback_handler

    if not disabled:  # (off by default)
        monkeypatch.setattr(config, "opted_in", config.opted_in | {"trace_heap_frozen"})
    if gc.get_freeze_count():
        pytest.skip("the heap is frozen already, by an earlier compile: a compile then leaves it as it is")
    torch._dynamo.reset()  # (clears Dynamo's compile callbacks)
    backend = aotgraph.backend("eager")  # registers the freeze with Dynamo's compile callbacks
    seen = []

    def look(*_):  # registered after ours: runs as Dynamo starts tracing, before its trace
        seen.append(gc.get_freeze_count() > 0)

    callback_handler.register_start_callback(look)
    try:
        _check(torch.compile(_program, backend=backend))
    finally:
        callback_handler.remove_start_callback(look)
    assert seen and seen[0] == (not disabled) and gc.get_freeze_count() == 0


@pytest.mark.parametrize("disabled", [False, True])
def test_storage_resize_hook_switch(disabled, monkeypatch):
    if disabled:
        _disable(monkeypatch, "storage_resize_hook")
    original = torch.UntypedStorage.resize_
    seen = []

    def program(x, w):
        seen.append(torch.UntypedStorage.resize_ is original)
        return _program(x, w)

    aotgraph.aot_function(program)(*_args())
    assert seen == [disabled] and torch.UntypedStorage.resize_ is original


@pytest.mark.parametrize("disabled", [False, True])
def test_seed_patch_switch(disabled, monkeypatch):
    """Off: the program sees torch's own manual_seed, whose seeding capture cannot replay (refused)."""
    if disabled:
        _disable(monkeypatch, "seed_patch")
    original = torch.manual_seed
    seen = []

    def program(x, w):
        seen.append(torch.manual_seed is original)
        torch.manual_seed(5)
        return _program(x, w) * torch.rand(())

    compiled = aotgraph.aot_function(program)
    if disabled:
        with pytest.raises(aotgraph.UnsupportedOp, match="cannot replay"):
            compiled(*_args())
    else:
        x, w = _args()
        w_eager = w.detach().clone()
        torch.testing.assert_close(compiled(x, w), program(x, w_eager))
    assert seen[0] == disabled and torch.manual_seed is original


@pytest.mark.parametrize("disabled", [False, True])
def test_inductor_reuse_patch_switch(disabled, monkeypatch):
    from torch._inductor import compile_fx
    from torch._inductor.codegen import wrapper

    if disabled:
        _disable(monkeypatch, "inductor_reuse_patch")
    original = wrapper.AllocateLine.should_reuse_buffer
    patched_during_compile = []
    real_compile = compile_fx.compile_fx_inner

    def recording(*args, **kwargs):
        patched_during_compile.append(wrapper.AllocateLine.should_reuse_buffer is not original)
        return real_compile(*args, **kwargs)

    monkeypatch.setattr(compile_fx, "compile_fx_inner", recording)
    compiled = aotgraph.aot_function(lambda x: (x * 2).sin(), "inductor")
    torch.testing.assert_close(compiled(torch.ones(4)), torch.ones(4).mul(2).sin())
    assert patched_during_compile == [not disabled]
    assert wrapper.AllocateLine.should_reuse_buffer is original


@pytest.mark.parametrize("disabled", [False, True])
def test_layout_rules_switch(disabled, monkeypatch):
    if disabled:
        _disable(monkeypatch, "layout_rules")
    calls = _spy(monkeypatch, fake_outputs.FakeOutputs, "_layout_rule_outputs")
    norm = torch.nn.GroupNorm(2, 4)
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    aotgraph.aot_module(norm, aotgraph.nop, aotgraph.nop)(x).sum().backward()
    expected_grad = x.grad.clone()
    x.grad = None
    norm(x).sum().backward()
    torch.testing.assert_close(expected_grad, x.grad)
    assert (len(calls) == 0) == disabled


@pytest.mark.parametrize("disabled", [False, True])
def test_in_place_on_fresh_switch(disabled, monkeypatch):
    """SiLU's backward decomposes into an in-place ``1 - sigmoid`` on a fresh tensor (where it is
    not recorded whole: switch ``composite_kernels_kept`` off): with the switch it is recorded
    functionally and the capture has nothing to functionalize."""
    _disable(monkeypatch, "composite_kernels_kept")
    if disabled:
        _disable(monkeypatch, "in_place_on_fresh")
    calls = _spy(monkeypatch, capture, "functionalize")
    x = torch.randn(3, 4, requires_grad=True)
    x_eager = x.detach().clone().requires_grad_()
    aotgraph.aot_function(torch.nn.functional.silu)(x).sum().backward()
    torch.nn.functional.silu(x_eager).sum().backward()
    torch.testing.assert_close(x.grad, x_eager.grad)
    assert (len(calls) == 0) == (not disabled)


def test_fake_misses_without_python_dispatcher_switch(monkeypatch):
    """Memo misses of ops with no rule or meta answer (cumsum, arange, gather) reach the fake
    mode with the Python dispatcher off only with the switch; the graph is the same either way."""
    def program(x, index):
        positions = torch.arange(x.shape[0], dtype=x.dtype, device=x.device).unsqueeze(1)
        return (torch.cumsum(x, 0) * positions).gather(1, index).sum()

    def capture_once():
        calls = _spy(monkeypatch, fake_outputs, "no_python_dispatcher")
        x = torch.randn(5, 3, requires_grad=True)
        index = torch.tensor([[0], [2], [1], [1], [0]])
        x_eager = x.detach().clone().requires_grad_()
        compiled = aotgraph.aot_function(program)
        compiled(x, index).backward()
        program(x_eager, index).backward()
        torch.testing.assert_close(x.grad, x_eager.grad)
        monkeypatch.undo()
        return len(calls), str(next(iter(compiled.aotgraph_entries.values())).joint.graph_module.graph)

    calls_on, graph_on = capture_once()
    _disable(monkeypatch, "fake_misses_without_python_dispatcher")
    calls_off, graph_off = capture_once()
    assert calls_on > calls_off and graph_on == graph_off


@pytest.mark.parametrize("disabled", [False, True])
def test_stack_room_switch(disabled, monkeypatch):
    from aotgraph import stack_room
    from aotgraph.stack_room import call_with_stack_room
    from frame_chunks import at_depth, crossing_depth

    if not stack_room._CHUNKED_STACK or sys.platform != "linux":
        pytest.skip("CPython 3.11+ on Linux")
    if disabled:
        _disable(monkeypatch, "stack_room")
    elif crossing_depth() is None:
        pytest.skip("this Python keeps a spare chunk (CPython gh-142183 fixed)")
    found = crossing_depth(lambda d, fn: call_with_stack_room(at_depth, d, fn))
    assert (found is None) != disabled


def test_every_switch_is_tested_here():
    tested = {name.removeprefix("test_").removesuffix("_switch") for name in globals()
              if name.endswith("_switch") and name != "test_spied_switch"}
    tested |= {"symbolic_regions", "shared_fake_memo", "region_mode_exit"}  # test_symbolic_region_switches
    assert tested | set(SPIED) == set(config.SWITCHES)


@pytest.mark.parametrize("disabled", [False, True])
def test_capture_is_compiling_switch(disabled, monkeypatch):
    if disabled:
        _disable(monkeypatch, "capture_is_compiling")
    compiled = aotgraph.aot_function(lambda x: x * (2 if torch.compiler.is_compiling() else 3))
    x = torch.ones(3)
    torch.testing.assert_close(compiled(x), x * (3 if disabled else 2))


@pytest.mark.parametrize("disabled", [False, True])
def test_build_rng_untouched_switch(disabled, monkeypatch):
    from torch._dynamo import testing, utils

    if disabled:
        _disable(monkeypatch, "build_rng_untouched")
    torch.manual_seed(0)
    with build_rng.rng_untouched():
        with utils.preserve_rng_state():
            torch.rand(1)
        testing.rand_strided((2,), (1,))
    drawn = torch.rand(1)
    torch.manual_seed(0)
    expected = torch.rand(2)  # untouched: the draw inside the save and restore stays drawn
    assert torch.equal(drawn, expected[1:]) == (not disabled)


@pytest.mark.parametrize("disabled", [False, True])
def test_builds_when_hot_switch(disabled, monkeypatch):
    from types import SimpleNamespace

    if disabled:
        _disable(monkeypatch, "builds_when_hot")
    built = threading.Event()
    graph = background_builds.upgradable(lambda args: "python", lambda: built.set() or (lambda args: "C++"),
                                         SimpleNamespace(kind="inference", graph_id=object()))
    graph([])  # called once: not hot
    assert built.wait(timeout=1.5) == disabled
    background_builds.wait_for_background_builds()
    assert built.is_set()


@pytest.mark.parametrize("disabled", [False, True])
def test_stored_cpp_builds_switch(disabled, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    (tmp_path / "cabc.so").write_bytes(b"built")
    if disabled:
        _disable(monkeypatch, "stored_cpp_builds")
    assert bool(stored_builds.build_files([str(tmp_path / "cabc.so")])) == (not disabled)


@pytest.mark.parametrize("disabled", [False, True])
def test_bound_extern_kernels_switch(disabled, monkeypatch):
    if disabled:
        _disable(monkeypatch, "bound_extern_kernels")
    source = ("import torch\n" + extern_kernel_bindings.IMPORT_LINE + "\nx = extern_kernels.mm\n")
    assert (extern_kernel_bindings.bound_extern_kernels(source) is None) == disabled


@pytest.mark.parametrize("disabled", [False, True])
def test_warm_load_without_header_precompiles_switch(disabled, monkeypatch):
    from torch._inductor import codecache

    if not hasattr(codecache, "_precompile_header"):
        pytest.skip("this Inductor precompiles no headers")
    monkeypatch.setattr(codecache, "_precompile_header", lambda *args, **kwargs: "header.gch")
    if disabled:
        _disable(monkeypatch, "warm_load_without_header_precompiles")
    with stored_builds.without_header_precompiles():
        header = codecache._precompile_header()
    assert header == ("header.gch" if disabled else None)
    assert codecache._precompile_header() == "header.gch"  # other loads still precompile


@pytest.mark.parametrize("disabled", [False, True])
def test_warm_load_torch_arguments_remembered_switch(disabled, monkeypatch):
    from torch._inductor import cpp_builder

    monkeypatch.setattr(stored_builds, "_torch_arguments", {})
    if disabled:
        _disable(monkeypatch, "warm_load_torch_arguments_remembered")
    with stored_builds.torch_arguments_remembered():
        answers = [cpp_builder._get_torch_related_args(include_pytorch=True, aot_mode=False) for _ in range(3)]
    assert answers[0] == answers[2]
    assert len(stored_builds._torch_arguments) == (0 if disabled else 1)


@pytest.mark.parametrize("disabled", [False, True])
def test_symbolic_function_rules_switch(disabled, monkeypatch):
    import torch.nn.functional as F

    from aotgraph.capture import function_rules

    if disabled:
        _disable(monkeypatch, "symbolic_function_rules")
    calls = []
    rule = function_rules.RULES[F.group_norm]
    monkeypatch.setitem(function_rules.RULES, F.group_norm, lambda *a, **k: calls.append(1) or rule(*a, **k))
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.GroupNorm(2, 8))
    x = torch.randn(2, 3, 9, 9)
    compiled = aotgraph.aot_module(copy.deepcopy(model), dynamic=True)
    torch.testing.assert_close(compiled(x), model(x))
    assert (len(calls) == 0) == disabled


@pytest.mark.parametrize("disabled", [False, True])
def test_runtime_asserts_switch(disabled, monkeypatch, data_dependent_dynamo):
    if disabled:
        _disable(monkeypatch, "runtime_asserts")

    def program(x):
        n = x.sum().int().item()
        torch._check(n >= 0)
        return x * n

    backend = aotgraph.backend(compiler="eager")
    compiled = torch.compile(program, backend=backend)
    torch.testing.assert_close(compiled(torch.ones(3)), program(torch.ones(3)))
    asserts = backend.entries[0].joint.graph_module.graph.find_nodes(
        op="call_function", target=torch.ops.aten._assert_scalar.default)
    assert bool(asserts) == (not disabled)
    if not disabled:
        with pytest.raises(RuntimeError, match="Runtime assertion failed"):
            compiled(-torch.ones(3))


@pytest.mark.parametrize("disabled", [False, True])
def test_region_reuse_switch(disabled, monkeypatch):
    if disabled:
        _disable(monkeypatch, "region_reuse")
    block = torch.fx.symbolic_trace(lambda x, w: (torch.tanh(x @ w),))

    def program(x, w):
        for _ in range(3):
            (x,) = torch.ops.higher_order.invoke_subgraph(block, "block", x, w)
        return x.sum()

    x, w = torch.randn(4, 4, requires_grad=True), torch.randn(4, 4, requires_grad=True)
    compiled = aotgraph.aot_function(program)
    out = compiled(x, w)
    torch.testing.assert_close(out, block(block(block(x, w)[0], w)[0], w)[0].sum())
    forward = next(iter(compiled.aotgraph_entries.values())).partition.forward
    calls = [n for n in forward.graph.nodes if n.target is torch.ops.higher_order.invoke_subgraph]
    assert len(calls) == (0 if disabled else 3)


@pytest.mark.parametrize("disabled", [False, True])
def test_region_buffer_writes_switch(disabled, monkeypatch):
    from decoder_blocks import NormBlock

    if disabled:
        _disable(monkeypatch, "region_buffer_writes")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), *(NormBlock(8) for _ in range(3)))
    reference = copy.deepcopy(model)
    x = torch.randn(16, 8)
    compiled = aotgraph.aot_module(model)
    compiled(x).sum().backward()
    reference(x).sum().backward()
    for (name, expected), actual in zip(reference.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(actual, expected, msg=name)
    (entry,) = compiled.aotgraph_entries.values()
    assert [r.occurrences for r in entry.partition.joint.regions] == ([] if disabled else [3])


@pytest.mark.parametrize("disabled", [False, True])
def test_convolution_regions_inlined_switch(disabled, monkeypatch):
    if disabled:
        _disable(monkeypatch, "convolution_regions_inlined")
    torch.manual_seed(0)
    from decoder_blocks import basic_block_stack

    model, (x,) = basic_block_stack()
    reference = copy.deepcopy(model)
    compiled = aotgraph.aot_module(model, "inductor")
    compiled(x).sum().backward()
    reference(x).sum().backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-3)
    (entry,) = compiled.aotgraph_entries.values()
    assert hasattr(entry.compiled.forward, "aotgraph_steps") == disabled  # steps: compiled around the regions


@pytest.mark.parametrize("disabled", [False, True])
def test_auto_regions_switch(disabled, monkeypatch):
    if disabled:
        _disable(monkeypatch, "auto_regions")
    torch.manual_seed(0)
    model = torch.nn.Sequential(*(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh()) for _ in range(3)))
    x = torch.randn(2, 4, requires_grad=True)
    compiled = aotgraph.aot_module(model)
    torch.testing.assert_close(compiled(x), model(x))
    forward = next(iter(compiled.aotgraph_entries.values())).partition.forward
    calls = [n for n in forward.graph.nodes if n.target is torch.ops.higher_order.invoke_subgraph]
    assert len(calls) == (0 if disabled else 3)


class _TiedNormed(torch.nn.Module):
    """Parameters at the root and in submodules, one tied under two names, buffers the
    forward updates (BatchNorm's running statistics)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.randn(4))
        self.first, self.second = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
        self.second.weight = self.first.weight
        self.norm = torch.nn.BatchNorm1d(4)

    def forward(self, x):
        return self.norm(self.second(torch.tanh(self.first(x)))) * self.scale


@pytest.mark.parametrize("disabled", [False, True])
def test_direct_state_swap_switch(disabled, monkeypatch):
    """On, aot_module's capture swaps the state itself (torch.func.functional_call is not
    called); either way outputs, every parameter's grad and the updated buffers are eager's,
    and the module holds its own parameters again after the capture."""
    if disabled:
        _disable(monkeypatch, "direct_state_swap")
    functional_calls = _spy(monkeypatch, torch.func, "functional_call")
    torch.manual_seed(0)
    model = _TiedNormed()
    reference = copy.deepcopy(model)
    parameters = dict(model.named_parameters(remove_duplicate=False))
    x = torch.randn(8, 4, requires_grad=True)
    x_eager = x.detach().clone().requires_grad_()
    out = aotgraph.aot_module(model, "eager")(x)
    out.sum().backward()
    expected = reference(x_eager)
    expected.sum().backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(x.grad, x_eager.grad)
    assert dict(model.named_parameters(remove_duplicate=False)) == parameters
    for (name, p), p_eager in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, p_eager.grad, msg=name)
    torch.testing.assert_close(dict(model.named_buffers()), dict(reference.named_buffers()))
    assert (len(functional_calls) > 0) == disabled


def _tanh_stack():
    torch.manual_seed(0)
    return torch.nn.Sequential(*(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh()) for _ in range(3)))


def _check_stack(compiled, model):
    x = torch.randn(2, 4, requires_grad=True)
    x_eager = x.detach().clone().requires_grad_()
    compiled(x).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()  # the compiled module shares the model's parameters: their grads again, from eager
    model(x_eager).sum().backward()
    torch.testing.assert_close(x.grad, x_eager.grad)
    torch.testing.assert_close(grads, [p.grad for p in model.parameters()])


@pytest.mark.parametrize("disabled", [False, True])
def test_structure_memo_switch(disabled, monkeypatch):
    """On, the repeated-layer search computes each submodule's structure once (the stack's
    from its blocks'); either way it finds the same blocks, and the compile matches eager."""
    if disabled:
        _disable(monkeypatch, "structure_memo")
    computed = _spy(monkeypatch, repeated_layers, "_structure")
    stack = _tanh_stack()
    model = torch.nn.Sequential(stack)
    found = repeated_layers.repeated_layers(model)
    assert set(found) == {id(block) for block in stack}
    below_root = len(list(model.modules())) - 1
    assert (len(computed) == below_root) == (not disabled) and len(computed) >= below_root
    _check_stack(aotgraph.aot_module(model), model)


@pytest.mark.parametrize("compiler", ["nop", "eager"])
@pytest.mark.parametrize("disabled", [False, True])
def test_direct_region_calls_switch(disabled, compiler, monkeypatch):
    """On, the graphs run each region's own code: the invoke_subgraph operator is never called."""
    if disabled:
        _disable(monkeypatch, "direct_region_calls")
    hop_calls = _spy(monkeypatch, type(torch.ops.higher_order.invoke_subgraph), "__call__")
    model = _tanh_stack()
    _check_stack(aotgraph.aot_module(model, compiler), model)
    assert (len(hop_calls) > 0) == disabled


@pytest.mark.parametrize("compiler", ["nop", "eager", pytest.param("inductor", marks=pytest.mark.slow)])
@pytest.mark.parametrize("disabled", [False, True])
def test_shared_subgraph_nodes_switch(disabled, compiler, monkeypatch):
    """On, the calls of a region read its graph through one get_attr node per graph (forward,
    backward), off through one each; outputs and grads as eager's either way (Inductor compiles
    the calling graph whole, its shared subgraph node included)."""
    if disabled:
        _disable(monkeypatch, "shared_subgraph_nodes")
    model = _tanh_stack()
    compiled = aotgraph.aot_module(model, compiler)
    _check_stack(compiled, model)
    partition = next(iter(compiled.aotgraph_entries.values())).partition
    for graph_module in (partition.forward, partition.backward):
        calls = graph_module.graph.find_nodes(op="call_function", target=torch.ops.higher_order.invoke_subgraph)
        assert len(calls) == 3
        assert len({call.args[0] for call in calls}) == (3 if disabled else 1)


def test_switches_off_by_default_need_opting_in(monkeypatch):
    assert config.enabled("regions_compiled_apart")  # on by default since session 25
    monkeypatch.setattr(config, "OFF_BY_DEFAULT", frozenset({"regions_compiled_apart"}))
    assert not config.enabled("regions_compiled_apart")
    monkeypatch.setattr(config, "opted_in", frozenset({"regions_compiled_apart"}))
    assert config.enabled("regions_compiled_apart")
    monkeypatch.setattr(config, "disabled", frozenset({"regions_compiled_apart"}))
    assert not config.enabled("regions_compiled_apart")


@pytest.mark.slow
@pytest.mark.parametrize("disabled", [False, True])
def test_regions_compiled_apart_switch(disabled, monkeypatch):
    """On, Inductor is given each region graph (forward, backward) once and never a graph
    calling regions; off, it is given the calling graphs, region calls and all."""
    from aotgraph.compilers import torchinductor

    if disabled:
        _disable(monkeypatch, "regions_compiled_apart")
    else:  # on by default; opted in as well, as it was when it was off by default
        monkeypatch.setattr(config, "opted_in", frozenset({"regions_compiled_apart"}))
    graphs = []
    original = torchinductor.compile_with_inductor

    def recording(graph_module, *args, **kwargs):
        graphs.append(any(n.target is torch.ops.higher_order.invoke_subgraph for n in graph_module.graph.nodes))
        return original(graph_module, *args, **kwargs)

    monkeypatch.setattr(torchinductor, "compile_with_inductor", recording)
    model = _tanh_stack()
    _check_stack(aotgraph.aot_module(model, "inductor"), model)
    assert graphs == [disabled, disabled]


@pytest.mark.parametrize("disabled", [False, True])
def test_cpp_wrapper_in_background_switch(disabled, monkeypatch):
    """A CUDA graph (fake CUDA tensors: no GPU needed to decide) starts on the Python wrapper
    and gets its C++ build from the background worker; switched off, the C++ build is the
    first and only one."""
    from types import SimpleNamespace

    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    from aotgraph.compilers import background_builds, torchinductor

    if disabled:
        _disable(monkeypatch, "cpp_wrapper_in_background")
    builds = []

    def compiled(graph_module, example_inputs, role, fake_mode, options, cpp_wrapper):
        builds.append("C++" if cpp_wrapper else "python")
        return lambda args: args

    monkeypatch.setattr(torchinductor, "_compiled", compiled)
    mode = FakeTensorMode()
    x = FakeTensor(mode, torch.empty(4, device="meta"), torch.device("cuda"))
    graph_module = torch.fx.symbolic_trace(lambda x: x * 2)
    role = SimpleNamespace(kind="inference", graph_id=-1, static_inputs=(), view_bases=(), num_user_outputs=1)
    compiled_graph = torchinductor.compile_with_inductor(graph_module, [x], role)
    if not disabled:
        compiled_graph([])  # the first run queues the build
    background_builds.wait_for_background_builds()
    assert builds == (["C++"] if disabled else ["python", "C++"])


@pytest.mark.parametrize("disabled", [False, True])
def test_cpp_build_releases_lock_switch(disabled, monkeypatch):
    """On the build worker, the lock is free inside `lock_released_on_worker` (another thread
    takes it) and held again after; off, it stays held (tests/compilers/test_background_builds.py
    runs a recompile inside a real C++ build)."""
    import threading

    from aotgraph.compilers import background_builds

    if disabled:
        _disable(monkeypatch, "cpp_build_releases_lock")
    taken = {}

    def other_thread_takes_the_lock(key):
        got = background_builds.compile_lock.acquire(timeout=0.3)
        if got:
            background_builds.compile_lock.release()
        taken[key] = got

    def worker():
        with background_builds.compile_lock, background_builds.compile_lock:
            with background_builds.lock_released_on_worker():
                inside = threading.Thread(target=other_thread_takes_the_lock, args=("inside",))
                inside.start(); inside.join()
            after = threading.Thread(target=other_thread_takes_the_lock, args=("after",))
            after.start(); after.join()

    thread = threading.Thread(target=worker, name=background_builds._WORKER_NAME)
    thread.start(); thread.join()
    assert taken == {"inside": not disabled, "after": False}


@pytest.mark.parametrize("disabled", [False, True])
def test_flex_attention_direct_switch(disabled, monkeypatch):
    """On: aot_function captures the public flex_attention through its operator, equal to eager
    (tests/capture/test_flex_attention.py has the training checks); off: torch's own nested
    torch.compile runs inside the capture and fails."""
    import torch.nn.attention.flex_attention as flex

    monkeypatch.setattr(flex, "_validate_device", lambda *tensors: None)  # torch refuses CPU backwards
    if disabled:
        _disable(monkeypatch, "flex_attention_direct")
    torch._dynamo.reset()
    q, k, v = (torch.randn(1, 2, 16, 8, requires_grad=True) for _ in range(3))
    def attend(q, k, v):
        return flex.flex_attention(q, k, v, score_mod=lambda score, b, h, i, j: score * 0.5)

    compiled = aotgraph.aot_function(attend, fw_compiler="eager")
    if disabled:
        with pytest.raises(Exception):
            compiled(q, k, v)
        return
    out = compiled(q, k, v)
    torch.testing.assert_close(out, attend(q, k, v))


def _size_guards_of_a_three_block_gpt(monkeypatch) -> list:
    from aotgraph.capture import repeated_layers

    monkeypatch.setattr(repeated_layers, "SYMBOLIC_MIN_REPEATS", 3)
    torch.manual_seed(0)
    model, _ = models.gpt(seq=16, dim=32, heads=2, layers=3)
    compiled = aotgraph.aot_module(model, fw_compiler="eager", dynamic=True)
    x, y = torch.randint(0, 256, (3, 7)), torch.randint(0, 256, (3, 7))
    loss = compiled(x, y)
    torch.testing.assert_close(loss, model(x, y))
    (entry,) = compiled.aotgraph_entries.values()
    return entry, sorted(g.text for g in entry.guards.guards if getattr(g, "text", ""))


@pytest.mark.parametrize("switch", ["symbolic_regions", "shared_fake_memo", "region_mode_exit"])
def test_symbolic_region_switches(switch, monkeypatch):
    """Each of ``symbolic_regions``, ``shared_fake_memo`` and ``region_mode_exit`` off: the same
    loss and size guards; ``symbolic_regions`` off records the 3 blocks inline
    (tests/capture/test_symbolic_regions.py trains over many sizes)."""
    on_entry, on_guards = _size_guards_of_a_three_block_gpt(monkeypatch)
    _disable(monkeypatch, switch)
    off_entry, off_guards = _size_guards_of_a_three_block_gpt(monkeypatch)
    assert on_guards and off_guards == on_guards
    assert len(on_entry.partition.joint.regions) == 1
    assert len(off_entry.partition.joint.regions) == (0 if switch == "symbolic_regions" else 1)


@pytest.mark.parametrize("disabled", [False, True])
def test_vec_isa_memo_switch(disabled, monkeypatch, tmp_path):
    """Off: no memo is read or written (tests/compilers/test_vec_isa_memo.py checks what it answers)."""
    import platform
    import sys

    from aotgraph.compilers import vec_isa_memo

    if sys.platform != "linux" or platform.machine() != "x86_64":
        pytest.skip("the memo applies to x86-64 Linux only")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    if disabled:
        _disable(monkeypatch, "vec_isa_memo")
    path, _ = vec_isa_memo._memo_path_and_isas()
    assert (path is None) == disabled


_BLOCK = torch.fx.symbolic_trace(lambda x, w: (torch.tanh(x @ w),))


def _scaled_blocks(x, w, block=lambda *args: torch.ops.higher_order.invoke_subgraph(_BLOCK, "block", *args)):
    for _ in range(3):
        (x,) = block(x, w)
        x = x * 0.5
    return x.sum()


def _stretches_given_to_a_compiler_of_regions_apart(monkeypatch) -> list[tuple]:
    """The ops (targets) of each graph other than the region's that a compiler asking for
    regions compiled apart is given for `_scaled_blocks`, whose results are checked against eager."""
    monkeypatch.setattr(config, "opted_in", config.opted_in | {"regions_compiled_apart"})
    graphs = []

    def compiler(graph_module, example_inputs):
        graphs.append(graph_module)
        return boxed_code.boxed_graph_function(graph_module)

    compiler.aotgraph_traits = aotgraph.compilers.CompilerTraits(compiles_regions_apart=True)
    x, w = torch.randn(3, 4, requires_grad=True), torch.randn(4, 4, requires_grad=True)
    compiled = aotgraph.aot_function(_scaled_blocks, compiler)
    out = compiled(x, w)
    expected = _scaled_blocks(x, w, _BLOCK)  # eager's invoke_subgraph has no backward outside torch.compile
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(torch.autograd.grad(out, (x, w)), torch.autograd.grad(expected, (x, w)))
    (entry,) = compiled.aotgraph_entries.values()
    regions = [g for g in graphs if g in {*entry.partition.forward.children(), *entry.partition.backward.children()}]
    assert len(regions) == 2  # the block's forward and backward, once each
    return [tuple(n.target for n in g.graph.nodes if n.op == "call_function") for g in graphs if g not in regions]


@pytest.mark.parametrize("disabled", [False, True])
def test_fused_between_regions_switch(disabled, monkeypatch):
    """On, the compiler is given the calling graphs' own ops (the scales, the sum), a stretch
    at a time; off, the region graphs alone."""
    if disabled:
        _disable(monkeypatch, "fused_between_regions")
    stretches = _stretches_given_to_a_compiler_of_regions_apart(monkeypatch)
    assert (len(stretches) == 0) == disabled


@pytest.mark.parametrize("disabled", [False, True])
def test_stretch_memo_switch(disabled, monkeypatch):
    """On, the scale between two blocks is compiled once in the forward graph; off, at each of its
    two places (the backward's two stretches between blocks differ: one adds w's gradients)."""
    if disabled:
        _disable(monkeypatch, "stretch_memo")
    stretches = _stretches_given_to_a_compiler_of_regions_apart(monkeypatch)
    assert len(stretches) == (7 if disabled else 6), stretches


def test_layouts_after_replacements_switch(monkeypatch):
    """A layer norm makes x's symbolic feature size 8 (a replacement): on, the layout of `a`
    (remembered before) is computed again, so ``a * 2`` has the key of ``y * 2`` and the memo
    answers it; off, `a` keeps the old symbol and a key of its own, which the mul rule answers."""
    from aotgraph.capture import symbolic_layout_rules

    mul_rule = symbolic_layout_rules.RULES[torch.ops.aten.mul.Tensor]

    def program(x, w):
        a = x.sin()
        y = torch.nn.functional.layer_norm(x, [8], w)
        return ((y * 2).sin() + (a * 2).cos()).sum()

    rule_calls = {}
    for disabled in (False, True):
        monkeypatch.setattr(config, "disabled", config.disabled | {"layouts_after_replacements"} if disabled
                            else config.disabled - {"layouts_after_replacements"})
        calls = rule_calls[disabled] = []
        monkeypatch.setitem(symbolic_layout_rules.RULES, torch.ops.aten.mul.Tensor,
                            lambda *a, calls=calls: calls.append(1) or mul_rule(*a))
        x, w = torch.randn(4, 8), torch.randn(8, requires_grad=True)
        w_eager = w.detach().clone().requires_grad_()
        out = aotgraph.aot_function(program, dynamic=True)(x, w)
        out.backward()
        expected = program(x, w_eager)
        expected.backward()
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(w.grad, w_eager.grad)
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    if hasattr(ShapeEnv(), "_replacements_version_counter"):
        assert len(rule_calls[False]) < len(rule_calls[True])
    else:  # torch 2.11 counts no replacements: the layouts stay as they were, the switch on or off
        assert len(rule_calls[False]) == len(rule_calls[True])


@pytest.mark.parametrize("disabled", [False, True])
def test_warm_up_at_backend_switch(disabled, monkeypatch):
    from aotgraph.compilers import CompilerTraits

    if disabled:
        _disable(monkeypatch, "warm_up_at_backend")
    warmed = []

    def compiler(graph_module, example_inputs):
        return graph_module

    compiler.aotgraph_traits = CompilerTraits(warm_up=warmed.append)
    aotgraph.backend(compiler=compiler)
    assert warmed == ([] if disabled else [None])


@pytest.mark.parametrize("disabled", [False, True])
def test_checkpoint_rng_replay_switch(disabled, monkeypatch):
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    if disabled:
        _disable(monkeypatch, "checkpoint_rng_replay")
    torch._dynamo.reset()

    def program(x):
        return checkpoint(lambda t: F.dropout(t.sin(), 0.5, training=True), x, use_reentrant=False).sum()

    x = torch.randn(64, requires_grad=True)
    torch.manual_seed(0)
    (got,) = torch.autograd.grad(torch.compile(program, backend=aotgraph.backend("eager"))(x), x)
    torch.manual_seed(0)
    (expected,) = torch.autograd.grad(program(x), x)
    torch._dynamo.reset()
    assert torch.equal(got, expected) == (not disabled or not _torch_recomputes_a_checkpoint(monkeypatch))


def _torch_recomputes_a_checkpoint(monkeypatch) -> bool:
    """Whether torch's tag_activation_checkpoint runs a plain checkpoint's body under
    torch.utils.checkpoint (torch 2.13: recomputed in the backward, with new random numbers where
    the RNG state is not preserved); torch 2.11 runs the body once, its nodes only tagged for
    Inductor's recompute, so the switch changes nothing there."""
    import torch.utils.checkpoint as checkpoint_module
    from torch._higher_order_ops.wrap import tag_activation_checkpoint_impl

    calls, original = [], checkpoint_module.checkpoint
    with monkeypatch.context() as patch:
        patch.setattr(checkpoint_module, "checkpoint", lambda *a, **k: calls.append(1) or original(*a, **k))
        tag_activation_checkpoint_impl(torch.fx.symbolic_trace(lambda t: t.sin()), torch.ones(2, requires_grad=True))
    return bool(calls)


@pytest.mark.parametrize("disabled", [False, True])
def test_symbolic_int_inputs_switch(disabled, monkeypatch):
    if disabled:
        _disable(monkeypatch, "symbolic_int_inputs")
    torch._dynamo.reset()

    def program(x, n):
        y = x.sin()
        torch._dynamo.graph_break()
        return (y[:n] * n).sum()

    backend = aotgraph.backend("eager")
    compiled = torch.compile(program, backend=backend)
    for n in (3, 4, 5, 6):
        x = torch.randn(8, requires_grad=True)
        torch.testing.assert_close(compiled(x, n), program(x, n))
    symbolic = [e for e in backend.entries if e.reason == "symbolic sizes"]
    torch._dynamo.reset()
    assert (len(symbolic) == 0) == disabled


@pytest.mark.parametrize("disabled", [False, True])
def test_symbolic_input_views_switch(disabled, monkeypatch):
    if disabled:
        _disable(monkeypatch, "symbolic_input_views")
    torch._dynamo.reset()

    def program(x, w):
        return (x @ w).relu(), x.view(x.shape[0] * 2, -1)

    backend = aotgraph.backend("eager")
    compiled = torch.compile(program, backend=backend, dynamic=True)
    w = torch.randn(4, 3, requires_grad=True)
    for batch in (3, 5, 6):
        x = torch.randn(batch, 4)
        out, view = compiled(x, w)
        torch.testing.assert_close(out, program(x, w)[0])
        assert view._base is x and torch.equal(view, x.view(batch * 2, -1))
    symbolic = [e for e in backend.entries if e.reason == "symbolic sizes"]
    torch._dynamo.reset()
    assert (len(symbolic) == 0) == disabled


@pytest.mark.parametrize("disabled", [False, True])
def test_builds_share_interpreter_switch(disabled, monkeypatch):
    """On: a background build runs with the interpreter's switch interval at
    `BUILD_SWITCH_INTERVAL_S`, and the program's interval is back after it; off: the program's."""
    from types import SimpleNamespace

    monkeypatch.setattr(config, "disabled", config.disabled | {"builds_when_hot"})
    if disabled:
        _disable(monkeypatch, "builds_share_interpreter")
    seen = []

    def build():
        seen.append(sys.getswitchinterval())
        return lambda args: "C++"

    before = sys.getswitchinterval()
    graph = background_builds.upgradable(lambda args: "python", build,
                                         SimpleNamespace(kind="inference", graph_id=10**9 + int(disabled)))
    graph([])  # queues the build
    background_builds.wait_for_background_builds()
    assert seen == [pytest.approx(before if disabled else background_builds.BUILD_SWITCH_INTERVAL_S)]
    assert sys.getswitchinterval() == before


@pytest.mark.parametrize("disabled", [False, True])
def test_region_outputs_unaliased_switch(disabled, monkeypatch):
    """On: the backward Inductor gets (regions not compiled apart) calls a region whose output
    that was its incoming gradient is now a clone of it; off: the region returns that input
    itself. Inductor's compile is stubbed by the graph's code."""
    from aotgraph import make_boxed_func
    from aotgraph.compilers import torchinductor
    from aotgraph.compilers.boxed_code import region_modules
    from decoder_blocks import BloomLike

    if disabled:
        _disable(monkeypatch, "region_outputs_unaliased")
    _disable(monkeypatch, "regions_compiled_apart")  # Inductor gets the graphs calling the regions
    torch._dynamo.reset()
    aliased = {}

    def compile_fx_inner(graph_module, example_inputs, role, cpp_wrapper, cuda_graphs):
        aliased[role.kind] = [torchinductor._aliased_output_positions(region.graph.find_nodes(op="output")[0].args[0])
                              for region in region_modules(graph_module)]
        return make_boxed_func(graph_module.forward)

    monkeypatch.setattr(torchinductor, "_compile_fx_inner", compile_fx_inner)
    torch.manual_seed(0)
    model = BloomLike()
    compiled = torch.compile(copy.deepcopy(model), backend=aotgraph.backend("inductor"))
    ids = torch.randint(0, 50, (2, 12))
    compiled(ids).backward()
    torch._dynamo.reset()
    assert aliased["backward"] and any(aliased["backward"]) == disabled


@pytest.mark.parametrize("disabled", [False, True])
def test_avg_pool_backward_aten_switch(disabled, monkeypatch):
    """On: Inductor gets a ceil_mode average pool's backward that counts padding as our op running
    ATen's kernel; off: as ``aten.avg_pool2d_backward``. Inductor's compile is stubbed by the
    graph's code, so the gradients are eager's either way."""
    from aotgraph import make_boxed_func
    from aotgraph.compilers import torchinductor

    if disabled:
        _disable(monkeypatch, "avg_pool_backward_aten")
    targets = []

    def compile_fx_inner(graph_module, example_inputs, role, cpp_wrapper, cuda_graphs):
        targets.extend(str(node.target) for node in graph_module.graph.nodes if "avg_pool2d_backward" in str(node.target))
        return make_boxed_func(graph_module.forward)

    monkeypatch.setattr(torchinductor, "_compile_fx_inner", compile_fx_inner)

    def pooled(x):
        return torch.nn.functional.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True).sum()

    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    aotgraph.aot_function(pooled, "inductor")(x).backward()
    expected = torch.autograd.grad(pooled(x), x)[0]
    torch.testing.assert_close(x.grad, expected)
    assert targets == (["aten.avg_pool2d_backward.default"] if disabled else ["aotgraph.avg_pool2d_backward_aten.default"])


def _graphs_inductor_gets(monkeypatch) -> list:
    """The graphs handed to Inductor from now on; its compile is stubbed by each graph's code."""
    from aotgraph import make_boxed_func
    from aotgraph.compilers import torchinductor

    graphs = []

    def compile_fx_inner(graph_module, example_inputs, role, cpp_wrapper, cuda_graphs):
        graphs.append(graph_module)
        return make_boxed_func(graph_module.forward)

    monkeypatch.setattr(torchinductor, "_compile_fx_inner", compile_fx_inner)
    return graphs


def _targets(graphs) -> list:
    return [str(node.target) for graph_module in graphs for node in graph_module.graph.nodes]


@pytest.mark.parametrize("disabled", [False, True])
def test_scatter_sources_apart_switch(disabled, monkeypatch):
    """On: a diagonal written from its own reversed values reaches Inductor through our copy."""
    if disabled:
        _disable(monkeypatch, "scatter_sources_apart")
    graphs = _graphs_inductor_gets(monkeypatch)

    def reversed_diagonal(x):
        y = x * 1
        y.diagonal().copy_(y.diagonal().flip(0))
        return y

    x = torch.randn(4, 4)
    torch.testing.assert_close(aotgraph.aot_function(reversed_diagonal, "inductor")(x), reversed_diagonal(x))
    assert ("aotgraph.materialized.default" in _targets(graphs)) != disabled


@pytest.mark.parametrize("disabled", [False, True])
def test_as_strided_input_offsets_switch(disabled, monkeypatch):
    """On, where Inductor does not subtract an input's storage offset itself (before torch 2.13):
    an as_strided of ``base[1:]`` reaches it with its offset counted from the input's start."""
    from aotgraph.compilers import input_offsets

    if disabled:
        _disable(monkeypatch, "as_strided_input_offsets")
    monkeypatch.setattr(input_offsets, "_inductor_subtracts_input_offsets", lambda: False)
    graphs = _graphs_inductor_gets(monkeypatch)
    x = torch.randn(4, 4)[1:]
    aotgraph.aot_function(lambda t: t.as_strided((2, 2), (1, 4), 5) * 2, "inductor")(x)
    offsets = [node.args[3] for node in graphs[0].graph.nodes if node.target is torch.ops.aten.as_strided.default]
    assert offsets == ([5] if disabled else [1])


@pytest.mark.parametrize("disabled", [False, True])
def test_forward_outputs_kept_apart_switch(disabled, monkeypatch):
    """On: a returned clone that Inductor's joint passes drop is copied again in the forward."""
    if disabled:
        _disable(monkeypatch, "forward_outputs_kept_apart")
    graphs = _graphs_inductor_gets(monkeypatch)

    def program(x):
        v = torch.relu(x)
        return v.clone() * 1, v.clone()

    x = torch.randn(6, requires_grad=True)
    aotgraph.aot_function(program, "inductor")(x)[0].sum().backward()
    assert ("aten.clone.default" in _targets(graphs[:1])) != disabled


@pytest.mark.parametrize("disabled", [False, True])
def test_flat_arg_reductions_switch(disabled, monkeypatch):
    """On: a whole-tensor argmax reaches Inductor as a reduction over dimension 0 of a flat view."""
    if disabled:
        _disable(monkeypatch, "flat_arg_reductions")
    graphs = _graphs_inductor_gets(monkeypatch)
    x = torch.randn(4, 3)
    torch.testing.assert_close(aotgraph.aot_function(lambda t: torch.argmax(t.t() * 2), "inductor")(x),
                               torch.argmax(x.t() * 2))
    argmax = [node for node in graphs[0].graph.nodes if node.target is torch.ops.aten.argmax.default]
    assert [len(node.args) for node in argmax] == ([1] if disabled else [2])


@pytest.mark.parametrize("disabled", [False, True])
def test_scatter_graphs_scalar_switch(disabled, monkeypatch):
    """On: a CPU graph with an accumulating index_put whose code adds at computed positions
    inside a 2-D tile is compiled again without vectorized loops (``cpp.simdlen`` 1), a graph
    without such an add once as configured; off: each once as configured. Inductor's compile is
    stubbed by the graph's code, with a tiled kernel's lines as its source where it adds."""
    from torch._inductor import config as inductor_config
    from aotgraph import make_boxed_func
    from aotgraph.compilers import torchinductor

    if disabled:
        _disable(monkeypatch, "scatter_graphs_scalar")
    seen = []

    def compile_fx_inner(graph_module, example_inputs, role, cpp_wrapper, cuda_graphs):
        seen.append(inductor_config.cpp.simdlen)
        compiled = make_boxed_func(graph_module.forward)
        adds = any("index_put" in str(node.target) for node in graph_module.graph.nodes)
        compiled.source_code = ('extern "C" void kernel() { for (long x1_inner = 0; x1_inner < 16; x1_inner++) '
                                '{ atomic_add_vec<float, 2, 1>(out_ptr0, tmp18, tmp15); } }' if adds else "")
        return compiled

    monkeypatch.setattr(torchinductor, "_compile_fx_inner", compile_fx_inner)

    def gathered(x, index):
        return x[index].sum()

    x, index = torch.randn(5, 3, requires_grad=True), torch.tensor([0, 2, 2])
    aotgraph.aot_function(gathered, "inductor")(x, index).backward()
    torch.testing.assert_close(x.grad, torch.tensor([[1.0] * 3, [0.0] * 3, [2.0] * 3, [0.0] * 3, [0.0] * 3]))
    configured = inductor_config.cpp.simdlen
    assert configured != 1
    # forward (a gather), backward (index_put), and the backward again where it added in a tile
    assert seen == ([configured, configured] if disabled else [configured, configured, 1])


@pytest.mark.parametrize("disabled", [False, True])
def test_symbol_inputs_switch(disabled, monkeypatch):
    """On: Inductor gets a backward that saved ``2*s0`` with ``s0`` as a SymInt input of its own,
    and the compiled graph is called with its value; off: without it. Inductor's compile is
    stubbed by the graph's own code (what Inductor is handed is the point here)."""
    from aotgraph import make_boxed_func
    from aotgraph.compilers import torchinductor

    if disabled:
        _disable(monkeypatch, "symbol_inputs")
    _disable(monkeypatch, "transient_inputs_priced")  # the mask input saved free: the backward repeats it
    torch._dynamo.reset()
    handed = []

    def compile_fx_inner(graph_module, example_inputs, role, cpp_wrapper, cuda_graphs):
        handed.append((role.kind, [n.name for n in graph_module.graph.find_nodes(op="placeholder")]))
        return make_boxed_func(graph_module.forward)

    monkeypatch.setattr(torchinductor, "_compile_fx_inner", compile_fx_inner)

    from backend_training import assert_repeated_mask_trains, repeated_mask

    assert_repeated_mask_trains(torch.compile(repeated_mask, backend=aotgraph.backend("inductor"), dynamic=True), (3, 5))
    torch._dynamo.reset()
    backward = [names for kind, names in handed if kind == "backward"]
    assert len(backward) == 1
    assert any(name.startswith("aotgraph_symbol_") for name in backward[0]) != disabled


@pytest.mark.parametrize("disabled", [False, True])
def test_lowerings_imported_when_needed_switch(disabled):
    """In a fresh process: building Inductor's decomposition table imports its lowerings only
    with the switch off; with it on, capturing a max pooling (whose decomposition asks them)
    imports them then, and the program matches eager."""
    probe = textwrap.dedent("""
        import sys, torch, torch.nn.functional as F, aotgraph
        from aotgraph.compilers.torchinductor import inductor_decompositions
        table = inductor_decompositions()
        before = "torch._inductor.lowering" in sys.modules
        x = torch.randn(2, 3, 8, 8, requires_grad=True)
        fn = lambda t: F.max_pool2d(t, 2).sin().sum()
        joint = aotgraph.aot_export_joint(fn, (x,), decompositions=table)
        print(before, "torch._inductor.lowering" in sys.modules)
    """)
    env = dict(os.environ, AOTGRAPH_DISABLE="lowerings_imported_when_needed" if disabled else "")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == (["True", "True"] if disabled else ["False", "True"])


@pytest.mark.parametrize("disabled", [False, True])
def test_region_outputs_kept_switch(disabled, monkeypatch):
    """On: a region's min cut saves its outputs for free, and its backward reads a block's ReLU
    mask from the output; off: the backward recomputes the block's ReLU. Gradients equal eager's."""
    from decoder_blocks import ReluStack, region_graphs

    if disabled:
        _disable(monkeypatch, "region_outputs_kept")
    torch.manual_seed(0)
    model, x = ReluStack(), torch.randn(4, 16)
    compiled = aotgraph.aot_module(copy.deepcopy(model), partition_fn=aotgraph.min_cut_rematerialization_partition)
    compiled(x).backward()
    model(x).backward()
    for ours, theirs in zip(compiled.parameters(), model.parameters()):
        torch.testing.assert_close(ours.grad, theirs.grad)
    (entry,) = compiled.aotgraph_entries.values()
    targets = {str(n.target) for g in region_graphs(entry.partition.backward) for n in g.graph.nodes}
    assert ("aten.relu.default" in targets) is disabled


@pytest.mark.parametrize("disabled", [False, True])
def test_keys_without_joint_passes_switch(disabled, monkeypatch):
    """On: a program keyed by its capture (``aot_module(..., cache=True)``) splits its found
    regions without the compiler's joint passes to find its entry: a warm compile runs them
    never, a cold one captures again with them; off: both run them in the keying capture.
    Gradients equal eager's either way."""
    from aotgraph.compilers import CompilerTraits, eager
    from decoder_blocks import ReluStack

    if disabled:
        _disable(monkeypatch, "keys_without_joint_passes")
    passes = []

    def joint_passes(joint):
        passes.append(len(joint.graph_module.graph.nodes))
        return joint

    def compiler(graph_module, example_inputs):
        return eager(graph_module, example_inputs)

    compiler.aotgraph_traits = CompilerTraits(joint_passes=joint_passes, cache_identity=lambda: "eager with passes",
                                              store=eager.aotgraph_traits.store,
                                              restore=lambda stored, graph_module, kind: eager(graph_module, None))
    torch.manual_seed(0)
    model, x = ReluStack(), torch.randn(4, 16)
    model(x).backward()
    counts, captures = [], []
    for _ in range(2):  # cold, then warm in a fresh compiled module
        passes.clear()
        compiled = aotgraph.aot_module(copy.deepcopy(model), compiler, cache=True)
        for p in compiled.parameters():
            p.grad = None
        compiled(x).backward()
        for ours, theirs in zip(compiled.parameters(), model.parameters()):
            torch.testing.assert_close(ours.grad, theirs.grad)
        (entry,) = compiled.aotgraph_entries.values()
        counts.append(len(passes))
        captures.append(sum(r.stage == "capture" for r in entry.log.records))
    assert counts[0] >= 2  # the regions' and the whole program's
    assert counts[1] == (counts[0] - 1 if disabled else 0)  # off: the regions', in the keying capture
    assert captures == ([1, 1] if disabled else [2, 1])


@pytest.mark.parametrize("disabled", [False, True])
def test_composite_kernels_kept_switch(disabled, monkeypatch):
    """On: SiLU's backward, an op with a CompositeImplicitAutograd kernel and a CPU kernel of its
    own, is recorded whole (as eager runs it and make_fx records it); off: as its pieces.
    Gradients equal eager's either way."""
    if disabled:
        _disable(monkeypatch, "composite_kernels_kept")
    torch.manual_seed(0)
    x, w = torch.randn(4, 8), torch.randn(8, 8, requires_grad=True)

    def program(x, w):
        return torch.nn.functional.silu(x @ w).sum()

    compiled = aotgraph.aot_function(program, "eager")
    compiled(x, w).backward()
    w_eager = w.detach().clone().requires_grad_()
    program(x, w_eager).backward()
    torch.testing.assert_close(w.grad, w_eager.grad)
    (entry,) = compiled.aotgraph_entries.values()
    targets = {str(n.target) for n in entry.partition.backward.graph.nodes}
    assert ("aten.silu_backward.default" in targets) is not disabled


@pytest.mark.parametrize("opted_in", [False, True])
def test_compiles_in_workers_switch(opted_in, monkeypatch):
    from aotgraph.compilers import compile_workers

    if opted_in:
        monkeypatch.setattr(config, "opted_in", config.opted_in | {"compiles_in_workers"})
    assert compile_workers._wanted_on({"cuda"}) == opted_in
    monkeypatch.setattr(config, "opted_in", config.opted_in | {"compiles_in_workers_on_cpu"})
    assert compile_workers._wanted_on(set()) == opted_in


@pytest.mark.parametrize("opted_in", [False, True])
def test_compiles_in_workers_on_cpu_switch(opted_in, monkeypatch):
    from aotgraph.compilers import compile_workers

    monkeypatch.setattr(config, "opted_in", config.opted_in | {"compiles_in_workers"})
    if opted_in:
        monkeypatch.setattr(config, "opted_in", config.opted_in | {"compiles_in_workers_on_cpu"})
    assert compile_workers._wanted_on(set()) == opted_in
    assert compile_workers._wanted_on({"cuda"})


class _StoresProvisional:
    """A compiler (nop's code) whose disk cache entries come back provisional: as Inductor's
    Python-wrapper graphs stored before their C++ builds were ready; its final form's do not."""

    def __init__(self, final: bool = False):
        self.final, self.__name__ = final, "stores_provisional"
        self.aotgraph_traits = aotgraph.compilers.CompilerTraits(
            cache_identity=lambda: "stores_provisional", store=lambda code: code.stored_as,
            restore=self._restore, final_compiler=lambda: _StoresProvisional(final=True))

    def __call__(self, graph_module, example_inputs):
        code = aotgraph.make_boxed_func(graph_module.forward)
        code.stored_as = b"final" if self.final else b"provisional"
        return code

    @staticmethod
    def _restore(stored, graph_module, kind):
        code = aotgraph.make_boxed_func(graph_module.forward)
        code.aotgraph_provisional, code.stored_as = stored == b"provisional", stored
        return code


@pytest.mark.parametrize("disabled", [False, True])
def test_warm_upgrades_switch(disabled, monkeypatch):
    if disabled:
        _disable(monkeypatch, "warm_upgrades")
    compiler = _StoresProvisional()
    _check(aotgraph.aot_function(_program, compiler, cache=True))
    warm = aotgraph.aot_function(_program, compiler, cache=True)
    _check(warm)
    background_builds.wait_for_background_builds()
    _check(warm)
    again = aotgraph.aot_function(_program, compiler, cache=True)
    _check(again)
    loads = [[r.detail for r in entry.log.records if r.stage == "cache load"]
             for f in (warm, again) for entry in f.aotgraph_entries.values()]
    assert loads == ([["hit"], ["hit"]] if disabled else [["hit (its C++ builds made in the background)"], ["hit"]])


@pytest.mark.parametrize("disabled", [False, True])
def test_transient_inputs_priced_switch(disabled, monkeypatch):
    """On: the min cut prices an input that is not a parameter at its bytes, and saves relu's
    output (as eager's autograd does) rather than its input, so a caller's in-place write into
    the input before the backward works as in eager; off: the input is free, saved, and that
    write fails the backward. Gradients equal eager's when it runs."""
    if disabled:
        _disable(monkeypatch, "transient_inputs_priced")

    def run(fn):
        torch.manual_seed(0)
        root = torch.randn(4, 8, requires_grad=True)
        x = root * 2
        out = fn(x)
        with torch.no_grad():
            x.mul_(3)
        out.sum().backward()
        return root.grad

    compiled = aotgraph.aot_function(torch.relu, partition_fn=aotgraph.min_cut_rematerialization_partition)
    if disabled:
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            run(compiled)
    else:
        torch.testing.assert_close(run(compiled), run(torch.relu))
    (entry,) = compiled.aotgraph_entries.values()
    assert [s.producer == "input" for s in entry.partition.saved] == [disabled]


@pytest.mark.parametrize("disabled", [False, True])
def test_versions_of_graph_writes_switch(disabled, monkeypatch):
    """On: an input the compiled forward writes itself has its version counter bumped."""
    if disabled:
        _disable(monkeypatch, "versions_of_graph_writes")

    def program(buf, x):
        buf.mul_(2)
        return x + 1

    buf = torch.ones(3)
    aotgraph.aot_function(program, "inductor")(buf, torch.zeros(3))
    assert torch.equal(buf, torch.full((3,), 2.0))
    assert (buf._version > 0) != disabled


@pytest.mark.parametrize("disabled", [False, True])
def test_symbolic_aliasing_checked_switch(disabled, monkeypatch, fresh_dynamo):
    """On: a symbolic backend graph writing an input, called with inputs sharing memory, goes to a
    compile for their base (the read sees the write, as eager's); off: the entry runs as compiled."""
    if disabled:
        _disable(monkeypatch, "symbolic_aliasing_checked")

    def program(a, b):
        a.add_(1)
        return b * 2

    compiled = torch.compile(program, backend=aotgraph.backend(compiler="eager"), dynamic=True)
    compiled(torch.zeros(4), torch.zeros(4))
    memory = torch.zeros(6)
    assert torch.equal(compiled(memory, memory.view(6)), torch.full((6,), 0.0 if disabled else 2.0))


@pytest.mark.parametrize("disabled", [False, True])
def test_output_copies_kept_switch(disabled, monkeypatch):
    """On: a returned clone of a value the graph also stacks reaches Inductor as our copy."""
    if disabled:
        _disable(monkeypatch, "output_copies_kept")
    graphs = _graphs_inductor_gets(monkeypatch)

    def program(x):
        v = x - 1
        return v.clone(), torch.stack((v, x))

    aotgraph.aot_function(program, "inductor")(torch.randn(6))
    assert ("aotgraph.materialized.default" in _targets(graphs[:1])) != disabled


@pytest.mark.parametrize("disabled", [False, True])
def test_builds_trace_unseen_switch(disabled, monkeypatch, fresh_dynamo):
    """On: a compiled function called while a background build traces with FX runs; off: Dynamo
    refuses it, as a nested FX trace."""
    import threading
    from types import SimpleNamespace

    from aotgraph.compilers import background_builds

    if disabled:
        _disable(monkeypatch, "builds_trace_unseen")
    compiled = torch.compile(lambda x: x + 1, backend="eager")
    compiled(torch.zeros(2))
    inside, called = threading.Event(), threading.Event()

    class Waits(torch.nn.Module):
        def forward(self, x):
            inside.set()
            called.wait(timeout=30)
            return x

    def build():
        torch.fx.symbolic_trace(Waits())
        return lambda args: None

    member = background_builds.upgradable(lambda args: None, build, SimpleNamespace(kind="inference", graph_id=-44))
    worker = threading.Thread(target=background_builds._build_into, args=(member,))
    worker.start()
    try:
        assert inside.wait(timeout=30)
        if disabled:
            with pytest.raises(RuntimeError, match="symbolically trace a dynamo-optimized function"):
                compiled(torch.zeros(2))
        else:
            compiled(torch.zeros(2))
    finally:
        called.set()
        worker.join()


@pytest.mark.parametrize("disabled", [False, True])
def test_data_assignments_switch(disabled, monkeypatch):
    """On: ``t.data = value`` in the program is seen, so the read after it reads the new value;
    off: the recorder misses it (the old value is read)."""
    if disabled:
        _disable(monkeypatch, "data_assignments")

    def program(x, w):
        w.data = torch.zeros(3)
        return x + w

    w = torch.ones(3)
    out = aotgraph.aot_function(program, "eager")(torch.zeros(3), w)
    assert torch.equal(out, torch.full((3,), 1.0 if disabled else 0.0))
