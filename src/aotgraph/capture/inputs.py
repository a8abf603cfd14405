"""The capture's fake inputs: a fake per real tensor input (aliasing kept), what the program
sees of each (a grad-tracking copy of an input that is not a leaf), and their layouts restored
after in-place view ops."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from .. import config
from ..errors import BadArgument
from ..graph.sizes import has_symbolic_sizes
from ..torch_private.dispatch import DisableTorchDispatch
from ..torch_private.fake import FakeTensor, FakeTensorMode
from ..torch_private.symbolic import guards_suppressed, symbolic_fake

__all__ = ["fake_inputs", "program_inputs", "restore_input_layouts", "traced_fakes", "unique"]

def restore_input_layouts(placeholders, program_fakes, metas_before, fake_mode) -> tuple[str, ...]:
    """In-place view ops (``x.t_()``) change the fake input itself; give each such placeholder
    a fake of the layout it had on entry, and name the inputs whose layout changed. Where it
    can, that fake is on the memory the program's fake of the input has, as the graph's views
    of the input are; so is a non-leaf input's placeholder (the program saw a copy of it on
    memory of its own, `program_inputs`). A pass that asks which values share an input's memory
    (Inductor's removal of a ``clone`` that would make an output alias an input) must find them:
    ``x.t_(); return x.t().clone()`` came back as x itself, relaid with it (seed 4694), and
    ``x.narrow(...).clone()`` of a non-leaf x as a view of x (seed 4281)."""
    changed = []
    for placeholder, fake, before in zip(placeholders, program_fakes, metas_before):
        relaid = (tuple(fake.shape), fake.stride(), fake.storage_offset()) != (before.shape, before.stride,
                                                                                before.storage_offset)
        if relaid:
            changed.append(placeholder.name)
        elif placeholder.meta["val"] is fake or has_symbolic_sizes(fake) or (
                placeholder.meta["val"].untyped_storage()._cdata == fake.untyped_storage()._cdata):
            continue
        with fake_mode:
            if not has_symbolic_sizes(fake):  # (a slice of a larger tensor keeps its offset in that memory)
                value = torch.empty(0, dtype=before.dtype, device=before.device).set_(
                    fake.untyped_storage(), before.storage_offset, before.shape, before.stride)
            else:
                value = torch.empty_strided(before.shape, before.stride, dtype=before.dtype, device=before.device)
            placeholder.meta["val"] = value.requires_grad_(before.requires_grad)
    return tuple(changed)


def program_inputs(fake_flat: list, fake_mode: FakeTensorMode) -> tuple[list, list]:
    """(placeholder fakes, what the program sees) for each tensor input.

    Placeholders are autograd leaves, the tensors gradients are taken with respect to.
    An input that is not a leaf in the caller (it requires grad and has history) is seen
    by the program as a grad-tracking copy of its leaf, so in-place ops on it are legal
    exactly as in eager, and their history reaches the placeholder. The copy is not
    recorded: the graph reads the placeholder directly.
    """
    primal_of: dict[int, tuple] = {}
    primals, program_flat = [], []
    for fake in fake_flat:
        if not isinstance(fake, torch.Tensor):
            program_flat.append(fake)
            continue
        if id(fake) not in primal_of:
            if fake.requires_grad and not fake.is_leaf:
                leaf = fake.detach().requires_grad_(True)
                primal_of[id(fake)] = (leaf, _grad_tracking_copy(leaf, fake_mode))
            else:
                primal_of[id(fake)] = (fake, fake)
        leaf, seen = primal_of[id(fake)]
        primals.append(leaf)
        program_flat.append(seen)
    return primals, program_flat


class _PassThroughCopy(torch.autograd.Function):
    """A copy whose backward hands the gradient straight to its source: nothing of it is
    recorded, whatever the layout (a copy through ``as_strided`` would record a backward that
    zero-fills and scatters into a buffer the size of the input's storage)."""

    @staticmethod
    def forward(ctx, leaf):
        # Not a view (autograd forbids in-place ops on views made inside a custom Function).
        copy = torch.empty(0, dtype=leaf.dtype, device=leaf.device)
        storage = torch.empty(leaf.untyped_storage().nbytes(), dtype=torch.uint8, device=leaf.device)
        # set_'s bounds check holds by construction (leaf's own layout on a storage of its
        # storage's size); under Dynamo its guard would pin a view's sizes to its base's
        # (`256*x.size()[0] <= 512*x._base.size()[1]`: a new batch size compiled again).
        with guards_suppressed(leaf):
            copy.set_(storage.untyped_storage(), leaf.storage_offset(), leaf.shape, leaf.stride())
        return copy.copy_(leaf)

    @staticmethod
    def backward(ctx, grad):
        return grad


def _grad_tracking_copy(leaf: torch.Tensor, fake_mode: FakeTensorMode) -> torch.Tensor:
    """A non-leaf copy of `leaf` with its exact sizes, strides and storage offset."""
    with fake_mode, torch.enable_grad():
        return _PassThroughCopy.apply(leaf)


def fake_inputs(flat_args: Sequence[Any], fake_mode: FakeTensorMode,
                symbolic_positions: frozenset = frozenset()) -> list:
    """`flat_args` with each real tensor replaced by a fake (the same fake for the same tensor).

    A plain leaf tensor that is the only input on its storage gets its fake directly: a meta
    tensor of its layout wrapped as a FakeTensor (cheaper than ``from_tensor``'s general
    conversion, and a module has many parameters; switch ``direct_fakes``). Views, tensors sharing storage with
    another input, non-leaves and anything unusual go through ``from_tensor``, which keeps
    their aliasing and autograd history. The tensors at `symbolic_positions` get symbolic
    sizes of `fake_mode`'s shape environment (`symbolic_fake`, named ``input{position}``; made
    in position order, so their symbols are numbered as the positions are).
    """
    tensors = [a for a in flat_args if isinstance(a, torch.Tensor)]
    # Tensors made in inference mode would be inference tensors; other tensor types may share
    # storage in ways a storage check cannot see.
    direct = (config.enabled("direct_fakes") and not torch.is_inference_mode_enabled()
              and all(type(a) in _PLAIN_TENSOR_TYPES for a in tensors))
    holders: dict[int, set] = {}
    for a in (t for t in tensors if t.layout == torch.strided) if direct else ():
        holders.setdefault(a.untyped_storage()._cdata, set()).add(id(a))
    fake_of: dict[int, Any] = {}
    fakes = []
    for position, a in enumerate(flat_args):
        fake = fake_of.get(id(a))
        if fake is None:
            if position in symbolic_positions:
                fake = symbolic_fake(fake_mode, a, f"input{position}")
            elif direct and _is_plain_leaf(a) and len(holders[a.untyped_storage()._cdata]) == 1:
                fake = _fake_of_plain_leaf(a, fake_mode)
            if fake is None:
                fake = _to_fake(a, fake_mode)
            fake_of[id(a)] = fake
        fakes.append(fake)
    return fakes


_PLAIN_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)


def _is_plain_leaf(value: Any) -> bool:
    return (type(value) in _PLAIN_TENSOR_TYPES and value.layout == torch.strided
            and value._base is None and value.grad_fn is None and value.storage_offset() == 0
            and value.grad is None and not (value.is_conj() or value.is_neg() or value.is_inference()
                                            or value.is_quantized or value.is_meta))


def _fake_of_plain_leaf(real: torch.Tensor, fake_mode: FakeTensorMode) -> FakeTensor | None:
    """A fake with `real`'s layout and requires_grad; None if `real`'s storage is larger than its
    layout needs (``from_tensor`` keeps that size on some torch versions, not on others)."""
    with DisableTorchDispatch():
        meta = torch.empty_strided(real.shape, real.stride(), dtype=real.dtype, device="meta",
                                   requires_grad=real.requires_grad)
    if meta.untyped_storage().nbytes() != real.untyped_storage().nbytes():
        return None
    return FakeTensor(fake_mode, meta, real.device)


def _to_fake(value: Any, fake_mode: FakeTensorMode) -> Any:
    if not isinstance(value, torch.Tensor) or isinstance(value, FakeTensor):
        return value
    if value.layout == torch.jagged:  # (aot_function flattens one with static sizes: `capture.subclasses`)
        raise BadArgument("a nested tensor of layout torch.jagged with symbolic sizes (as torch.compile hands its "
                          "ragged dimension over) is not supported", "capture",
                          "compile that function with aotgraph.aot_function / aot_module, which take jagged nested "
                          "tensors, or with another torch.compile backend")
    if value.is_sparse or value.layout != torch.strided:
        raise BadArgument(f"input tensor with layout {value.layout} is not supported", "capture",
                          "pass dense (strided) tensors")
    return fake_mode.from_tensor(value, static_shapes=True)


def unique(tensors: list) -> list:
    seen, unique = set(), []
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            unique.append(t)
    return unique


def traced_fakes(reals: Sequence[Any], traced: Sequence[Any], fake_mode: FakeTensorMode) -> dict[int, FakeTensor]:
    """Position -> a fake in `fake_mode` for the real tensor at that position of `reals`, made
    from the fake Dynamo traced it with (`traced`: its graph's placeholders' ``example_value``,
    in order; the same shape environment, so the same symbols): its sizes and strides, its
    gradient need, the symbol ``.item()`` gives back (a float or counter Dynamo passes as a 0-d
    tensor). Only where that fake still is what ``fake_mode.from_tensor`` would make: a plain
    leaf tensor on a storage of its own, of its layout's size, not a view, of the same dtype and
    device, layout (by the sizes' hints) and gradient need, and not written in place while
    Dynamo traced (its version 0). ``from_tensor`` finds no fake of Dynamo's in the backend's
    new fake mode: it costs ms for an input of symbolic sizes, a fifth of one for a 0-d tensor."""
    if len(reals) != len(traced):
        return {}
    holders: dict[int, int] = {}
    for real in reals:
        if isinstance(real, torch.Tensor) and real.layout == torch.strided:
            key = real.untyped_storage()._cdata
            holders[key] = holders.get(key, 0) + 1
    found = {}
    for position, (real, fake) in enumerate(zip(reals, traced)):
        if type(real) is torch.Tensor and isinstance(fake, FakeTensor) and _is_plain_leaf(real) \
                and holders[real.untyped_storage()._cdata] == 1 and not fake._is_view() and fake._version == 0 \
                and fake.dtype == real.dtype and fake.device == real.device \
                and fake.requires_grad == real.requires_grad \
                and _hints(fake) == (real.shape, real.stride(), real.storage_offset()):
            with DisableTorchDispatch():
                meta = torch.empty_strided(fake.shape, fake.stride(), dtype=fake.dtype, device="meta",
                                           requires_grad=fake.requires_grad)
            if _hint(meta.untyped_storage().nbytes()) != real.untyped_storage().nbytes():
                continue
            found[position] = FakeTensor(fake_mode, meta, real.device)
            if fake.dim() == 0 and fake.item_memo is not None:
                found[position].item_memo = fake.item_memo
    return found


def _hint(value):
    return value if type(value) is int else value.node.hint


def _hints(fake: FakeTensor) -> Optional[tuple]:
    """`fake`'s layout by its sizes' hints; None where a size has none (unbacked: ``mark_unbacked``)."""
    sizes, strides = tuple(map(_hint, fake.shape)), tuple(map(_hint, fake.stride()))
    offset = _hint(fake.storage_offset())
    if None in sizes or None in strides or offset is None:
        return None
    return torch.Size(sizes), strides, offset
