"""`explain(program, *inputs)`: compile a function or module, run it forward and backward once,
and return the `Report` of what aotgraph did (what ``python -m aotgraph explain`` shows and
writes as HTML or JSON). Inputs are named as the program names them: a module's parameters
and buffers by their names (``blocks.0.attn.qkv.weight``), arguments by their parameter names.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence, Union

import torch
from torch.utils._pytree import keystr, tree_flatten_with_path, tree_leaves

from .api import aot_function, aot_module
from .errors import BadArgument
from .partition import default_partition, min_cut_rematerialization_partition
from .report import Report, build_report

__all__ = ["explain", "input_names", "argument_names", "state_names", "names_for", "backward_through", "PARTITIONS"]

PARTITIONS = {"default": default_partition, "mincut": min_cut_rematerialization_partition}


def _argument_names(signature_of: Callable, args: tuple) -> list[str]:
    """A name for each flat leaf of `args`: the parameter of `signature_of` it is passed to and
    its path inside that argument (``x``, ``batch[0]``), else ``args[i]`` and the path."""
    try:
        parameters = inspect.signature(signature_of).parameters.values()
    except (TypeError, ValueError):  # a builtin or C function: no signature to read
        parameters = []
    positional = [p.name for p in parameters
                  if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    names = []
    for i, arg in enumerate(args):
        base = positional[i] if i < len(positional) else f"args[{i}]"
        names += [base + keystr(path) for path, _ in tree_flatten_with_path(arg)[0]]
    return names


def state_names(module: torch.nn.Module) -> list[str]:
    """The names of the parameters and buffers aot_module passes, in its order."""
    state = dict(module.named_parameters(remove_duplicate=False))
    state.update(module.named_buffers(remove_duplicate=False))
    return list(state)


def input_names(program: Callable, args: tuple) -> dict[int, str]:
    """Flat input position -> display name, for the flat inputs aot_function or aot_module
    gives ``program(*args)``: for a module, its parameters then its buffers by name, in
    aot_module's order (``named_parameters(remove_duplicate=False)``, then buffers not among
    them), then each leaf of the arguments by its parameter's name (see `_argument_names`)."""
    if isinstance(program, torch.nn.Module):
        return dict(enumerate(state_names(program) + _argument_names(program.forward, args)))
    return dict(enumerate(_argument_names(program, args)))


def argument_names(program: Callable, args: tuple) -> list[str]:
    """The display name of each flat leaf of `args` (see `_argument_names`)."""
    return _argument_names(program.forward if isinstance(program, torch.nn.Module) else program, args)


def names_for(entry, names: dict[int, str]):
    """`names` if they describe the entry's flat inputs; None when the entry took other inputs
    (inputs that share memory are passed as their common base)."""
    return names if len(names) == len(entry.joint.signature.inputs) else None


def backward_through(outputs, program: Callable = None, args: tuple = ()) -> None:
    """Run the backward of the differentiable tensors among `outputs` (gradients of ones). With
    `program` and its `args`, through ``torch.autograd.grad`` to the tensors that require grad
    (writing no ``.grad``); else through ``torch.autograd.backward`` (filling ``.grad``)."""
    differentiable = [t for t in tree_leaves(outputs) if isinstance(t, torch.Tensor) and t.requires_grad]
    if not differentiable:
        return
    if program is None:
        torch.autograd.backward([t.sum() for t in differentiable])
        return
    leaves = [t for t in tree_leaves(list(args)) if isinstance(t, torch.Tensor)]
    if isinstance(program, torch.nn.Module):
        leaves += list(program.parameters())
    wrt = list({id(t): t for t in leaves if t.requires_grad}.values())
    if wrt:
        torch.autograd.grad(differentiable, wrt, [torch.ones_like(t) for t in differentiable], allow_unused=True)


def explain(program: Callable, *inputs: Any, compiler: Union[str, Callable] = "eager",
            partition: Union[str, Callable] = "mincut", budgets: Sequence[Union[int, float]] = (),
            title: str = "") -> Report:
    """Compile `program` (a function or ``nn.Module``) for `inputs`, run it forward and backward
    (gradients of ones, through ``torch.autograd.grad``: no ``.grad`` is written), and return
    its `Report`, compared with eager autograd (the program runs eagerly once more, forward and
    backward; a program that updates buffers updates them on each run). `partition`: "mincut",
    "default" or a partition function; `budgets`: memory budgets (as `partition_for`'s) whose
    predicted timelines the report adds."""
    if isinstance(partition, str) and partition not in PARTITIONS:
        raise BadArgument(f"unknown partition {partition!r}", "api", f"use one of {sorted(PARTITIONS)} or a partition function")
    partition_fn = PARTITIONS[partition] if isinstance(partition, str) else partition
    compile_fn = aot_module if isinstance(program, torch.nn.Module) else aot_function
    compiled = compile_fn(program, compiler, partition_fn=partition_fn)
    backward_through(compiled(*inputs), program, inputs)
    entry = list(compiled.aotgraph_entries.values())[-1]
    return build_report(
        entry, program, inputs, names_for(entry, input_names(program, inputs)),
        title=title or getattr(program, "__qualname__", type(program).__name__),
        compiler=compiler if isinstance(compiler, str) else getattr(compiler, "__name__", type(compiler).__name__),
        partition_name=partition if isinstance(partition, str) else getattr(partition, "__name__", "custom"),
        budgets=budgets)
