"""mode="reduce-overhead": forward and backward recorded as CUDA graphs (Inductor's cudagraph
trees), compared with eager over several training steps: parameters, buffers that the
program mutates, random draws, outputs the user keeps, a recompile for new shapes. On the
CPU the mode is accepted and the graphs run as compiled (nothing to record)."""
import copy

import pytest
import torch
import torch.nn as nn
from torch._dynamo.utils import counters

import aotgraph
from aotgraph.errors import BadArgument

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")


def _train(model, inputs_per_step, compiled=None, lr=0.1):
    run = model if compiled is None else compiled
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for inputs in inputs_per_step:
        loss = run(*inputs)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach().clone())
    return torch.stack(losses)


class ConvBatchNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))

    def forward(self, x, y):
        return nn.functional.cross_entropy(self.body(x), y)


class MlpWithDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Dropout(0.3), nn.Linear(32, 1))

    def forward(self, x):
        return self.body(x).square().mean()


def _compare_training(make_model, make_inputs, device, steps=4, **compile_kwargs):
    torch.manual_seed(0)
    model = make_model().to(device)
    twin = copy.deepcopy(model)
    inputs = [make_inputs(device) for _ in range(steps)]
    torch.manual_seed(1)
    expected = _train(model, inputs)
    torch.manual_seed(1)
    compiled = torch.compile(twin, backend=aotgraph.backend(mode="reduce-overhead", **compile_kwargs))
    got = _train(twin, inputs, compiled)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    for (name, ours), theirs in zip(twin.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5, msg=name)


def test_the_mode_is_accepted_on_the_cpu_and_trains_as_eager():
    _compare_training(ConvBatchNorm, lambda d: (torch.randn(4, 3, 8, 8, device=d), torch.randint(0, 4, (4,), device=d)),
                      "cpu")


def test_torch_compile_passes_its_mode_to_the_backend():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    x = torch.randn(3, 4)
    compiled = torch.compile(model, backend=aotgraph.backend(), mode="reduce-overhead")
    torch.testing.assert_close(compiled(x), model(x))


@pytest.mark.parametrize("kwargs, message", [
    (dict(compiler="eager", mode="reduce-overhead"), "is an Inductor mode"),
    (dict(mode="fastest"), "unknown mode 'fastest'"),
])
def test_bad_modes_are_refused(kwargs, message):
    with pytest.raises(BadArgument, match=message):
        aotgraph.backend(**kwargs)


@CUDA
def test_training_with_mutated_buffers_is_recorded_and_equals_eager():
    counters.clear()
    _compare_training(ConvBatchNorm,
                      lambda d: (torch.randn(4, 3, 8, 8, device=d), torch.randint(0, 4, (4,), device=d)), "cuda")
    assert counters["inductor"]["cudagraph_skips"] == 0


@CUDA
def test_random_draws_in_cuda_graphs_equal_eagers():
    counters.clear()
    _compare_training(MlpWithDropout, lambda d: (torch.randn(8, 16, device=d),), "cuda", steps=5)
    assert counters["inductor"]["cudagraph_skips"] == 0


def _keep_an_output(compiled, model) -> tuple:
    """Train three steps, keep one step's output across the next, read it: ("value", v) or ("error", where)."""
    x1, x2 = torch.randn(4, 16, device="cuda"), torch.randn(4, 16, device="cuda")
    stage = "warm-up"
    try:
        for _ in range(3):
            compiled(x1).sum().backward()
        stage = "kept step"
        first = compiled(x1)
        expected = model(x1).detach().clone()
        first.sum().backward()
        stage = "next step"
        compiled(x2).sum().backward()
        stage = "reading the kept output"
        return "value", first.detach().clone(), expected
    except RuntimeError as error:
        assert "overwritten" in str(error), error
        return "error", stage, None


@CUDA
def test_a_kept_output_behaves_as_in_torchs_own_cuda_graph_mode():
    """Correct, or refused at the same point as torch.compile(mode="reduce-overhead"): never
    a value silently overwritten by a later replay."""
    outcomes = []
    for backend in ("inductor", aotgraph.backend()):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1)).cuda()
        kind, what, expected = _keep_an_output(torch.compile(model, backend=backend, mode="reduce-overhead"), model)
        if kind == "value":
            torch.testing.assert_close(what, expected)
            what = "correct"
        outcomes.append((kind, what))
    assert outcomes[1] == outcomes[0]


@CUDA
def test_new_shapes_recompile_and_stay_correct():
    for batch in (4, 6, 4):
        _compare_training(ConvBatchNorm,
                          lambda d, b=batch: (torch.randn(b, 3, 8, 8, device=d), torch.randint(0, 4, (b,), device=d)),
                          "cuda", steps=3)
