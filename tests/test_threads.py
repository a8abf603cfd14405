"""Compiled functions and modules called from several threads at once: one compile for racing
first calls of one signature, and no thread reads another's capture's fake parameters (a
capture swaps them into the module; a racing capture could put fakes back as the originals,
leaving the user's model broken for good)."""
import threading

import pytest
import torch
import torch.nn as nn

import aotgraph


def _in_threads(target, args_list, timeout=120.0):
    """Run `target(*args)` for each args in `args_list`, each in its own thread, all started at
    once (a barrier); the exceptions raised, as strings."""
    barrier = threading.Barrier(len(args_list))
    errors = []

    def run(*args):
        try:
            barrier.wait()
            target(*args)
        except Exception as error:  # noqa: BLE001 - reported by the test
            errors.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=run, args=args) for args in args_list]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return errors


def test_racing_first_calls_of_a_function_compile_once():
    compiled = aotgraph.aot_function(lambda x, w: (x @ w).tanh().sum(1), "eager")
    w = torch.randn(8, 4)
    xs = [torch.randn(3, 8) for _ in range(4)]
    results = {}
    assert _in_threads(lambda k: results.__setitem__(k, compiled(xs[k], w)), [(k,) for k in range(4)]) == []
    assert len(compiled.aotgraph_entries) == 1
    for k, x in enumerate(xs):
        torch.testing.assert_close(results[k], (x @ w).tanh().sum(1))


@pytest.mark.parametrize("grad", [False, True])
def test_a_module_called_from_threads_while_it_compiles_keeps_its_parameters(grad):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 8))
    compiled = aotgraph.aot_module(model, "eager")
    xs = [torch.randn(b, 16) for b in (4, 4, 5, 6)]  # two racing first calls, two new sizes
    outs = {}

    def call(k):
        with torch.set_grad_enabled(grad):
            outs[k] = compiled(xs[k])

    assert _in_threads(call, [(k,) for k in range(4)]) == []
    assert {type(p) for p in model.parameters()} == {nn.Parameter}
    with torch.no_grad():
        for k, x in enumerate(xs):
            torch.testing.assert_close(outs[k], model(x))
