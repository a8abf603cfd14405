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

Assigning a parameter (``self.weight = nn.Parameter(...)``) in forward is refused (`UnsupportedOp`).
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator, NamedTuple, Optional

import torch

from .errors import UnsupportedOp

_ABSENT = object()
_local = threading.local()  # .recorder: the recorder of this thread's running capture, or None
_installed = {"count": 0, "original": None}
_install_lock = threading.Lock()


class ModuleWrites(NamedTuple):
    """A module program's result: its own `output`, then the attribute paths
    (``"blocks.0.attn.rel_indices"``) its forward assigned and the values it assigned last."""

    output: Any
    paths: tuple
    values: tuple


class _Recorder:
    def __init__(self, root: torch.nn.Module):
        self.root = root
        self.paths: Optional[dict[int, str]] = None  # id(submodule) -> its dotted path, on the first write
        self.writes: dict[tuple[int, str], list] = {}  # (id, name) -> [module, name, previous, assigned]

    def saw(self, module: torch.nn.Module, name: str, value: Any) -> bool:
        """Record an assignment to `module.name`; whether `module` is in the tree."""
        if self.paths is None:
            self.paths = {id(m): path for path, m in self.root.named_modules(remove_duplicate=False)}
        if id(module) not in self.paths:
            return False
        state = object.__getattribute__(module, "__dict__")
        if name in state["_parameters"]:
            raise UnsupportedOp(
                f"{type(module).__name__}.forward assigns its parameter {self._path(module, name)!r}",
                "capture", "assign parameters outside forward, or write into them in place under torch.no_grad()")
        key = (id(module), name)
        if key not in self.writes:
            previous = state["_buffers"].get(name, _ABSENT) if name in state["_buffers"] \
                else state.get(name, _ABSENT)
            self.writes[key] = [module, name, previous, value]
        else:
            self.writes[key][3] = value
        return True

    def _path(self, module: torch.nn.Module, name: str) -> str:
        prefix = self.paths[id(module)]
        return f"{prefix}.{name}" if prefix else name

    def restore(self) -> None:
        """Put back every written attribute that still holds what the forward assigned (a
        buffer that the state swap already restored is left to it)."""
        for module, name, previous, assigned in reversed(list(self.writes.values())):
            state = object.__getattribute__(module, "__dict__")
            holder = state["_buffers"] if name in state["_buffers"] else state
            if holder.get(name, _ABSENT) is not assigned:
                continue
            if previous is _ABSENT:
                del holder[name]
            else:
                holder[name] = previous


def _recording_setattr(self, name, value):
    recorder = getattr(_local, "recorder", None)
    if recorder is not None and (isinstance(value, torch.Tensor) or (value is None and _holds_tensor(self, name))):
        recorder.saw(self, name, value)
    _installed["original"](self, name, value)


def _holds_tensor(module: torch.nn.Module, name: str) -> bool:
    state = object.__getattribute__(module, "__dict__")
    return isinstance(state["_buffers"].get(name, state.get(name)), torch.Tensor)


@contextlib.contextmanager
def tensor_writes_recorded(root: torch.nn.Module) -> Iterator[_Recorder]:
    """Record the tensor assignments to attributes of `root`'s modules in the body (this
    thread only), then undo them."""
    with _install_lock:
        if _installed["count"] == 0:
            _installed["original"] = torch.nn.Module.__setattr__
            torch.nn.Module.__setattr__ = _recording_setattr
        _installed["count"] += 1
    outer = getattr(_local, "recorder", None)
    recorder = _local.recorder = _Recorder(root)
    try:
        yield recorder
    finally:
        _local.recorder = outer
        with _install_lock:
            _installed["count"] -= 1
            if _installed["count"] == 0:
                torch.nn.Module.__setattr__ = _installed["original"]
        recorder.restore()


def with_writes(output: Any, recorder: _Recorder) -> Any:
    """`output` as it is where the forward assigned nothing, else a `ModuleWrites`."""
    if not recorder.writes:
        return output
    writes = list(recorder.writes.values())
    return ModuleWrites(output, tuple(recorder._path(m, name) for m, name, _, _ in writes),
                        tuple(value for _, _, _, value in writes))


def apply_writes(root: torch.nn.Module, result: Any) -> Any:
    """Assign a `ModuleWrites` result's values to `root`'s attributes; the program's output."""
    if type(result) is not ModuleWrites:
        return result
    for path, value in zip(result.paths, result.values):
        owner_path, _, name = path.rpartition(".")
        setattr(root.get_submodule(owner_path) if owner_path else root, name, value)
    return result.output
