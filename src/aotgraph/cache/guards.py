"""Guards on the Python values a program reads while it is captured.

A compiled entry bakes in every Python value the program read: a module's ``self.scale``,
``self.eps``, ``self.training``, an argument object's ``cfg.alpha``. `reads_recorded`
watches the objects a program may read (the module tree, non-tensor argument objects, and
objects reached through their attributes) for the length of a capture, and returns the
`Guard`s of what was read: a call whose values differ from a guard's compiles a new entry
instead of running stale code.

Watching an object swaps its class, for the capture only, for a subclass whose
``__getattribute__`` records reads of the object's own attributes (instance and slot
attributes; methods and class attributes are not guarded). Values of plain types (numbers,
strings, None, enums, dtypes, devices, and tuples, lists, dicts and sets of them) are
guarded by value; other objects (tensors that are not parameters or buffers included) by
identity, and objects with attributes of their own are watched in turn, so those attributes
are guarded too. An object whose class cannot be swapped is guarded by
identity only, with one warning. Reads from globals and closures are not guarded.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import enum
import threading
import types
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

import torch
from torch.utils._pytree import tree_leaves

from ..errors import UnsupportedOp
from ..torch_private.fake import FakeTensor
from .recompiles import input_label

__all__ = ["Guard", "GuardSet", "reads_recorded", "failed_guard", "written_in_place"]

_PLAIN_TYPES = (int, float, bool, complex, str, bytes, type(None), enum.Enum, torch.dtype, torch.device,
                torch.Size, torch.memory_format, torch.layout)
_CONTAINERS = (tuple, list, dict, set, frozenset)
# Attributes every nn.Module has in its __dict__: its state, seen through other paths.
_MODULE_INTERNALS = frozenset(torch.nn.Module().__dict__) - {"training"}
# Values guarded by neither value nor identity: submodules are watched themselves.
_UNGUARDED_TYPES = (torch.nn.Module, types.ModuleType)
_MISSING = object()


@dataclass(frozen=True)
class Guard:
    """``root.path[0].path[1]...`` must still be `expected` (equal, of the same type; or
    the same object when `by_identity`). `root` is a flat argument position (an int) or a
    fixed object (the compiled module); `label` names the value for messages."""

    root: Any
    from_argument: bool
    path: tuple[str, ...]
    expected: Any
    by_identity: bool
    label: str
    contents: Optional[tuple] = None  # a container guarded by identity: its items, each the same object too

    def current(self, flat_args: Sequence[Any]) -> Any:
        value = flat_args[self.root] if self.from_argument else self.root
        for name in self.path:
            if type(name) is Item:
                try:
                    value = value[name.key]
                except (LookupError, TypeError):
                    return _MISSING
            else:
                value = getattr(value, name, _MISSING)
            if value is _MISSING:
                break
        return value

    def holds(self, flat_args: Sequence[Any]) -> bool:
        value = self.current(flat_args)
        if self.by_identity:
            return value is self.expected and (self.contents is None or _same_items(value, self.contents))
        return _same_plain(value, self.expected)

    def describe_change(self, flat_args: Sequence[Any]) -> str:
        value = self.current(flat_args)
        shown = "deleted" if value is _MISSING else _short(value)
        return f"{self.label} changed: {'absent' if self.expected is _MISSING else _short(self.expected)} -> {shown}"


@dataclass(frozen=True)
class Item:
    """A step of a guard's path into a container: ``value[key]``."""

    key: Any


def _items(container: Any) -> tuple:
    """A container's items as they are now: ``(key, value)`` pairs of a dict, else its elements."""
    return tuple(container.items()) if isinstance(container, dict) else tuple(container)


def _same_items(container: Any, expected: tuple) -> bool:
    """Whether `container` still holds `expected`'s items: the same keys, and each value the same
    object (a tensor or module) or an equal plain value."""
    items = _items(container)
    if len(items) != len(expected):
        return False
    if isinstance(container, dict):
        if [key for key, _ in items] != [key for key, _ in expected]:
            return False
        items, expected = [value for _, value in items], [value for _, value in expected]
    return all(item is was or (_is_plain(was) and _same_plain(item, was)) for item, was in zip(items, expected))


def failed_guard(guards: Sequence[Guard], flat_args: Sequence[Any]) -> Optional[Guard]:
    """The first guard that does not hold for these arguments, or None."""
    for guard in guards:
        if not guard.holds(flat_args):
            return guard
    return None


def _same_plain(value: Any, expected: Any) -> bool:
    if type(value) is not type(expected):
        return False
    if isinstance(expected, float) and expected != expected:
        return value != value  # NaN: the same value, though not equal
    if isinstance(expected, (list, tuple)):
        return len(value) == len(expected) and all(map(_same_plain, value, expected))
    if isinstance(expected, dict):
        return value.keys() == expected.keys() and all(_same_plain(value[k], expected[k]) for k in expected)
    return value == expected


def _is_plain(value: Any) -> bool:
    if isinstance(value, _PLAIN_TYPES):
        return True
    if isinstance(value, dict):
        return all(_is_plain(k) and _is_plain(v) for k, v in value.items())
    if isinstance(value, _CONTAINERS):
        return all(map(_is_plain, value))
    return False


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _ReadRecorder:
    """The reads of one capture: watched objects, their sources, and the guards so far."""

    def __init__(self):
        self.guards: dict[tuple, Guard] = {}
        self.source_of: dict[int, tuple] = {}  # id(obj) -> (root, from_argument, path, label)
        self.swapped: list[tuple[Any, type]] = []
        self.warned_unswappable: set[type] = set()
        self.written: set[tuple[int, str]] = set()  # (id(owner), name) the program assigned

    def watch(self, obj: Any, root: Any, from_argument: bool, path: tuple, label: str) -> None:
        if id(obj) in self.source_of or getattr(type(obj), "__getattribute__", None) is _recording_getattribute:
            return
        self.source_of[id(obj)] = (root, from_argument, path, label)
        original = type(obj)
        try:  # object's own setattr: a frozen dataclass refuses assignments through its __setattr__
            object.__setattr__(obj, "__class__", _recording_class(original))
        except TypeError:
            if original not in self.warned_unswappable:
                self.warned_unswappable.add(original)
                warnings.warn(f"aotgraph: the attributes of {label} (a {original.__name__}) cannot be guarded; "
                              "if the program reads one and it changes later, the compiled code will not see the "
                              "change (pass such values as arguments, or recompile)", stacklevel=2)
            return
        self.swapped.append((obj, original))

    def saw_read(self, owner: Any, name: str, value: Any) -> None:
        source = self.source_of.get(id(owner))
        if source is None or not _is_own_attribute(owner, name):
            return
        if isinstance(owner, torch.nn.Module) and name in _MODULE_INTERNALS:
            return
        if isinstance(value, _UNGUARDED_TYPES) or getattr(value, "aotgraph_unguarded", False):
            return  # a function marked so is aotgraph's own, set for the capture (capture.repeated_layers)
        if isinstance(owner, torch.nn.Module) and isinstance(value, FakeTensor):
            return  # an input of the program in the attribute's place (`aot_module`'s attribute state)
        root, from_argument, path, label = source
        key = (id(owner), name)
        if key in self.guards or key in self.written:  # (a value the program assigned is its own, not an input)
            return
        plain = _is_plain(value)
        contents = _items(value) if not plain and isinstance(value, (list, tuple, dict)) else None
        self.guards[key] = Guard(root, from_argument, path + (name,), copy.deepcopy(value) if plain else value,
                                 not plain, f"{label}.{name}", contents)
        if not plain and _has_attributes(value):
            self.watch(value, root, from_argument, path + (name,), f"{label}.{name}")
        for item_key, item in _keyed(value, contents) if contents else ():
            if isinstance(item, torch.nn.Module) or _has_attributes(item):  # (a teacher kept as ``[teacher]``)
                for inner_path, module in _modules_within(item):
                    self.watch(module, root, from_argument, path + (name, Item(item_key), *inner_path),
                               f"{label}.{name}[{item_key!r}]")

    def saw_state(self, owner: torch.nn.Module, name: str, value: Any) -> None:
        """A parameter, buffer or submodule read through ``nn.Module.__getattr__``. Of the compiled
        module's tree these are inputs (or watched themselves); of a module reached through an
        attribute or a container (``self._teacher = [teacher]``) the program reads them as constants:
        guarded by identity (a ``load_state_dict(assign=True)`` puts others in their place), and
        a None one by value. (`aot_module`'s `ModuleTree` sees its own tree's change.)"""
        source = self.source_of.get(id(owner))
        key = (id(owner), name)
        if source is None or key in self.guards or key in self.written:
            return
        root, from_argument, path, label = source
        if (path or from_argument) and not isinstance(value, FakeTensor):  # (not a tree module of the compile's)
            self.guards[key] = Guard(root, from_argument, path + (name,), value, value is not None, f"{label}.{name}")

    def saw_absent(self, owner: Any, name: str) -> None:
        source = self.source_of.get(id(owner))
        key = (id(owner), name)
        if source is None or key in self.guards or key in self.written:
            return
        root, from_argument, path, label = source
        self.guards[key] = Guard(root, from_argument, path + (name,), _MISSING, False, f"{label}.{name}")

    def restore(self) -> None:
        for obj, original in reversed(self.swapped):
            object.__setattr__(obj, "__class__", original)
        self.swapped.clear()


def _keyed(container: Any, contents: tuple) -> list:
    """``(key, item)`` pairs of a container's `contents` (dict keys, else positions)."""
    return list(contents) if isinstance(container, dict) else list(enumerate(contents))


def _modules_within(value: Any) -> list:
    """`value` itself when it is a module, with its submodules and their paths from it."""
    if not isinstance(value, torch.nn.Module):
        return [((), value)]
    return [(tuple(name.split(".")) if name else (), module) for name, module in value.named_modules()]


def _has_attributes(value: Any) -> bool:
    """An object whose own attributes a program may read: watched in turn (tensors, callables,
    classes and containers are guarded by identity only; so are symbolic sizes and their sympy
    expressions, which a module may hold from an earlier symbolic trace: watching swaps an
    object's class, and a sympy expression's class is its operation)."""
    if isinstance(value, (torch.Tensor, type, torch.SymInt, torch.SymFloat, torch.SymBool, *_CONTAINERS)) \
            or callable(value) or type(value).__module__.startswith(_SYMBOLIC_MODULES):
        return False
    return hasattr(value, "__dict__") or bool(getattr(type(value), "__slots__", ()))


_SYMBOLIC_MODULES = ("sympy.", "torch.fx.experimental.sym_node", "torch.utils._sympy.")


_state = threading.local()


def _active() -> Optional[_ReadRecorder]:
    return getattr(_state, "recorder", None)


def _is_own_attribute(owner: Any, name: str) -> bool:
    instance_dict = getattr(owner, "__dict__", None)
    if instance_dict is not None and name in instance_dict:
        return True
    for klass in type(owner).__mro__:
        slot = klass.__dict__.get(name)
        if slot is not None:
            return isinstance(slot, types.MemberDescriptorType)
    return False


def _recording_getattribute(self, name):
    value = _base_getattribute(type(self))(self, name)
    if name[:2] != "__":  # dunders (``__dict__``, ``__class__``) are the recorder's own reads
        recorder = _active()
        if recorder is not None:
            recorder.saw_read(self, name, value)
    return value


def _recording_getattr(self, name):
    """A module's ``__getattr__`` (parameters, buffers, submodules), and a read of an attribute the
    object does not have (``getattr(self, "h", None)``, ``hasattr``): guarded as absent, so
    that a call after the attribute appears compiles again instead of running code that
    assumed it missing."""
    try:
        value = type(self).__mro__[1].__getattr__(self, name)
    except AttributeError:
        recorder = _active()
        if recorder is not None and name[:2] != "__":
            recorder.saw_absent(self, name)
        raise
    recorder = _active()
    if recorder is not None and isinstance(self, torch.nn.Module):
        recorder.saw_state(self, name, value)
    return value


def _recording_setattr(self, name, value):
    """An argument object's attribute assigned while the program is captured: a tensor the
    program computes (a fake) would stay on the caller's object after the capture, and no call
    of the compiled code would assign it; refused. Modules are `module_writes`' (aot_module
    replays their assignments). Any other assignment marks the attribute written: reads of it
    after that are of the program's own value, not guarded."""
    recorder = _active()
    if recorder is not None:
        if isinstance(value, FakeTensor) and not isinstance(self, torch.nn.Module):
            source = recorder.source_of.get(id(self))
            label = source[3] if source is not None else type(self).__name__
            raise UnsupportedOp(f"the program assigns a tensor it computes to {label}.{name}", "capture",
                                "return the tensor from the function and assign it outside")
        recorder.written.add((id(self), name))
    type(self).__mro__[1].__setattr__(self, name, value)


def written_in_place(owner: Any, name: str) -> None:
    """The program changed the container ``owner.name`` in place (appended to a list, set a
    dict's key: `module_writes` replays that each call): what it holds after a call is the
    program's own output, not an input, so it is guarded as the same object, not by value."""
    recorder = _active()
    if recorder is None:
        return
    key = (id(owner), name)
    recorder.written.add(key)
    guard = recorder.guards.get(key)
    if guard is not None and not guard.by_identity:
        recorder.guards[key] = dataclasses.replace(guard, expected=object.__getattribute__(owner, name),
                                                   by_identity=True)
    elif guard is not None and guard.contents is not None and \
            not _holds_real_tensors(guard.contents, isinstance(guard.expected, dict)):
        recorder.guards[key] = dataclasses.replace(guard, contents=None)  # (what it held came from the program)


def _holds_real_tensors(contents: tuple, of_dict: bool) -> bool:
    """Whether a container's items at the capture's read held a tensor from before the call (not
    the program's): a program that reads it and writes the container (``self.cache[-1]``, then
    ``self.cache.append(...)``) reads another item next call, so the items stay guarded: each
    call with other items compiles again, as Dynamo guards a list's length."""
    values = tree_leaves([value for _, value in contents] if of_dict else list(contents))
    return any(isinstance(v, torch.Tensor) and not isinstance(v, FakeTensor) for v in values)


def _base_getattribute(recording_class: type):
    return recording_class.__mro__[1].__getattribute__


_recording_classes: dict[type, type] = {}


def _recording_class(original: type) -> type:
    """A subclass of `original` that adds no storage (``__slots__ = ()``), so instances can
    switch to it and back, records reads of the instance's attributes and refuses assignments
    of fakes (`_recording_setattr`)."""
    recording = _recording_classes.get(original)
    if recording is None:
        methods = {"__slots__": (), "__getattribute__": _recording_getattribute, "__setattr__": _recording_setattr,
                   "__module__": original.__module__, "__qualname__": original.__qualname__}
        if hasattr(original, "__getattr__"):  # (nn.Module's: a missing attribute is read through it)
            methods["__getattr__"] = _recording_getattr
        recording = type(original.__name__, (original,), methods)
        _recording_classes[original] = recording
    return recording


@contextlib.contextmanager
def reads_recorded(module: Optional[torch.nn.Module], flat_args: Sequence[Any],
                   input_names: Sequence[str] = ()) -> Iterator[list[Guard]]:
    """Watch `module`'s tree and the non-tensor argument objects in `flat_args` for the body;
    the yielded list is filled with the guards of what the body read, when it ends.
    `input_names` name the first flat inputs in messages (see `input_label`)."""
    recorder = _ReadRecorder()
    guards: list[Guard] = []
    if module is not None:
        for name, submodule in module.named_modules(remove_duplicate=False):
            recorder.watch(submodule, submodule, False, (), f"self.{name}" if name else "self")
    for position, value in enumerate(flat_args):
        if _has_attributes(value) and not isinstance(value, (*_PLAIN_TYPES, torch.nn.Module)):
            recorder.watch(value, position, True, (), input_label(position, input_names))
    previous, _state.recorder = _active(), recorder
    try:
        yield guards
    finally:
        _state.recorder = previous
        recorder.restore()
        guards.extend(recorder.guards.values())


class GuardSet:
    """The guards of one compiled entry, checked on every call that reaches it.

    Value guards on a fixed object's own attribute (a module's ``self.eps``: most guards)
    are checked together, as one comparison of tuples made in C; the rest one by one."""

    __slots__ = ("guards", "_dicts", "_names", "_defaults", "_expected", "_types", "_rest")

    def __init__(self, guards: Sequence[Guard]):
        self.guards = tuple(guards)
        direct = [g for g in self.guards if _is_direct_value_guard(g)]
        self._dicts = [vars(g.root) for g in direct]
        self._names = [g.path[0] for g in direct]
        self._defaults = [_MISSING] * len(direct)
        self._expected = tuple(g.expected for g in direct)
        self._types = tuple(type(g.expected) for g in direct)
        self._rest = tuple(g for g in self.guards if not _is_direct_value_guard(g))

    def __bool__(self) -> bool:
        return bool(self.guards)

    def __len__(self) -> int:
        return len(self.guards)

    def holds(self, flat_args: Sequence[Any]) -> bool:
        if self._dicts:
            current = tuple(map(dict.get, self._dicts, self._names, self._defaults))
            if current != self._expected or tuple(map(type, current)) != self._types:
                return failed_guard(self.guards, flat_args) is None  # exact (a NaN is equal to itself)
        for guard in self._rest:
            if not guard.holds(flat_args):
                return False
        return True

    def failed(self, flat_args: Sequence[Any]) -> Optional[Guard]:
        return failed_guard(self.guards, flat_args)


def _is_direct_value_guard(guard: Guard) -> bool:
    return (not guard.from_argument and not guard.by_identity and len(guard.path) == 1
            and not isinstance(guard.expected, _CONTAINERS) and guard.path[0] in getattr(guard.root, "__dict__", ()))
