"""The disk cache and background C++-wrapper builds (compilers/background_builds.py): an
entry first stored with its Python-wrapper graphs is stored again once its C++ builds are
ready, and a warm start loads those, builds nothing, and matches eager. On the GPU the
builds are Inductor's CUDA C++ wrapper; here the same path runs on the CPU's C++ wrapper,
the upgrade forced by wrapping Inductor's compile."""
import pytest
import torch

import aotgraph
from aotgraph.compilers import background_builds, torchinductor


def _program(x, w):
    return torch.tanh(x @ w).sum(dim=1)


def _run(compiled, x, w):
    out = compiled(x, w)
    return out, torch.autograd.grad(out.sum(), (x, w))


@pytest.fixture
def upgraded_on_cpu(monkeypatch):
    """Inductor's graphs start on the Python wrapper and move to the C++ one built in the
    background, as on a GPU (where `compile_with_inductor` does this itself)."""
    compile_with_inductor = torchinductor.compile_with_inductor

    def upgradable(graph_module, example_inputs, role, options=None):
        python = compile_with_inductor(graph_module, example_inputs, role, {**(options or {}), "cpp_wrapper": False})
        return background_builds.upgradable(
            python, lambda: compile_with_inductor(graph_module, example_inputs, role, {"cpp_wrapper": True}), role)

    monkeypatch.setattr(torchinductor, "compile_with_inductor", upgradable)
    return monkeypatch


def test_the_cpp_builds_are_stored_when_ready_and_a_warm_start_loads_them(upgraded_on_cpu):
    torch.manual_seed(0)
    x, w = torch.randn(4, 8, requires_grad=True), torch.randn(8, 3, requires_grad=True)
    expected = _run(_program, x, w)
    cold = aotgraph.aot_function(_program, "inductor", cache=True)
    torch.testing.assert_close(_run(cold, x, w), expected)
    (entry,) = cold.aotgraph_entries.values()
    assert [r.detail for r in entry.log.records if r.stage == "cache store"] == [
        "stored (again when its background builds are ready)"]
    background_builds.wait_for_background_builds()
    assert entry.compiled.forward.aotgraph_wrapper == entry.compiled.backward.aotgraph_wrapper == "cpp"

    _assert_warm_start_loads_cpp_builds(upgraded_on_cpu, x, w, expected)


def _no_compile(*args, **kwargs):
    raise AssertionError("a warm start compiled a graph")


def _assert_warm_start_loads_cpp_builds(monkeypatch, x, w, expected) -> None:
    """A warm start of `_program` compiles nothing (a compile would fail the test), loads its
    entry ("hit") with the C++-wrapper builds, and matches eager."""
    monkeypatch.setattr(torchinductor, "compile_with_inductor", _no_compile)
    warm = aotgraph.aot_function(_program, "inductor", cache=True)
    torch.testing.assert_close(_run(warm, x, w), expected)
    loaded, loads = _loaded(warm)
    assert loads == ["hit"]
    assert loaded.compiled.forward.aotgraph_wrapper == loaded.compiled.backward.aotgraph_wrapper == "cpp"


def _loaded(compiled) -> tuple:
    """(the one entry of `compiled`, the details of its "cache load" stage)."""
    (entry,) = compiled.aotgraph_entries.values()
    return entry, [r.detail for r in entry.log.records if r.stage == "cache load"]


def test_an_entry_stored_before_its_cpp_builds_were_ready_is_built_at_a_warm_start(monkeypatch):
    """A process that ended before its C++ builds were ready left its Python-wrapper graphs on
    disk. The next start runs those at once, builds the C++ ones in the background, moves to
    them, and stores them: the start after that loads the C++ builds and compiles nothing."""
    compile_with_inductor = torchinductor.compile_with_inductor
    cpp_compiles = []

    def python_only(graph_module, example_inputs, role, options=None):  # a cold start cut short
        python = compile_with_inductor(graph_module, example_inputs, role, {**(options or {}), "cpp_wrapper": False})
        python.aotgraph_wrapper = "python, C++ building"
        return python

    def cpp_only(graph_module, example_inputs, role, options=None):
        assert (options or {}).get("cpp_wrapper") is True, "a warm start compiled a Python-wrapper graph"
        cpp_compiles.append(role.kind)
        return compile_with_inductor(graph_module, example_inputs, role, options)

    torch.manual_seed(0)
    x, w = torch.randn(4, 8, requires_grad=True), torch.randn(8, 3, requires_grad=True)
    expected = _run(_program, x, w)
    monkeypatch.setattr(torchinductor, "compile_with_inductor", python_only)
    torch.testing.assert_close(_run(aotgraph.aot_function(_program, "inductor", cache=True), x, w), expected)

    monkeypatch.setattr(torchinductor, "compile_with_inductor", cpp_only)
    warm = aotgraph.aot_function(_program, "inductor", cache=True)
    torch.testing.assert_close(_run(warm, x, w), expected)
    loaded, loads = _loaded(warm)
    assert loads == ["hit (its C++ builds made in the background)"]
    assert loaded.compiled.forward.aotgraph_wrapper == "python, C++ building" and cpp_compiles == []
    background_builds.wait_for_background_builds()
    assert sorted(cpp_compiles) == ["backward", "forward"]
    torch.testing.assert_close(_run(warm, x, w), expected)  # its forward moves to the C++ builds here
    assert loaded.compiled.forward.aotgraph_wrapper == loaded.compiled.backward.aotgraph_wrapper == "cpp"

    _assert_warm_start_loads_cpp_builds(monkeypatch, x, w, expected)
