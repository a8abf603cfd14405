"""Tensors a module's forward assigns to its own attributes, returned and assigned per call.

Eager PyTorch runs ``self.avg = 0.9 * self.avg + 0.1 * y.mean(0)`` (a buffer rebound to a new
tensor, not written in place) or ``self.cache = y.detach()`` on every call; the next call reads
the new value. A compiled module does not run its forward again, and while it is captured the
assigned tensor is a fake. `tensor_writes_recorded` watches, for the body of one run of the
module's forward, the assignments of tensors (or None over a tensor) to attributes of the
modules of its tree; afterwards it puts every such attribute back as it was, so no fake is left
on the user's module, and `with_writes` returns the program's output together with the assigned
values (`ModuleWrites`): the compiled program computes them as extra outputs, and
`apply_writes` assigns them to the module after each call, as the forward did. A rebound buffer
that changes shape recompiles on the next call through the guards on the buffer's sizes.

``register_buffer`` in forward (``self.register_buffer("cos_cached", emb.cos(), persistent=False)``)
is recorded the same way and replayed by ``register_buffer``. Tensors the forward puts into a
list or dict attribute of a module of the tree (``self.aux_losses.append(balance_loss)``, an MoE's
load-balancing loss; ``self.stats["max"] = h.detach().amax()``) are found by comparing each such
container with its contents before the forward: appended to a list, or set under a dict's key,
they are returned and appended or set after each call; the containers are put back after the
capture. A container that held what the program traced and changed otherwise (a list cleared
and refilled, a key deleted) is refused. Assigning a parameter
(``self.weight = nn.Parameter(...)``) in forward is refused (`UnsupportedOp`), and so is assigning
a tensor the program computed to a module outside the compiled one (`aot_function` of a program
that writes ``model.cache``: capture runs `tensor_writes_refused`): its value would be a fake.
"""
from __future__ import annotations

import contextlib
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple, Optional

import torch

from .cache.guards import written_in_place
from .errors import UnsupportedOp
from .torch_private.fake import FakeTensor

_ABSENT = object()
_local = threading.local()  # .recorder: the recorder of this thread's running capture, or None
_installed = {"count": 0}
_originals: dict = {}  # nn.Module's own methods while the hooks are installed
_install_lock = threading.Lock()


class ModuleWrites(NamedTuple):
    """A module program's result: its own `output`, then the attribute paths
    (``"blocks.0.attn.rel_indices"``) its forward assigned and the values it assigned last."""

    output: Any
    paths: tuple
    values: tuple
    kinds: tuple  # per path: "set" (setattr), "buffer" or "buffer, not persistent" (register_buffer),
    # "append" (the value, a list, appended to the list at the path), ("item", key) (set under a dict's key)
    # (a "restore" write, a value holding fakes that is neither a tensor nor a list of them, is
    # only put back after the capture: not returned)


@dataclass
class _Write:
    """One attribute a forward assigned: what it held before (`_ABSENT`: nothing), what was
    assigned last, and how (`ModuleWrites.kinds`)."""

    module: torch.nn.Module
    name: str
    previous: Any
    assigned: Any
    kind: str
    was_not_persistent: bool  # the name was in the module's non-persistent buffers before


MODULE_INTERNALS = frozenset(torch.nn.Module().__dict__)  # what every nn.Module keeps in its __dict__
_CONTAINERS = (list, dict)


class _Container(NamedTuple):
    """A list or dict attribute of a module, and a shallow copy of it from before the forward."""

    module: torch.nn.Module
    name: str
    value: Any
    before: Any


def _containers_of(root: torch.nn.Module) -> list[_Container]:
    found = []
    for module in root.modules():
        for name, value in object.__getattribute__(module, "__dict__").items():
            if type(value) in _CONTAINERS and name not in MODULE_INTERNALS:
                found.append(_Container(module, name, value, type(value)(value)))
    return found


class _Recorder:
    def __init__(self, root: Optional[torch.nn.Module], refuse_outside: bool = True):
        self.root = root  # None: every module is outside
        self.refuse_outside = refuse_outside
        self.outside = False  # whether a fake was assigned outside the tree (not refused)
        self.paths: Optional[dict[int, str]] = None  # id(submodule) -> its dotted path, on the first write
        self.writes: dict[tuple[int, str], _Write] = {}  # by (id(module), name)
        self.containers = _containers_of(root) if root is not None else []

    def container_writes(self) -> list[_Write]:
        """What the forward put into the tree's lists and dicts that holds a fake: each list's
        appended elements (one "append" write), each dict entry set (an ("item", key) write)."""
        writes = []
        for container in self.containers:
            value, before = container.value, container.before
            if not _holds_fake(value):
                continue
            where = f"{type(container.module).__name__}.{container.name}"
            if type(value) is list:
                if len(value) < len(before) or any(a is not b for a, b in zip(value, before)):
                    raise _changed_otherwise(where, "list")
                writes.append(_Write(container.module, container.name, before, value[len(before):], "append", False))
                continue
            if any(key not in value for key in before):
                raise _changed_otherwise(where, "dict")
            writes += [_Write(container.module, container.name, before, item, ("item", key), False)
                       for key, item in value.items() if (key not in before or before[key] is not item)
                       and _holds_fake(item)]
        if writes:
            self._paths()
            for write in writes:
                written_in_place(write.module, write.name)
        return writes

    def saw(self, module: torch.nn.Module, name: str, value: Any, kind: str = "set") -> None:
        """Record an assignment to `module.name`; refused where `module` is outside the tree and
        `value` a fake."""
        self._paths()
        if id(module) not in self.paths:
            if _holds_fake(value) and not self.refuse_outside:
                self.outside = True
            elif _holds_fake(value) and kind != "restore":
                raise UnsupportedOp(
                    f"the program assigns a tensor it computes to {type(module).__name__}.{name}, an attribute of a "
                    "module that is not the compiled module or inside it", "capture",
                    "compile that module with aot_module (which replays its forward's assignments each call), or "
                    "return the tensor and assign it outside the compiled function")
            return
        state = object.__getattribute__(module, "__dict__")
        if name in state["_parameters"]:
            raise UnsupportedOp(
                f"{type(module).__name__}.forward assigns its parameter {self._path(module, name)!r}",
                "capture", "assign parameters outside forward, or write into them in place under torch.no_grad()")
        write = self.writes.get((id(module), name))
        if write is None:
            previous = state["_buffers"].get(name, _ABSENT) if name in state["_buffers"] \
                else state.get(name, _ABSENT)
            self.writes[(id(module), name)] = _Write(module, name, previous, value, kind,
                                                     name in state["_non_persistent_buffers_set"])
            return
        write.assigned = value
        if kind != "set" or write.kind == "restore":  # (a later plain assignment to a registered buffer keeps it one)
            write.kind = kind

    def _paths(self) -> None:
        if self.paths is None:
            self.paths = {} if self.root is None else \
                {id(m): path for path, m in self.root.named_modules(remove_duplicate=False)}

    def _path(self, module: torch.nn.Module, name: str) -> str:
        prefix = self.paths[id(module)]
        return f"{prefix}.{name}" if prefix else name

    def restore(self) -> None:
        """Put back every written attribute that still holds what the forward assigned (a
        buffer that the state swap already restored is left to it), and every list and dict that
        holds a fake."""
        for container in self.containers:
            if _holds_fake(container.value):
                container.value.clear()
                (container.value.extend if type(container.value) is list else container.value.update)(container.before)
        for write in reversed(list(self.writes.values())):
            state = object.__getattribute__(write.module, "__dict__")
            holder = state["_buffers"] if write.name in state["_buffers"] else state
            if holder.get(write.name, _ABSENT) is not write.assigned:
                continue
            if write.previous is _ABSENT:
                del holder[write.name]
            else:
                holder[write.name] = write.previous
            if not write.was_not_persistent:
                state["_non_persistent_buffers_set"].discard(write.name)


def _changed_otherwise(where: str, kind: str) -> UnsupportedOp:
    change = "cleared or refilled" if kind == "list" else "a key deleted"
    return UnsupportedOp(f"the forward put a tensor it computes into {where}, a {kind} it also changed otherwise "
                         f"({change}): a compiled module replays appends to a list and entries set in a dict, no "
                         "other change", "capture", "only append to the list (clear it outside forward), or return "
                         "the tensors from forward")


def _recording_setattr(self, name, value):
    recorder = getattr(_local, "recorder", None)
    if recorder is not None:
        if isinstance(value, torch.Tensor) or (value is None and _holds_tensor(self, name)) or _tensor_list(value):
            recorder.saw(self, name, value)
        elif _holds_fake(value):  # (nn.LSTM's weak references to its weights: a cache, rebuilt from the weights)
            recorder.saw(self, name, value, "restore")
    _originals["__setattr__"](self, name, value)


def _tensor_list(value: Any) -> bool:
    """A list or tuple of tensors (and None), at least one: replayed as a tensor is (nn.LSTM's
    ``_flat_weights``, a list of activations a forward keeps)."""
    return type(value) in (list, tuple) and any(isinstance(v, torch.Tensor) for v in value) \
        and all(v is None or isinstance(v, torch.Tensor) for v in value)


def _holds_fake(value: Any) -> bool:
    """Whether a list, tuple or dict `value` holds a fake, or a weak reference to one."""
    if isinstance(value, FakeTensor):
        return True
    if isinstance(value, weakref.ref):
        return isinstance(value(), FakeTensor)
    if type(value) in (list, tuple):
        return any(map(_holds_fake, value))
    if type(value) is dict:
        return any(map(_holds_fake, value.values()))
    return False


def _recording_register_buffer(self, name, tensor, persistent=True):
    recorder = getattr(_local, "recorder", None)
    if recorder is not None:
        recorder.saw(self, name, tensor, "buffer" if persistent else "buffer, not persistent")
    _originals["register_buffer"](self, name, tensor, persistent)


def _holds_tensor(module: torch.nn.Module, name: str) -> bool:
    state = object.__getattribute__(module, "__dict__")
    return isinstance(state["_buffers"].get(name, state.get(name)), torch.Tensor)


_HOOKS = {"__setattr__": _recording_setattr, "register_buffer": _recording_register_buffer}


@contextlib.contextmanager
def tensor_writes_recorded(root: Optional[torch.nn.Module], refuse_outside: bool = True) -> Iterator[_Recorder]:
    """Record the tensor assignments to attributes of `root`'s modules in the body (this
    thread only), then undo them; refuse a fake assigned to any other module's (or, without
    `refuse_outside`, note it in the recorder's `outside`)."""
    with _install_lock:
        if _installed["count"] == 0:
            for method, hook in _HOOKS.items():
                _originals[method] = getattr(torch.nn.Module, method)
                setattr(torch.nn.Module, method, hook)
        _installed["count"] += 1
    outer = getattr(_local, "recorder", None)
    recorder = _local.recorder = _Recorder(root, refuse_outside)
    try:
        yield recorder
    finally:
        _local.recorder = outer
        with _install_lock:
            _installed["count"] -= 1
            if _installed["count"] == 0:
                for method, original in _originals.items():
                    setattr(torch.nn.Module, method, original)
        recorder.restore()


def tensor_writes_refused() -> contextlib.AbstractContextManager:
    """For a capture's run of the program: a fake assigned to a module's attribute is refused,
    except inside the module an `aot_module` program records (`tensor_writes_recorded`)."""
    return tensor_writes_recorded(None)


def with_writes(output: Any, recorder: _Recorder) -> Any:
    """`output` as it is where the forward assigned nothing, else a `ModuleWrites`."""
    writes = [w for w in recorder.writes.values() if w.kind != "restore"] + recorder.container_writes()
    if not writes:
        return output
    return ModuleWrites(output, tuple(recorder._path(w.module, w.name) for w in writes),
                        tuple(w.assigned for w in writes), tuple(w.kind for w in writes))


def attribute_owner(root: torch.nn.Module, path: str) -> tuple[torch.nn.Module, str]:
    """(the module holding attribute `path` of `root`, the attribute's name): ``"a.b.x"`` ->
    ``(root.a.b, "x")``."""
    owner_path, _, name = path.rpartition(".")
    return (root.get_submodule(owner_path) if owner_path else root), name


def apply_writes(root: torch.nn.Module, result: Any) -> Any:
    """Assign a `ModuleWrites` result's values to `root`'s attributes; the program's output."""
    if type(result) is not ModuleWrites:
        return result
    for path, value, kind in zip(result.paths, result.values, result.kinds):
        owner, name = attribute_owner(root, path)
        if kind == "set":
            setattr(owner, name, value)
        elif kind == "append":
            getattr(owner, name).extend(value)
        elif type(kind) is tuple:
            getattr(owner, name)[kind[1]] = value
        else:
            owner.register_buffer(name, value, persistent=kind == "buffer")
    return result.output
