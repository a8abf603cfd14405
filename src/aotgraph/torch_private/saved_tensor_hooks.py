"""The stack of saved-tensor hooks (``torch.autograd.graph.saved_tensors_hooks``, ``save_on_cpu``):
the caller's hooks set aside while a program is captured on fakes.

Checked on torch 2.11, 2.13 and 2.14.1 (the same five ``torch._C._autograd`` functions in each).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

__all__ = ["caller_hooks_set_aside", "saved_tensor_hooks_active"]

_autograd = torch._C._autograd


@contextlib.contextmanager
def caller_hooks_set_aside() -> Iterator[None]:
    """While in effect, the saved-tensor hooks in effect on entry are off the stack: a capture's
    fakes are not packed by the caller's hooks (a hook may copy to the host, keep what it packs,
    or fail on a fake), which apply at run time to the tensors the compiled forward saves. Hooks
    the program pushes itself still apply to the fakes, and are recorded as part of the program.
    On exit the caller's hooks are back, in their order."""
    if not _autograd._saved_tensors_hooks_is_enabled():  # none applies (the disabled state keeps its stack)
        yield
        return
    hooks = []
    while (top := _autograd._top_saved_tensors_default_hooks(True)) is not None:
        hooks.append(top)
        _autograd._pop_saved_tensors_default_hooks()
    try:
        yield
    finally:
        for pack, unpack in reversed(hooks):
            _autograd._push_saved_tensors_default_hooks(pack, unpack)


def saved_tensor_hooks_active() -> bool:
    """Whether saved-tensor hooks apply here (a non-reentrant checkpoint's, ``save_on_cpu``)."""
    return _autograd._saved_tensors_hooks_is_enabled() and _autograd._top_saved_tensors_default_hooks(True) is not None
