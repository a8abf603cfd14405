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
           "FAKE_CONVERSION_MODULE", "suggest_memory_format", "being_traced", "cuda_device_guard_set"]

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


_TORCH_BEFORE_2_13 = tuple(int(part) for part in torch.__version__.split(".")[:2]) < (2, 13)
_cuda_guard_set: list = []  # [True] once the guard is set
_cuda_guard_checked: list = []  # [True] once `cuda_device_guard_set` ran
_ensure_cuda_device_guard = torch._C._ensureCUDADeviceGuardSet


def _cuda_device_guard_set_once() -> None:
    if not _cuda_guard_set:
        _cuda_guard_set.append(True)
        _ensure_cuda_device_guard()


def cuda_device_guard_set() -> None:
    """Without a CUDA device, what a fake mode does when first entered (it sets a no-op CUDA
    device guard, so that fakes of CUDA tensors trace), done now, once. On torch 2.11 a fake
    mode's entry that set it again while another thread captured or built crashed (segfault:
    four threads compiling at once, a background build); there (before torch 2.13) the fake
    modes' call sets it only the first time. Called where a compiled function is made, usually
    the main thread, before any thread captures."""
    if _cuda_guard_checked:
        return
    _cuda_guard_checked.append(True)
    if _TORCH_BEFORE_2_13 and torch._C._ensureCUDADeviceGuardSet is _ensure_cuda_device_guard:
        torch._C._ensureCUDADeviceGuardSet = _cuda_device_guard_set_once
    if not torch.cuda.is_available():
        _cuda_device_guard_set_once()

