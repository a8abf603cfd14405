"""Differential checks against eager PyTorch for the hard semantic cases (mutations, aliasing,
randomness, grad modes), used by tests/capture and tests/runtime. Unlike `parity`, which
clones given inputs, each run builds its own inputs, so cases can pass non-leaves, views
of one base or the same tensor twice, and compare what eager *raises* as well.

`assert_parity(fn, make_case)` runs ``fn`` eagerly and through ``aot_function`` on two
identical copies of its inputs (built by ``make_case`` under the same seed) and compares
everything a user can observe: outputs (values, dtype, shape, requires_grad, whether
they are views, and of which input), the state of every input after the call (values,
sizes, strides, version bumped or not), gradients of every leaf after a backward, and the
global CPU RNG state. If eager raises, the compiled call must raise the same kind of error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch.utils._pytree import tree_flatten

from aotgraph import aot_function


@dataclass
class Case:
    """Inputs to call with, and the leaves whose gradients to compare (default: the
    inputs that are leaves requiring grad)."""

    args: tuple
    leaves: Sequence[torch.Tensor] = field(default_factory=tuple)

    def __post_init__(self):
        if not self.leaves:
            flat, _ = tree_flatten(self.args)
            self.leaves = [a for a in flat if isinstance(a, torch.Tensor) and a.is_leaf and a.requires_grad]


@dataclass
class Observed:
    error: BaseException | None = None
    outputs: list = field(default_factory=list)
    inputs_after: list = field(default_factory=list)
    versions_bumped: list = field(default_factory=list)
    grads: list = field(default_factory=list)
    rng_after: torch.Tensor | None = None
    raw_outputs: object = None
    case: Case | None = None


def _describe_output(o, inputs):
    if not isinstance(o, torch.Tensor):
        return ("constant", o)
    base = o._base
    base_input = next((k for k, i in enumerate(inputs) if isinstance(i, torch.Tensor) and base is not None
                       and (base is i or base is i._base)), None)
    return ("tensor", o.detach().clone(), o.dtype, tuple(o.shape), o.requires_grad, base is not None, base_input)


def observe(fn: Callable, make_case: Callable[[], Case], *, seed: int, backward: bool) -> Observed:
    torch.manual_seed(seed)
    case = make_case()
    flat_in, _ = tree_flatten(case.args)
    versions = [a._version if isinstance(a, torch.Tensor) else None for a in flat_in]
    seen = Observed(case=case)
    torch.manual_seed(seed + 1)
    try:
        out = fn(*case.args)
    except Exception as error:  # noqa: BLE001 - the error kind is what we compare
        seen.error = error
        return seen
    seen.raw_outputs = out
    flat_out, _ = tree_flatten(out)
    seen.outputs = [_describe_output(o, flat_in) for o in flat_out]
    seen.inputs_after = [
        (a.detach().clone(), tuple(a.shape), a.stride()) if isinstance(a, torch.Tensor) else a for a in flat_in
    ]
    seen.versions_bumped = [isinstance(a, torch.Tensor) and a._version != v for a, v in zip(flat_in, versions)]
    seen.rng_after = torch.get_rng_state()
    if backward:
        diff = [o for o in flat_out if isinstance(o, torch.Tensor) and o.requires_grad]
        if diff:
            torch.manual_seed(seed + 2)
            cotangents = [torch.randn(o.shape, dtype=o.dtype) for o in diff]
            try:
                torch.autograd.backward(diff, cotangents)
            except Exception as error:  # noqa: BLE001
                seen.error = error
                return seen
        seen.grads = [None if leaf.grad is None else leaf.grad.clone() for leaf in case.leaves]
    return seen


def assert_parity(fn: Callable, make_case: Callable[[], Case], *, seed: int = 0, backward: bool = True,
                  atol: float = 1e-5, rtol: float = 1.3e-6, compiled: Callable | None = None, check_rng: bool = True,
                  eager_raises: bool = False):
    """Fail unless ``aot_function(fn)`` (or `compiled`) behaves like ``fn`` on ``make_case()``.
    With `eager_raises`, eager must raise and the compiled call must raise the same kind.

    Returns the (eager, compiled) observations for further checks."""
    eager = observe(fn, make_case, seed=seed, backward=backward)
    ours = observe(compiled or aot_function(fn), make_case, seed=seed, backward=backward)
    assert (eager.error is not None) == eager_raises, f"eager raised {eager.error!r}" if eager.error else "eager ran"
    if eager.error is not None:
        assert ours.error is not None, f"eager raised {eager.error!r}, compiled did not"
        assert isinstance(ours.error, type(eager.error)) or isinstance(eager.error, type(ours.error)), (
            f"eager raised {type(eager.error).__name__}, compiled raised {type(ours.error).__name__}: {ours.error}")
        return eager, ours
    if ours.error is not None:
        raise ours.error
    assert len(eager.outputs) == len(ours.outputs)
    for k, (e, c) in enumerate(zip(eager.outputs, ours.outputs)):
        assert e[0] == c[0], f"output {k}: {e[0]} vs {c[0]}"
        if e[0] == "constant":
            assert e[1] == c[1], f"output {k}: {e[1]!r} vs {c[1]!r}"
            continue
        _, ev, edtype, eshape, erg, eview, ebase = e
        _, cv, cdtype, cshape, crg, cview, cbase = c
        assert (edtype, eshape) == (cdtype, cshape), f"output {k}: {edtype}{eshape} vs {cdtype}{cshape}"
        assert erg == crg, f"output {k}: requires_grad {erg} (eager) vs {crg}"
        assert ebase == cbase, f"output {k}: view of input {ebase} (eager) vs {cbase}"
        if ebase is not None:
            assert eview == cview
        torch.testing.assert_close(cv, ev, atol=atol, rtol=rtol, equal_nan=True, msg=lambda m: f"output {k}: {m}")
    for k, (e, c) in enumerate(zip(eager.inputs_after, ours.inputs_after)):
        if not isinstance(e, tuple):
            continue
        assert e[1:] == c[1:], f"input {k} layout after the call: {e[1:]} (eager) vs {c[1:]}"
        torch.testing.assert_close(c[0], e[0], atol=atol, rtol=rtol, equal_nan=True,
                                   msg=lambda m: f"input {k} after the call: {m}")
    assert eager.versions_bumped == ours.versions_bumped, (
        f"inputs whose version changed: {eager.versions_bumped} (eager) vs {ours.versions_bumped}")
    for k, (e, c) in enumerate(zip(eager.grads, ours.grads)):
        assert (e is None) == (c is None), f"grad of leaf {k}: {'None' if e is None else 'set'} in eager"
        if e is not None:
            torch.testing.assert_close(c, e, atol=atol, rtol=rtol, equal_nan=True, msg=lambda m: f"grad {k}: {m}")
    if check_rng:
        assert torch.equal(eager.rng_after, ours.rng_after), "global RNG state after the call differs from eager"
    return eager, ours


def leaf(*shape, dtype=torch.float32, requires_grad=True) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype).requires_grad_(requires_grad)
