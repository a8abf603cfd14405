"""A program that draws from Python's ``random`` or numpy's global generator while captured gets
a warning naming it (the drawn values are constants of the graph); torch's draws and programs
that draw nothing get none, and neither does the backend (Dynamo replays such draws itself)."""
import random
import warnings

import numpy as np
import pytest
import torch

import aotgraph


def _warnings_of(run) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return [str(w.message) for w in caught if "aotgraph" in str(w.message)]


@pytest.mark.parametrize("source", ["random", "numpy"])
def test_a_python_random_draw_at_capture_warns_once(source):
    draw = {"random": random.random, "numpy": lambda: float(np.random.rand())}[source]

    def jitter(x):
        return x * (0.5 + draw())

    compiled = aotgraph.aot_function(jitter, "eager")
    messages = _warnings_of(lambda: [compiled(torch.ones(3)) for _ in range(3)])
    assert len(messages) == 1
    assert "jitter" in messages[0] and {"random": "Python's random", "numpy": "numpy.random"}[source] in messages[0]


def test_torch_draws_and_the_backend_do_not_warn():
    compiled = aotgraph.aot_function(lambda x: x * torch.rand(3), "eager")
    assert _warnings_of(lambda: compiled(torch.ones(3))) == []
    backend = torch.compile(lambda x: x * random.random(), backend=aotgraph.backend(compiler="eager"))
    assert _warnings_of(lambda: backend(torch.ones(3))) == []
