"""Calls that launch a kernel outside PyTorch's dispatcher, refused while capturing.

Capture runs the program on fake tensors and records what the dispatcher sees. A function made
with ``torch.cuda.jiterator`` hands its tensors straight to a C++ entry point
(``torch._C._cuda_jiterator_compile_and_launch_kernel``) that compiles and launches a CUDA kernel:
on fake tensors it reads and writes memory that is not there (an illegal memory access, and
every later CUDA call of the process fails), and nothing of it would be recorded. While capture
runs, that entry point raises `UnsupportedOp` instead.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from ..errors import UnsupportedOp

__all__ = ["kernels_outside_dispatch_refused"]

_ENTRY_POINTS = ("_cuda_jiterator_compile_and_launch_kernel",)


@contextlib.contextmanager
def kernels_outside_dispatch_refused() -> Iterator[None]:
    """While in effect, calling an `_ENTRY_POINTS` function of ``torch._C`` (where this build has
    it) raises `UnsupportedOp` naming it."""
    originals = {name: getattr(torch._C, name) for name in _ENTRY_POINTS if hasattr(torch._C, name)}
    for name in originals:
        setattr(torch._C, name, _refusing(name))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(torch._C, name, original)


def _refusing(name: str):
    def refuse(*args, **kwargs):
        raise UnsupportedOp(
            f"torch._C.{name} (a torch.cuda.jiterator function) launches its kernel outside PyTorch's "
            "dispatcher, so it cannot be traced", "capture",
            "call that function outside the compiled function, or write it with torch operations "
            "(or a torch.library custom op with a fake kernel)")

    return refuse
