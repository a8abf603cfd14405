"""Output layouts where torch's fake kernels disagree with eager's kernels, put right.

Group norm: eager's kernels write the normalized input (forward) and its gradient (backward)
in the memory format the *input* suggests on the CPU (channels-last in, channels-last out) and
contiguous on other devices. torch's fake kernels differ: 2.14's forward is contiguous for a
channels-last input, and the backward of every supported version takes the format of the
incoming gradient instead of the input's. A fake of other strides than eager's tensor misleads
every stage after capture (a reshape recorded as a view that the real tensor cannot take, a
saved tensor's or an output's strides), so capture's fake outputs take eager's layout here
(tests/capture/test_fake_outputs.py checks them against eager).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ..torch_private.dispatch import DisableTorchDispatch
from ..torch_private.fake import suggest_memory_format

aten = torch.ops.aten

# op -> position of the argument whose memory format eager's kernel gives its first output
INPUT_FORMAT_OUTPUT = {aten.native_group_norm.default: 0, aten.native_group_norm_backward.default: 1}


def eager_output_format(func, args: tuple) -> torch.memory_format:
    """The memory format of eager's first output of `func` (one of `INPUT_FORMAT_OUTPUT`)."""
    x = args[INPUT_FORMAT_OUTPUT[func]]
    return suggest_memory_format(x) if x.device.type == "cpu" else torch.contiguous_format


def with_eager_layout(func, args: tuple, out: Any, new_fake: Callable) -> Any:
    """`out` (the fake mode's outputs of `func`) with its first output, where computed, replaced
    by a fresh fake (`new_fake(meta)`) of its size and dtype in eager's memory format."""
    first = out[0]
    if first is None:
        return out
    memory_format = eager_output_format(func, args)
    with DisableTorchDispatch():
        meta = torch.empty(first.shape, dtype=first.dtype, device="meta", memory_format=memory_format)
    return type(out)((new_fake(meta), *out[1:]))
