"""Integer inputs of symbolic value (Dynamo's dynamic ints: a length a graph break hands the
next graph as an int) captured as sizes.

Capture keeps a size symbolic where it can name it: a size of an input tensor, or a value an op
it recorded returned (`capture.symbols`). A bare SymInt input is neither, so such a program
used to compile once per value. Here each one travels as the first size of an empty ``[n, 0]``
tensor on the program's device (no memory), and the program reads it back with ``shape[0]``:
a size of an input, kept symbolic like any other, guarded by Dynamo's guards (``n >= 0``
among them, from the tensor's creation). Switch ``symbolic_int_inputs``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

__all__ = ["symbolic_int_positions", "carrier_fakes", "reading_ints_from_sizes", "with_size_carriers"]


def symbolic_int_positions(args: Sequence) -> tuple[int, ...]:
    """Positions of `args` holding a SymInt that is not a constant and whose value here is not
    negative (a size cannot carry a negative one: such a program compiles per value, as before),
    nor a nested tensor's ragged size (a nested int, no number)."""
    return tuple(k for k, a in enumerate(args) if isinstance(a, torch.SymInt) and not a.node.is_constant()
                 and not a.node.is_nested_int() and a.node.has_hint() and a.node.hint >= 0)


def carrier_device(args: Sequence) -> torch.device:
    """Where the carriers live: the first tensor argument's device (a CPU tensor among CUDA ones
    would keep a graph from CUDA graphs), else the CPU."""
    return next((a.device for a in args if isinstance(a, torch.Tensor)), torch.device("cpu"))


def carrier_fakes(args: Sequence, positions: tuple[int, ...], fake_mode) -> list:
    """`args` with the SymInt at each of `positions` replaced by a fake ``[n, 0]`` tensor; the
    guard ``n >= 0`` is taken, so that a call with a negative value compiles again."""
    device = carrier_device(args)
    for k in positions:
        torch._check(args[k] >= 0)
    with fake_mode:
        return [torch.empty((a, 0), device=device) if k in positions else a for k, a in enumerate(args)]


def reading_ints_from_sizes(fn: Callable, positions: tuple[int, ...]) -> Callable:
    """``fn`` called with each argument at `positions` (a carrier) replaced by its ``shape[0]``;
    the attributes capture reads of a program (``aotgraph_*``, its name) carried over."""
    def program(*args, **kwargs):
        args = list(args)
        for k in positions:
            args[k] = args[k].shape[0]
        return fn(*args, **kwargs)

    program.__name__ = program.__qualname__ = getattr(fn, "__name__", "program")
    for name in ("aotgraph_input_names", "aotgraph_module"):
        if hasattr(fn, name):
            setattr(program, name, getattr(fn, name))
    return program


def with_size_carriers(flat_args: list, positions: tuple[int, ...], device: torch.device) -> list:
    """The runtime's side: `flat_args` with the int at each of `positions` as an empty ``[n, 0]``
    tensor on `device` (modified in place and returned)."""
    for k in positions:
        flat_args[k] = torch.empty((flat_args[k], 0), device=device)
    return flat_args
