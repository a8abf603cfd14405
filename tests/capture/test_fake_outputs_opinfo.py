"""The capture's fake outputs against eager's, op by op, on PyTorch's elementwise and
reduction OpInfos (unary and binary ufuncs, reductions; float32 and bfloat16, CPU; CUDA too
where present): every ATen op that a sample dispatches is run eagerly and through
`FakeOutputs` (miss, then hit), and the two must agree on dtype, shape, strides, storage
offset and device. This covers the meta-kernel answers to misses (`_on_meta_kernel`), which
take the place of the fake mode's own rules."""
from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from aotgraph.capture.fake_outputs import FakeOutputs

def _layout(t):
    return (t.dtype, tuple(t.shape), t.stride(), t.storage_offset(), t.device.type)


class CompareWithEager(TorchDispatchMode):
    """Runs each op eagerly, then through FakeOutputs on fakes of its arguments (twice: the
    memo's miss and hit); records ops whose fake layouts differ from eager's."""

    def __init__(self):
        super().__init__()
        self.mismatches: list[str] = []
        self.checked = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func._schema.is_mutable or not any(isinstance(a, torch.Tensor) for a in tree_flatten((args, kwargs))[0]):
            return out
        real_outs = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)]
        mode = FakeTensorMode()
        memo = FakeOutputs(mode)
        to_fake = lambda a: mode.from_tensor(a, static_shapes=True) if isinstance(a, torch.Tensor) else a
        for attempt in ("miss", "hit"):
            fake_args, fake_kwargs = tree_map(to_fake, args), tree_map(to_fake, kwargs)
            try:
                with mode:
                    fake = memo.run(func, fake_args, fake_kwargs, lambda f, a, k: f(*a, **k))
            except Exception:  # the fake mode cannot run it: nothing of ours to compare
                return out
            fake_outs = [o for o in tree_flatten(fake)[0] if isinstance(o, torch.Tensor)]
            if [_layout(f) for f in fake_outs] != [_layout(r) for r in real_outs]:
                self.mismatches.append(f"{func} ({attempt}): fake {[_layout(f) for f in fake_outs]} "
                                       f"eager {[_layout(r) for r in real_outs]}")
                break
        self.checked += 1
        return out


def _elementwise_and_reduction_opinfos():
    pytest.importorskip("expecttest")  # torch's OpInfo database needs it (a test extra; the GPU machine lacks it)
    from torch.testing._internal.common_methods_invocations import op_db
    from torch.testing._internal.opinfo.core import BinaryUfuncInfo, ReductionOpInfo, UnaryUfuncInfo

    return [op for op in op_db if isinstance(op, (UnaryUfuncInfo, BinaryUfuncInfo, ReductionOpInfo))]


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_elementwise_and_reduction_ops_fake_layouts_match_eager(dtype, device):
    compare = CompareWithEager()
    for op in _elementwise_and_reduction_opinfos():
        if dtype not in op.supported_dtypes(device):
            continue
        for k, sample in enumerate(op.sample_inputs(device, dtype, requires_grad=False)):
            if k == 3:
                break
            try:
                with compare:
                    op(sample.input, *sample.args, **sample.kwargs)
            except Exception:  # eager refuses the sample (or its op): nothing to compare
                continue
    assert compare.checked > 300
    assert not compare.mismatches, "\n".join(compare.mismatches[:20])
