"""The C++ libraries an Inductor graph loads, carried in its disk cache entry and put back at a warm start.

Inductor's compiled graph (its wrapper module's source) loads its C++ builds (the C++ wrapper,
CPU kernels) by the hash of their source and compile command, from Inductor's own cache
directory, and builds each one missing there. An entry of ours that holds only the source would
make a warm start in another Inductor cache directory (a new machine, a cleaned /tmp, the Redis
tier) compile every one again. So:

- `recording_cpp_builds` notes, on the compiling thread, each C++ library Inductor loads while
  it compiles a graph (``CppCodeCache.load_async``, which every C++ load goes through, memoized
  ones included), and gives the paths of those under Inductor's cache directory;
- `build_files` reads them (and the vector-ISA probe's memo, `vec_isa_memo`) into the entry as
  (path relative to Inductor's cache directory, bytes); `put_back` writes each one absent there
  before the graph is loaded (a temporary file renamed into place: readers never see half a
  file). A library's name is the hash of what built it, so a process whose compile command
  differs (another CPU's vector ISA, another compiler) looks for another name and builds its
  own; a file already there is Inductor's own and left alone.
- `without_header_precompiles`: while a stored graph loads (on that thread), Inductor's
  precompiled-header step is skipped. It runs before Inductor even looks for the library, once
  per process and compile command: a C++ preprocessor pass over the wrapper's headers and a hash
  of its output (0.16 s here for the CPU; the 0.45 s ``compile_file`` of the H200's ResNet-50 warm
  start, benchmarks/RESULTS.md). A library still missing is then built without the precompiled
  header: the same code, a slower build.

- `torch_arguments_remembered`: while a stored graph loads (on that thread), the include
  directories and libraries of torch that Inductor's C++ builder asks for (for the key of every
  library it loads, built or not) are computed once per process, not once per library: on the
  H100's GPT-2 warm start, 24 of them took 0.27 s (``cpp_builder._get_torch_related_args``).

Switches: ``stored_cpp_builds`` (the first two), ``warm_load_without_header_precompiles``,
``warm_load_torch_arguments_remembered``.
Private Inductor APIs (``codecache.CppCodeCache.load_async``, ``codecache._precompile_header``,
``cpp_builder._get_torch_related_args``,
``runtime.cache_dir_utils.cache_dir``), run on torch 2.13; 2.11's ``load_async`` read (same
order: the key before the header precompile).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Callable, Optional

from .. import config as aot_config
from ..thread_values import held

__all__ = ["recording_cpp_builds", "build_files", "paths_of", "put_back", "without_header_precompiles"]

# Per thread: .loads, the load functions Inductor returned while recording; .skip_headers, while loading a stored graph.
_this_thread = threading.local()


@contextlib.contextmanager
def recording_cpp_builds(paths: list):
    """Run the body (a compile); then append to `paths` the C++ libraries under Inductor's cache
    directory that it loaded on this thread (none with switch ``stored_cpp_builds`` off)."""
    if not aot_config.enabled("stored_cpp_builds") or not _record_loads():
        yield
        return
    outer = getattr(_this_thread, "loads", None)
    _this_thread.loads = loads = []
    try:
        yield
    finally:
        _this_thread.loads = outer
        if outer is not None:
            outer.extend(loads)
    root = _inductor_cache_dir()
    for load in loads:
        path = _library_path(load)
        if path is not None and path.is_relative_to(root) and str(path) not in paths:
            paths.append(str(path))


def build_files(paths) -> tuple:
    """((path relative to Inductor's cache directory, bytes), ...) of the libraries at `paths`
    that are still there, and of the vector-ISA probe's memo; () with switch ``stored_cpp_builds`` off."""
    if not aot_config.enabled("stored_cpp_builds"):
        return ()
    from .vec_isa_memo import vec_isa_memo_file

    root = _inductor_cache_dir()
    memo = vec_isa_memo_file()
    files = []
    for path in [*map(Path, paths), *([memo] if memo is not None else [])]:
        with contextlib.suppress(OSError):
            files.append((str(path.relative_to(root)), path.read_bytes()))
    return tuple(files)


def paths_of(files: tuple) -> tuple:
    """The paths in Inductor's cache directory of the libraries among `files` (from `build_files`;
    the vector-ISA memo left out): what a graph loaded from them records as its builds, so that
    storing it again carries them."""
    from .vec_isa_memo import vec_isa_memo_file

    root = _inductor_cache_dir()
    memo = vec_isa_memo_file()
    memo = memo.resolve() if memo is not None else None
    paths = ((root / relative).resolve() for relative, _ in files)
    return tuple(str(path) for path in paths if path != memo)


def put_back(files: tuple) -> None:
    """Write each of `files` (from `build_files`) absent from Inductor's cache directory into it."""
    root = _inductor_cache_dir()
    for relative, data in files:
        path = root / relative
        if Path(relative).is_absolute() or ".." in Path(relative).parts or path.exists():
            continue
        with contextlib.suppress(OSError):
            _write_new_file(path, data)


def without_header_precompiles():
    """Run the body (the load of a stored graph) with Inductor's header precompiling skipped on
    this thread (switch ``warm_load_without_header_precompiles``)."""
    return _on_this_thread("warm_load_without_header_precompiles", _skippable_header_precompiles, "skip_headers")


def torch_arguments_remembered():
    """Run the body (the load of a stored graph) with torch's C++ build arguments answered from
    a memo on this thread (switch ``warm_load_torch_arguments_remembered``)."""
    return _on_this_thread("warm_load_torch_arguments_remembered", _rememberable_torch_arguments,
                           "remember_arguments")


@contextlib.contextmanager
def _on_this_thread(switch: str, installed, flag: str):
    """`flag` set on this thread for the body, where `switch` is on and `installed()` put in
    place the patch that reads it (False: Inductor has nothing to patch)."""
    if not aot_config.enabled(switch) or not installed():
        yield
        return
    with held(_this_thread, flag, True, outside=False):
        yield


_torch_arguments: dict = {}  # (its arguments, the Inductor settings it reads) -> its answer


def _rememberable_torch_arguments() -> bool:
    """Have ``cpp_builder._get_torch_related_args`` answer from `_torch_arguments` on a thread
    loading a stored graph (a pure function of its arguments and the settings in the key),
    installed once per process; False where Inductor has no such function."""
    from torch._inductor import config, cpp_builder

    def rememberable(original):
        def rememberable_torch_related_args(*args, **kwargs):
            if not getattr(_this_thread, "remember_arguments", False):
                return original(*args, **kwargs)
            settings = config.aot_inductor
            key = (args, tuple(sorted(kwargs.items())), repr(getattr(settings, "link_libtorch", None)),
                   repr(getattr(settings, "cross_target_platform", None)),
                   repr(getattr(settings, "aoti_shim_library", None)),
                   repr(getattr(settings, "aoti_shim_library_path", None)), os.environ.get("CUDA_HOME"))
            answer = _torch_arguments.get(key)
            if answer is None:
                answer = _torch_arguments[key] = original(*args, **kwargs)
            return tuple(list(part) for part in answer)  # (callers may extend the lists they get)

        return rememberable_torch_related_args

    return _patched_once(cpp_builder, "_get_torch_related_args", rememberable)


def _skippable_header_precompiles() -> bool:
    """Have ``codecache._precompile_header`` answer None (no precompiled header: the builder
    includes the headers itself) on a thread loading a stored graph, once per process; False
    where Inductor has no such function."""
    from torch._inductor import codecache

    def skippable(precompile):
        def skippable_precompile_header(*args, **kwargs):
            if getattr(_this_thread, "skip_headers", False):
                return None
            return precompile(*args, **kwargs)

        return skippable_precompile_header

    return _patched_once(codecache, "_precompile_header", skippable)


def _patched_once(module, name: str, wrapped: Callable) -> bool:
    """`module`'s function `name` replaced by ``wrapped(it)``, once per process (the wrapper
    is marked); False where `module` has no such function."""
    original = getattr(module, name, None)
    if original is None:
        return False
    if getattr(original, "aotgraph_patched", False):
        return True
    patched = wrapped(original)
    patched.aotgraph_patched = True
    setattr(module, name, patched)
    return True


def _record_loads() -> bool:
    """Have ``CppCodeCache.load_async`` note what it returns on a recording thread, once per
    process; False where Inductor has no such method."""
    from torch._inductor.codecache import CppCodeCache

    load_async = CppCodeCache.__dict__.get("load_async")
    if not isinstance(load_async, classmethod):
        return False
    if getattr(load_async.__func__, "aotgraph_records", False):
        return True
    inner = load_async.__func__

    def recorded_load_async(cls, *args, **kwargs):
        load = inner(cls, *args, **kwargs)
        loads = getattr(_this_thread, "loads", None)
        if loads is not None:
            loads.append(load)
        return load

    recorded_load_async.aotgraph_records = True
    CppCodeCache.load_async = classmethod(recorded_load_async)
    return True


def _library_path(load) -> Optional[Path]:
    """The file of the library that `load` (a function ``load_async`` returned) loaded: a Python
    extension module or a ctypes library; None where it cannot be loaded or named."""
    try:
        library = load()
    except Exception:  # a build that failed: the compile fell back or failed, nothing to store
        return None
    name = getattr(library, "__file__", None) or getattr(library, "_name", None)
    return Path(name).resolve() if isinstance(name, str) else None


def _inductor_cache_dir() -> Path:
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return Path(cache_dir()).resolve()


def _write_new_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-aotgraph-")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.chmod(temporary, 0o755)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
