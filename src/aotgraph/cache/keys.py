"""Cache keys: the facts of a call that select its compiled entry.

A key holds the arguments' pytree structure, grad mode, autocast's state on every device,
and per flat input: a tensor's shape, stride, storage offset, dtype, device, requires_grad
and which earlier input it is (the same tensor passed twice); a constant's value (its repr
when it cannot be hashed). Python values read through attributes are not in the key: the
entry's guards check them (see `guards`).
"""
from __future__ import annotations

from typing import Any, Optional

import torch

from ..errors import BadArgument
from ..torch_private.autocast import any_autocast_enabled as autocast_on
from ..torch_private.fake import FakeTensor
from ..torch_private.subclasses import is_traceable_wrapper_subclass

__all__ = ["refuse_unsupported_tensor", "signature_key", "size_free_key", "plain_args_key", "flatten_plain_args",
           "autocast_state", "AUTOCAST_OFF"]

_AUTOCAST_DEVICES = ("cpu", "cuda")
AUTOCAST_OFF = (False,)


def autocast_state() -> tuple:
    """Autocast's state for the cache key, on every device: graphs hold its casts."""
    if not autocast_on():
        return AUTOCAST_OFF
    return tuple((device, torch.get_autocast_dtype(device)) for device in _AUTOCAST_DEVICES
                 if torch.is_autocast_enabled(device))


def refuse_unsupported_tensor(position: int, tensor: torch.Tensor) -> None:
    """A `BadArgument` for an input tensor aotgraph does not compile: sparse, nested of strided
    layout (a jagged one is a subclass it flattens), quantized."""
    if is_traceable_wrapper_subclass(tensor):  # (a jagged nested tensor, DTensor: flattened)
        return
    if tensor.layout != torch.strided or tensor.is_nested or tensor.is_quantized:
        kind = "a nested tensor of strided layout" if tensor.is_nested else "a quantized tensor" \
            if tensor.is_quantized else f"a tensor with layout {tensor.layout}"
        raise BadArgument(f"input {position} is {kind}, which is not supported", "api",
                          "pass dense (strided) tensors: t.to_dense(), t.dequantize(), a nested tensor of layout "
                          "torch.jagged, or its t.to_padded_tensor(0)")


def refuse_torch_function_subclass(position: int, tensor: torch.Tensor) -> None:
    """A `BadArgument` for an input whose class has a ``__torch_function__`` of its own: a capture
    records the ops it dispatches, not what that Python does around them (Dynamo's graphs hold it)."""
    if _own_torch_function(tensor):
        name = type(tensor).__name__
        raise BadArgument(f"input {position} is a {name}, a tensor subclass with a __torch_function__ of its own, "
                          "which the compiled graph would not run (its ops would act as a plain tensor's)", "api",
                          f"compile with torch.compile (Dynamo traces {name}.__torch_function__), or pass "
                          "t.as_subclass(torch.Tensor)")


_PLAIN_TORCH_FUNCTIONS = (torch.Tensor.__torch_function__.__func__, torch._C._disabled_torch_function_impl)


def _own_torch_function(tensor: torch.Tensor) -> bool:
    """Whether `tensor`'s class overrides ``__torch_function__`` (not a plain tensor, a Parameter,
    or a fake)."""
    if type(tensor) is torch.Tensor or isinstance(tensor, (torch.nn.Parameter, FakeTensor)):
        return False
    method = type(tensor).__torch_function__
    return getattr(method, "__func__", method) not in _PLAIN_TORCH_FUNCTIONS


def signature_key(flat_args: list, in_spec) -> tuple:
    """The key of any call, from its pytree-flattened arguments and their structure."""
    key: list = [in_spec, torch.is_grad_enabled(), torch.get_default_dtype(), *autocast_state()]
    first_position: dict[int, int] = {}
    for position, a in enumerate(flat_args):
        if isinstance(a, torch.Tensor):
            refuse_unsupported_tensor(position, a)
            key.append((a.shape, a.stride(), a.storage_offset(), a.dtype, a.device, a.requires_grad,
                        first_position.setdefault(id(a), position)))
        else:
            key.append((type(a), a if _hashable(a) else repr(a)))
    return tuple(key)


def size_free_key(flat_args: list, in_spec, static_positions: frozenset) -> tuple:
    """`signature_key` for compiles with symbolic sizes: a tensor's shape, stride and storage
    offset are replaced by its number of dimensions (its entry's `SizeGuard` checks them),
    except at `static_positions` (parameters and buffers), which keep theirs."""
    key = list(signature_key(flat_args, in_spec))
    first = 3 + len(autocast_state())
    for position, a in enumerate(flat_args):
        if isinstance(a, torch.Tensor) and position not in static_positions:
            facts = key[first + position]
            key[first + position] = (a.dim(), *facts[3:])
    return tuple(key)


def plain_args_key(layout: tuple, tensors: list) -> tuple:
    """The key of `flatten_plain_args`'s result: the same facts as `signature_key`, gathered
    without a pytree walk (duplicates are rare: checked in bulk)."""
    key = (layout, torch.is_grad_enabled(), torch.get_default_dtype(), *autocast_state(),
           *[(t.shape, t.stride(), t.storage_offset(), t.dtype, t.device, t.requires_grad) for t in tensors])
    if len(set(map(id, tensors))) != len(tensors):
        first_position: dict[int, int] = {}
        key += tuple(first_position.setdefault(id(t), p) for p, t in enumerate(tensors))
    return key


def flatten_plain_args(args: tuple) -> tuple[Optional[list], Optional[tuple]]:
    """``(flat tensors, layout)`` when every argument is a tensor or a list/tuple of tensors:
    the common calls, flattened without pytree. Else ``(None, None)``. The layout stands in
    for the TreeSpec in the cache key."""
    flat: list = []
    layout: list = []
    for a in args:
        if isinstance(a, torch.Tensor):
            flat.append(a)
            layout.append(None)
        elif type(a) in (list, tuple) and all(isinstance(t, torch.Tensor) for t in a):
            flat.extend(a)
            layout.append((type(a), len(a)))
        else:
            return None, None
    return flat, tuple(layout)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
        return True
    except TypeError:
        return False
