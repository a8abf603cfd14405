"""Inductor's C++ wrapper (kernels launched from C++): on by default for CUDA graphs, asked
for or refused through ``options``, and a fallback to the Python wrapper where its C++ build
fails. Parity with eager as in test_inductor.py; models are tiny (the C++ build takes seconds)."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import torch

import aotgraph
from aotgraph.compilers import torchinductor
from aotgraph.errors import BadArgument
from backend_training import assert_training_parity
from test_inductor import SCALE, tiny_steps

pytestmark = pytest.mark.usefixtures("fresh_dynamo")


def wrappers(backend) -> list:
    return [getattr(entry.compiled.forward, "aotgraph_wrapper", "python") for entry in backend.entries]


def test_cpp_wrapper_asked_for_on_the_cpu_trains_at_parity():
    model, inputs = tiny_steps("mlp", steps=2)
    backend = aotgraph.backend(compiler="inductor", options={"cpp_wrapper": True})
    assert_training_parity(model, inputs, lambda m: torch.compile(m, backend=backend, dynamic=False), scale=SCALE)
    assert backend.entries
    assert all("C++" in entry.log.format() for entry in backend.entries)


# Torch's config modules are patched with their own `patch`, never with monkeypatch: its undo
# deletes what it set, and a deleted setting stays hidden for the rest of the process.
@torch._inductor.config.patch(cpp_wrapper=False)  # as without TORCHINDUCTOR_CPP_WRAPPER=1
def test_cpu_graphs_keep_the_python_wrapper_by_default():
    model, inputs = tiny_steps("mlp", steps=1)
    backend = aotgraph.backend(compiler="inductor")
    assert_training_parity(model, inputs, lambda m: torch.compile(m, backend=backend, dynamic=False), scale=SCALE)
    assert wrappers(backend) == ["python"]


@torch._inductor.config.patch(cpp_wrapper=False)  # not asked for
def test_a_failed_cpp_build_falls_back_to_the_python_wrapper_with_a_warning(monkeypatch, caplog):
    real = torchinductor._compiled

    def cpp_build_fails(*args, cpp_wrapper):
        if cpp_wrapper:
            raise RuntimeError("C++ compile failed (simulated)")
        return real(*args, cpp_wrapper=cpp_wrapper)

    monkeypatch.setattr(torchinductor, "_cpp_wrapper_by_default", lambda devices: True)
    monkeypatch.setattr(torchinductor, "_compiled", cpp_build_fails)
    model, inputs = tiny_steps("mlp", steps=2)
    backend = aotgraph.backend(compiler="inductor")
    with caplog.at_level(logging.WARNING, logger="aotgraph"):
        assert_training_parity(model, inputs, lambda m: torch.compile(m, backend=backend, dynamic=False),
                               scale=SCALE)
    assert wrappers(backend) == ["python"]
    warned = [r.getMessage() for r in caplog.records if "C++ wrapper failed" in r.getMessage()]
    assert len(warned) == 2 and "simulated" in warned[0]  # forward and backward


def test_a_failed_cpp_build_that_was_asked_for_is_an_error(monkeypatch):
    def cpp_build_fails(*args, cpp_wrapper):
        raise RuntimeError("C++ compile failed (simulated)")

    monkeypatch.setattr(torchinductor, "_compiled", cpp_build_fails)
    x = torch.randn(3, 4, requires_grad=True)
    compiled = aotgraph.aot_function(lambda x: x.sin().sum(), aotgraph.compilers.InductorCompiler({"cpp_wrapper": True}))
    with pytest.raises(Exception, match="simulated"):
        compiled(x)


def test_options_are_inductor_settings_only():
    with pytest.raises(BadArgument, match="compiler='inductor'"):
        aotgraph.backend(compiler="eager", options={"cpp_wrapper": True})
    with pytest.raises(BadArgument, match="dict"):
        aotgraph.backend(options=["cpp_wrapper"])
    with pytest.raises(BadArgument, match="cpp_wraper"):
        aotgraph.backend(options={"cpp_wraper": False})
    aotgraph.backend(options={"triton.cudagraphs": False, "cpp_wrapper": False})


# A fresh process: the first backward runs on autograd's CUDA thread before anything there has
# used the device, which the C++ wrapper's driver-API launches cannot do without a context.
# In the background (the default), the first steps run on the Python wrapper and a later forward
# moves the pair to the C++ builds once they are ready; in the foreground, the first step is C++.
_FRESH_CUDA_SCRIPT = """
import copy, sys, torch, aotgraph
from aotgraph.compilers.background_builds import wait_for_background_builds
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 8)).cuda()
eager = copy.deepcopy(model)
backend = aotgraph.backend()
compiled = torch.compile(model, backend=backend, dynamic=False)
steps = int(sys.argv[1])
for step in range(steps):
    x = torch.randn(32, 64, device="cuda")
    compiled(x).square().mean().backward()
    eager(x).square().mean().backward()
    wait_for_background_builds()
error = max((a.grad - b.grad).abs().max().item() for a, b in zip(model.parameters(), eager.parameters()))
print([getattr(e.compiled.forward, "aotgraph_wrapper", "python") for e in backend.entries], error)
"""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("builds", ["foreground", "background"])
def test_cuda_graphs_get_the_cpp_wrapper_and_train_in_a_fresh_process(builds):
    env = dict(os.environ)
    if builds == "foreground":
        env["AOTGRAPH_DISABLE"] = ",".join(filter(None, [env.get("AOTGRAPH_DISABLE"), "cpp_wrapper_in_background"]))
    steps = "1" if builds == "foreground" else "3"  # the builds of a hot pair, then a step on them
    result = subprocess.run([sys.executable, "-c", _FRESH_CUDA_SCRIPT, steps], capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    wrapper, error = result.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert wrapper == "['cpp']" and float(error) < 1e-4, result.stdout
