"""Inputs that share memory: rewrite the program to take their common base once.

When two distinct input tensors are views of one storage and the program mutates one of
them, each must see the other's writes. `with_shared_bases` turns ``fn(*flat)`` into a
program of ``(bases, rest)`` that rebuilds each aliased input as ``base.as_strided(...)``
inside the traced function, so functionalization sees one root, the base is the input
that gets mutated and written back, and the caller's views see the new values.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._pytree import TreeSpec, tree_flatten, tree_unflatten

from ..errors import UnsupportedOp

__all__ = ["aliased_input_groups", "with_shared_bases"]


def aliased_input_groups(flat_args: Sequence[Any]) -> tuple[tuple[int, ...], ...]:
    """Groups (two or more) of flat positions holding distinct tensors that share a storage."""
    by_storage: dict[StorageWeakRef, list[int]] = {}
    seen: set[int] = set()
    for position, value in enumerate(flat_args):
        if not isinstance(value, torch.Tensor) or id(value) in seen:
            continue
        seen.add(id(value))
        storage = value.untyped_storage()
        if storage.nbytes():  # by storage identity, not data_ptr: fake tensors all have data_ptr 0
            by_storage.setdefault(StorageWeakRef(storage), []).append(position)
    return tuple(tuple(positions) for positions in by_storage.values() if len(positions) > 1)


def _common_base(members: list[torch.Tensor]) -> torch.Tensor:
    """A real tensor whose storage holds every member: their shared ``._base``, or (when no
    member needs gradients) a flat tensor over the whole storage."""
    dtypes = {m.dtype for m in members}
    roots = {id(m._base if m._base is not None else m): (m._base if m._base is not None else m) for m in members}
    if len(roots) == 1:
        root = next(iter(roots.values()))
        if {root.dtype} == dtypes:
            return root
    if len(dtypes) == 1 and not any(m.requires_grad for m in members):
        first = members[0]
        numel = first.untyped_storage().nbytes() // first.element_size()
        return torch.empty(0, dtype=first.dtype, device=first.device).set_(first.untyped_storage(), 0, (numel,), (1,))
    raise UnsupportedOp(
        "inputs share memory, the program mutates one of them, and they have no common base tensor "
        "aotgraph can pass instead (different dtypes, or views requiring grad made without a shared ._base)",
        "capture",
        "pass the base tensor once and take the views inside the function, or clone one of the inputs",
    )


def with_shared_bases(fn: Callable, flat_args: Sequence[Any], in_spec: TreeSpec,
                      groups: tuple[tuple[int, ...], ...]) -> tuple[Callable, list, TreeSpec]:
    """(program, flat inputs, spec) equivalent to ``fn`` on `flat_args`, taking each group's
    common base instead of its members (layouts are specialized, as the cache key is)."""
    members_by_id: dict[int, tuple[int, tuple, tuple, int]] = {}
    bases = []
    for k, group in enumerate(groups):
        members = [flat_args[p] for p in group]
        bases.append(_common_base(members))
        for m in members:
            members_by_id[id(m)] = (k, tuple(m.shape), tuple(m.stride()), m.storage_offset())
    layout_of = {p: members_by_id[id(a)] for p, a in enumerate(flat_args) if id(a) in members_by_id
                 and isinstance(a, torch.Tensor)}
    rest = [None if p in layout_of else a for p, a in enumerate(flat_args)]

    def program(bases, rest):
        views = {}
        flat = list(rest)
        for p, (k, size, stride, offset) in layout_of.items():
            key = (k, size, stride, offset)
            if key not in views:
                views[key] = bases[k].as_strided(size, stride, offset)
            flat[p] = views[key]
        args, kwargs = tree_unflatten(flat, in_spec)
        out = fn(*args, **kwargs)
        for (k, size, stride, offset), view in views.items():
            if (tuple(view.shape), tuple(view.stride()), view.storage_offset()) != (size, stride, offset):
                raise UnsupportedOp(
                    "the program changes the sizes or strides (e.g. t_(), unsqueeze_()) of an input that shares "
                    "memory with another input", "capture",
                    "apply the layout change outside the compiled function, or clone the input")
        return out

    new_flat, new_spec = tree_flatten(((bases, rest), {}))
    return program, new_flat, new_spec
