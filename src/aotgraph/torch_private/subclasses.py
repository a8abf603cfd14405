"""Traceable wrapper tensor subclasses (``__tensor_flatten__`` / ``__tensor_unflatten__``:
DTensor, torch's test TwoTensor, float8 tensors).

Checked on torch 2.13 (the test suite: TwoTensor, DTensor under tensor parallelism).
"""
from __future__ import annotations

from torch.utils._python_dispatch import is_traceable_wrapper_subclass, is_traceable_wrapper_subclass_type

__all__ = ["is_traceable_wrapper_subclass", "is_traceable_wrapper_subclass_type"]
