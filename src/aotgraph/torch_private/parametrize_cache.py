"""``torch.nn.utils.parametrize.cached()``: while the caller has it on, a parametrized tensor
(``module.weight`` of a ``register_parametrization``) is computed once and kept in the module's
cache (``parametrize._cache``) until the outermost ``cached()`` block ends.

Checked on torch 2.11, 2.13 and 2.14.1 (``_cache_enabled``, ``_cache``: module globals).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from torch.nn.utils import parametrize

__all__ = ["parametrize_cache_set_aside"]


@contextlib.contextmanager
def parametrize_cache_set_aside() -> Iterator[None]:
    """The caller's parametrization cache off and emptied for the body, then put back as it
    was: a capture computes each parametrized tensor in its graph (gradients reach the
    originals) instead of reading a real tensor the caller cached (a grad-requiring constant),
    and leaves no fake in the cache for the caller to read after it."""
    enabled, cache = parametrize._cache_enabled, dict(parametrize._cache)
    parametrize._cache_enabled = 0
    parametrize._cache.clear()
    try:
        yield
    finally:
        parametrize._cache.clear()
        parametrize._cache.update(cache)
        parametrize._cache_enabled = enabled
