"""Measured memory where the allocator keeps no statistics (the CPU): live storages of op results.

`LiveStorageCounter` is a dispatch mode that remembers every tensor an op returns (by weak
reference, counting the tensors alive in each storage) and, after each op, knows the bytes of
the distinct storages some remembered tensor still references: the measured counterpart of `Partition.memory`'s prediction (tests and
``benchmarks/gpu_partition.py --device cpu`` compare the two). Storages of the tensors given
as `excluded` (parameters, buffers, the batch) are not counted, nor their views.
`eager_timeline` measures eager autograd's live bytes op by op, forward then backward.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Iterable, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LiveStorageCounter(TorchDispatchMode):
    """``with LiveStorageCounter(params) as counter: counter.phase = "forward"; ...``; then
    ``counter.peaks[phase]``: the most bytes alive after any op of that phase; ``counter.steps``:
    (phase, op, bytes alive after it) for each op, in order."""

    def __init__(self, excluded: Iterable[torch.Tensor] = ()):
        super().__init__()
        self.excluded = {t.untyped_storage().data_ptr() for t in excluded}
        self.holders: dict[int, int] = {}  # storage address -> remembered tensors alive in it
        self.sizes: dict[int, int] = {}  # storage address -> bytes
        self.total = 0
        self.references: dict[int, weakref.ref] = {}  # by the reference's id (a tensor compares elementwise)
        self.peaks: dict[str, int] = {}
        self.steps: list[tuple[str, str, int]] = []
        self.phase = "run"

    def live_bytes(self) -> int:
        return self.total

    def _remember(self, tensor: torch.Tensor, address: int, nbytes: int) -> None:
        if not self.holders.get(address):
            self.sizes[address] = nbytes
            self.total += nbytes
        self.holders[address] = self.holders.get(address, 0) + 1
        reference = weakref.ref(tensor, lambda ref: self._forget(ref, address))
        self.references[id(reference)] = reference

    def _forget(self, reference: weakref.ref, address: int) -> None:
        """A remembered tensor died: its storage is freed with the last tensor in it."""
        self.references.pop(id(reference), None)
        self.holders[address] -= 1
        if not self.holders[address]:
            del self.holders[address]
            self.total -= self.sizes.pop(address)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                if storage.nbytes() and storage.data_ptr() not in self.excluded:
                    self._remember(tensor, storage.data_ptr(), storage.nbytes())
        live = self.live_bytes()
        self.steps.append((self.phase, str(getattr(func, "__name__", func)), live))
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), live)
        return out


def eager_timeline(program: Callable, inputs: Sequence[Any]) -> list[tuple[str, str, int]]:
    """(phase, op, live bytes) after each op of eager ``program(*inputs)`` ("forward") and of
    autograd's backward from its differentiable outputs, with gradients of ones ("backward"),
    outside the inputs and a module's parameters and buffers. The backward runs through
    ``torch.autograd.grad``: no ``.grad`` is written."""
    fixed = [t for t in tree_leaves(list(inputs)) if isinstance(t, torch.Tensor)]
    if isinstance(program, torch.nn.Module):
        fixed += [*program.parameters(), *program.buffers()]
    wrt = list({id(t): t for t in fixed if t.requires_grad}.values())
    counter = LiveStorageCounter(fixed)
    with counter:
        counter.phase = "forward"
        outputs = [t for t in tree_leaves(program(*inputs)) if isinstance(t, torch.Tensor) and t.requires_grad]
        if outputs and wrt:
            counter.phase = "backward"
            torch.autograd.grad(outputs, wrt, [torch.ones_like(t) for t in outputs], allow_unused=True)
    return counter.steps
