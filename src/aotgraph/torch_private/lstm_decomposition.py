"""torch's Python decomposition of one LSTM layer, which the Python dispatcher runs for
``aten.lstm.input`` while capture traces ``nn.LSTM`` (``torch._decomp.decompositions.one_layer_lstm``).

On torch 2.11 it returns the layer's final hidden and cell states squeezed on dimension 1
instead of 0: of shape [1, batch, hidden] for a batch of more than one, which ``lstm_impl``
stacks into h_n and c_n of [layers, 1, batch, hidden] where eager (the ATen kernel) gives
[layers, batch, hidden] (torch 2.13 squeezes dimension 0). While any capture runs, the
decomposition is wrapped to drop that leading dimension; where the states come back with
two dimensions (torch 2.13, or a batch of one) the wrapper changes nothing.
"""
from __future__ import annotations

import contextlib
import functools
import threading
from typing import Iterator

__all__ = ["lstm_states_as_eager"]

_lock = threading.Lock()
_captures = 0
_original = None


def _wrapped(original):
    @functools.wraps(original)
    def one_layer_lstm(*args, **kwargs):
        out, (hx, cx) = original(*args, **kwargs)
        if hx.dim() == 3:  # [1, batch, hidden]: torch 2.11's squeeze(1) of the unsqueezed state
            hx = hx.squeeze(0)
        if cx.dim() == 3:
            cx = cx.squeeze(0)
        return out, (hx, cx)

    return one_layer_lstm


@contextlib.contextmanager
def lstm_states_as_eager() -> Iterator[None]:
    """``one_layer_lstm`` returns states of eager's shape while this runs (on any thread)."""
    global _captures, _original
    from torch._decomp import decompositions

    original = getattr(decompositions, "one_layer_lstm", None)
    if original is None:  # another torch: nothing to wrap
        yield
        return
    with _lock:
        _captures += 1
        if _captures == 1:
            _original = decompositions.one_layer_lstm
            decompositions.one_layer_lstm = _wrapped(_original)
    try:
        yield
    finally:
        with _lock:
            _captures -= 1
            if _captures == 0:
                decompositions.one_layer_lstm = _original
                _original = None
