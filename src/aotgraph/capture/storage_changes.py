"""Storage changes inside a program: refused at capture, never a crash.

``x.set_(y)`` with a tensor `y` on an input of the compiled function is captured (see
`functionalize`: the runtime replays it on the caller's tensor, as torch's AOTAutograd does);
on anything else, and the other forms of ``set_``, it is refused here.

FSDP frees a parameter's memory between uses (``untyped_storage().resize_(0)``) and
reallocates it before the next. aotgraph does not capture that yet: it refuses it rather than
compile a graph that would read or write freed memory (a segmentation fault, not an error) or
keep memory eager frees. ``UntypedStorage.resize_`` calls C++ directly, past every dispatch
mode, so it is refused by a hook on the class while the program runs (switch:
``storage_resize_hook``); the ops in `STORAGE_CHANGES_REFUSED` reach the recorder and are
refused there; inputs that arrive freed are refused on entry.
"""
from __future__ import annotations

import sys
import threading
from typing import Any, Callable, Sequence

import torch
from torch.multiprocessing.reductions import StorageWeakRef

from .. import config
from ..errors import UnsupportedOp
from ..graph.ops import bytes_needed
from ..torch_private.dispatch import has_storage
from ..torch_private.fake import FAKE_CONVERSION_MODULE
from .recorder import _user_line

__all__ = ["STORAGE_CHANGES_REFUSED", "storage_resizes_refused", "refuse_freed_inputs", "refuse_resized_inputs"]

_STORAGE_FIX = "resize the storage outside the compiled function (before or after calling it), or run this part eagerly"


def _refuse_storage_op(func, fix: str, what: str) -> Callable:
    """A decomposition of `func` that refuses it; `what` says what it does to ``{tensor}``."""
    def refuse(tensor, *args, **kwargs):
        tensor_text = f"a tensor of shape {tuple(tensor.shape)}"
        raise UnsupportedOp(f"{func} {what.format(tensor=tensor_text)}{_user_line()}, which aotgraph does not "
                            "capture yet", "capture", fix)
    return refuse


aten = torch.ops.aten
_SET_FIX = "use the source tensor (or a view of it) instead of set_, or run this part eagerly"
# Given to the recorder as decompositions: its hook already looks each op up there.
STORAGE_CHANGES_REFUSED = {
    op: _refuse_storage_op(op, _SET_FIX, "makes {tensor} use other memory")
    for op in (aten.set_.source_Storage, aten.set_.source_Storage_storage_offset, aten.set_.default)
}


def _set_without_grad(tensor, source, *args, **kwargs):
    """``x.set_(y)`` is captured only on tensors that need no gradient (autograd has no derivative
    for it); the rest goes on to the recorder (and `functionalize`)."""
    if tensor.requires_grad or source.requires_grad:
        which = "a tensor that requires grad" if tensor.requires_grad else "a tensor"
        whose = " of a tensor that requires grad" if source.requires_grad else ""
        raise UnsupportedOp(f"aten.set_.source_Tensor makes {which} (of shape {tuple(tensor.shape)}) use the other "
                            f"memory{whose}{_user_line()}, which aotgraph does not capture (autograd has no "
                            "derivative for set_)", "capture", _SET_FIX)
    return NotImplemented


STORAGE_CHANGES_REFUSED[aten.set_.source_Tensor] = _set_without_grad
if hasattr(torch.ops.inductor, "resize_storage_bytes_"):
    _resize_storage_bytes = torch.ops.inductor.resize_storage_bytes_.default
    STORAGE_CHANGES_REFUSED[_resize_storage_bytes] = _refuse_storage_op(
        _resize_storage_bytes, _STORAGE_FIX, "resizes the storage of {tensor}")




class _StorageResizesRefused:
    """``with _storage_resizes_refused:`` ``UntypedStorage.resize_`` (and ``TypedStorage``'s, which
    calls it) raises UnsupportedOp on this thread. The hook is on the class while any thread is
    inside; other threads' resizes pass through to the original."""

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._original: Any = None
        self._on_thread = threading.local()

    def __enter__(self):
        hooked = config.enabled("storage_resize_hook")
        self._on_thread.hooked = [*getattr(self._on_thread, "hooked", []), hooked]
        if hooked:
            with self._lock:
                if self._users == 0:
                    self._original = torch.UntypedStorage.__dict__.get("resize_")
                    torch.UntypedStorage.resize_ = self._hooked_resize()
                self._users += 1
        self._on_thread.depth = getattr(self._on_thread, "depth", 0) + 1

    def __exit__(self, *exc_info):
        self._on_thread.depth -= 1
        if not self._on_thread.hooked.pop():
            return
        with self._lock:
            self._users -= 1
            if self._users == 0:
                if self._original is None:
                    del torch.UntypedStorage.resize_
                else:
                    torch.UntypedStorage.resize_ = self._original

    def _hooked_resize(self) -> Callable:
        original_resize = torch.UntypedStorage.resize_
        on_thread = self._on_thread

        def resize_(storage, size):
            if not getattr(on_thread, "depth", 0):
                return original_resize(storage, size)
            if sys._getframe(1).f_globals.get("__name__") == FAKE_CONVERSION_MODULE:
                # torch making the fake of a tensor the program reads (an empty one: storage of 0 bytes);
                # a closed-over tensor whose memory was freed is refused where it is lifted (recorder.py)
                return original_resize(storage, size)
            raise UnsupportedOp(
                f"the program resizes a tensor's storage to {size} bytes (untyped_storage().resize_, as FSDP frees "
                f"and reallocates parameters){_user_line()}, which aotgraph does not capture yet", "capture",
                _STORAGE_FIX)

        return resize_


storage_resizes_refused = _StorageResizesRefused()


def refuse_freed_inputs(flat_args: Sequence[Any]) -> None:
    """An input whose storage is smaller than its layout (freed): the graph would read or write
    memory that is not there."""
    for position, value in enumerate(flat_args):
        if not isinstance(value, torch.Tensor) or value.layout != torch.strided or not has_storage(value):
            continue
        nbytes, needed = value.untyped_storage().nbytes(), bytes_needed(value)
        if nbytes < needed:
            raise UnsupportedOp(
                f"the input at flat position {position} has a storage of {nbytes} bytes, fewer than its sizes and "
                f"strides need ({needed}): its memory was freed (untyped_storage().resize_, as FSDP does)",
                "capture", "resize its storage back (and fill it) before calling the compiled function, "
                "or run this part eagerly")


def refuse_resized_inputs(program_fakes, bytes_before, storages_before, input_positions) -> None:
    """A net for storage changes no hook saw: an input whose storage changed size (one that now
    holds another storage was ``set_``: functionalization judges that)."""
    for fake, before, storage, position in zip(program_fakes, bytes_before, storages_before, input_positions):
        after = fake.untyped_storage().nbytes()
        if after != before and StorageWeakRef(fake.untyped_storage()) == storage:
            raise UnsupportedOp(
                f"the storage of the input at flat position {position} changed from {before} to {after} bytes "
                "inside the program (x.resize_(), ...), which aotgraph does not capture yet", "capture", _STORAGE_FIX)
