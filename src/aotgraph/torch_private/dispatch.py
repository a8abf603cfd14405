"""The dispatcher: op overloads, dispatch keys, modes, and the switches capture flips.

Checked on torch 2.11 (the H200, benchmarks/gpu_train.py), 2.13 and 2.14.1 (the test suite).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch.overrides import TorchFunctionMode, _get_current_function_mode, _pop_mode_temporarily
from torch._dispatch.python import enable_python_dispatcher, no_python_dispatcher
from torch._ops import HigherOrderOperator, OpOverload
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

__all__ = ["OpOverload", "HigherOrderOperator", "TorchDispatchMode", "enable_python_dispatcher", "no_python_dispatcher",
           "disable_current_modes", "DisableTorchDispatch", "DisableTorchFunction", "dispatch_keys", "has_composite_implicit_kernel",
           "has_storage", "mkldnn_enabled", "set_mkldnn_enabled", "CaptureFunctionMode", "outside_capture_mode"]

disable_current_modes = _disable_current_modes  # modes off for a block (the caller's RNG, real tensors)
DisableTorchDispatch = torch._C._DisableTorchDispatch  # no Python dispatch for a block: plain tensors
# No torch-function modes or subclasses for a block: bookkeeping on tensors (sizes, strides) at C speed
DisableTorchFunction = torch._C.DisableTorchFunction
dispatch_keys = torch._C._dispatch_keys
has_storage = torch._C._has_storage
mkldnn_enabled = torch._C._get_mkldnn_enabled
set_mkldnn_enabled = torch._C._set_mkldnn_enabled


def has_composite_implicit_kernel(op: OpOverload) -> bool:
    """Whether `op` decomposes through a CompositeImplicitAutograd kernel. False for ops the
    dispatcher does not hold (TorchScript's own overloads such as ``aten.size.default``, which
    symbolic backward formulas can reach)."""
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "CompositeImplicitAutograd")
    except RuntimeError:  # "operator ... does not exist": not a dispatcher op
        return False


class CaptureFunctionMode(TorchFunctionMode):
    """A capture's own torch-function mode (`capture.higher_order.HigherOrderCalls`)."""


@contextlib.contextmanager
def outside_capture_mode() -> Iterator[None]:
    """The innermost torch-function modes off for a block while they are `CaptureFunctionMode`s:
    a nested capture (a region's) has modes of its own, and the enclosing ones would see each
    size read of its bookkeeping. Any other mode (a user's, a default device) stays, with those
    beneath it."""
    with contextlib.ExitStack() as popped:
        while isinstance(_get_current_function_mode(), CaptureFunctionMode):
            popped.enter_context(_pop_mode_temporarily())
        yield
