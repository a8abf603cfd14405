"""User Triton kernels' private pieces (checked on torch 2.13): which arguments a kernel writes.

`written_arguments` answers from torch's analysis of the kernel's Triton IR; where that
analysis fails (no GPU target to lower to, an interpreted kernel), torch answers every tensor
argument, which is conservative: an argument counted as written is cloned and copied back.
"""
from __future__ import annotations

from typing import Any

__all__ = ["written_arguments"]


def written_arguments(kernel_idx: int, constant_args_idx: int, kwargs: dict[str, Any],
                      tma_descriptor_metadata: dict) -> list[str]:
    """The names, among `kwargs`, of the tensors the kernel (in torch's kernel side table) writes."""
    from torch._higher_order_ops.triton_kernel_wrap import get_mutated_tensors

    return get_mutated_tensors(kernel_idx, constant_args_idx, kwargs, tma_descriptor_metadata)
