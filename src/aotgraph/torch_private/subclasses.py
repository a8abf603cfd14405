"""Traceable wrapper tensor subclasses (``__tensor_flatten__`` / ``__tensor_unflatten__``:
DTensor, torch's test TwoTensor, float8 tensors), and the tensors of torch.func's transforms.

Checked on torch 2.13 (the test suite: TwoTensor, DTensor under tensor parallelism).
"""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import is_traceable_wrapper_subclass, is_traceable_wrapper_subclass_type

__all__ = ["is_traceable_wrapper_subclass", "is_traceable_wrapper_subclass_type", "is_functorch_wrapped_tensor"]

is_functorch_wrapped_tensor = torch._C._functorch.is_functorch_wrapped_tensor  # vmap's batched, jvp's and grad's
