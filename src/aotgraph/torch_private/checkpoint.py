"""Dynamo's activation-checkpoint operator, ``tag_activation_checkpoint`` (checked on torch 2.13),
and the reentrant checkpoint (``torch.utils.checkpoint.CheckpointFunction``, 2.11-2.14).

Dynamo records ``torch.utils.checkpoint.checkpoint(fn, ...)`` as that operator, whose
``__call__`` runs torch's implementation directly (``wrap.tag_activation_checkpoint_impl``: no
torch-function mode meets the call). The implementation checkpoints with
``preserve_rng_state=False``: torch reproduces the forward's random draws in the recompute later,
in Inductor's RNG passes. Our capture records the recompute as it runs, so a dropout recomputed
in the backward would draw new numbers: gradients through another mask than the forward's.

`checkpoint_preserving_rng_state`: while the body runs, on this thread, the operator runs the
non-reentrant checkpoint with the RNG state preserved (as ``aot_function`` of an eager
``checkpoint`` does), with the user's selective-checkpoint context where Dynamo kept one; the
recompute then restores the forward's RNG state and capture's draw tracking records the same
draws. The implementation is replaced once, by a function that runs torch's own on other
threads and outside the block.

`reentrant_checkpoint_unrolled`: while the body runs, on this thread, ``checkpoint(fn, *args,
use_reentrant=True)`` (older gradient-checkpointing code, Hugging Face's default before 5.x)
runs as the non-reentrant checkpoint: the reentrant one calls ``torch.autograd.backward`` inside
its backward, which a capture's ``torch.autograd.grad`` refuses ("incompatible with .grad()").
The gradients are the same. Where no tensor argument requires a gradient, the reentrant
checkpoint's outputs require none (parameters inside get no gradient): so here, run without grad.
"""
from __future__ import annotations

import contextlib
import sys
import threading
from typing import Callable, Iterator

__all__ = ["checkpoint_preserving_rng_state", "reentrant_checkpoint_unrolled"]

_this_thread = threading.local()
_install_lock = threading.Lock()


def checkpoint_preserving_rng_state() -> contextlib.AbstractContextManager:
    # Not imported here: a program Dynamo did not trace has no such operator to call.
    return _replaced_on_this_thread("torch._higher_order_ops.wrap", "tag_activation_checkpoint_impl",
                                    _preserving_rng_state, "depth")


@contextlib.contextmanager
def _replaced_on_this_thread(module_name: str, attribute: str, replacement: Callable, counter: str) -> Iterator[None]:
    """While in effect, on this thread, ``module.attribute`` is `replacement(original)`'s: that is
    installed once, for good, and acts as the original where this thread's `counter` is 0 (other
    threads, outside the block). A module not imported yet is left alone (nothing calls it)."""
    module = sys.modules.get(module_name)
    if module is None or not hasattr(module, attribute):
        yield
        return
    with _install_lock:
        if not getattr(getattr(module, attribute), "aotgraph_replaced", False):
            setattr(module, attribute, replacement(getattr(module, attribute)))
    depth = getattr(_this_thread, counter, 0)
    setattr(_this_thread, counter, depth + 1)
    try:
        yield
    finally:
        setattr(_this_thread, counter, depth)


def _preserving_rng_state(torch_impl: Callable) -> Callable:
    def impl(gmod, *args, **kwargs):
        if not getattr(_this_thread, "depth", 0):
            return torch_impl(gmod, *args, **kwargs)
        from torch.utils.checkpoint import checkpoint

        options = dict(kwargs, use_reentrant=False, preserve_rng_state=True)
        context_fn = gmod.meta.get("_checkpoint_context_fn")  # a selective-checkpoint policy
        if context_fn is not None:
            options["context_fn"] = context_fn
        return checkpoint(gmod, *args, **options)

    impl.aotgraph_replaced = True
    return impl


def reentrant_checkpoint_unrolled() -> contextlib.AbstractContextManager:
    return _replaced_on_this_thread("torch.utils.checkpoint", "CheckpointFunction", _unrolled, "unrolling")


def _unrolled(checkpoint_function: type) -> type:
    import torch
    from torch.utils.checkpoint import checkpoint

    class CheckpointFunction(checkpoint_function):
        aotgraph_replaced = True

        @classmethod
        def apply(cls, function, preserve_rng_state, *args):
            if not getattr(_this_thread, "unrolling", 0):
                return checkpoint_function.apply(function, preserve_rng_state, *args)
            if not any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
                with torch.no_grad():
                    return function(*args)
            return checkpoint(function, *args, use_reentrant=False, preserve_rng_state=preserve_rng_state)

    CheckpointFunction.__qualname__ = checkpoint_function.__qualname__
    return CheckpointFunction
