"""Storage changes inside a program: the inputs' resizes captured, the rest refused, never a crash.

``x.set_(y)`` with a tensor `y` is captured under no_grad or where neither requires grad (see
`functionalize`: on an input of the compiled function the runtime replays it on the caller's
tensor, as torch's AOTAutograd does; on an intermediate or a view only the program sees it); under
grad mode with gradients (autograd has no derivative for it), and the other forms of ``set_``, it
is refused here.

FSDP frees a parameter's memory between uses (``untyped_storage().resize_(0)``) and
reallocates it before the next (to the bytes its sizes need, then fills it). On an input of the
compiled function, these resizes are captured by `InputStorageResizes` (as torch's AOTAutograd
captures them: the input's storage starts or ends the program freed) and replayed on the
caller's tensor by the runtime (`StorageResize`). The graph itself holds no resize: the runtime
gives a freed input its memory before the graphs run and frees it after. Refused, with an error
rather than a graph that reads freed memory (a segmentation fault in eager): resizes of anything
but an input, to sizes other than 0 or enough for the input, an input that neither starts nor
ends freed but changes size, and any op that reads or writes an input while it is freed.
``UntypedStorage.resize_`` calls C++ directly, past every dispatch mode, so it is seen by a hook
on the class while the program runs (switch: ``storage_resize_hook``).
"""
from __future__ import annotations

import sys
import threading
from typing import Any, Callable, Optional, Sequence

import torch
from torch.multiprocessing.reductions import StorageWeakRef

from .. import config
from ..artifacts import StorageResize
from ..errors import UnsupportedOp
from ..graph.ops import bytes_needed
from ..torch_private.dispatch import has_storage
from ..torch_private.fake import FAKE_CONVERSION_MODULE
from ..torch_private.symbolic import GuardOnDataDependentSymNode, guards_suppressed
from .recorder import _user_line

__all__ = ["STORAGE_CHANGES_REFUSED", "InputStorageResizes", "storage_resizes_refused", "refuse_resized_inputs"]

_STORAGE_FIX = ("resize the storage outside the compiled function (before or after calling it), or run this part "
                "eagerly")
_FREED_FIX = ("give the storage its memory back first (untyped_storage().resize_ to the bytes its sizes need, then "
              "fill it), inside or before the compiled function")


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
    """``x.set_(y)`` is captured under no_grad, or on tensors that need no gradient: autograd has
    no derivative for it (eager's backward through it raises), and under no_grad `x` keeps its own
    autograd history with `y`'s values, which the capture sees as eager does. The rest goes on to
    the recorder (and `functionalize`)."""
    if torch.is_grad_enabled() and (tensor.requires_grad or source.requires_grad):
        which = "a tensor that requires grad" if tensor.requires_grad else "a tensor"
        whose = " of a tensor that requires grad" if source.requires_grad else ""
        raise UnsupportedOp(f"aten.set_.source_Tensor makes {which} (of shape {tuple(tensor.shape)}) use the other "
                            f"memory{whose}{_user_line()} under grad mode, which aotgraph does not capture (autograd "
                            "has no derivative for set_)", "capture", "call set_ under torch.no_grad(), or " + _SET_FIX)
    return NotImplemented


def _resize_storage_bytes(tensor, size):
    """``inductor.resize_storage_bytes_(t, n)`` (what Dynamo makes of ``t.untyped_storage().resize_(n)``):
    the same resize, which the hook captures or refuses. The op returns nothing."""
    tensor.untyped_storage().resize_(size)


STORAGE_CHANGES_REFUSED[aten.set_.source_Tensor] = _set_without_grad
if hasattr(torch.ops.inductor, "resize_storage_bytes_"):
    STORAGE_CHANGES_REFUSED[torch.ops.inductor.resize_storage_bytes_.default] = _resize_storage_bytes


def _fewer(nbytes, tensor: torch.Tensor) -> bool:
    """Whether `nbytes` falls short of what `tensor`'s layout reaches. A tensor of unbacked sizes
    (``mark_unbacked``: no value to decide by) holds its memory: Dynamo made it from a real one."""
    try:
        return bool(nbytes < bytes_needed(tensor))
    except GuardOnDataDependentSymNode:
        return False


class InputStorageResizes:
    """The resizes of the inputs' storages during one capture (the hook hands each to `resize`),
    and which inputs are freed now (the recorder asks `refuse_freed_access` before each op).

    `program_fakes`: the tensors the program sees for its tensor inputs, at flat `positions`;
    `reals`: the caller's tensors behind them. A fake whose caller's storage arrives with fewer
    bytes than its sizes need starts freed (its fake storage resized to the caller's bytes)."""

    def __init__(self, program_fakes: Sequence[torch.Tensor], reals: Sequence[torch.Tensor],
                 positions: Sequence[int]):
        self._inputs: dict[StorageWeakRef, list] = {}  # storage -> [(fake, position)] of distinct inputs
        self._entry_bytes: dict[StorageWeakRef, int] = {}
        self._largest: dict[StorageWeakRef, int] = {}  # the most bytes the program gave each resized storage
        self._resized: set[StorageWeakRef] = set()
        self._bytes: dict[StorageWeakRef, int] = {}  # each resized storage's bytes after its last resize
        self.freed: set[StorageWeakRef] = set()  # storages with fewer bytes than their inputs need, now
        seen: set[int] = set()
        for fake, real, position in zip(program_fakes, reals, positions):
            if id(fake) in seen or fake.layout != torch.strided or not has_storage(fake):
                continue
            seen.add(id(fake))
            storage = fake.untyped_storage()
            key = StorageWeakRef(storage)
            self._inputs.setdefault(key, []).append((fake, position))
            real_bytes = real.untyped_storage().nbytes() if has_storage(real) else storage.nbytes()
            # Whether a storage holds fewer bytes than its tensor reaches is a fact of the storage
            # (freed to 0, or not), not of the sizes: decided on the size hints, no guard recorded
            # (under Dynamo such a guard would pin a view's sizes to its base's).
            with guards_suppressed(real):
                if _fewer(real_bytes, real):
                    _ORIGINAL_RESIZE(storage, real_bytes)
            self._entry_bytes[key] = storage.nbytes()
            with guards_suppressed(fake):
                if _fewer(storage.nbytes(), fake):
                    self.freed.add(key)

    def was_resized(self, key: StorageWeakRef) -> bool:
        return key in self._resized

    def _needed(self, key: StorageWeakRef) -> int:
        return max(bytes_needed(fake) for fake, _ in self._inputs[key])

    def resize(self, storage, size: int) -> bool:
        """Resize `storage` (a fake's) to `size` bytes if it is an input's and the size is one the
        runtime can replay (0, or enough for the input); False: not an input's storage."""
        key = StorageWeakRef(storage)
        if key not in self._inputs:
            return False
        needed, (fake, position) = self._needed(key), self._inputs[key][0]
        if len(self._inputs[key]) > 1:
            self._refuse(f"the program resizes the storage that inputs at flat positions "
                         f"{[p for _, p in self._inputs[key]]} share", "pass inputs with storages of their own")
        if size != 0 and size < needed:
            self._refuse(f"the program resizes the storage of the input at flat position {position} to {size} bytes, "
                         f"fewer than its sizes need ({needed}) but not 0", "resize it to 0 bytes (freed) or to the "
                         "bytes its sizes need, as FSDP does, or resize it outside the compiled function")
        _ORIGINAL_RESIZE(storage, size)
        self._resized.add(key)
        self._largest[key] = max(self._largest.get(key, 0), size)
        self._bytes[key] = size
        if size < needed:
            self.freed.add(key)
        else:
            self.freed.discard(key)
        return True

    def refuse_freed_access(self, func, tensors) -> None:
        """Refuse `func` (not a view or a query of sizes) reading or writing a freed input."""
        for tensor in tensors:
            if tensor.layout == torch.strided and StorageWeakRef(tensor.untyped_storage()) in self.freed:
                position = self._inputs[StorageWeakRef(tensor.untyped_storage())][0][1]
                self._refuse(f"{func} reads or writes the input at flat position {position} while its storage is "
                             "freed (fewer bytes than its sizes need: eager would touch freed memory there, which "
                             "may crash)", _FREED_FIX)

    def resize_of(self, fake: torch.Tensor) -> Optional[StorageResize]:
        """What the runtime does to the storage of the input `fake`, None if the program left it alone.
        Refused: an input whose storage changed size without starting or ending freed."""
        key = StorageWeakRef(fake.untyped_storage())
        if key not in self._resized:
            return None
        entry, after, position = self._entry_bytes[key], self._bytes[key], self._inputs[key][0][1]
        if entry != after and entry and after:
            self._refuse(f"the storage of the input at flat position {position} changes from {entry} to {after} "
                         "bytes inside the program; aotgraph (as torch's AOTAutograd) replays only resizes of "
                         "inputs that arrive or leave freed (0 bytes)", _STORAGE_FIX)
        needed = self._needed(key)
        largest = self._largest[key] if self._largest[key] >= needed else None
        return StorageResize(largest, after, entry < needed)

    def refuse_set_on_resized(self, fakes_by_name: dict, replaced_names: Sequence[str]) -> None:
        """An input both resized and given other memory by ``set_``: which came first is lost."""
        for name in replaced_names:
            for key, inputs in self._inputs.items():
                if key in self._resized and any(f is fakes_by_name[name] for f, _ in inputs):
                    self._refuse(f"the program both resizes the storage of the input at flat position "
                                 f"{inputs[0][1]} and set_s it to other memory", _STORAGE_FIX)

    @staticmethod
    def _refuse(what: str, fix: str):
        raise UnsupportedOp(what + _user_line(), "capture", fix)


_ORIGINAL_RESIZE = torch.UntypedStorage.resize_


class _StorageResizesRefused:
    """``with _storage_resizes_refused:`` ``UntypedStorage.resize_`` (and ``TypedStorage``'s, which
    calls it) raises UnsupportedOp on this thread, except the resizes of inputs that the capture's
    `InputStorageResizes` (``with storage_resizes_refused.watching(resizes):``) takes. The hook
    is on the class while any thread is inside; other threads' resizes pass through to the original."""

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._original: Any = None
        self._on_thread = threading.local()

    def watching(self, resizes: Optional[InputStorageResizes]) -> "_Watching":
        return _Watching(self, resizes)

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
            resizes = getattr(on_thread, "resizes", None)
            if resizes is not None and resizes.resize(storage, size):
                return None
            raise UnsupportedOp(
                f"the program resizes the storage of a tensor that is not one of its inputs to {size} bytes "
                f"(untyped_storage().resize_, as FSDP frees and reallocates parameters){_user_line()}, which "
                "aotgraph does not capture", "capture", "resize only the storages of the compiled function's inputs "
                "inside it (pass that tensor as an input), or resize it outside the compiled function")

        return resize_


class _Watching:
    """The hook on, with `resizes` taking the inputs' resizes on this thread."""

    def __init__(self, hook: _StorageResizesRefused, resizes: Optional[InputStorageResizes]):
        self._hook, self._resizes = hook, resizes

    def __enter__(self):
        on_thread = self._hook._on_thread
        self._outer = getattr(on_thread, "resizes", None)
        on_thread.resizes = self._resizes
        self._hook.__enter__()

    def __exit__(self, *exc_info):
        self._hook.__exit__(*exc_info)
        self._hook._on_thread.resizes = self._outer


storage_resizes_refused = _StorageResizesRefused()


def refuse_resized_inputs(program_fakes, bytes_before, storages_before, input_positions,
                          resizes: InputStorageResizes) -> None:
    """A net for storage changes no hook saw: an input whose storage changed size (one that now
    holds another storage was ``set_``: functionalization judges that; one whose resizes the
    hook took is judged by `InputStorageResizes.resize_of`)."""
    for fake, before, storage, position in zip(program_fakes, bytes_before, storages_before, input_positions):
        after = fake.untyped_storage().nbytes()
        if after != before and StorageWeakRef(fake.untyped_storage()) == storage and not resizes.was_resized(storage):
            raise UnsupportedOp(
                f"the storage of the input at flat position {position} changed from {before} to {after} bytes "
                "inside the program (x.resize_(), ...), which aotgraph does not capture yet", "capture", _STORAGE_FIX)
