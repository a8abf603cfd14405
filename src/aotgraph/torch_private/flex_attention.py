"""flex_attention's private pieces (checked on torch 2.13):

- `TransformGetItemToIndex`: the mode under which torch traces score_mod and mask_mod. Inside
  them an index is a 0-dim integer tensor (``bias[q_idx]``); under the mode, indexing by one
  is ``aten.index``, not a read of its value.
- `operator_called_directly`: torch's public ``flex_attention`` outside Dynamo wraps its
  operator in a nested ``torch.compile`` (which cannot trace inside a capture); under this
  context it calls the operator itself, as it does under Dynamo (its debug flag
  ``_FLEX_ATTENTION_DISABLE_COMPILE_DEBUG``, set for the block).
"""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator

__all__ = ["TransformGetItemToIndex", "operator_called_directly"]

_DIRECT_CALL_FLAG = "_FLEX_ATTENTION_DISABLE_COMPILE_DEBUG"


def TransformGetItemToIndex():  # noqa: N802 (torch's name)
    """torch's mode, imported at first use: its module imports Dynamo, which ``import aotgraph``
    does not load."""
    from torch._dynamo._trace_wrapped_higher_order_op import TransformGetItemToIndex as mode

    return mode()


@contextlib.contextmanager
def operator_called_directly() -> Iterator[None]:
    # Not imported here: a program that never imported flex_attention cannot call it.
    module = sys.modules.get("torch.nn.attention.flex_attention")
    if module is None or not hasattr(module, _DIRECT_CALL_FLAG):
        yield
        return
    before = getattr(module, _DIRECT_CALL_FLAG)
    setattr(module, _DIRECT_CALL_FLAG, True)
    try:
        yield
    finally:
        setattr(module, _DIRECT_CALL_FLAG, before)
