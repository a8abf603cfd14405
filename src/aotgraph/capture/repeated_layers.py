"""Repeated layers found without a marker: each call of one of them becomes a region.

A module compiled whole (`aot_module`) often holds many submodules of one class and one
configuration (the blocks of a ``ModuleList``). `RepeatedLayers` finds them before capture
and, while the program is captured, sends each call of one through `capture.regions` as if
it were marked with ``nested_compile_region``: its parameters, buffers and tensor arguments
are the region's operands, so every occurrence with operands of the same layout calls one
region, captured and partitioned once.

Two submodules have the same structure (`structure_of`) when their trees have the same
classes, parameter and buffer layouts, and equal plain attributes (ints, strings, dtypes,
...). A structure shared by fewer than `MIN_REPEATS` submodules is recorded flat (its
members' own repeated children may still be regions). A submodule is not a candidate when its
tree has an attribute that is not plain (a tensor kept as an attribute, a function), a hook,
or no child module (a lone ``Linear`` is not worth a region); only the outermost repeated
submodules are taken. A call is recorded
inline, as the flat capture would, when its structure changed since the search, when an
argument is not a tensor or a hashable constant, or when the region is not a plain function
of its operands (it draws random numbers or writes an operand that needs a gradient:
`capture.regions.region_of`; a buffer it updates, as BatchNorm's running statistics, is written
by each call, switch ``region_buffer_writes``); a layer whose forward assigns a tensor to an
attribute (a buffer rebound, `module_writes`) is recorded inline from that call on; after its
first call, a layer whose forward sets its own attributes is recorded inline too, so each layer runs its own forward once, as in the flat
capture. Every occurrence's plain attributes are read, so the compile's guards watch them all.
Layers called on tensors of symbolic sizes become regions only where their structure repeats
`SYMBOLIC_MIN_REPEATS` times or more (switch ``symbolic_regions``). Switches: ``auto_regions``,
``structure_memo`` (the search computes each submodule's structure once).
"""
from __future__ import annotations

import contextlib
import enum
from collections import Counter, defaultdict
from typing import Any, Callable, Iterator, Optional

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from .. import config
from ..artifacts import TensorMeta
from ..graph.sizes import has_symbolic_sizes
from ..torch_private.dispatch import DisableTorchFunction
from ..torch_private.saved_tensor_hooks import saved_tensor_hooks_active
from ..module_writes import MODULE_INTERNALS as _MODULE_INTERNALS, tensor_writes_recorded
from .regions import Regions, call_region

__all__ = ["RepeatedLayers", "structure_of", "repeated_layers", "MIN_REPEATS", "SYMBOLIC_MIN_REPEATS"]

# A region of symbolic sizes costs more to capture and split than a flat layer whose ops the
# fake memo answers: measured on the GPT decoder (d=64, dynamic compile, CPU), regions made 2-4
# layers 22-40 % slower and 6 layers 12-13 % faster (benchmarks/RESULTS.md, issue 17).
SYMBOLIC_MIN_REPEATS = 6
# A structure is a region only where it repeats this many times: a region's own capture, split
# and calls cost more than a second flat copy of a layer (nop, CPU: a small ResNet's pair of
# blocks made its compile 1.20x slower; the decoder's blocks 1.07x at 2 layers, 0.92x at 3, 0.82x
# at 4; benchmarks/RESULTS.md, issue 19 session 22).
MIN_REPEATS = 3
_PLAIN_TYPES = (int, float, bool, str, bytes, type(None), torch.dtype, torch.device, torch.Size, enum.Enum)
_HOOK_DICTS = tuple(name for name in _MODULE_INTERNALS if "hook" in name)


def _plain(value: Any) -> bool:
    if isinstance(value, (tuple, list, frozenset)):
        return all(_plain(v) for v in value)
    return isinstance(value, _PLAIN_TYPES)


def _frozen(value: Any) -> Any:
    """`value` as part of a structure: containers as tuples, each scalar with its type (``1``,
    ``1.0`` and ``True`` are equal in Python, and a block's forward may make tensors of their
    types), a float by its bits (``-0.0`` and ``0.0`` are equal too)."""
    if isinstance(value, (tuple, list)):
        return type(value), tuple(_frozen(v) for v in value)
    return type(value), value.hex() if type(value) is float else value


def structure_of(module: torch.nn.Module, patched: frozenset | set = frozenset(),
                 memo: Optional[dict[int, Optional[tuple]]] = None) -> Optional[tuple]:
    """What `module`'s forward depends on besides its tensors' values: its classes, attributes
    and tensor layouts, recursively; None where it cannot be told (see the module docstring).
    `patched`: attribute names of `module` itself to leave out. `memo`: id(module) -> its
    structure, for modules that do not change while it is used (one search), filled here."""
    if memo is None or patched:
        return _structure(module, patched, memo)
    if id(module) not in memo:
        memo[id(module)] = _structure(module, patched, memo)
    return memo[id(module)]


def _structure(module: torch.nn.Module, patched: frozenset | set, memo: Optional[dict]) -> Optional[tuple]:
    state = vars(module)  # read as a dict: the compile's guards (`cache.guards`) record attribute reads
    if any(state.get(name) for name in _HOOK_DICTS):
        return None
    attributes = [(name, value) for name, value in state.items()
                  if name not in _MODULE_INTERNALS and name not in patched]
    if not all(_plain(value) for _, value in attributes):
        return None
    attributes = tuple(sorted((name, _frozen(value)) for name, value in attributes))
    tensors = tuple((name, None if t is None else TensorMeta.of(t))
                    for name, t in (*state["_parameters"].items(), *state["_buffers"].items()))
    children = []
    for name, child in state["_modules"].items():
        child_structure = None if child is None else structure_of(child, memo=memo)
        if child is not None and child_structure is None:
            return None
        children.append((name, child_structure))
    return (type(module), state["training"], attributes, tensors, tuple(children))


def repeated_layers(root: torch.nn.Module) -> dict[int, tuple]:
    """The outermost submodules of `root` (not `root`) with child modules that share their
    structure with another one: id(module) -> its structure."""
    if _global_module_hooks():
        return {}  # a hook for every module may treat each layer apart (it sees which module it is)
    groups: dict[tuple, list] = defaultdict(list)
    taken: dict[int, tuple] = {}
    # A candidate's structure (and refusal) holds its children's, which are candidates too (a
    # ModuleList's blocks): each computed once (switch ``structure_memo``).
    memo, refusals = ({}, {}) if config.enabled("structure_memo") else (None, None)

    def visit(module: torch.nn.Module) -> None:
        for child in _children(module):
            structure = (structure_of(child, memo=memo) if _children(child) and not _refused_as_region(child, refusals)
                         else None)
            if structure is not None:
                groups[structure].append(child)
            visit(child)

    visit(root)
    inside: set[int] = set()
    for structure, members in groups.items():
        if len({id(m) for m in members}) >= MIN_REPEATS:
            for member in members:
                taken[id(member)] = structure
                inside.update(id(m) for m in _tree(member) if m is not member)
    return {key: structure for key, structure in taken.items() if key not in inside}


def _global_module_hooks() -> bool:
    """Whether hooks for every module's forward or backward are registered
    (``register_module_forward_hook`` and the like)."""
    from torch.nn.modules import module as torch_module

    return any(getattr(torch_module, name, None) for name in (
        "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks", "_global_backward_pre_hooks"))


def _children(module: torch.nn.Module) -> list[torch.nn.Module]:
    """`module`'s child modules, read from its dict: in a capture, ``children()``'s attribute
    reads would each go through the compile's guard recorder (`cache.guards`), which ignores them."""
    return [child for child in vars(module)["_modules"].values() if child is not None]


def _tree(module: torch.nn.Module) -> list[torch.nn.Module]:
    """`module` and its descendants, each once, in the order of ``modules()`` (read as `_children`)."""
    seen: set[int] = set()
    order: list[torch.nn.Module] = []
    pending = [module]
    while pending:
        current = pending.pop()
        if id(current) not in seen:
            seen.add(id(current))
            order.append(current)
            pending.extend(reversed(_children(current)))
    return order


def _refused_as_region(module: torch.nn.Module, memo: Optional[dict[int, bool]] = None) -> bool:
    """Whether a region's capture of `module` would be refused anyway, told without capturing
    it: in training, a dropout drawing random numbers in `module`'s tree (or a norm updating
    its running statistics, a buffer mutation, with switch ``region_buffer_writes`` off). Saves
    capturing such layers twice (as a region, then flat). `memo`: id(module) -> the answer, filled here."""
    if memo is not None and id(module) in memo:
        return memo[id(module)]
    refused = _refused_itself(module) or any(_refused_as_region(child, memo) for child in _children(module))
    if memo is not None:
        memo[id(module)] = refused
    return refused


def _refused_itself(module: torch.nn.Module) -> bool:
    # (read from the instance's dict, unseen by a capture's guard recorder; torch.compile's
    # OptimizedModule keeps none there and forwards the attribute to the module it wraps)
    training = vars(module).get("training")
    if not (module.training if training is None else training):
        return False
    if isinstance(module, torch.nn.modules.batchnorm._NormBase) and module.track_running_stats:
        return not config.enabled("region_buffer_writes")
    return isinstance(module, torch.nn.modules.dropout._DropoutNd) and module.p > 0


class RepeatedLayers:
    """While active (``with layers.active():``), each call of a repeated layer of `root` goes
    through `regions` (the capture's `Regions`) and `recorder`, as a marked region would."""

    def __init__(self, root: torch.nn.Module, regions: Regions, recorder):
        self.root, self.regions, self.recorder = root, regions, recorder
        self.layers = repeated_layers(root)
        self.repeats = Counter(self.layers.values())  # structure -> how many layers have it
        self.out_specs: dict[str, Any] = {}  # region name -> its outputs' structure
        self.tracing_region = False  # a region's own capture calls the layer's forward itself
        self.changes_itself: set[tuple] = set()  # structures whose forward changes their attributes

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Each repeated layer's ``forward`` replaced by one through `_call` (an instance
        attribute marked ``aotgraph_unguarded``: `cache.guards` does not guard it), and back."""
        modules = [m for m in _tree(self.root) if id(m) in self.layers]
        for module in modules:
            module.__dict__["forward"] = self._forward_of(module, type(module).forward.__get__(module))
        try:
            yield
        finally:
            for module in modules:
                del module.__dict__["forward"]

    def _forward_of(self, module: torch.nn.Module, forward: Callable) -> Callable:
        def region_forward(*args, **kwargs):
            if self.tracing_region:
                return forward(*args, **kwargs)
            return self._call(module, forward, args, kwargs)
        region_forward.aotgraph_unguarded = True
        return region_forward

    def _call(self, module: torch.nn.Module, forward: Callable, args: tuple, kwargs: dict) -> Any:
        if saved_tensor_hooks_active():  # called inside a checkpoint: recorded inline, where it saves what that says
            return forward(*args, **kwargs)
        with DisableTorchFunction():  # bookkeeping on fakes: the capture's torch-function mode would see each read
            structure = structure_of(module, {"forward"})  # without the patch of `active`
            leaves, spec = tree_flatten((args, kwargs))
            constants = tuple((k, v) for k, v in enumerate(leaves) if not isinstance(v, torch.Tensor))
            if (structure != self.layers[id(module)] or structure in self.changes_itself
                    or not all(_hashable(v) for _, v in constants)):
                return forward(*args, **kwargs)
            names, state = _named_state(module)
            positions = [k for k, v in enumerate(leaves) if isinstance(v, torch.Tensor)]
            operands = (*state, *(leaves[k] for k in positions))
            if self.repeats[structure] < SYMBOLIC_MIN_REPEATS and any(has_symbolic_sizes(o) for o in operands):
                return forward(*args, **kwargs)
        identity = ("auto", structure, spec, constants, torch.is_grad_enabled(), _autocast_state())
        out_spec = []  # the output structure, when this call captures the region

        def program(*values):
            flat = list(leaves)
            for position, value in zip(positions, values[len(names):]):
                flat[position] = value
            call_args, call_kwargs = tree_unflatten(flat, spec)
            self.tracing_region = True
            try:
                with tensor_writes_recorded(module, refuse_outside=False) as writes:
                    out = torch.func.functional_call(module, dict(zip(names, values[:len(names)])), call_args,
                                                     call_kwargs, tie_weights=False, strict=False)
                    kept = writes.container_writes()
            finally:
                self.tracing_region = False
            if writes.writes or writes.outside or kept:  # it keeps tensors in attributes: recorded inline
                raise _AssignsTensors  # (`module_writes`)
            if structure_of(module, {"forward"}) != structure:  # its forward set its own attributes
                self.changes_itself.add(structure)  # the other layers run theirs, as the flat capture does
            out_leaves, spec_of_out = tree_flatten(out)
            out_spec.append(spec_of_out)
            return out_leaves

        try:
            region = self.regions.get(identity, f"auto_{type(module).__name__}", program, operands, automatic=True)
        except _AssignsTensors:
            self.changes_itself.add(structure)
            region = None
        if region is None:
            return forward(*args, **kwargs)
        self.out_specs.update({region.name: spec for spec in out_spec})
        _read_attributes(module)
        return tree_unflatten(list(call_region(self.recorder, region, operands)), self.out_specs[region.name])


class _AssignsTensors(Exception):
    """A layer's forward assigned a tensor to an attribute while captured as a region."""


def _named_state(module: torch.nn.Module) -> tuple[list[str], list[torch.Tensor]]:
    """The names and tensors of `module`'s parameters, then its buffers, as
    ``named_parameters`` / ``named_buffers`` (``remove_duplicate=False``) list them, read from
    the modules' dicts (not through attribute reads, which the compile's guards record)."""
    parameters: list = []
    buffers: list = []

    def visit(submodule: torch.nn.Module, prefix: str) -> None:
        state = vars(submodule)
        parameters.extend((prefix + name, t) for name, t in state["_parameters"].items() if t is not None)
        buffers.extend((prefix + name, t) for name, t in state["_buffers"].items() if t is not None)
        for name, child in state["_modules"].items():
            if child is not None:
                visit(child, f"{prefix}{name}.")

    visit(module, "")
    named = parameters + buffers
    return [name for name, _ in named], [t for _, t in named]


def _read_attributes(module: torch.nn.Module) -> None:
    """Reads every plain attribute of `module`'s tree, as the flat capture of its forward may:
    the compile's guards (`cache.guards`) then watch each occurrence, not only the one captured."""
    for submodule in _tree(module):
        for name in [n for n in submodule.__dict__ if n not in _MODULE_INTERNALS]:
            getattr(submodule, name)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _autocast_state() -> tuple:
    return tuple((device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
                 for device in ("cpu", "cuda"))
