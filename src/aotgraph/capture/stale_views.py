"""Views taken before an in-place layout change of their base, read with gradients, as eager reads them.

``v = x[0]; x.t_(); v.exp()``: autograd makes v's history again at its next use. In eager it
makes it as ``x.as_strided(v's sizes, strides, offset)`` over x's new history, which reads
the elements v reads. On the capture's fake tensors (a Python dispatch key) it replays v's view
op over x's new layout instead, which reads other elements or fails (`GraphRecorder._refuse_stale_views`).
`StaleViewsRenewed` gives each torch function that reads such a view (under grad mode) eager's
view in its place: the ``as_strided`` of its base, made there, so autograd records eager's
history and the graph the same elements; so does each write into it. The program's outputs get
the same (`renewed_outputs`). In-place changes of such a view's own layout, and reads of its
sizes, see the view itself. Active only in a second walk over the program, which `capture` makes
where the first refused with such views about: a mode costs every op of every capture a call.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.utils._pytree import tree_map

from ..graph.sizes import has_symbolic_sizes, is_symbolic, storage_positions
from ..torch_private.dispatch import CaptureFunctionMode

__all__ = ["StaleViewsRenewed"]

# Reads of a tensor's metadata and identity: no history, the view itself.
_METADATA_METHODS = frozenset({
    "size", "stride", "dim", "ndimension", "storage_offset", "is_contiguous", "numel", "nelement", "data_ptr",
    "untyped_storage", "element_size", "is_floating_point", "is_complex", "get_device", "_is_view",
    "requires_grad_", "retain_grad", "register_hook", "__len__", "__repr__", "__format__", "dim_order",
})


# In-place changes of a tensor's own layout or identity: made on the view itself (a stand-in
# would take the change in its place); autograd's refusals of them stay the recorder's.
_OWN_LAYOUT_CHANGES = frozenset({
    "t_", "transpose_", "swapdims_", "swapaxes_", "unsqueeze_", "squeeze_", "as_strided_", "resize_", "resize_as_",
    "set_", "detach_", "share_memory_",
})


def _reads_history(func) -> bool:
    """Whether autograd may record `func` over its tensor arguments: not a property's getter or
    setter, a metadata read, or an in-place change of a tensor's layout. A write (``add_``,
    ``__setitem__``) counts: eager makes the view's history again before it writes, and the
    stand-in's write reaches the base's memory and history as the view's would."""
    name = getattr(func, "__name__", "")
    return name not in ("__get__", "__set__", "__delitem__") and name not in _METADATA_METHODS \
        and name not in _OWN_LAYOUT_CHANGES


class StaleViewsRenewed(CaptureFunctionMode):
    """While the program runs: each stale view (`recorder.is_stale`) a torch function reads under
    grad mode is replaced by eager's view of its base. Where that base is an input whose caller's
    tensor is itself a view (`bases_elsewhere`: the ids of those inputs' fakes), eager's history
    is an ``as_strided`` of the caller's base instead, which the input's own stands for only
    where its layout now holds every element of the view (``as_strided``'s gradient reaches no
    element outside its input's layout); elsewhere the view stays refused."""

    def __init__(self, recorder, bases_elsewhere: frozenset[int] = frozenset()):
        super().__init__()
        self.recorder = recorder
        self.bases_elsewhere = bases_elsewhere

    def _renews(self, item: Any) -> bool:
        if not (isinstance(item, torch.Tensor) and item.requires_grad and self.recorder.is_stale(item)):
            return False
        base = item._base
        if id(base) not in self.bases_elsewhere:
            return True
        if has_symbolic_sizes(item) or has_symbolic_sizes(base) or is_symbolic(base.storage_offset()):
            return False
        return storage_positions(item.shape, item.stride(), item.storage_offset()) <= storage_positions(
            base.shape, base.stride(), base.storage_offset())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.recorder.has_stale_views and torch.is_grad_enabled() and _reads_history(func):
            args, kwargs = self._renewed((args, kwargs))
        return func(*args, **kwargs)

    def _renewed(self, value: Any) -> Any:
        def renew(item):
            if self._renews(item):
                return item._base.as_strided(item.shape, item.stride(), item.storage_offset())
            return item
        return tree_map(renew, value)

    def renewed_outputs(self, out: Any) -> Any:
        """The program's output `out` with each stale view requiring grad replaced as a read of it
        is (the same view returned twice: one replacement)."""
        if not (self.recorder.has_stale_views and torch.is_grad_enabled()):
            return out
        made: dict[int, torch.Tensor] = {}

        def renew(item):
            if self._renews(item):
                if id(item) not in made:
                    made[id(item)] = self._renewed(item)
                return made[id(item)]
            return item
        return tree_map(renew, out)
