"""User Triton kernels (``triton_kernel_wrapper_mutation``, as Dynamo or ``wrap_triton`` hand
them over) recorded functionally.

A kernel writes into its tensor arguments. Its call is recorded as torch's functional form,
``triton_kernel_wrapper_functional(..., kwargs, tensors_to_clone) -> {name: written copy}``:
each argument the kernel writes (`written_arguments`) is cloned, the clone written, and the
argument then takes the clone's values by an in-place copy, which the capture's
functionalization handles like any other mutation (of an input: copied back after the call).
A compiler that knows the HOP (Inductor) writes in place again where it can; the "eager"
compiler runs torch's implementation, which launches the kernel.

A kernel has no backward: its writes are hidden from autograd, as in eager, where autograd
does not see a kernel at all.
"""
from __future__ import annotations

import operator

import torch

from ..torch_private.dispatch import DisableTorchFunction, disable_current_modes
from ..torch_private.triton_kernels import written_arguments

__all__ = ["record_triton_kernel"]

_functional = torch.ops.higher_order.triton_kernel_wrapper_functional


def record_triton_kernel(recorder, *, kernel_idx: int, constant_args_idx: int, grid: list,
                         tma_descriptor_metadata: dict, kwargs: dict) -> None:
    """One kernel launch recorded (see the module docstring); returns None, as the launch does."""
    with disable_current_modes(), DisableTorchFunction():
        written = [name for name in written_arguments(kernel_idx, constant_args_idx, kwargs, tma_descriptor_metadata)
                   if isinstance(kwargs.get(name), torch.Tensor)]
    graph = recorder.graph
    node = graph.call_function(_functional, (), {
        "kernel_idx": kernel_idx, "constant_args_idx": constant_args_idx,
        "grid": [tuple(recorder.node_for(size) for size in dims) if isinstance(dims, (tuple, list)) else dims
                 for dims in grid],
        "tma_descriptor_metadata": tma_descriptor_metadata,
        "kwargs": {name: recorder.node_for(value) for name, value in kwargs.items()},
        "tensors_to_clone": written})
    copies = {}
    for name in written:
        argument = kwargs[name]
        with DisableTorchFunction():
            copy = recorder.fake_outputs.empty_strided(tuple(argument.shape), tuple(argument.stride()),
                                                       argument.dtype, argument.device)
        getter = graph.call_function(operator.getitem, (node, name))
        getter.meta["val"] = copy
        recorder.node_of[id(copy)] = getter
        copies[name] = copy
    node.meta["val"] = copies
    with torch.no_grad():  # hidden from autograd, as the kernel's writes are in eager
        for name, copy in copies.items():
            kwargs[name].copy_(copy)
    return None
