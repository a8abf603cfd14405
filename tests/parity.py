"""Differential checks against eager PyTorch, shared by the test files.

`assert_parity` (functions) and `assert_module_parity` (modules) run a program eagerly
and through aotgraph on identical copies of its inputs (and module), from the same RNG
seed, then compare: outputs (values, dtype, shape, stride, requires_grad, non-tensor
leaves, pytree structure), inputs the program mutates, and after a backward with the
same random tangents every input gradient and every parameter gradient (``None`` where
eager has ``None``), parameters and buffers. `assert_training_parity` does the same
over several optimizer steps.

A check cannot pass vacuously: it fails if the compiled function compiled nothing, if
a differentiable output's backward does not run through aotgraph's compiled backward,
or if eager produced gradients and none were compared.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch.utils._pytree import tree_flatten, tree_map

from aotgraph import aot_function, aot_module

# rtol, atol by dtype: torch.testing.assert_close's defaults, kept here so a test can scale them.
TOLERANCES = {
    torch.float16: (1e-3, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-5),
    torch.float32: (1.3e-6, 1e-5),
    torch.float64: (1e-7, 1e-7),
}


@dataclass
class Parity:
    """What a parity check ran, for tests that assert more (cache entries, graphs)."""

    eager_out: Any
    compiled_out: Any
    compiled: Callable
    grads_compared: int

    @property
    def entries(self) -> list:
        return list(self.compiled.aotgraph_entries.values())


def assert_close(actual: Any, expected: Any, what: str, scale: float = 1.0) -> None:
    """Tensor leaves: same shape, dtype, device and values within the dtype's tolerance."""
    if not isinstance(expected, torch.Tensor):
        assert actual == expected, f"{what}: {actual!r} != eager {expected!r}"
        return
    assert isinstance(actual, torch.Tensor), f"{what}: got {type(actual).__name__}, eager gave a tensor"
    rtol, atol = TOLERANCES.get(expected.dtype, (0.0, 0.0))
    torch.testing.assert_close(actual, expected, rtol=rtol * scale, atol=atol * scale,
                               msg=lambda m: f"{what}: {m}")


def clone_inputs(tree: Any) -> Any:
    """Independent copies of the tensor leaves (same requires_grad; a tensor passed twice stays one tensor)."""
    copies: dict[int, torch.Tensor] = {}

    def clone(leaf):
        if not isinstance(leaf, torch.Tensor):
            return leaf
        if id(leaf) not in copies:
            copies[id(leaf)] = leaf.detach().clone().requires_grad_(leaf.requires_grad)
        return copies[id(leaf)]

    return tree_map(clone, tree)


def assert_parity(fn: Callable, args: tuple = (), kwargs: Optional[dict] = None, *, scale: float = 1.0,
                  backward: bool = True, seed: int = 0, **aot_kwargs) -> Parity:
    """Run ``fn(*args, **kwargs)`` eagerly and through ``aot_function(fn, **aot_kwargs)``; compare all."""
    compiled = aot_function(fn, **aot_kwargs)
    return _compare_runs(fn, compiled, compiled, {}, {}, args, kwargs or {}, scale, backward, seed)


def assert_module_parity(module: torch.nn.Module, args: tuple = (), kwargs: Optional[dict] = None, *,
                         scale: float = 1.0, backward: bool = True, seed: int = 0, **aot_kwargs) -> Parity:
    """Run a copy of `module` eagerly and another through ``aot_module``; compare all, parameters and buffers too."""
    eager_module, compiled_module = copy.deepcopy(module), copy.deepcopy(module)
    compiled = aot_module(compiled_module, **aot_kwargs)
    return _compare_runs(eager_module, compiled, compiled, _state(eager_module), _state(compiled_module),
                         args, kwargs or {}, scale, backward, seed)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    state = dict(module.named_parameters(remove_duplicate=False))
    state.update(module.named_buffers(remove_duplicate=False))
    return state


def _compare_runs(eager_fn, compiled_fn, compiled, eager_state, compiled_state, args, kwargs, scale, backward,
                  seed) -> Parity:
    eager_inputs, compiled_inputs = clone_inputs((args, kwargs)), clone_inputs((args, kwargs))
    torch.manual_seed(seed)
    eager_out = eager_fn(*eager_inputs[0], **eager_inputs[1])
    torch.manual_seed(seed)
    compiled_out = compiled_fn(*compiled_inputs[0], **compiled_inputs[1])
    assert len(compiled.aotgraph_entries) == 1, "one call must compile exactly one entry"
    (entry,) = compiled.aotgraph_entries.values()

    # Leaves as aotgraph's signature counts them: a torch.Size is one leaf.
    eager_leaves, eager_spec = tree_flatten(eager_out, is_leaf=_is_size)
    compiled_leaves, compiled_spec = tree_flatten(compiled_out, is_leaf=_is_size)
    assert compiled_spec == eager_spec, f"output structure {compiled_spec} != eager {eager_spec}"
    for k, (actual, expected) in enumerate(zip(compiled_leaves, eager_leaves)):
        assert_close(actual, expected, f"output {k}", scale)
        if isinstance(expected, torch.Tensor):
            assert actual is not expected, f"output {k} is eager's own tensor"
            assert actual.requires_grad == expected.requires_grad, f"output {k}: requires_grad differs from eager"
            assert actual.stride() == expected.stride(), (
                f"output {k}: stride {actual.stride()} != eager {expected.stride()}")
    _compare_tensors(compiled_inputs, eager_inputs, "input after forward", scale)
    _compare_state(compiled_state, eager_state, "after forward", scale)

    grads_compared = 0
    differentiable = [k for k, o in enumerate(eager_leaves) if isinstance(o, torch.Tensor) and o.requires_grad]
    if backward and differentiable:
        # Outputs that alias an input are rebuilt as views of it; every other one must
        # backpropagate through the compiled backward (a view of an intermediate or of another
        # output through its base, as eager's view does).
        outputs = entry.joint.signature.outputs
        _assert_backward_is_compiled([compiled_leaves[k]._base if compiled_leaves[k]._is_view() else compiled_leaves[k]
                                      for k in differentiable if outputs[k].base_input is None])
        generator = torch.Generator().manual_seed(seed + 1)
        tangents = [torch.randn(eager_leaves[k].shape, generator=generator, dtype=eager_leaves[k].dtype)
                    for k in differentiable]
        torch.autograd.backward([eager_leaves[k] for k in differentiable], tangents)
        torch.autograd.backward([compiled_leaves[k] for k in differentiable], [t.clone() for t in tangents])
        grads_compared += _compare_grads(compiled_inputs, eager_inputs, "input", scale)
        grads_compared += _compare_grads(compiled_state, eager_state, "parameter", scale)
        assert grads_compared > 0, "eager computed no gradient at all: the check would be vacuous"
        _compare_state(compiled_state, eager_state, "after backward", scale)
    return Parity(eager_out, compiled_out, compiled, grads_compared)


def _is_size(value) -> bool:
    return isinstance(value, torch.Size)


def _assert_backward_is_compiled(outputs: list[torch.Tensor]) -> None:
    """Each output's grad_fn is aotgraph's autograd.Function (not eager autograd)."""
    names = [type(o.grad_fn).__name__ for o in outputs]
    assert all(name == "CompiledFunctionBackward" for name in names), (
        f"a differentiable output does not run aotgraph's compiled backward (grad_fns: {names})")


def _compare_tensors(actual_tree, expected_tree, what, scale) -> None:
    actual_leaves, expected_leaves = tree_flatten(actual_tree)[0], tree_flatten(expected_tree)[0]
    for k, (actual, expected) in enumerate(zip(actual_leaves, expected_leaves)):
        if isinstance(expected, torch.Tensor):
            assert_close(actual.detach(), expected.detach(), f"{what} {k}", scale)


def _compare_grads(actual, expected, what, scale) -> int:
    """Compare ``.grad`` of matching tensors (leaves of a pytree, or a name -> tensor dict)."""
    if isinstance(expected, dict) and all(isinstance(v, torch.Tensor) for v in expected.values()) and expected:
        pairs = [(name, actual[name], expected[name]) for name in expected]
    else:
        pairs = [(k, a, e) for k, (a, e) in enumerate(zip(tree_flatten(actual)[0], tree_flatten(expected)[0]))]
    compared = 0
    for name, a, e in pairs:
        if not isinstance(e, torch.Tensor) or not e.requires_grad:
            continue
        if e.grad is None:
            assert a.grad is None, f"{what} {name}: aotgraph computed a grad where eager has None"
            continue
        assert a.grad is not None, f"{what} {name}: eager has a grad, aotgraph has None"
        assert_close(a.grad, e.grad, f"grad of {what} {name}", scale)
        compared += 1
    return compared


def _compare_state(actual: dict, expected: dict, when: str, scale) -> None:
    assert list(actual) == list(expected)
    for name in expected:
        assert_close(actual[name].detach(), expected[name].detach(), f"{name} {when}", scale)


def assert_training_parity(module: torch.nn.Module, batches: list[tuple], make_optimizer: Callable, *,
                           scale: float = 1.0, **aot_kwargs) -> torch.nn.Module:
    """One optimizer step per batch on an eager copy and an ``aot_module`` copy of `module`
    (the module returns a loss); loss, grads, parameters and buffers must match after each
    step. Returns the compiled module."""
    eager_module, compiled_module = copy.deepcopy(module), copy.deepcopy(module)
    compiled = aot_module(compiled_module, **aot_kwargs)
    eager_opt, compiled_opt = make_optimizer(eager_module.parameters()), make_optimizer(compiled_module.parameters())
    eager_state, compiled_state = _state(eager_module), _state(compiled_module)
    for step, batch in enumerate(batches):
        losses = []
        for run, opt, inputs in ((eager_module, eager_opt, clone_inputs(batch)),
                                 (compiled, compiled_opt, clone_inputs(batch))):
            opt.zero_grad(set_to_none=True)
            loss = run(*inputs)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        assert_close(losses[1], losses[0], f"loss at step {step}", scale)
        assert _compare_grads(compiled_state, eager_state, f"parameter (step {step})", scale) > 0
        _compare_state(compiled_state, eager_state, f"after step {step}", scale)
    assert len(compiled.aotgraph_entries) >= 1, "the compiled module compiled nothing"
    return compiled
