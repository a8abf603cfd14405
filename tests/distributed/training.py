"""Training on one rank, eager and compiled, from the same initial weights and the same data:
what the distributed tests' workers share. Each rank trains on its own batches (so the
gradients' all-reduce or reduce-scatter changes the result) with plain SGD."""
from __future__ import annotations

from typing import Callable

import torch

from aotgraph import models
from ranks import rank_device

STEPS = 5
TOLERANCE = dict(rtol=1e-4, atol=1e-5)  # float32 over 5 steps; Inductor reorders sums


def model_and_batches(name: str, rank: int, steps: int = STEPS) -> tuple[torch.nn.Module, list[tuple]]:
    """The model (same weights on every rank) and this rank's batches, one per step, on the
    rank's device."""
    torch.manual_seed(0)
    if name == "gpt":
        model, _ = models.gpt(layers=2, dim=32, heads=2, vocab=64, seq=16)
        generator = torch.Generator().manual_seed(1000 + rank)
        batches = [(torch.randint(0, 64, (2, 16), generator=generator),
                    torch.randint(0, 64, (2, 16), generator=generator)) for _ in range(steps)]
    elif name == "convnet":
        model, _ = models.resnet(blocks=2, width=8, batch=4, size=16)
        generator = torch.Generator().manual_seed(1000 + rank)
        batches = [(torch.randn(4, 3, 16, 16, generator=generator),) for _ in range(steps)]
    else:
        raise ValueError(name)
    device = rank_device()
    return model.to(device), [tuple(value.to(device) for value in batch) for batch in batches]


def loss_of(output: torch.Tensor) -> torch.Tensor:
    return output if output.dim() == 0 else output.square().mean()


def train(run: Callable, parameters, batches: list[tuple], lr: float = 0.1) -> list[torch.Tensor]:
    """One SGD step per batch; the losses."""
    optimizer = torch.optim.SGD(list(parameters), lr=lr, foreach=False)  # CUDA foreach mixes DTensor and Tensor
    losses = []
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(run(*batch))
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return losses


def local_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers as plain tensors (a DTensor's local shard)."""
    return {name: (value.to_local() if hasattr(value, "to_local") else value).detach().clone()
            for name, value in module.state_dict().items()}


def assert_same_training(expected: tuple, actual: tuple, what: str) -> None:
    """(losses, state) of a compiled run against eager's."""
    (expected_losses, expected_state), (actual_losses, actual_state) = expected, actual
    torch.testing.assert_close(torch.stack(actual_losses), torch.stack(expected_losses), **TOLERANCE,
                               msg=lambda m: f"{what}: losses: {m}")
    assert list(actual_state) == list(expected_state), f"{what}: state names differ"
    for name, value in expected_state.items():
        if value.is_floating_point():
            torch.testing.assert_close(actual_state[name], value, **TOLERANCE,
                                       msg=lambda m, name=name: f"{what}: final {name}: {m}")
        else:
            assert torch.equal(actual_state[name], value), f"{what}: final {name}"
