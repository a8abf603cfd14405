"""Training parity through ``torch.compile``: the same model trained eagerly and compiled,
from identical copies, compared step by step (loss, gradients) and at the end
(parameters, BatchNorm running statistics). `counting`: a compiler that counts its calls. `HopSeen`: an aotgraph backend that also notes
the higher-order operators Dynamo handed it."""
from __future__ import annotations

import copy
from typing import Callable

import torch

import aotgraph
from aotgraph.torch_private.dispatch import HigherOrderOperator

TOLERANCES = {torch.float32: (1e-4, 1e-5), torch.float64: (1e-7, 1e-7)}


def loss_of(output) -> torch.Tensor:
    """A scalar that depends on every output element (models in aotgraph.models return a loss or logits)."""
    if output.dim() == 0:
        return output
    weights = torch.linspace(0.5, 1.5, output.numel(), dtype=output.dtype, device=output.device).reshape(output.shape)
    return (output * weights).sum()


def assert_close(actual, expected, what: str, scale: float = 1.0) -> None:
    rtol, atol = TOLERANCES[expected.dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol * scale, atol=atol * scale, msg=lambda m: f"{what}: {m}")


def counting(compiler):
    """`compiler`, counting its calls (a forward and a backward per compile); with its traits,
    so that it gets the graphs `compiler` would (regions of found layers: `compilers.is_users`)."""
    def compile_graph(graph_module, example_inputs):
        compile_graph.calls += 1
        return compiler(graph_module, example_inputs)

    compile_graph.calls = 0
    if hasattr(compiler, "aotgraph_traits"):
        compile_graph.aotgraph_traits = compiler.aotgraph_traits
    return compile_graph


def assert_training_parity(model: torch.nn.Module, inputs_per_step: list[tuple], compile_model: Callable,
                           *, scale: float = 1.0, lr: float = 0.05) -> torch.nn.Module:
    """Train an eager copy and `compile_model(copy)` with SGD (momentum) on the same inputs; compare
    every step's loss and gradients, then parameters and buffers. Returns the compiled model."""
    eager = copy.deepcopy(model)
    compiled = compile_model(copy.deepcopy(model))
    optimizers = [torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9) for m in (eager, compiled)]
    trains = any(p.requires_grad for p in model.parameters())
    for step, inputs in enumerate(inputs_per_step):
        losses = []
        for module, optimizer in zip((eager, compiled), optimizers):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_of(module(*inputs))
            if trains:
                loss.backward()
            losses.append(loss.detach())
        assert_close(losses[1], losses[0], f"loss at step {step}", scale)
        if trains:
            compared = 0
            for (name, p_eager), p_compiled in zip(eager.named_parameters(), compiled.parameters()):
                if p_eager.grad is None:
                    assert p_compiled.grad is None, f"{name}.grad at step {step}: eager has none"
                    continue
                assert p_compiled.grad is not None, f"{name}.grad at step {step}: compiled has none"
                assert_close(p_compiled.grad, p_eager.grad, f"{name}.grad at step {step}", scale)
                compared += 1
            assert compared > 0, "no gradients compared"
            for optimizer in optimizers:
                optimizer.step()
    for (name, expected), actual in zip(eager.state_dict().items(), compiled.state_dict().values()):
        if expected.is_floating_point():
            assert_close(actual, expected, f"final {name}", scale)
        else:
            assert torch.equal(actual, expected), f"final {name}"
    return compiled


class HopSeen:
    """An aotgraph backend that records which HOPs the graphs Dynamo handed it called."""

    def __init__(self, compiler: str):
        self.backend = aotgraph.backend(compiler=compiler)
        self.hops: set[str] = set()

    def __call__(self, graph_module, example_inputs):
        for module in graph_module.modules():
            for node in module.graph.nodes if isinstance(module, torch.fx.GraphModule) else ():
                if node.op == "call_function" and isinstance(node.target, HigherOrderOperator):
                    self.hops.add(node.target.name())
        return self.backend(graph_module, example_inputs)

    def compile(self, module, dynamic: bool = False):
        return torch.compile(module, backend=self, dynamic=dynamic)


def repeated_mask(g, m):
    """A softmax scaled by a mask repeated twice: its backward saves repeat_interleave's size
    ``2*s0`` but not ``s0`` (with symbolic sizes)."""
    return (torch.softmax(g, -1) * m.reshape(-1).float().repeat_interleave(2).view(-1, 2)[:, :1]).sum()


def assert_repeated_mask_trains(compiled, sizes) -> None:
    """`compiled` (of `repeated_mask`) gives eager's gradient at each mask width of `sizes`."""
    for s in sizes:
        m, g = torch.ones(2, s, dtype=torch.long), torch.randn(2 * s, 4, requires_grad=True)
        compiled(g, m).backward()
        ref = g.detach().clone().requires_grad_()
        repeated_mask(ref, m).backward()
        torch.testing.assert_close(g.grad, ref.grad)
