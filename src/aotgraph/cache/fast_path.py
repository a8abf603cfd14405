"""The per-call fast path: a call whose arguments are all tensors, matching the previous
call that reached an entry, runs that entry without building the cache key.

The check is torch's C++ tensor check (Dynamo's ``TensorGuards``) plus what it does not
cover, checked here. ``AOTGRAPH_DISABLE=fast_path`` turns the fast path off (every call
builds its key), for bisecting.
"""
from __future__ import annotations

import operator
from typing import Callable, Optional

import torch

from .. import config
from ..torch_private.dynamo import TensorGuards
from .guards import GuardSet
from .keys import autocast_state

__all__ = ["LastCall", "remembered_call", "distinct_storages"]

_storage_offset = torch.Tensor.storage_offset
_data_ptr = torch.Tensor.data_ptr


class LastCall:
    """What a call whose arguments are all tensors must match to reuse the entry that the
    previous such call ran.

    `tensors_match` is torch's C++ tensor check: Python type, dispatch keys (device type,
    conj/neg bits, the thread's dispatch state), dtype, device index, shape, stride,
    requires_grad; it fails when one tensor is passed twice. `AotFunction.__call__` checks
    the rest of the key: grad mode, the default dtype, autocast (one C call when it is off),
    storage offsets; for an entry that mutates an input, also that no two inputs share memory
    (the key path would compile such a call for their common base); and the entry's guards on
    Python values."""

    __slots__ = ("num_args", "tensors_match", "grad_enabled", "default_dtype", "autocast", "offsets", "run",
                 "check_storages", "offset_bytes", "guards")

    def __init__(self, args: tuple, run: Callable, check_storages: bool, guards: GuardSet):
        self.num_args = len(args)
        self.tensors_match = TensorGuards(*args, dynamic_dims_sizes=None, dynamic_dims_strides=None).check
        self.grad_enabled = torch.is_grad_enabled()
        self.default_dtype = torch.get_default_dtype()  # factory functions in the graphs made tensors of it
        self.autocast = autocast_state()
        self.offsets = list(map(_storage_offset, args))
        self.run = run
        self.guards = guards if guards else None  # None: nothing to check (no call of GuardSet.__bool__)
        self.check_storages = check_storages
        # With the offsets checked, data_ptr - offset_bytes is each tensor's storage pointer
        # (None: every offset is 0, each data_ptr is its storage's).
        self.offset_bytes = [t.storage_offset() * t.element_size() for t in args]
        if not any(self.offset_bytes):
            self.offset_bytes = None

    def distinct_storages(self, args: tuple) -> bool:
        """`distinct_storages` for a call whose storage offsets match: no storage objects made
        (a model with hundreds of inputs pays for each one otherwise)."""
        if self.offset_bytes is None:
            pointers = set(map(_data_ptr, args))
        else:
            pointers = set(map(operator.sub, map(_data_ptr, args), self.offset_bytes))
        return len(pointers) == len(args) and 0 not in pointers


def remembered_call(args: tuple, kwargs: dict, entry, by_entry: dict[int, LastCall]) -> Optional[LastCall]:
    """The `LastCall` for this call, which the cache key resolved to `entry` (a
    `CompiledEntry`), or None where it cannot take the fast path (an entry compiled for inputs
    sharing memory checks that sharing through the key path on every call). A call that passes one
    tensor twice is not remembered: the C++ check rejects duplicates in the calls it checks,
    not their absence. `by_entry` keeps each entry's last one: a call that reached the same
    entry has the same key, so only the C++ check's extra facts (Python type, dispatch keys)
    can differ, and a call that switches between entries rebuilds none while those match."""
    if (not config.enabled("fast_path") or kwargs
            or entry.takes_shared_bases
            or not all(isinstance(a, torch.Tensor) for a in args) or len(set(map(id, args))) != len(args)
            or (entry.mutates_inputs and not distinct_storages(args))):
        return None
    known = by_entry.get(id(entry))
    if known is not None and known.tensors_match(*args):
        return known
    try:
        by_entry[id(entry)] = LastCall(args, entry.run, entry.mutates_inputs, entry.guards)
    except (TypeError, RuntimeError):  # a tensor the C++ check cannot describe: keep the key path
        return None
    return by_entry[id(entry)]


def distinct_storages(tensors: tuple) -> bool:
    """No two of `tensors` share memory (an empty storage counts as shared: pointer 0)."""
    pointers = {t.untyped_storage().data_ptr() for t in tensors}
    return len(pointers) == len(tensors) and 0 not in pointers
