"""``tensor.data = value`` in a captured program, as eager runs it.

Assigning ``.data`` swaps a tensor's memory and layout for `value`'s without autograd seeing it:
the tensor keeps its identity, ``requires_grad`` and history, and its version counter does not
move (weight re-normalisation and projection code: ``self.w.data = self.w.data / norm``). No
ATen op runs, so the recorder would not see it, and the program's later reads of the tensor
would be recorded as reads of its old value (a silent wrong answer). The capture's torch-function
mode hands each such assignment here: it is recorded as a storage replacement outside grad mode
(``set_``, which the runtime replays on the caller's tensor), its version counter put back, as
Dynamo translates it for torch.compile.
"""
from __future__ import annotations

import torch

from ..errors import UnsupportedOp
from ..torch_private.versions import set_version

__all__ = ["DATA_SETTER", "assign_data"]

DATA_SETTER = torch.Tensor.data.__set__  # the torch function a ``.data`` assignment calls


def assign_data(tensor, value) -> None:
    if not isinstance(tensor, torch.Tensor) or not isinstance(value, torch.Tensor):
        return DATA_SETTER(tensor, value)  # eager's own error
    if value.dtype != tensor.dtype or value.device != tensor.device:
        raise UnsupportedOp(f"`.data` of a {tensor.dtype} tensor on {tensor.device} assigned a {value.dtype} tensor "
                            f"on {value.device}", "capture", "assign a tensor of the same dtype and device, or copy "
                            "into it under torch.no_grad() (`t.copy_(value)`)")
    version = tensor._version
    with torch.no_grad():
        tensor.set_(value)
    set_version(tensor, version)
    return None
