"""A stored Inductor wrapper whose extern kernels are bound without importing Inductor's lowering.

Inductor's Python wrapper module (the source a disk cache entry stores) starts with
``from torch._inductor.select_algorithm import extern_kernels``: the namespace through which it
calls the kernels it did not generate (``extern_kernels.mm(a, b, out=buf)``). That import pulls in
Inductor's lowering and its kernel templates (flex attention's are compiled by jinja2 at import):
0.5 s of a warm start's 0.7 s load on this CPU, in a process that compiles nothing.

`bound_extern_kernels(source)` gives the same source with that one line replaced by one line that
binds, by their public names, the extern kernels this module calls (``torch.mm``,
``torch.ops.mkldnn._linear_pointwise``, ...), each checked at store time to be the very object
Inductor's namespace holds; `extern_kernels_named` resolves them at load, and falls back to
Inductor's namespace where one does not resolve. Where a name the module calls is something else
(one of Inductor's own Python helpers, such as ``bias_addmm``), the namespace is used other than
by attribute, or the import line is absent, it gives None and the entry keeps Inductor's source.
Line numbers are unchanged (one line for one), so Inductor's line map still applies. Switch
``bound_extern_kernels``.

`light_source(source)` also takes the wrapper's ``_align`` helper from ``torch._inductor.utils``
instead of ``torch._inductor.codegen.memory_planning``, which re-exports that very function and
imports Inductor's code generation (20 ms of a CPU warm start). It is what a stored entry keeps.
"""
from __future__ import annotations

import hashlib
import re
from typing import Optional

import torch

from .. import config as aot_config

__all__ = ["light_source", "bound_extern_kernels", "extern_kernels_named", "light_cache_key"]

IMPORT_LINE = "from torch._inductor.select_algorithm import extern_kernels"
ALIGN_LINE = "from torch._inductor.codegen.memory_planning import _align as align"
_LIGHT_ALIGN_LINE = "from torch._inductor.utils import _align as align  # aotgraph: the same function"
_USES = re.compile(r"\bextern_kernels\.([A-Za-z_][A-Za-z0-9_]*)")
_OTHER_USES = re.compile(r"\bextern_kernels\b(?!\.[A-Za-z_])")  # the namespace itself passed or read by name


def light_source(source: str) -> Optional[str]:
    """`source` with its extern kernels bound (`bound_extern_kernels`) and its ``_align`` helper
    imported from where it is defined; None where neither applies (or the switch is off)."""
    bound = bound_extern_kernels(source)
    lighter = _align_from_utils(source if bound is None else bound)
    return lighter if lighter is not None else bound


def _align_from_utils(source: str) -> Optional[str]:
    lines = source.split("\n")
    if not aot_config.enabled("bound_extern_kernels") or lines.count(ALIGN_LINE) != 1:
        return None
    from torch._inductor import utils
    from torch._inductor.codegen import memory_planning

    if getattr(memory_planning, "_align", None) is not getattr(utils, "_align", False):
        return None
    lines[lines.index(ALIGN_LINE)] = _LIGHT_ALIGN_LINE
    return "\n".join(lines)


def bound_extern_kernels(source: str) -> Optional[str]:
    """`source` with Inductor's ``extern_kernels`` import replaced by public bindings of the names
    it calls; None where that cannot be done exactly (see the module docstring) or the switch is off."""
    if not aot_config.enabled("bound_extern_kernels"):
        return None
    lines = source.split("\n")
    if lines.count(IMPORT_LINE) != 1 or _OTHER_USES.search(source.replace(IMPORT_LINE, "")):
        return None
    from torch._inductor.select_algorithm import extern_kernels

    names = {}
    for name in sorted(set(_USES.findall(source))):
        names[name] = _public_name(getattr(extern_kernels, name, None))
        if names[name] is None:
            return None
    position = lines.index(IMPORT_LINE)
    lines[position] = (f"extern_kernels = __import__({__name__!r}, fromlist=['_']).extern_kernels_named({names!r})"
                       "  # bound by aotgraph: no import of torch._inductor.select_algorithm")
    return "\n".join(lines)


def extern_kernels_named(names: dict):
    """A namespace of the kernels `names` gives by dotted names from ``torch`` (what a rewritten
    wrapper calls at load); Inductor's own ``extern_kernels`` where any of them does not resolve in
    this process (an operator registered by a module that is not imported)."""
    import types

    kernels = {}
    for name, dotted in names.items():
        found = _resolved(dotted.split(".")[1:])
        if found is None:
            from torch._inductor.select_algorithm import extern_kernels

            return extern_kernels
        kernels[name] = found
    return types.SimpleNamespace(**kernels)


def light_cache_key(source: str) -> str:
    """A name for the rewritten module in Inductor's code cache, distinct from Inductor's own
    (its subdirectory is the name's 2nd and 3rd characters, as Inductor's are)."""
    return "a" + hashlib.sha256(source.encode()).hexdigest()[:51]


def _public_name(kernel) -> Optional[str]:
    """The dotted name from ``torch`` that gives `kernel` itself in a module that imported only
    ``torch``; None for anything else (Inductor's Python helpers, objects without a public name)."""
    if isinstance(kernel, torch._ops.OpOverload):
        namespace, _, op = kernel.name().partition("::")
        path = ["ops", namespace, op.split(".")[0], kernel._overloadname]
    elif isinstance(kernel, torch._ops.OpOverloadPacket):
        namespace, _, op = kernel._qualified_op_name.partition("::")
        path = ["ops", namespace, op]
    else:
        path = [getattr(kernel, "__name__", None)]
    if kernel is None or not all(isinstance(part, str) and part.isidentifier() for part in path):
        return None
    return ".".join(["torch", *path]) if _resolved(path) is kernel else None


def _resolved(path: list):
    """``torch.<path>``, attribute by attribute; None where one is missing."""
    found = torch
    for part in path:
        found = getattr(found, part, None)
    return found
