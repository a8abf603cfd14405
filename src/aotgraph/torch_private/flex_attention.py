"""flex_attention's private pieces: the mode under which torch traces score_mod and mask_mod.

Inside those functions an index is a 0-dim integer tensor (``bias[q_idx]``); torch traces
them with indexing by such a tensor turned into ``aten.index`` (not a read of its value).
Checked on torch 2.13.
"""
from __future__ import annotations

from torch._dynamo._trace_wrapped_higher_order_op import TransformGetItemToIndex

__all__ = ["TransformGetItemToIndex"]
