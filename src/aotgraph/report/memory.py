"""Measured memory where the allocator keeps no statistics (the CPU): live storages of op results.

`LiveStorageCounter` is a dispatch mode that remembers every tensor an op returns (by weak
reference) and, after each op, sums the bytes of the distinct storages some remembered tensor
still references: the measured counterpart of `Partition.memory`'s prediction (tests and
``benchmarks/gpu_partition.py --device cpu`` compare the two). Storages of the tensors given
as `excluded` (parameters, buffers, the batch) are not counted, nor their views.
"""
from __future__ import annotations

import weakref
from typing import Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LiveStorageCounter(TorchDispatchMode):
    """``with LiveStorageCounter(params) as counter: counter.phase = "forward"; ...``; then
    ``counter.peaks[phase]``: the most bytes alive after any op of that phase."""

    def __init__(self, excluded: Iterable[torch.Tensor] = ()):
        super().__init__()
        self.excluded = {t.untyped_storage().data_ptr() for t in excluded}
        self.tracked: list[tuple[weakref.ref, int, int]] = []  # (tensor, storage address, bytes)
        self.peaks: dict[str, int] = {}
        self.phase = "run"

    def live_bytes(self) -> int:
        self.tracked = [entry for entry in self.tracked if entry[0]() is not None]
        return sum({address: nbytes for _, address, nbytes in self.tracked}.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                if storage.nbytes() and storage.data_ptr() not in self.excluded:
                    self.tracked.append((weakref.ref(tensor), storage.data_ptr(), storage.nbytes()))
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), self.live_bytes())
        return out
