"""Inductor compiles in worker processes (`compilers/compile_workers.py`), on the CPU with the
switches ``compiles_in_workers`` and ``compiles_in_workers_on_cpu`` (the first alone sends CUDA
graphs only): results equal to eager's, a forward in the worker while its backward compiles here,
the graphs that stay in this process, a job that fails in its worker compiled here with a
warning, the layout promise, and a clean exit."""
from __future__ import annotations

import copy
import logging
from types import SimpleNamespace

import pytest
import torch

import aotgraph
from aotgraph import config
from aotgraph.compilers import compile_workers

pytestmark = pytest.mark.usefixtures("fresh_dynamo")


@pytest.fixture(scope="module", autouse=True)
def workers_stopped_after_this_module():
    yield
    compile_workers.shutdown()  # graphs of later tests (fake CUDA tensors) would be sent to them


@pytest.fixture
def workers(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "opted_in", config.opted_in | {"compiles_in_workers", "compiles_in_workers_on_cpu"})
    monkeypatch.setattr(config, "disk_cache", "0")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    if not compile_workers.wait_until_ready(timeout_s=180):
        pytest.fail("no compile worker started")


def block() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(12, 24), torch.nn.GELU(), torch.nn.LayerNorm(24),
                               torch.nn.Linear(24, 24), torch.nn.Tanh(), torch.nn.Linear(24, 3))


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Within 1e-4 of the largest magnitude: Inductor fuses and reorders float arithmetic (the
    same model compiled in this process differs from eager as much)."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    error = (actual - expected).abs().max().item()
    assert error <= 1e-4 * expected.abs().max().item() + 1e-6, error


def train_against_eager(model: torch.nn.Module, compiled, steps: int = 3, batch=lambda: torch.randn(6, 12)) -> None:
    """`steps` SGD steps of `compiled` (over `model`) and of an eager copy on the same batches:
    outputs and gradients within `assert_close`."""
    reference = copy.deepcopy(model)
    opt, ref_opt = (torch.optim.SGD(m.parameters(), lr=0.1) for m in (model, reference))
    for step in range(steps):
        x = batch()
        out, expected = compiled(x), reference(x)
        assert_close(out, expected)
        out.square().sum().backward()
        expected.square().sum().backward()
        for p, q in zip(model.parameters(), reference.parameters()):
            assert_close(p.grad, q.grad)
        for o in (opt, ref_opt):
            o.step()
            o.zero_grad()


def last_entry(compiled):
    return list(compiled.aotgraph_entries.values())[-1]


def entry_graphs(compiled) -> tuple:
    entry = last_entry(compiled)
    return entry.compiled.forward, entry.compiled.backward


def test_a_forward_compiled_in_a_worker_beside_its_backward_equals_eager(workers):
    model = block()
    compiled = aotgraph.aot_module(model, "inductor")
    train_against_eager(model, compiled)
    forward, backward = entry_graphs(compiled)
    # The forward compiled in a worker, keeping every output's traced strides, while its backward
    # compiled here for them.
    assert isinstance(forward, compile_workers.PendingCode) and not isinstance(backward, compile_workers.PendingCode)
    assert forward.role.num_user_outputs == len(last_entry(compiled).partition.forward.graph.find_nodes(
        op="output")[0].args[0])
    assert compile_workers.outstanding() == 0


def test_symbolic_sizes_compile_here(workers):
    model = block()
    compiled = aotgraph.aot_module(model, "inductor", dynamic=True)
    train_against_eager(model, compiled, steps=2)
    forward, backward = entry_graphs(compiled)
    assert not isinstance(forward, compile_workers.PendingCode)
    assert not isinstance(backward, compile_workers.PendingCode)


def test_a_job_that_fails_in_its_worker_compiles_here(workers, monkeypatch, caplog):
    message = compile_workers._message

    def broken(graph_module, example_inputs, role, options):
        import pickle

        sent = pickle.loads(message(graph_module, example_inputs, role, options))
        sent["graph"] = b"not a pickled graph"
        return pickle.dumps(sent)

    monkeypatch.setattr(compile_workers, "_message", broken)
    model = block()
    compiled = aotgraph.aot_module(model, "inductor")
    with caplog.at_level(logging.WARNING, logger="aotgraph"):
        train_against_eager(model, compiled, steps=2)
    assert "did not compile the forward graph" in caplog.text


def test_a_graph_the_pickler_refuses_compiles_here(workers, monkeypatch):
    def refused(*args):
        raise TypeError("cannot pickle this")

    monkeypatch.setattr(compile_workers, "_message", refused)
    model = block()
    compiled = aotgraph.aot_module(model, "inductor")
    train_against_eager(model, compiled, steps=1)
    assert not isinstance(entry_graphs(compiled)[0], compile_workers.PendingCode)


def test_views_among_the_fakes_are_sent_as_layouts(workers):
    def program(x, w):
        y = (x @ w).t()  # a view saved for the backward
        return y.sin() * y.transpose(0, 1)[1:3].sum()

    x, w = torch.randn(5, 4, requires_grad=True), torch.randn(4, 6, requires_grad=True)
    compiled = aotgraph.aot_function(program, "inductor")
    out = compiled(x, w)
    assert isinstance(entry_graphs(compiled)[0], compile_workers.PendingCode)
    expected = program(x, w)
    torch.testing.assert_close(out, expected)
    grads = torch.autograd.grad(out.sum(), (x, w))
    torch.testing.assert_close(grads, torch.autograd.grad(expected.sum(), (x, w)))


class Stack(torch.nn.Module):
    """Three blocks of one structure: found as a region, compiled apart (regions_compiled_apart),
    the stretches between its calls compiled as graphs of their own."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.inp = torch.nn.Linear(12, 16)
        self.blocks = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.LayerNorm(16), torch.nn.Linear(16, 16), torch.nn.GELU()) for _ in range(3))
        self.out = torch.nn.Linear(16, 3)

    def forward(self, x):
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


def test_regions_and_stretches_compiled_in_workers_equal_eager(workers):
    model = Stack()
    compiled = aotgraph.aot_module(model, "inductor")
    train_against_eager(model, compiled)
    entry = last_entry(compiled)
    assert [use.occurrences for use in entry.joint.regions] == [3]
    steps = entry.compiled.forward.aotgraph_steps.steps
    assert any(isinstance(step.code, compile_workers.PendingCode) for step in steps)


def test_backend_graphs_compiled_in_workers_equal_eager(workers):
    model = Stack()
    compiled = torch.compile(model, backend=aotgraph.backend(compiler="inductor"))
    train_against_eager(model, compiled)


def test_a_cpp_wrapper_build_in_a_worker_equals_eager(workers):
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.proxy_tensor import make_fx

    from aotgraph.compilers import GraphRole

    def program(x, w):
        return (torch.tanh(x @ w) * 2 + x[:, :1],)

    x, w = torch.randn(7, 5), torch.randn(5, 5)
    with FakeTensorMode() as mode:
        fakes = [mode.from_tensor(x), mode.from_tensor(w)]
        graph_module = make_fx(program)(*fakes)
    role = GraphRole("inference", 1, 10**6)
    like = SimpleNamespace(role=role, promise=compile_workers.LayoutPromise.of(graph_module, role))
    built = compile_workers.built_in_worker(graph_module, fakes, like, {}, set())
    assert built is not None
    assert_close(built([x, w])[0], program(x, w)[0])


def test_convolution_activations_train_like_eager_through_the_backend(workers):
    # On the CPU, Inductor's convolution kernels may return activations channels-last where the
    # graph asks for the traced strides (`LayoutPromise`); the backward reads the traced layout.
    from aotgraph import models

    torch.manual_seed(0)
    model, (x,) = models.resnet(blocks=2, width=4, batch=2, size=8)
    backend = aotgraph.backend(compiler="inductor")
    train_against_eager(model, torch.compile(model, backend=backend, dynamic=False), steps=2, batch=lambda: x)
    assert isinstance(backend.entries[-1].compiled.forward, compile_workers.PendingCode)


def test_a_layout_promise_copies_saved_values_laid_out_otherwise(caplog):
    from torch.fx.experimental.proxy_tensor import make_fx

    from aotgraph.compilers import GraphRole

    def forward(x):
        return x.sum(), x * 2, x * 3  # the user's output, then two saved values

    x = torch.randn(2, 3, 4, 5)
    graph_module = make_fx(forward)(x)
    promise = compile_workers.LayoutPromise.of(graph_module, GraphRole("forward", 1, 10**6))
    assert promise.role.num_user_outputs == 3 and promise.saved == {1, 2}

    def code(args):  # a compiled forward that lays its first saved value out channels-last
        a = args[0]
        return [a.sum(), (a * 2).contiguous(memory_format=torch.channels_last), a * 3]

    with caplog.at_level(logging.INFO, logger="aotgraph"):
        kept = promise.kept(code, [(), (60, 1, 15, 3), (60, 20, 5, 1)])
    assert "copied into the traced layout" in caplog.text
    outputs = kept([x])
    assert [o.stride() for o in outputs[1:]] == [x.stride(), x.stride()]
    for got, expected in zip(outputs, forward(x)):
        assert torch.equal(got, expected)
    assert promise.kept(code, [(), (60, 20, 5, 1), (60, 20, 5, 1)]) is code  # kept as traced: no copies


EXITING_PROGRAM = """
import torch, aotgraph
from aotgraph.compilers import compile_workers
assert compile_workers.wait_until_ready(180)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
compiled = torch.compile(model, backend=aotgraph.backend(compiler="inductor"))
compiled(torch.randn(4, 8)).sum().backward()
print("stepped", flush=True)
"""


def test_a_process_with_workers_exits_cleanly(tmp_path):
    # A GPU run aborted at exit once ("terminate called ..."): the workers and this process's
    # threads of theirs must be done before the interpreter finalizes.
    import os
    import subprocess
    import sys

    env = dict(os.environ, AOTGRAPH_ENABLE="compiles_in_workers,compiles_in_workers_on_cpu", AOTGRAPH_CACHE="0",
               TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"), PYTHONFAULTHANDLER="1")
    done = subprocess.run([sys.executable, "-c", EXITING_PROGRAM], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "stepped" in done.stdout
    assert "terminate called" not in done.stderr and "Fatal Python error" not in done.stderr


def test_a_build_whose_worker_stopped_at_exit_is_not_made_here(monkeypatch):
    # What aborted a GPU run at exit: a background C++ build whose worker had been stopped was
    # compiled in this process instead, on a thread the exiting interpreter then killed.
    from concurrent.futures import Future

    from aotgraph.compilers import GraphRole, background_builds, torchinductor
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    compiles = []
    monkeypatch.setattr(torchinductor, "_compiled", lambda *args, cpp_wrapper: compiles.append(cpp_wrapper))

    def submitted(graph_module, example_inputs, role, options, devices, compile_here):
        answered = Future()
        answered.set_result(("stopping",))
        return compile_workers.PendingCode(answered, role, lambda: (None, []),
                                           compile_workers.LayoutPromise.of(graph_module, role))

    monkeypatch.setattr(compile_workers, "submitted", submitted)
    monkeypatch.setattr(compile_workers, "built_in_worker", lambda *args: None)
    mode = FakeTensorMode()
    x = FakeTensor(mode, torch.empty(4, device="meta"), torch.device("cuda"))
    graph_module = torch.fx.symbolic_trace(lambda x: (x * 2,))
    for node in graph_module.graph.nodes:
        node.meta["val"] = x
    graph = torchinductor.compile_with_inductor(graph_module, [x], GraphRole("inference", 1, 10**6 + 7))
    assert isinstance(graph, background_builds._Upgradable) and graph.elsewhere
    monkeypatch.setattr(compile_workers, "_stopping", True)
    with pytest.raises(compile_workers.WorkersStopped):
        graph.build()
    assert compiles == []
    monkeypatch.setattr(compile_workers, "_stopping", False)
    graph.build()  # not exiting: built here where the worker could not
    assert compiles == [True]
