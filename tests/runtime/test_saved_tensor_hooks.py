"""The caller's saved-tensor hooks (``saved_tensors_hooks``, ``save_on_cpu``) around a compiled
call pack what the compiled forward saves, at run time, as eager's pack what its ops save; the
capture never hands them fakes (a hook may copy to the host, keep what it packs, or fail on a
fake). Hooks the program pushes itself are part of the program: a lossy pack and unpack change
the gradients as eager's do.

Each program runs eagerly and compiled under equal hooks; outputs and gradients must match, and
the hooks must see only real tensors."""
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensor

import aotgraph


def _mlp(x, w):
    return (x @ w).relu().sin().sum()


def _norm_and_softmax(x, w):
    h = torch.nn.functional.layer_norm(x @ w, (w.shape[1],))
    return (h.softmax(-1) * h).sum()


class _Packer:
    """Hooks that refuse fakes and count what they pack; `offload`: the packed copy on the host
    in a list of its own, as an offloading hook keeps it."""

    def __init__(self, offload: bool):
        self.offload, self.packed, self.kept = offload, 0, []

    def pack(self, tensor):
        assert not isinstance(tensor, FakeTensor), "a saved-tensor hook got a fake"
        self.packed += 1
        if not self.offload:
            return tensor
        self.kept.append(tensor.detach().to("cpu", copy=True))
        return len(self.kept) - 1

    def unpack(self, packed):
        return self.kept[packed] if self.offload else packed


def _grads(fn, x, w, packer=None):
    x.grad = w.grad = None
    if packer is None:
        out = fn(x, w)
    else:
        with torch.autograd.graph.saved_tensors_hooks(packer.pack, packer.unpack):
            out = fn(x, w)
    out.backward()
    return out.detach(), x.grad.clone(), w.grad.clone()


def _compiled(how, fn):
    if how == "backend":
        torch._dynamo.reset()
        return torch.compile(fn, backend=aotgraph.backend(compiler="eager"))
    if how == "symbolic":
        return aotgraph.aot_function(fn, "eager", dynamic=True)
    return aotgraph.aot_function(fn, how)


@pytest.mark.parametrize("offload", [False, True], ids=["identity", "offload"])
@pytest.mark.parametrize("how", ["eager", "inductor", "symbolic", "backend"])
@pytest.mark.parametrize("program", [_mlp, _norm_and_softmax])
def test_caller_hooks_pack_real_saved_tensors(program, how, offload):
    torch.manual_seed(0)
    x, w = torch.randn(6, 8, requires_grad=True), torch.randn(8, 5, requires_grad=True)
    expected = _grads(program, x, w)
    compiled = _compiled(how, program)
    for _ in range(2):  # the compiling call, then a call of the compiled code
        packer = _Packer(offload)
        got = _grads(compiled, x, w, packer)
        assert packer.packed > 0, "the compiled forward's saved tensors were not packed"
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_save_on_cpu_around_a_module():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.LayerNorm(16), torch.nn.Linear(16, 1))
    compiled = aotgraph.aot_module(model, "eager")
    x = torch.randn(4, 8)
    model(x).sum().backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with torch.autograd.graph.save_on_cpu():
        compiled(x).sum().backward()
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, e)


def _lossy_inside(x, w):
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t.to(torch.bfloat16), lambda t: t.to(torch.float32)):
        y = (x @ w).sin()
    return y.cos().sum()


def test_hooks_the_program_pushes_are_part_of_it():
    torch.manual_seed(0)
    x, w = torch.randn(16, 16, requires_grad=True), torch.randn(16, 16, requires_grad=True)
    expected = _grads(_lossy_inside, x, w)
    unhooked = torch.autograd.grad((x @ w).sin().cos().sum(), [x, w])
    assert (expected[1] - unhooked[0]).abs().max() > 1e-3, "the test's hooks must change the gradient"
    got = _grads(aotgraph.aot_function(_lossy_inside, "eager"), x, w)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


def test_the_hooks_are_back_after_a_refused_capture():
    def refused(x):
        return x * x.sum().item()  # data-dependent: refused without Dynamo

    packer = _Packer(offload=False)
    x = torch.randn(4, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(packer.pack, packer.unpack):
        with pytest.raises(aotgraph.AotGraphError):
            aotgraph.aot_function(refused, "eager")(x)
        (x * x).sum().backward()
    assert packer.packed == 2
    assert torch._C._autograd._top_saved_tensors_default_hooks(True) is None
