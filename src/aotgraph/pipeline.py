"""The stages run in order for one call signature: capture -> partition -> compile -> runtime.

`compile_stages` turns a program and its flat example inputs into a `CompiledEntry`, each
stage stamped with its time into one `CompileLog`. What differs between compilers comes from
their `CompilerTraits`; nothing here asks which compiler it has.
"""
from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Optional

import torch

from . import config
from .artifacts import CompiledGraphs, JointGraph, Partition
from .cache.guards import GuardSet
from .cache.recompiles import CallFacts
from .capture import capture
from .compilers import compile_partition, traits_of
from .debug import log_artifact
from .partition import partition
from .progress import compile_progress
from .runtime import build_runtime
from .timings import CompileLog, time_first_call

__all__ = ["CompiledEntry", "compile_stages"]


@dataclass
class CompiledEntry:
    """Everything one input signature compiled to, kept for reports and tests."""

    partition: Partition
    compiled: CompiledGraphs
    run: Callable[..., Any]  # run(*flat_inputs) -> the user's outputs
    log: CompileLog
    mutates_inputs: bool = False
    has_run: bool = False  # the first call is timed as the "first run" stage
    guards: GuardSet = field(default_factory=lambda: GuardSet(()))  # Python values the program read
    call_facts: Optional[CallFacts] = None  # the call that compiled it
    reason: str = "first call"  # why it was compiled
    takes_shared_bases: bool = False  # compiled for inputs sharing memory, passed as their base (see api)

    @property
    def joint(self) -> JointGraph:
        return self.partition.joint

    def __str__(self) -> str:
        """A headline (ops per graph, tensors saved for backward and their bytes), then the CompileLog."""
        from .report.text import entry_headline

        return f"{entry_headline(self)}\n{self.log}"


def compile_stages(fn: Callable, flat_args: list, in_spec, *, fw_compiler: Callable, bw_compiler: Callable,
                   inference_compiler: Callable, partition_fn: Callable,
                   decompositions: Optional[Mapping]) -> CompiledEntry:
    """capture -> partition -> compile -> runtime, each stamped into one CompileLog; a compile
    that takes more than a couple of seconds shows a progress bar on stderr (`progress`)."""
    log = CompileLog()
    with compile_progress(getattr(fn, "__name__", type(fn).__name__)) as progress:
        log.progress = progress
        try:
            return _run_stages(log, fn, flat_args, in_spec, fw_compiler=fw_compiler, bw_compiler=bw_compiler,
                               inference_compiler=inference_compiler, partition_fn=partition_fn,
                               decompositions=decompositions)
        finally:
            log.progress = None


def _run_stages(log: CompileLog, fn: Callable, flat_args: list, in_spec, *, fw_compiler: Callable,
                bw_compiler: Callable, inference_compiler: Callable, partition_fn: Callable,
                decompositions: Optional[Mapping]) -> CompiledEntry:
    for compiler in {id(c): c for c in (fw_compiler, inference_compiler)}.values():
        if traits_of(compiler).warm_up is not None:
            traits_of(compiler).warm_up(flat_args)
    with _collector_paused():
        with log.stage("capture") as note:
            joint = capture(fn, flat_args, in_spec, decompositions=decompositions)
            note.detail = f"{len(joint.graph_module.graph.nodes)} nodes"
        log_artifact("joint graph", joint)
        traits = traits_of(inference_compiler if joint.is_inference else fw_compiler)
        if traits.joint_passes is not None:
            with log.stage("joint passes"):
                joint = traits.joint_passes(joint)
        with log.stage("partition"):
            parts = partition(joint, partition_fn, fusing_compiler=traits.fuses_kernels)
        log_artifact("partition", parts)
    with log.stage("compile") as note:
        compiled = compile_partition(parts, fw_compiler, bw_compiler, inference_compiler,
                                     _static_primals(flat_args, joint.signature.primal_positions))
        note.detail = compiled.note
    # The runtime calls a timed backward; the artifact keeps what the compiler returned.
    timed = compiled if compiled.backward is None else replace(
        compiled, backward=time_first_call(compiled.backward, log, "first backward"))
    sig = joint.signature
    return CompiledEntry(parts, compiled, build_runtime(timed), log,
                         bool(sig.mutated_primals or sig.metadata_mutated_primals))


@contextlib.contextmanager
def _collector_paused():
    """Python's cyclic garbage collector off while we build graphs, back on after (as it was):
    capture and partition allocate many short-lived objects, and the collector's full passes
    over a large process (a model, Dynamo's and Inductor's state) would run often over them;
    afterwards one pass collects whatever cycles they left. Switch: ``gc_pause``."""
    enabled = gc.isenabled() and config.enabled("gc_pause")
    if enabled:
        gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _static_primals(flat_args: list, primal_positions) -> frozenset:
    """Primals that keep their memory across calls: parameters, and what Dynamo marks static
    (its graphs' parameters and buffers)."""
    return frozenset(p for p, i in enumerate(primal_positions)
                     if isinstance(flat_args[i], torch.nn.Parameter)
                     or getattr(flat_args[i], "_dynamo_static_input_type", None) is not None)
