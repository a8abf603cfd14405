"""Inductor's probe of the CPU's vector instruction sets, remembered across processes.

Before Inductor builds or loads its first C++ kernel in a process it asks which vector ISAs
(AVX2, AVX-512, ...) the CPU announces and, for each, builds a test library with that ISA's
flags and loads it in a child Python (``cpu_vec_isa.valid_vec_isa_list``): 1-2 s of a warm
start that otherwise only loads built kernels. The answer depends on the CPU, the C++
compiler and the installation, so it is remembered under a key of those
(`_probe_key`) in Inductor's cache directory, next to the probe's own builds.

`recall_vec_isa_probe` answers Inductor's probe from the memo, and only where every
ISA the CPU announces passed it: Inductor's ``cpp.vec_isa_ok = True`` then gives the same
list without probing (its answer for a probe it skips), and the list stays cached for the
process. `remember_vec_isa_probe` writes the memo after Inductor probed. x86-64 Linux only;
elsewhere both do nothing. Switch: ``vec_isa_memo``.

Private Inductor APIs (``torch._inductor.cpu_vec_isa``, ``cpp_builder``, ``config.cpp``),
checked on torch 2.13 and 2.14.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

import torch

from .. import config as aot_config

__all__ = ["recall_vec_isa_probe", "remember_vec_isa_probe"]


def recall_vec_isa_probe() -> bool:
    """Fill Inductor's list of usable vector ISAs from the memo, without probing; whether it did."""
    from torch._inductor import config
    from torch._inductor.cpu_vec_isa import valid_vec_isa_list

    if _probed(valid_vec_isa_list) or config.cpp.vec_isa_ok is not None:
        return False
    path, announced = _memo_path_and_isas()
    if path is None:
        return False
    try:
        remembered = json.loads(path.read_text())["valid"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if remembered != announced:  # some ISA failed its probe here: Inductor probes again
        return False
    with config.patch({"cpp.vec_isa_ok": True}):
        valid = [str(isa) for isa in valid_vec_isa_list()]
    return valid == announced


def remember_vec_isa_probe() -> None:
    """Write the memo of the probe Inductor ran in this process (if it ran and has none yet)."""
    from torch._inductor import config
    from torch._inductor.cpu_vec_isa import valid_vec_isa_list

    if not _probed(valid_vec_isa_list) or config.cpp.vec_isa_ok is not None:
        return
    path, _ = _memo_path_and_isas()
    if path is None or path.exists():
        return
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(descriptor, "w") as file:
            json.dump({"valid": [str(isa) for isa in valid_vec_isa_list()]}, file)
        os.replace(temporary, path)


def _probed(valid_vec_isa_list) -> bool:
    return valid_vec_isa_list.cache_info().currsize > 0


def _memo_path_and_isas() -> tuple[Optional[Path], list]:
    """The memo's path for this machine and installation, and the ISAs the CPU announces (in
    Inductor's order of preference); (None, []) where the memo does not apply."""
    if not aot_config.enabled("vec_isa_memo") or sys.platform != "linux" or platform.machine() != "x86_64":
        return None, []
    from torch._inductor.cpp_builder import get_cpp_compiler
    from torch._inductor.cpu_vec_isa import supported_vec_isa_list, x86_isa_checker
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    flags = x86_isa_checker()
    announced = [str(isa) for isa in supported_vec_isa_list if all(flag in flags for flag in str(isa).split())]
    key = _probe_key(announced, get_cpp_compiler())
    if key is None:
        return None, []
    return Path(cache_dir()) / "aotgraph_vec_isa" / f"{key}.json", announced


def _probe_key(announced: list, compiler: str) -> Optional[str]:
    """What the probe's answer depends on: the ISAs the CPU announces, the C++ compiler's
    binary, torch's build and the Python that loads the test library. None without a compiler."""
    binary = shutil.which(compiler)
    if binary is None:
        return None
    info = os.stat(binary)
    parts = (announced, os.path.realpath(binary), info.st_size, info.st_mtime_ns, torch.__version__,
             torch.version.git_version, sys.executable, sys.version, torch.__file__)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]
