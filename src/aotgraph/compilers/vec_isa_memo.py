"""Inductor's probe of the CPU's vector instruction sets, remembered across processes.

Before Inductor builds or loads its first C++ kernel in a process it asks which vector ISAs
(AVX2, AVX-512, ...) the CPU announces and, for each, builds a test library with that ISA's
flags and loads it in a child Python (``cpu_vec_isa.valid_vec_isa_list``): 1-2 s of a warm
start that otherwise only loads built kernels. The answer depends on the CPU, the C++
compiler and the installation, so it is remembered under a key of those
(`_probe_key`) in Inductor's cache directory, next to the probe's own builds.

`recall_vec_isa_probe` replays Inductor's probe from the memo: while Inductor fills its list,
each test build (``VecISA.check_build``: the base probe of every ISA and its sub-feature checks,
AVX-512 BF16, VNNI, AMX) is answered with the result remembered for the same ISA, flags and
code, so the list, and each ISA's sub-feature flags, come out as a real probe would make them;
a build the memo does not know is run. `remembering_vec_isa_probe` wraps work in which
Inductor may probe (a compile) and writes the memo of the builds it ran. x86-64 Linux only;
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

__all__ = ["recall_vec_isa_probe", "remembering_vec_isa_probe", "vec_isa_memo_file"]


def recall_vec_isa_probe() -> bool:
    """Fill Inductor's list of usable vector ISAs from the memo; whether the memo answered every
    test build (False: no memo, a damaged one, the list already filled, or some build was run)."""
    from torch._inductor import config
    from torch._inductor.cpu_vec_isa import VecISA, valid_vec_isa_list

    if _probed(valid_vec_isa_list) or config.cpp.vec_isa_ok is not None or "check_build" not in VecISA.__dict__:
        return False
    path, _ = _memo_path_and_isas()
    if path is None:
        return False
    try:
        answers = {tuple(check[:3]): bool(check[3]) for check in json.loads(path.read_text())["checks"]}
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False
    built = []
    real_check_build = VecISA.check_build

    def answered(isa, code):
        known = answers.get(_check_key(isa, code))
        if known is None:
            built.append(str(isa))
            return real_check_build(isa, code)
        return known

    with _replaced_check_build(VecISA, answered):
        valid_vec_isa_list()
    return not built


@contextlib.contextmanager
def remembering_vec_isa_probe():
    """Run the body; if Inductor probed the vector ISAs in it (and no memo exists), write the
    memo of every test build it ran."""
    from torch._inductor import config
    from torch._inductor.cpu_vec_isa import VecISA, valid_vec_isa_list

    path, _ = _memo_path_and_isas()
    if (path is None or path.exists() or _probed(valid_vec_isa_list) or config.cpp.vec_isa_ok is not None
            or "check_build" not in VecISA.__dict__):
        yield
        return
    checks = []
    real_check_build = VecISA.check_build

    def recorded(isa, code):
        ok = real_check_build(isa, code)
        checks.append([*_check_key(isa, code), ok])
        return ok

    with _replaced_check_build(VecISA, recorded):
        yield
    if _probed(valid_vec_isa_list) and checks:
        _write_memo(path, {"checks": checks})


def vec_isa_memo_file() -> Optional[Path]:
    """The memo of this machine and installation where one exists (a disk cache entry carries
    it: `stored_builds`), else None."""
    path, _ = _memo_path_and_isas()
    return path if path is not None and path.exists() else None


@contextlib.contextmanager
def _replaced_check_build(vec_isa_class, replacement):
    original = vec_isa_class.__dict__["check_build"]
    vec_isa_class.check_build = replacement
    try:
        yield
    finally:
        vec_isa_class.check_build = original


def _check_key(isa, code: str) -> tuple:
    """One test build: the ISA, the flags it builds with now (sub-feature checks add some) and the code."""
    return type(isa).__name__, isa.build_arch_flags(), hashlib.sha256(code.encode()).hexdigest()[:16]


def _write_memo(path: Path, memo: dict) -> None:
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(descriptor, "w") as file:
            json.dump(memo, file)
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
    parts = ("test builds v2", announced, os.path.realpath(binary), info.st_size, info.st_mtime_ns, torch.__version__,
             torch.version.git_version, sys.executable, sys.version, torch.__file__)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]
