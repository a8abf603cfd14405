"""Fake tensors: the mode, their construction from meta tensors, and the kernel-invocation
state under which a fake tensor is seen as its meta tensor.

Checked on torch 2.11 (the H200, benchmarks/gpu_train.py), 2.13 and 2.14.1 (the test suite).
"""
from __future__ import annotations

import torch
from torch._guards import detect_fake_mode
from torch._prims_common import suggest_memory_format
from torch._subclasses.fake_tensor import (DataDependentOutputException, DynamicOutputShapeException, FakeTensor,
                                           FakeTensorConfig, FakeTensorMode, UnsupportedOperatorException,
                                           in_kernel_invocation_manager)
import torch._subclasses.fake_tensor as _fake_tensor

# (torch 2.13+: tensors of two devices in one op; 2.11 raises a plain RuntimeError there)
FakeTensorDeviceMismatchError = getattr(_fake_tensor, "FakeTensorDeviceMismatchError", type("_Never", (Exception,), {}))

__all__ = ["DataDependentOutputException", "FakeTensorDeviceMismatchError", "DynamicOutputShapeException", "UnsupportedOperatorException", "FakeTensor", "FakeTensorConfig", "FakeTensorMode", "in_kernel_invocation_manager", "detect_fake_mode",
           "make_subclass", "set_throw_on_mutable_data_ptr", "set_warn_deprecated_on_mutable_data_ptr",
           "FAKE_CONVERSION_MODULE", "suggest_memory_format", "being_traced"]

make_subclass = torch.Tensor._make_subclass  # a tensor subclass instance around a tensor, without a copy
set_throw_on_mutable_data_ptr = torch._C._set_throw_on_mutable_data_ptr
set_warn_deprecated_on_mutable_data_ptr = torch._C._set_warn_deprecated_on_mutable_data_ptr
FAKE_CONVERSION_MODULE = "torch._subclasses.meta_utils"  # the module whose code turns real tensors into fakes


def being_traced(leaves) -> bool:
    """Whether a call with these values (pytree leaves) is being traced rather than run: a value
    is a fake or functional tensor (another capture's), or make_fx's proxy mode is on."""
    from torch._subclasses.functional_tensor import FunctionalTensor
    from torch.fx.experimental.proxy_tensor import get_proxy_mode

    return get_proxy_mode() is not None or any(isinstance(leaf, (FakeTensor, FunctionalTensor)) for leaf in leaves)
