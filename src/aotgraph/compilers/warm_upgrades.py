"""A warm start's graphs that were stored before their final builds were ready, rebuilt in the background.

On a GPU, Inductor's graphs first run on its Python wrapper while their C++ wrappers build
in the background (`background_builds`); the disk cache stores the entry at once and again
when the builds are ready. A process that ends before then (a short job, a crash, a timeout)
leaves an entry holding the Python-wrapper graphs only. A warm start that loaded those and
nothing more would step slower for good (ResNet-50 on an H100: 26 ms against 15 ms), and so
would every later start, since nothing would store the C++ builds again.

So a restored graph that says it is provisional (``aotgraph_provisional``) runs at once, and
its compiler's final form (`CompilerTraits.final_compiler`) compiles the entry's partition
again in the background, as a cold start's builds do: the forward and its backward move to
the new builds together, and the entry is stored again with them. Switch: ``warm_upgrades``.
"""
from __future__ import annotations

import threading
from dataclasses import replace
from typing import Callable, Optional

from .. import config as aot_config
from ..artifacts import CompiledGraphs

__all__ = ["provisional", "upgraded_in_background"]


def provisional(compiled: CompiledGraphs) -> bool:
    """Whether a graph of `compiled` was restored from a build that stood in for a final one."""
    return any(getattr(code, "aotgraph_provisional", False) for code in (compiled.forward, compiled.backward))


def upgraded_in_background(compiled: CompiledGraphs, compilers: tuple, static_primals: frozenset,
                           when_built: Callable[[CompiledGraphs], None]) -> Optional[CompiledGraphs]:
    """`compiled` (a loaded entry, `provisional`) running its restored graphs until the final
    builds of its partition, made in the background by the compilers' ``final_compiler``
    (`compilers`: forward, backward, inference), are ready; then `when_built(the rebuilt
    CompiledGraphs)`. None where the switch is off or a compiler has no final form."""
    from . import GraphRole, compile_partition, next_graph_id, traits_of
    from .background_builds import upgradable, when_all_built

    if not aot_config.enabled("warm_upgrades"):
        return None
    finals = [traits_of(c).final_compiler for c in compilers]
    if any(final is None for final in finals):
        return None
    rebuilt: list[CompiledGraphs] = []
    lock = threading.Lock()

    def final_graphs() -> CompiledGraphs:
        with lock:  # the forward's build compiles both graphs; the backward's takes its half
            if not rebuilt:
                rebuilt.append(compile_partition(compiled.partition, *(final() for final in finals), static_primals))
            return rebuilt[0]

    graph_id = next_graph_id()
    if compiled.backward is None:
        forward = upgradable(compiled.forward, lambda: final_graphs().forward, GraphRole("inference", 0, graph_id))
        upgraded = replace(compiled, forward=forward)
    else:
        forward = upgradable(compiled.forward, lambda: final_graphs().forward, GraphRole("forward", 0, graph_id))
        backward = upgradable(compiled.backward, lambda: final_graphs().backward, GraphRole("backward", 0, graph_id))
        upgraded = replace(compiled, forward=forward, backward=backward)
    when_all_built((upgraded.forward, upgraded.backward), lambda: when_built(final_graphs()))
    return upgraded
