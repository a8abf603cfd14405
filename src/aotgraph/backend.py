"""The ``torch.compile`` backend: Dynamo's graphs through capture -> partition -> compile -> runtime.

``torch.compile(model, backend="aotgraph")`` uses `aotgraph_backend` (Inductor compiles the
graphs, min-cut partition); ``torch.compile(model, backend=aotgraph.backend(compiler=...,
partition=..., memory_budget=..., policy=...))`` configures one. Dynamo hands each graph
(one per graph break, one per recompile) with its example inputs; the backend compiles it
for them at once. When Dynamo passes symbolic sizes (its automatic dynamic shapes after a size
changes, ``mark_dynamic``, ``dynamic=True``) the graphs keep them symbolic: one compile serves
every size Dynamo's guards admit (see `aot_module_simplified`). Repeated blocks in Dynamo's flat
graph (a decoder's layers) are found and captured once each, as if marked with
``nested_compile_region`` (`capture.repeated_blocks`; switch ``auto_regions``).
"""
from __future__ import annotations

import functools
import weakref
from typing import Callable, Optional, Union

import torch.fx as fx

from .api import CompiledEntry, aot_module_simplified
from . import config
from .compilers import compiler_with_options, resolve_compiler, traits_of
from .errors import BadArgument
from .partition import default_partition, min_cut_rematerialization_partition
from .partition.budget import check_memory_budget
from .pipeline import heap_frozen_in_dynamo_compiles
from .report import Report, build_report
from .timings import CompileLog

__all__ = ["backend", "aotgraph_backend", "AotGraphBackend"]


_PARTITIONS: dict[str, Callable] = {
    "default": default_partition,
    "mincut": min_cut_rematerialization_partition,
}


class AotGraphBackend:
    """A configured backend: ``backend(graph_module, example_inputs) -> callable``.

    `entries` lists the compiled entry of every graph and input signature compiled so far
    (each with its CompileLog), in order, for reports and benchmarks, while Dynamo keeps it.
    """

    def __init__(self, compiler: Union[str, Callable], partition_fn: Callable, decompositions=None,
                 settings: Optional[tuple] = None):
        self.compiler = resolve_compiler(compiler)
        # (compiler name, options, mode) as asked, to add torch.compile's mode/options to
        self._settings = settings or (compiler, None, None)
        self.partition_fn = partition_fn
        self.decompositions = decompositions
        self.__name__ = "aotgraph"
        self._graphs: list[weakref.ref] = []  # weak: torch._dynamo.reset() frees what it compiled

    def __getstate__(self) -> dict:
        """Pickled (``torch.save`` of a ``torch.compile``'d module holds its backend): its settings;
        what it compiled is not (Dynamo's compiled code is not pickled either)."""
        return {**self.__dict__, "_graphs": []}

    @property
    def entries(self) -> list[CompiledEntry]:
        alive = [ref() for ref in self._graphs]
        return [entry for compiled in alive if compiled is not None for entry in compiled.aotgraph_entries.values()]

    @property
    def logs(self) -> list[CompileLog]:
        return [entry.log for entry in self.entries]

    def reports(self, budgets: tuple = ()) -> list[Report]:
        """One `Report` per entry of `entries` (per graph and input signature), in order; write
        each with ``aotgraph.report.write_html(report, path)`` or ``report.to_json()``. Dynamo's
        graphs are not kept, so the reports have no eager comparison; `budgets` adds each memory
        budget's predicted timeline."""
        compiler = getattr(self.compiler, "__name__", type(self.compiler).__name__)
        partition = getattr(self.partition_fn, "__name__", type(self.partition_fn).__name__)
        return [build_report(entry, title=f"graph {i} ({entry.reason})", compiler=compiler, partition_name=partition,
                             budgets=budgets) for i, entry in enumerate(self.entries)]

    def __call__(self, graph_module: fx.GraphModule, example_inputs: list, mode: Optional[str] = None,
                 options: Optional[dict] = None) -> Callable:
        """`mode` and `options` are what ``torch.compile(model, backend="aotgraph", mode=...,
        options=...)`` passes on: added to this backend's own (see `backend`)."""
        heap_frozen_in_dynamo_compiles()  # (again after a torch._dynamo.reset(): for the compiles after this one)
        compiler = self.compiler if mode is None and options is None else self._compiler_with(mode, options)
        graph_module.aotgraph_traced_by_dynamo = True  # (inputs' own __torch_function__ is traced into it)
        compiled = aot_module_simplified(graph_module, list(example_inputs), fw_compiler=compiler,
                                         partition_fn=self.partition_fn, decompositions=self.decompositions)
        self._graphs.append(weakref.ref(compiled))
        return compiled

    def _compiler_with(self, mode: Optional[str], options: Optional[dict]) -> Callable:
        name, own_options, own_mode = self._settings
        return compiler_with_options(name, {**(own_options or {}), **(options or {})}, mode or own_mode)


def backend(compiler: Union[str, Callable] = "inductor", partition: Union[str, Callable] = "mincut",
            memory_budget: Optional[float] = None, policy: Optional[Callable] = None,
            decompositions: Optional[dict] = None, options: Optional[dict] = None,
            mode: Optional[str] = None) -> AotGraphBackend:
    """A ``torch.compile`` backend running aotgraph with these settings.

    `compiler`: "inductor" (default), "eager", or a callable compiler. `partition`: "mincut"
    (default, as torch.compile's Inductor backend), "default", or a partition function.
    `memory_budget` (bytes as an int, or a float fraction in [0, 1] of the default plan's saved
    bytes) and `policy` go to the partition function. `decompositions` defaults to Inductor's table when Inductor
    compiles, else none. `options`: the compiler's settings (for "inductor": its config values,
    as ``torch.compile(options=...)``; see `compilers.compiler_with_options`). `mode`: one of
    torch.compile's modes for Inductor: ``"reduce-overhead"`` records the forward and backward
    graphs as CUDA graphs (Inductor's cudagraph trees, on CUDA devices; skipped with a logged
    reason where a graph cannot be recorded), ``"max-autotune"`` also tunes kernels.
    ``torch.compile(model, backend="aotgraph", mode=..., options=...)`` works the same way.
    """
    settings = (compiler, options, mode)
    if options is not None or mode is not None:
        compiler = compiler_with_options(compiler, options, mode)
    if isinstance(partition, str):
        if partition not in _PARTITIONS:
            raise BadArgument(f"unknown partition {partition!r}", "api",
                              f"use one of {sorted(_PARTITIONS)} or a partition function")
        partition_fn = _PARTITIONS[partition]
    elif callable(partition):
        partition_fn = partition
    else:
        raise BadArgument(f"partition must be a name or a function, got {type(partition).__name__}", "api",
                          f"use one of {sorted(_PARTITIONS)} or a partition function")
    check_memory_budget(memory_budget)
    if policy is not None and not callable(policy):
        raise BadArgument(f"policy must be a function of a node, got {type(policy).__name__}", "api",
                          "pass a policy such as aotgraph.save_matmuls, or a function (node) -> Decision")
    partition_options = {k: v for k, v in (("memory_budget", memory_budget), ("policy", policy)) if v is not None}
    if partition_options:
        if partition_fn is default_partition:
            raise BadArgument(f"{', '.join(partition_options)} needs a budget-aware partition, not 'default'", "api",
                              "use partition='mincut'")
        partition_fn = functools.partial(partition_fn, **partition_options)
    built = AotGraphBackend(compiler, partition_fn, decompositions, settings)
    heap_frozen_in_dynamo_compiles()
    warm_up = traits_of(built.compiler).warm_up
    if warm_up is not None and config.enabled("warm_up_at_backend"):
        warm_up(None)  # Inductor's compile workers start while Dynamo traces
    return built


def __getattr__(name: str):
    # ``aotgraph_backend`` is built when first read (by torch.compile's lookup of "aotgraph"),
    # not when aotgraph is imported: building it starts the compiler's workers.
    if name == "aotgraph_backend":
        globals()[name] = backend()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
