"""Graphs upgraded by a background build: a forward and its backward move together, never
between a forward and the backward that reads its saved values; a failed build keeps the
first one. (The C++-wrapper builds themselves need a GPU: tests/compilers/test_cuda_graphs.py
and benchmarks/gpu_train.py.)"""
import logging
import threading
import time
from types import SimpleNamespace

import torch

import aotgraph
from aotgraph import config

from aotgraph.compilers import background_builds
from aotgraph.compilers.background_builds import upgradable, wait_for_background_builds

_ids = iter(range(10**6, 10**7))


def _version(name, calls):
    def run(args):
        calls.append(name)
        return name
    return run


def _pair(build_gate=None, fail=False):
    calls = []
    graph_id = next(_ids)

    def build(name):
        def make():
            if build_gate is not None:
                build_gate.wait()
            if fail:
                raise RuntimeError("no C++ compiler")
            return _version(name, calls)
        return make

    forward = upgradable(_version("python forward", calls), build("C++ forward"), SimpleNamespace(kind="forward", graph_id=graph_id))
    backward = upgradable(_version("python backward", calls), build("C++ backward"),
                          SimpleNamespace(kind="backward", graph_id=graph_id))
    return forward, backward, calls


def test_a_pair_moves_together_at_a_forward_with_no_backward_outstanding():
    gate = threading.Event()
    forward, backward, calls = _pair(gate)
    forward([]); backward([])
    gate.set()
    wait_for_background_builds()
    forward([])  # two forwards before their backwards (gradient accumulation) ...
    backward([])
    assert calls[-2:] == ["C++ forward", "C++ backward"]
    assert forward.aotgraph_wrapper == backward.aotgraph_wrapper == "cpp"


def test_builds_start_after_the_first_full_run_and_an_outstanding_backward_keeps_its_forwards_version():
    forward, backward, calls = _pair()
    forward([])
    wait_for_background_builds()
    assert forward.built is None  # nothing queued before the backward has run
    backward([])
    forward([])
    wait_for_background_builds()
    forward([])   # a backward is still outstanding: no switch yet
    backward([]); backward([])
    assert calls == ["python forward", "python backward", "python forward", "python forward",
                     "python backward", "python backward"]
    forward([]); backward([])
    assert calls[-2:] == ["C++ forward", "C++ backward"]


def test_parts_of_a_graph_compiled_around_regions_each_move_alone():
    """A part (`GraphRole.alone`: a stretch or region of a graph compiled around its regions)
    has no partner: its build is queued after its own first call, and it switches at its next
    call, a backward part included (no forward of its own to switch it)."""
    calls = []
    forward_part, backward_part = (
        upgradable(_version(f"python {kind}", calls), lambda kind=kind: _version(f"C++ {kind}", calls),
                   SimpleNamespace(kind=kind, graph_id=next(_ids), alone=True)) for kind in ("forward", "backward"))
    forward_part([]); backward_part([])
    wait_for_background_builds()
    forward_part([]); backward_part([])
    assert calls == ["python forward", "python backward", "C++ forward", "C++ backward"]
    assert forward_part.aotgraph_wrapper == backward_part.aotgraph_wrapper == "cpp"


def test_when_all_built_waits_for_every_graph():
    forward, backward, _ = _pair()
    ready = []
    assert not background_builds.when_all_built([lambda args: None], lambda: ready.append("never"))
    assert background_builds.when_all_built([forward, backward, lambda args: None], lambda: ready.append("all"))
    forward([]); backward([])
    assert ready == []
    wait_for_background_builds()
    assert ready == ["all"]


def test_a_failed_build_keeps_the_first_version_and_warns(caplog):
    forward, backward, calls = _pair(fail=True)
    forward([]); backward([])
    with caplog.at_level(logging.WARNING, logger="aotgraph"):
        wait_for_background_builds()
    forward([]); backward([])
    assert calls == ["python forward", "python backward"] * 2
    assert "stays on Inductor's Python wrapper" in caplog.text


def test_builds_take_turns_with_foreground_compiles():
    forward, backward, calls = _pair()
    with background_builds.compile_lock:
        forward([]); backward([])
        time.sleep(0.3)  # time enough for the worker to build, were it not waiting
        assert forward.built is None
    wait_for_background_builds()
    assert forward.built is not None and backward.built is not None


def test_a_foreground_compile_goes_ahead_of_queued_builds(monkeypatch):
    """A recompile the program waits on (a new input shape) waits at most for the build under
    way, not for every queued one."""
    monkeypatch.setattr(config, "disabled", config.disabled | {"builds_when_hot"})
    events, gate, building = [], threading.Event(), threading.Event()
    graph_id = next(_ids)

    def build(name, wait=False):
        def make():
            if wait:
                building.set()
                gate.wait()
            events.append(name)
            return _version(name, [])
        return make

    forward = upgradable(_version("python forward", []), build("build forward", wait=True),
                         SimpleNamespace(kind="forward", graph_id=graph_id))
    backward = upgradable(_version("python backward", []), build("build backward"),
                          SimpleNamespace(kind="backward", graph_id=graph_id))
    forward([]); backward([])  # queues both builds; the first waits on the gate, holding compile_lock

    def recompile():
        with background_builds.foreground_compile():
            events.append("foreground compile")

    assert building.wait(timeout=30)  # the worker is inside the first build
    foreground = threading.Thread(target=recompile)
    foreground.start()
    time.sleep(0.2)  # the recompile is waiting for the build under way
    gate.set()
    foreground.join(timeout=30)
    wait_for_background_builds()
    assert events == ["build forward", "foreground compile", "build backward"]


def test_a_recompile_runs_while_a_build_compiles_its_cpp_and_sees_the_process_settings(monkeypatch):
    """A background C++-wrapper build lets go of compile_lock while its C++ compiler runs; a
    compile the program waits on runs meanwhile, with the process's Inductor settings (Python
    wrapper), not the build's patched-in ones, and both compiled graphs compute what eager does.
    Real Inductor on the CPU, whose C++ wrapper needs a C++ compiler. (Torch 2.13 keeps
    Inductor's config patches per thread, so there the settings would be right even without
    aotgraph's record of the process's values; torch 2.11 shares them between threads.)"""
    import contextlib

    import torch
    from torch.fx.experimental.proxy_tensor import make_fx

    from aotgraph.compilers import GraphRole, torchinductor

    # Inductor skips the C++ compiler for code it built before: a constant of this run's own.
    offset = 1 + time.time_ns() % 1000 / 1000
    # (and with an empty Inductor cache its first C++ compiles probe the CPU's vector ISA: done here,
    # so that the worker's first compiler call is its build's)
    from torch._inductor import cpu_vec_isa

    cpu_vec_isa.pick_vec_isa()
    torchinductor.release_lock_during_cpp_builds()
    process_store_cubin = torch._inductor.config.triton.store_cubin
    inside_cpp, foreground_done, seen = threading.Event(), threading.Event(), []
    real_release, real_compile = background_builds.lock_released_on_worker, torchinductor._compile_fx_inner

    @contextlib.contextmanager
    def release_and_wait_for_the_foreground():
        with real_release():
            if threading.current_thread().name == background_builds._WORKER_NAME and not inside_cpp.is_set():
                inside_cpp.set()
                seen.append(("foreground compiled meanwhile", foreground_done.wait(timeout=600)))
            yield

    def compile_recording_settings(*args, **kwargs):
        config = torch._inductor.config  # store_cubin: one of the settings a C++-wrapped compile patches in
        seen.append((threading.current_thread().name, config.cpp_wrapper, config.triton.store_cubin))
        return real_compile(*args, **kwargs)

    monkeypatch.setattr(background_builds, "lock_released_on_worker", release_and_wait_for_the_foreground)
    monkeypatch.setattr(torchinductor, "_compile_fx_inner", compile_recording_settings)

    def graph(program):
        module = make_fx(program, tracing_mode="fake")(torch.empty(16))
        return module, [n.meta["val"] for n in module.graph.find_nodes(op="placeholder")]

    def compiled(program, cpp_wrapper):
        module, example = graph(program)
        role = GraphRole("inference", 1, next(_ids))
        return torchinductor._compiled(module, example, role, example[0].fake_mode, {}, cpp_wrapper=cpp_wrapper)

    built = {}
    worker = threading.Thread(target=lambda: built.update(cpp=compiled(lambda x: (torch.sin(x) * 2 + offset,), True)),
                              name=background_builds._WORKER_NAME)
    worker.start()
    assert inside_cpp.wait(timeout=600), "the build never reached its C++ compiler"
    foreground = compiled(lambda x: (torch.cos(x) - 3,), False)
    foreground_done.set()
    worker.join(timeout=600)
    assert seen == [(background_builds._WORKER_NAME, True, True), ("MainThread", False, process_store_cubin),
                    ("foreground compiled meanwhile", True)]
    assert (torch._inductor.config.cpp_wrapper, torch._inductor.config.triton.store_cubin) == (False, process_store_cubin)
    x = torch.randn(16)
    torch.testing.assert_close(built["cpp"]([x.clone()])[0], torch.sin(x) * 2 + offset)
    torch.testing.assert_close(foreground([x.clone()])[0], torch.cos(x) - 3)


def _rng_touching_build(started):
    """A build that uses the RNG as Inductor's compile does: it saves the states and puts them
    back when it ends, draws autotuning inputs, and lets go of compile_lock while its C++
    compiler runs."""
    from torch._dynamo import testing, utils

    def build():
        with utils.preserve_rng_state():
            testing.rand_strided((4, 4), (4, 1))
            started.set()
            with background_builds.lock_released_on_worker():
                time.sleep(0.3)
        return _version("C++", [])
    return build


def test_a_build_leaves_the_programs_random_stream_alone(monkeypatch):
    """The program draws while a build runs (here inside a capture, and in the compiled
    function's run after it): eager's values, as if no build ran. Restored by the build, the
    RNG went back under the capture's markers (it refused the program) or rewound the run's draws."""
    monkeypatch.setattr(config, "disabled", config.disabled | {"builds_when_hot"})
    started = threading.Event()
    graph = upgradable(_version("python", []), _rng_touching_build(started),
                       SimpleNamespace(kind="inference", graph_id=next(_ids)))
    graph([])  # queues the build

    def program(x):
        time.sleep(0.6)  # the build ends while this is being captured ...
        return x * torch.rand_like(x)  # ... before this draw

    assert started.wait(timeout=30)
    torch.manual_seed(0)
    x = torch.randn(4)
    out = aotgraph.aot_function(program, "eager")(x)
    after = torch.rand(2)
    wait_for_background_builds()
    torch.manual_seed(0)
    x = torch.randn(4)
    torch.testing.assert_close(out, x * torch.rand_like(x))
    torch.testing.assert_close(after, torch.rand(2))


def test_a_build_starts_once_its_graph_is_hot_and_a_compile_starts_the_count_again(monkeypatch):
    """Hot: no compile for QUIET_S, HOT_CALLS calls since, the last one lately. A graph called
    once and left (a shape seen once) is never built, but when the program waits for builds."""
    monkeypatch.setattr(background_builds, "QUIET_S", 0.2)
    monkeypatch.setattr(background_builds, "HOT_CALLS", 3)
    built = []

    def graph(name):
        def build():
            built.append(name)
            return _version(name, [])
        return upgradable(_version("python", []), build, SimpleNamespace(kind="inference", graph_id=next(_ids)))

    cold, hot = graph("cold"), graph("hot")
    cold([])  # called once: its build is queued, and waits
    hot([]); hot([])
    with background_builds.foreground_compile():  # a compile: the calls before it do not count
        pass
    hot([]); hot([])
    time.sleep(0.6)
    assert built == []  # two calls since the compile
    deadline = time.monotonic() + 10
    while not built and time.monotonic() < deadline:
        hot([])
        time.sleep(0.05)
    assert built == ["hot"]
    wait_for_background_builds()
    assert built == ["hot", "cold"]


def test_builds_made_elsewhere_run_side_by_side_and_leave_the_switch_interval_alone(monkeypatch):
    import sys

    monkeypatch.setattr(config, "disabled", config.disabled | {"builds_when_hot"})
    both_started = threading.Barrier(2, timeout=5)
    intervals = []

    def build(name):
        def make():
            intervals.append(sys.getswitchinterval())
            with background_builds.lock_released_on_worker():  # as a build waiting on its worker
                both_started.wait()  # each build waits for the other: they must run at once
            return _version(name, [])
        return make

    graphs = [upgradable(_version("python", []), build(f"C++ {k}"), SimpleNamespace(kind="inference", graph_id=next(_ids)),
                         elsewhere=True) for k in range(2)]
    for graph in graphs:
        graph([])
    wait_for_background_builds()
    assert [graph.aotgraph_wrapper for graph in graphs] == ["cpp", "cpp"]
    assert intervals == [sys.getswitchinterval()] * 2


def _tracing_build(inside: threading.Event, called: threading.Event):
    """A build that symbolically traces with FX (as Inductor's pattern matcher does, through
    make_fx) and waits there until the program's thread has called a compiled function."""
    class Waits(torch.nn.Module):
        def forward(self, x):
            inside.set()
            called.wait(timeout=30)
            return x * 2

    def build():
        torch.fx.symbolic_trace(Waits())
        return _version("C++", [])
    return build


def test_compiled_functions_run_while_a_build_traces_with_fx(fresh_dynamo):
    """FX's "symbolic tracing under way" flag is one for the process: a torch.compile'd function
    the program calls while a build traces runs as compiled, and Dynamo does not refuse it as
    "using FX to symbolically trace a dynamo-optimized function"."""
    compiled = torch.compile(lambda x: x + 1, backend="eager")
    compiled(torch.zeros(2))
    inside, called = threading.Event(), threading.Event()
    member = upgradable(_version("python", []), _tracing_build(inside, called),
                        SimpleNamespace(kind="inference", graph_id=next(_ids)))
    worker = threading.Thread(target=background_builds._build_into, args=(member,))
    worker.start()
    try:
        assert inside.wait(timeout=30)
        assert torch.equal(compiled(torch.zeros(2)), torch.ones(2))
    finally:
        called.set()
        worker.join()
    assert member.built is not None
    assert not torch._dynamo.config.force_compile_during_fx_trace  # set back after the build


_EXITS_DURING_A_BUILD = """
import time
from types import SimpleNamespace
from aotgraph.compilers import background_builds

def build():
    time.sleep(1.0)
    print("built", flush=True)
    return lambda args: None

graph = background_builds.upgradable(lambda args: None, build, SimpleNamespace(kind="inference", graph_id=1))
graph([])  # its first run queues the build; not waiting until hot (AOTGRAPH_DISABLE=builds_when_hot)
time.sleep(0.3)
print("exiting", flush=True)
"""


def test_a_process_exiting_during_a_build_waits_for_it():
    """A daemon thread still inside Inductor when the interpreter finalizes aborts the process
    (exit status 134 on the GPU): the exit waits for the build under way instead."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, AOTGRAPH_DISABLE="builds_when_hot",
               PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(aotgraph.__path__[0]), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", _EXITS_DURING_A_BUILD], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["exiting", "built"]
