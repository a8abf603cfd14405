"""Inductor's compile on a background build's thread, kept off the program's random streams
(a patch of torch's, checked on torch 2.11 and 2.13).

Inductor's compile saves the process's CPU and CUDA RNG states and puts them back when it ends
(``torch._dynamo.utils.preserve_rng_state``), and draws the example inputs of its compile-time
autotuning from them (``torch._dynamo.testing.rand_strided``). On the thread the program runs
on, that leaves the program's random stream as it was. On the build worker's thread it does
not: the program keeps running meanwhile, and the restore rewinds it, so draws the program made
during the build (its dropout masks, a loader's shuffle) come out again after it; a capture under
way sees the RNG reset under its markers and refuses its program (capture/random_draws.py).

On a thread inside `rng_untouched()` the save and restore do nothing and example inputs come
from a generator of the thread's own, so a build neither rewinds nor advances the program's
streams. Installed once per process, on the functions and on every loaded Inductor module that
bound them by name; other threads run torch's own (switch ``build_rng_untouched``).
"""
from __future__ import annotations

import contextlib
import sys
import threading
from typing import Iterator

import torch

from .. import config
from ..thread_values import held

__all__ = ["rng_untouched"]

_this_thread = threading.local()
_install_lock = threading.Lock()
_installed = False


@contextlib.contextmanager
def rng_untouched() -> Iterator[None]:
    """Inductor compiles on this thread, in the block, leave the process's RNG states alone."""
    if not config.enabled("build_rng_untouched") or not _install():
        yield
        return
    with held(_this_thread, "untouched", True, outside=False):
        yield


def _install() -> bool:
    global _installed
    with _install_lock:
        if _installed:
            return True
        from torch._dynamo import testing, utils

        preserve, rand_strided = getattr(utils, "preserve_rng_state", None), getattr(testing, "rand_strided", None)
        if preserve is None or rand_strided is None:
            return False

        @contextlib.contextmanager
        def preserve_rng_state():
            if getattr(_this_thread, "untouched", False):
                yield
                return
            with preserve():
                yield

        def example_values(*args, **kwargs):
            if getattr(_this_thread, "untouched", False):
                return _own_rand_strided(*args, **kwargs)
            return rand_strided(*args, **kwargs)

        replacements = {preserve: preserve_rng_state, rand_strided: example_values}
        for name, module in list(sys.modules.items()):
            if module is not None and (module is utils or module is testing or name.startswith("torch._inductor")):
                for attribute in ("preserve_rng_state", "rand_strided"):
                    bound = getattr(module, attribute, None)
                    if bound in replacements:
                        setattr(module, attribute, replacements[bound])
        _installed = True
        return True


def _own_rand_strided(size, stride, dtype: torch.dtype = torch.float32, device="cpu", extra_size: int = 0):
    """torch's ``rand_strided`` (random floats, zeros otherwise, on a buffer just large enough),
    drawn from this thread's own generator for the device."""
    needed = extra_size
    if all(s > 0 for s in size):
        needed += sum((s - 1) * st for s, st in zip(size, stride)) + 1
    device = torch.device(device)
    generators = getattr(_this_thread, "generators", None)
    if generators is None:
        generators = _this_thread.generators = {}
    generator = generators.get(device)
    if generator is None:
        generator = generators[device] = torch.Generator(device=device)
        generator.manual_seed(0)
    if not dtype.is_floating_point:
        buffer = torch.zeros(needed, dtype=dtype, device=device)
    elif str(dtype) == "torch.float4_e2m1fn_x2":  # packed pairs: random bytes
        buffer = torch.empty(needed, dtype=torch.uint8, device=device).random_(0, 256, generator=generator).view(dtype)
    elif dtype.itemsize == 1:  # float8: no normal kernel of its own
        buffer = torch.empty(needed, dtype=torch.float16, device=device).normal_(generator=generator).to(dtype)
    else:
        buffer = torch.empty(needed, dtype=dtype, device=device).normal_(generator=generator)
    return torch.as_strided(buffer, size, stride)
