"""Inputs that share memory: rewrite the program to take their common base once.

When two distinct input tensors are views of one storage and the program mutates one of
them, each must see the other's writes. `with_shared_bases` turns ``fn(*flat)`` into a
program of ``(bases, rest)`` that rebuilds each aliased input as ``base.as_strided(...)``
inside the traced function, so functionalization sees one root, the base is the input
that gets mutated and written back, and the caller's views see the new values.
`SharedBaseProgram.runner` wraps the compiled entry back into a function of the caller's own
inputs: it passes their base, then applies what the views cannot carry out of the graph
(in-place layout changes of the inputs, outputs that are the inputs themselves, and the history
of a member that requires no grad, a detached twin, written with values that do).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._pytree import TreeSpec, tree_flatten, tree_unflatten

from ..errors import UnsupportedOp
from ..graph.sizes import has_symbolic_sizes, layout_of as _layout, storage_positions
from ..torch_private.dispatch import CaptureFunctionMode
from ..torch_private.fake import FakeTensor

__all__ = ["aliased_input_groups", "shared_bases", "base_facts", "with_shared_bases", "SharedBaseProgram"]

Layout = tuple[tuple[int, ...], tuple[int, ...], int]


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


def _memory_of(members: list[torch.Tensor]) -> torch.Tensor:
    """A flat tensor over the members' storage, as far as the members reach (a fake's storage may
    be sized to one of them only), that requires no grad."""
    first = members[0]
    numel = max(_end(m) for m in members)
    if isinstance(first, FakeTensor):  # Dynamo's example inputs (set_ takes no fake storage)
        return first.detach().as_strided((numel,), (1,), 0)
    return torch.empty(0, dtype=first.dtype, device=first.device).set_(first.untyped_storage(), 0, (numel,), (1,))


def _has_leaf_views(members: list[torch.Tensor]) -> bool:
    """Members of one dtype, some leaves requiring grad (views made leaves with ``requires_grad_()``),
    the others requiring none: `_LeafViewsBase` is their base."""
    return (len({m.dtype for m in members}) == 1 and any(m.requires_grad for m in members)
            and all(m.is_leaf for m in members if m.requires_grad))


class _LeafViewsBase(torch.autograd.Function):
    """The base of inputs sharing memory where some are leaves requiring grad. Eager lets writes
    through the other inputs change a leaf's values while autograd sees the leaf unchanged (its
    gradient stays the gradient of every use of it); so the base is a copy of the memory that
    requires grad, the program reads the leaves as views of it (their gradients flow to it, blind
    to the writes, which reach it through detached views: `with_shared_bases`), and its gradient
    reaches each leaf as the part of it at the leaf's layout. The runner copies the base's new
    values back into the memory."""

    @staticmethod
    def forward(ctx, memory, layouts, *leaves):
        ctx.layouts = layouts
        ctx.set_materialize_grads(False)  # no gradient: the leaves get none (eager's .grad stays None)
        return memory.clone()

    @staticmethod
    def backward(ctx, grad):
        if grad is None:
            return (None, None, *(None for _ in ctx.layouts))
        return (None, None, *(grad.as_strided(*layout) for layout in ctx.layouts))


def _autograd_root(members: list[torch.Tensor]) -> Optional[torch.Tensor]:
    """The one tensor every member is (or views, with ``._base``), of their dtype and requiring
    grad as they all do: autograd sees their writes as eager does when it is their base. Else None."""
    roots = {id(m._base if m._base is not None else m): (m._base if m._base is not None else m) for m in members}
    if len(roots) != 1:
        return None
    root = next(iter(roots.values()))
    if {root.dtype} == {m.dtype for m in members} and all(m.requires_grad == root.requires_grad for m in members):
        return root
    return None


def _root_with_detached_twins(members: list[torch.Tensor]) -> Optional[torch.Tensor]:
    """The one root (`_autograd_root`) of the members requiring grad, where it requires grad and
    the other members, requiring none, are detached twins in its memory (``x`` beside
    ``x.detach()``): passed as the base, it gives the twins as detached views, their writes
    unseen by autograd, as eager's. Else None."""
    requiring = [m for m in members if m.requires_grad]
    if not requiring or len(requiring) == len(members) or len({m.dtype for m in members}) != 1:
        return None
    root = _autograd_root(requiring)  # (of their dtype, requiring grad as they do)
    # Every member within the root's reach (a fake root's storage may end where the root does).
    return root if root is not None and all(_end(m) <= _end(root) for m in members) else None


def _end(t: torch.Tensor) -> int:
    """One past the highest storage position `t` reads (non-negative strides)."""
    return t.storage_offset() + sum((n - 1) * s for n, s in zip(t.shape, t.stride())) + 1


def _dense_span(root: torch.Tensor, members: list[torch.Tensor]) -> torch.Tensor:
    """`root`, where it requires grad and is not contiguous, as a flat view of the memory from its
    first to its last element, where that holds every member: members are read as ``as_strided``
    views of the base, and torch writes through such a view of a non-contiguous tensor requiring
    grad only where the base is contiguous (``as_strided_scatter``'s gradient). Through the flat
    view (its gradient gathered back at `root`'s elements) the members' gradients reach `root` as
    eager's do (and a write into a leaf's memory under grad mode raises as eager's: the flat view
    is a view of the leaf). Else `root` itself. (A root that requires no grad and is written with
    values that do stays refused.)"""
    if not root.requires_grad or root.is_contiguous():
        return root
    start, end = root.storage_offset(), _end(root)
    if any(s < 0 for s in root.stride()) or any(m.storage_offset() < start or _end(m) > end for m in members):
        return root
    with torch.enable_grad():  # (a view made under no_grad could not take the program's writes)
        return root.as_strided((end - start,), (1,), start)


def _memory_alone(members: list[torch.Tensor]) -> bool:
    """Members with no common autograd root, of one dtype, none requiring grad: their base is
    their memory alone, and each is a tensor of its own to autograd (detached twins)."""
    return (_autograd_root(members) is None and len({m.dtype for m in members}) == 1
            and not any(m.requires_grad for m in members))


def _common_base(members: list[torch.Tensor], positions: Sequence[int], leaf_views: bool = False,
                 for_trace: bool = False) -> torch.Tensor:
    """A real tensor whose storage holds every member and through which each member's gradient
    flows as eager's does: their shared ``._base`` (or the one member the others view), when
    every member is a differentiable view of it; else, when no member needs gradients, a flat
    tensor over the whole storage. With `leaf_views` (the second try, for a program that turned
    out to write into such inputs), also: the root of the members requiring grad, the others
    being its detached twins (`_root_with_detached_twins`), where that root is contiguous; else,
    for members that `_has_leaf_views`, a `_LeafViewsBase` (for the trace, `for_trace`: a leaf
    copy of the memory, requiring grad); else that root. (Members are read as ``as_strided``
    views of the base, which some in-place ops refuse where the base is not contiguous: hence a
    second try only, and a contiguous base first.)"""
    dtypes = {m.dtype for m in members}
    root = _autograd_root(members)
    if root is not None:
        return _dense_span(root, members)
    if _memory_alone(members):
        return _memory_of(members)
    root = _root_with_detached_twins(members) if leaf_views else None
    if root is not None and root.is_contiguous():
        return root
    if leaf_views and _has_leaf_views(members):
        memory = _memory_of(members)
        if for_trace:
            return memory.detach().clone().requires_grad_(torch.is_grad_enabled())
        leaves = [m for m in members if m.requires_grad]
        return _LeafViewsBase.apply(memory, tuple(_layout(m) for m in leaves), *leaves)
    if root is not None:
        return _dense_span(root, members)
    why = ("they have different dtypes" if len(dtypes) > 1 else
           "some require grad without being views (with ._base) of one tensor that requires grad, as a leaf "
           "view made with requires_grad_() or a detached twin")
    raise UnsupportedOp(
        f"inputs at flat positions {list(positions)} share memory, the program mutates one of them, and aotgraph "
        f"has no common base tensor to pass instead: {why}", "capture",
        "pass the base tensor once and take the views inside the function, or clone one of the inputs",
    )


class _HistoryCurrent(CaptureFunctionMode):
    """Reads the history (``grad_fn``) of each of `views` before a torch function takes it as its
    first argument. Each stands in for a base tensor of the caller, whose history autograd
    keeps current; a view's is rebuilt only when read, and an in-place op on a view whose base
    took history through another view, before that, raises ("a leaf Variable that requires grad
    is being used in an in-place operation") where on the base itself it runs. Only under grad
    mode, where autograd checks in-place ops."""

    def __init__(self, views: Sequence[torch.Tensor]):
        super().__init__()
        self.ids = {id(v) for v in views}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if args and id(args[0]) in self.ids and torch.is_grad_enabled() and args[0].requires_grad:
            try:
                args[0].grad_fn  # noqa: B018 - rebuilt when read
            except RuntimeError:  # a view made under no_grad: autograd refuses to rebuild it (the op decides)
                pass
        return func(*args, **(kwargs or {}))


@dataclass
class _TracedFacts:
    """What the one trace of the program learns about the aliased inputs, read by every call:
    the layout each input had when the program returned (where it changed it in place), and the
    output leaves that are an input itself (flat output position -> flat input position)."""

    relaid: dict[int, Layout] = field(default_factory=dict)
    returned_inputs: dict[int, int] = field(default_factory=dict)
    # With `_LeafViewsBase` bases: flat output position -> (flat input position, or None for the
    # group's memory, group index, layout) of an output that views the base's copy, rebuilt on the
    # caller's tensor (eager's view shares the caller's memory).
    on_memory: dict[int, tuple[Optional[int], int, Layout]] = field(default_factory=dict)
    # With `_LeafViewsBase` bases: flat input positions of members requiring no grad that the
    # program wrote with values requiring grad (eager's such input then carries their history).
    written_twins: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class SharedBaseProgram:
    """``program(bases, rest)``, equivalent to ``fn`` on the caller's inputs (layouts are
    specialized, as the cache key is), with its example `flat_args` and `spec`."""

    program: Callable
    flat_args: list
    spec: TreeSpec
    groups: tuple[tuple[int, ...], ...]
    facts: _TracedFacts
    leaf_views: bool = False  # bases made by `_LeafViewsBase`, their new values copied back into the memory
    returns_twins: bool = False  # the program returns (output, the new values of `facts.written_twins`)

    def runner(self, run: Callable) -> Callable:
        """``run_on_inputs(*flat_args)`` from the compiled ``run(*program_flat_args)``: the caller's
        inputs passed as their bases, their layout changes applied to them after the graphs
        ran, and outputs that are inputs returned as those very tensors."""
        groups, facts, leaf_views, returns_twins = self.groups, self.facts, self.leaf_views, self.returns_twins
        member_positions = frozenset(p for group in groups for p in group)

        def run_on_inputs(*flat_args):
            bases = [_common_base([flat_args[p] for p in group], group, leaf_views) for group in groups]
            versions = _versions(bases, groups, flat_args)
            rest = [None if p in member_positions else a for p, a in enumerate(flat_args)]
            out = run(*tree_flatten(((bases, rest), {}))[0])
            out, twin_values = out if returns_twins else (out, ())
            if leaf_views:
                with torch.no_grad():
                    for base, group in zip(bases, groups):
                        memory = _memory_of([flat_args[p] for p in group])
                        if base.untyped_storage()._cdata != memory.untyped_storage()._cdata:  # a copy
                            memory.copy_(base)
            relaid_done: set[int] = set()
            for position, (size, stride, offset) in facts.relaid.items():
                member = flat_args[position]
                if id(member) in relaid_done:
                    continue
                relaid_done.add(id(member))
                with torch.set_grad_enabled(torch.is_grad_enabled() and member.requires_grad):
                    member.as_strided_(size, stride, offset)
            # The memory holds their new values already; the write again gives each the history
            # of its value, as eager's in-place op did (a leaf gets CopyBackwards). The values have
            # the twins' layouts at the program's end: written after the relayouts above.
            for position, value in zip(facts.written_twins, twin_values):
                twin = flat_args[position]
                if value.untyped_storage().data_ptr() == twin.untyped_storage().data_ptr():
                    value = value.clone()  # (in the twin's memory at another layout: copy_ refuses overlaps)
                twin.copy_(value)
            _bump_written_members(bases, groups, flat_args, versions)
            # Views the graphs returned under no_grad, made before that relayout bumped their
            # memory's version: autograd refuses to read such a view's history (seed 1393).
            stale_views = bool(facts.relaid) and not torch.is_grad_enabled()
            if not facts.returned_inputs and not facts.on_memory and not stale_views:
                return out
            flat_out, out_spec = tree_flatten(out, is_leaf=lambda value: isinstance(value, torch.Size))
            if stale_views:  # (not the caller's own tensors, which the program returned as they are: seed 15094)
                callers = {id(a) for a in flat_args}
                relaid_memory = {flat_args[p].untyped_storage()._cdata for p in facts.relaid}
                fresh: dict[int, torch.Tensor] = {}  # by id: an output returned twice stays one tensor
                flat_out = [fresh.setdefault(id(o), o._base.as_strided(o.shape, o.stride(), o.storage_offset()))
                            if isinstance(o, torch.Tensor) and o._base is not None and id(o) not in callers
                            and o.untyped_storage()._cdata in relaid_memory else o for o in flat_out]
            for k, position in facts.returned_inputs.items():
                flat_out[k] = flat_args[position]
            rebuilt: dict[int, torch.Tensor] = {}  # by id of the fact: an output returned twice is one tensor
            for k, fact in facts.on_memory.items():
                position, group, layout = fact
                if id(fact) in rebuilt:
                    flat_out[k] = rebuilt[id(fact)]
                elif position is not None:  # a view of a leaf, or of a written twin: its gradient flows as eager's
                    flat_out[k] = rebuilt[id(fact)] = flat_args[position].as_strided(*layout)
                else:
                    flat_out[k] = rebuilt[id(fact)] = _memory_of([flat_args[p] for p in groups[group]]).as_strided(
                        *layout)
            return tree_unflatten(flat_out, out_spec)

        return run_on_inputs


def _versions(bases: list, groups: tuple, flat_args: Sequence[Any]) -> Optional[list]:
    """Per group: the version of its base and of each member (None: a tensor made in inference
    mode keeps no version counter)."""
    if any(t.is_inference() for t in bases) or any(flat_args[p].is_inference() for g in groups for p in g):
        return None
    return [(base._version, [flat_args[p]._version for p in group]) for base, group in zip(bases, groups)]


def _bump_written_members(bases: list, groups: tuple, flat_args: Sequence[Any], versions: Optional[list]) -> None:
    """After the graphs wrote a group's base: the version of each member that did not move with
    it (a base made over the members' memory has a counter of its own) is moved now, as eager's
    write into the members moved it, so a tensor saved for an earlier backward reads as modified
    there. (Which member the program wrote is not known here: all of the group's move.)"""
    if versions is None:
        return
    stale = [flat_args[p] for base, group, (base_version, member_versions) in zip(bases, groups, versions)
             if base._version != base_version
             for p, version in zip(group, member_versions) if flat_args[p]._version == version]
    if stale:
        torch._C._increment_version(list({id(t): t for t in stale}.values()))


def _on_caller_memory(out: torch.Tensor, bases: list, groups: tuple, flat_args: Sequence[Any]
                      ) -> Optional[tuple[Optional[int], int, Layout]]:
    """Where an output of the traced program that views a `_LeafViewsBase` copy lies on the caller's
    memory: ``(the leaf it lies within, or None, the group, its layout)``. A view requiring grad
    needs a leaf requiring grad that holds all its elements; one that requires none is rebuilt on
    the memory itself. None where the output views no base or lies within no such leaf."""
    storage = out.untyped_storage()._cdata
    group = next((k for k, b in enumerate(bases) if b.untyped_storage()._cdata == storage), None)
    if group is None or out.dtype != bases[group].dtype or has_symbolic_sizes(out):
        return None
    layout = _layout(out)
    if not out.requires_grad:
        return None, group, layout
    elements = storage_positions(*layout)
    for p in groups[group]:
        member = flat_args[p]
        if member.requires_grad and member.is_leaf and not has_symbolic_sizes(member) \
                and elements <= storage_positions(*_layout(member)):
            return p, group, layout
    return None


def shared_bases(flat_args: Sequence[Any], groups: tuple[tuple[int, ...], ...],
                 leaf_views: bool = False) -> list[torch.Tensor]:
    """Each group's common base for the trace (UnsupportedOp where a group has none that carries its
    gradients; with `leaf_views`, leaves among plain views get a `_LeafViewsBase`)."""
    return [_common_base([flat_args[p] for p in group], group, leaf_views, for_trace=True) for group in groups]


def base_facts(bases: Sequence[torch.Tensor]) -> tuple:
    """What the cache key must add for the bases (the inputs' own key does not see them)."""
    return tuple((tuple(b.shape), b.stride(), b.storage_offset(), b.dtype, b.requires_grad) for b in bases)


def with_shared_bases(fn: Callable, flat_args: Sequence[Any], in_spec: TreeSpec,
                      groups: tuple[tuple[int, ...], ...], bases: list[torch.Tensor],
                      leaf_views: bool = False) -> SharedBaseProgram:
    """``fn`` on `flat_args` as a program taking `bases` (`shared_bases`, with the same `leaf_views`)
    instead of each group's members. A member that requires no grad, of a base that does (a
    `_LeafViewsBase`), is a detached view: its writes reach the base unseen by autograd, as eager's
    reach the leaves."""
    layout_of: dict[int, tuple[int, Layout]] = {}
    for k, group in enumerate(groups):
        layout_of.update((p, (k, _layout(flat_args[p]))) for p in group)
    for p, a in enumerate(flat_args):  # the same tensor again, later: the same view
        if p not in layout_of and isinstance(a, torch.Tensor):
            first = next((q for q in layout_of if flat_args[q] is a), None)
            if first is not None:
                layout_of[p] = layout_of[first]
    rest = [None if p in layout_of else a for p, a in enumerate(flat_args)]
    facts = _TracedFacts()
    # Members that are tensors of their own to autograd, as in eager: those requiring no grad of
    # a base that does, and every member of memory shared by tensors with no common root.
    alone = {k for k, group in enumerate(groups) if _memory_alone([flat_args[p] for p in group])}
    detached = {p for p, (k, _) in layout_of.items()
                if k in alone or (bases[k].requires_grad and not flat_args[p].requires_grad)}

    # One view per caller's tensor: distinct tensors of the same layout (x and x[:]) stay distinct
    # objects (a layout change of one, or returning one, must not reach the other).
    owner = {p: next(q for q in layout_of if flat_args[q] is flat_args[p]) for p in layout_of}
    # Members that are their group's base in the caller (x beside x[::2]), views of it here.
    stand_ins = {p for p, (k, _) in layout_of.items() if flat_args[p] is bases[k] and p not in detached}

    def program(bases, rest):
        views: dict[int, torch.Tensor] = {}
        flat = list(rest)
        for p, (k, layout) in layout_of.items():
            if owner[p] not in views:
                view = bases[k].as_strided(*layout)
                views[owner[p]] = view.detach() if p in detached else view
            flat[p] = views[owner[p]]
        args, kwargs = tree_unflatten(flat, in_spec)
        with _HistoryCurrent([views[owner[p]] for p in stand_ins]) if stand_ins else contextlib.nullcontext():
            out = fn(*args, **kwargs)
        facts.relaid.clear()
        facts.returned_inputs.clear()
        for p, (k, layout) in layout_of.items():
            if _layout(views[owner[p]]) != layout:
                facts.relaid[p] = _layout(views[owner[p]])
        position_of_view = {id(views[q]): q for q in views}
        flat_out = tree_flatten(out, is_leaf=lambda value: isinstance(value, torch.Size))[0]
        facts.on_memory.clear()
        facts.written_twins[:] = [q for q in views if q in detached and views[q].requires_grad]
        twin_views = {id(views[q]): q for q in facts.written_twins}
        first_position: dict[int, int] = {}
        for k, o in enumerate(flat_out):
            if not isinstance(o, torch.Tensor):
                continue
            if first_position.setdefault(id(o), k) in facts.on_memory:  # the same tensor again: the same object
                facts.on_memory[k] = facts.on_memory[first_position[id(o)]]
                continue
            twin = twin_views.get(id(o._base)) if o.requires_grad and not has_symbolic_sizes(o) else None
            if id(o) in position_of_view:
                facts.returned_inputs[k] = position_of_view[id(o)]
            elif twin is not None:  # a view of a written twin: rebuilt on the caller's, which has its history
                facts.on_memory[k] = twin, layout_of[twin][0], _layout(o)
            elif not o.requires_grad and position_of_view.get(id(o._base)) in detached:
                # A view of a member that is a tensor of its own (a detached twin, memory alone): eager's
                # is a view of the caller's tensor (its ``._base``), so it is rebuilt on that one.
                member = position_of_view[id(o._base)]
                facts.on_memory[k] = member, layout_of[member][0], _layout(o)
            elif leaf_views:
                rebuilt = _on_caller_memory(o, bases, groups, flat_args)
                if rebuilt is not None:
                    facts.on_memory[k] = rebuilt
        if detached:  # the runner gives the written twins these values' history
            return out, [views[q] for q in facts.written_twins]
        return out

    new_flat, new_spec = tree_flatten(((bases, rest), {}))
    # The caller's tensors are views this program makes of its bases: an in-place layout change of
    # one is replayed on the caller's tensor by the runner, after the outputs (`find_output_views`).
    program.aotgraph_member_views = True
    return SharedBaseProgram(program, new_flat, new_spec, groups, facts, leaf_views, returns_twins=bool(detached))
