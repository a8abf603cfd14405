"""The stages run in order for one call signature: capture -> partition -> compile -> runtime.

`compile_stages` turns a program and its flat example inputs into a `CompiledEntry`, each
stage stamped with its time into one `CompileLog`. What differs between compilers comes from
their `CompilerTraits`; nothing here asks which compiler it has. With an `OnDisk`, the
entry's artifacts are looked up in the disk cache first (before capture when the key is
known without it, else right after) and stored there after a compile.
"""
from __future__ import annotations

import contextlib
import functools
import gc
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Optional

import torch

from . import config
from .artifacts import CompiledGraphs, JointGraph, Partition
from .cache.disk import DiskCache
from .cache.disk_keys import NotKeyable, captured_key
from .cache.manifests import KeyParts, explain_miss, manifest_json
from .cache.guards import GuardSet
from .cache.recompiles import CallFacts
from .cache.stored_entries import NotStorable, loaded_graphs, stored_bytes
from .capture import capture
from .compilers import compile_partition, compile_workers, is_users, traits_of, warm_upgrades
from .compilers.background_builds import when_all_built
from .debug import log_artifact, logger
from .errors import UnsupportedOp
from .partition import partition, plans_whole_program
from .progress import compile_progress
from .runtime import ForwardFacts, build_runtime
from .stack_room import call_with_stack_room
from .timings import CompileLog, time_first_call

__all__ = ["CompiledEntry", "compile_stages", "OnDisk", "collector_paused", "heap_frozen", "heap_frozen_in_dynamo_compiles"]

_MANIFESTS_COMPARED = 64  # a miss is explained against the newest stored entries (a manifest: 10-500 kB)


@dataclass(frozen=True)
class OnDisk:
    """Where `compile_stages` looks for the entry on disk and stores it: under the key of
    `parts`, or, when `after_capture`, under that of `captured_key(parts, joint)` (the program
    is keyed by what it captured)."""

    store: DiskCache
    parts: KeyParts
    after_capture: bool = False


@dataclass
class CompiledEntry:
    """Everything one input signature compiled to, kept for reports and tests."""

    partition: Partition
    compiled: CompiledGraphs
    run: Callable[..., Any]  # run(*flat_inputs) -> the user's outputs
    log: CompileLog
    mutated_positions: frozenset = frozenset()  # flat positions of the inputs it mutates (data or metadata)
    has_run: bool = False  # the first call is timed as the "first run" stage
    guards: GuardSet = field(default_factory=lambda: GuardSet(()))  # Python values the program read
    call_facts: Optional[CallFacts] = None  # the call that compiled it
    reason: str = "first call"  # why it was compiled
    takes_shared_bases: bool = False  # compiled for inputs sharing memory, passed as their base (see api)
    disk_key: Optional[str] = None  # its key in the disk cache, where it is cached there
    disk_miss: Optional[str] = None  # why it was not loaded from the disk cache (`manifests.explain_miss`)

    @property
    def mutates_inputs(self) -> bool:
        return bool(self.mutated_positions)

    @property
    def joint(self) -> JointGraph:
        return self.partition.joint

    def __str__(self) -> str:
        """A headline (ops per graph, tensors saved for backward and their bytes), then the CompileLog."""
        from .report.text import entry_headline

        return f"{entry_headline(self)}\n{self.log}"


def compile_stages(fn: Callable, flat_args: list, in_spec, *, fw_compiler: Callable, bw_compiler: Callable,
                   inference_compiler: Callable, partition_fn: Callable,
                   decompositions: Optional[Mapping], on_disk: Optional[OnDisk] = None,
                   real_args: Optional[list] = None) -> CompiledEntry:
    """capture -> partition -> compile -> runtime, each stamped into one CompileLog (or, with
    `on_disk`, the stored artifacts of an earlier compile, loaded); a compile that takes more
    than a couple of seconds shows a progress bar on stderr (`progress`). `decompositions`
    None: the forward compiler's own table (`CompilerTraits.decompositions`), made only when
    capturing. `real_args`: the tensors behind `flat_args` where those are fakes (parameters
    and Dynamo's static inputs are told from them); by default `flat_args` themselves."""
    log = CompileLog()
    with compile_progress(getattr(fn, "__name__", type(fn).__name__)) as progress, heap_frozen():
        log.progress = progress
        try:
            # (its hot loops must not depend on how deep the caller is: `stack_room`)
            return call_with_stack_room(_run_stages, log, fn, flat_args, in_spec, fw_compiler=fw_compiler,
                                        bw_compiler=bw_compiler, inference_compiler=inference_compiler,
                                        partition_fn=partition_fn, decompositions=decompositions, on_disk=on_disk,
                                        real_args=flat_args if real_args is None else real_args)
        finally:
            log.progress = None


def _refuse_input_views_on_copies(joint, traits) -> None:
    """An output rebuilt from the layout of the graph's own view of an input (symbolic sizes,
    `OutputInfo.layout_from_graph`) needs that view on the caller's tensor: with a compiler that
    runs on copies of its inputs (CUDA graphs), UnsupportedOp, so the entry is compiled per size."""
    position = next((k for k, o in enumerate(joint.signature.outputs) if o.layout_from_graph), None)
    if position is not None and traits.copies_inputs is not None and traits.copies_inputs():
        raise UnsupportedOp(f"output {position} is a view of an input with symbolic sizes, and the compiler runs "
                            "on copies of its inputs (CUDA graphs)", "compile", "compiled per size instead")


def _run_stages(log: CompileLog, fn: Callable, flat_args: list, in_spec, *, fw_compiler: Callable,
                bw_compiler: Callable, inference_compiler: Callable, partition_fn: Callable,
                decompositions: Optional[Mapping], on_disk: Optional[OnDisk], real_args: list) -> CompiledEntry:
    compilers = (fw_compiler, bw_compiler, inference_compiler)
    key_parts, miss = None if on_disk is None else on_disk.parts, None
    if on_disk is not None and not on_disk.after_capture:
        entry, miss = _loaded_entry(on_disk.store, key_parts, log, compilers, real_args)
        if entry is not None:
            return entry
    keyed_after_capture = on_disk is not None and on_disk.after_capture
    if not keyed_after_capture:  # (keyed by its capture: warmed up once the key misses, below)
        _warm_up(compilers, real_args)
    if decompositions is None and traits_of(fw_compiler).decompositions is not None:
        decompositions = traits_of(fw_compiler).decompositions()
    split = functools.partial(_split_region, partition_fn, traits_of(fw_compiler))
    # Found layers become regions for our compilers; a user's gets the flat graph (`is_users`).
    finds_layers = not plans_whole_program(partition_fn) and not any(map(is_users, compilers))
    keying_split = _KeyingSplit(partition_fn, traits_of(fw_compiler)) if keyed_after_capture else None
    with collector_paused():
        with log.stage("capture") as note:
            joint = capture(fn, flat_args, in_spec, decompositions=decompositions,
                            split_region=keying_split or split, repeated_layers=finds_layers)
            note.detail = f"{len(joint.graph_module.graph.nodes)} nodes"
        log_artifact("joint graph", joint)
        if keyed_after_capture:
            try:
                key_parts = captured_key(on_disk.parts, joint)
            except NotKeyable as why:
                logger.info("aotgraph: this entry is not cached on disk: %s", why)
                on_disk, key_parts, miss = None, None, f"not keyable: {why}"
            else:
                entry, miss = _loaded_entry(on_disk.store, key_parts, log, compilers, real_args)
                if entry is not None:
                    return entry
            _warm_up(compilers, real_args)
            if keying_split.skipped_passes:
                with log.stage("capture") as note:
                    joint = capture(fn, flat_args, in_spec, decompositions=decompositions, split_region=split,
                                    repeated_layers=finds_layers)
                    note.detail = f"{len(joint.graph_module.graph.nodes)} nodes, again with the joint passes"
        traits = traits_of(inference_compiler if joint.is_inference else fw_compiler)
        _refuse_input_views_on_copies(joint, traits)
        if traits.joint_passes is not None:
            with log.stage("joint passes"):
                joint = traits.joint_passes(joint)
        static_primals = _static_primals(real_args, joint.signature.primal_positions)
        with log.stage("partition"):
            parts = partition(joint, partition_fn, fusing_compiler=traits.fuses_kernels, kept_primals=static_primals)
        log_artifact("partition", parts)
    with log.stage("compile") as note:
        compiled = compile_partition(parts, fw_compiler, bw_compiler, inference_compiler, static_primals)
        note.detail = compiled.note
    if on_disk is not None:
        with log.stage("cache store") as note:
            note.detail = _store(on_disk.store, key_parts, compiled,
                                 inference_compiler if joint.is_inference else fw_compiler, bw_compiler)
    entry = _entry_of(compiled, log, None if key_parts is None else key_parts.key)
    entry.disk_miss = miss
    return entry


def _warm_up(compilers: tuple, real_args: list) -> None:
    """Start each compiler's work that overlaps capture (`CompilerTraits.warm_up`: Inductor's
    kernel-compiling pool): before capture, or, for a program keyed by its capture, once the
    key missed: a warm start that loads its entry starts no pool (0.4 s of the H100's GPT-2
    warm start, benchmarks/RESULTS.md)."""
    fw_compiler, _, inference_compiler = compilers
    for compiler in {id(c): c for c in (fw_compiler, inference_compiler)}.values():
        if traits_of(compiler).warm_up is not None:
            traits_of(compiler).warm_up(real_args)


def _entry_of(compiled: CompiledGraphs, log: CompileLog, disk_key: Optional[str],
              facts: Optional[ForwardFacts] = None) -> CompiledEntry:
    """The entry running `compiled`; `facts`: its runtime's `ForwardFacts` where known (a
    loaded entry's: its forward graph is then not read)."""
    # The runtime calls a timed backward; the artifact keeps what the compiler returned.
    timed = compiled if compiled.backward is None else replace(
        compiled, backward=time_first_call(compiled.backward, log, "first backward"))
    sig = compiled.partition.joint.signature
    mutated = frozenset(i for i, info in enumerate(sig.inputs) if info.mutates_data or info.mutates_metadata)
    return CompiledEntry(compiled.partition, compiled, build_runtime(timed, facts), log, mutated_positions=mutated,
                         disk_key=disk_key)


def _loaded_entry(store: DiskCache, parts: KeyParts, log: CompileLog, compilers: tuple,
                  real_args: list) -> tuple[Optional[CompiledEntry], Optional[str]]:
    """``(the entry stored under the key of `parts`, None)``, or ``(None, why not)``: absent
    (which parts differ from the closest stored entry, logged), or unreadable (then removed
    with a warning). An entry stored before its final builds were ready runs as stored while
    they are made in the background, then is stored again (`warm_upgrades`)."""
    key = parts.key
    with log.stage("cache load") as note:
        data = store.read(key)
        if data is None:
            note.detail = "miss"
            why = explain_miss(parts, store.manifests(newest=_MANIFESTS_COMPARED))
            logger.info("aotgraph: compile cache miss (key %s): %s", key[:12], why)
            return None, why
        try:
            loaded = loaded_graphs(data, *compilers)
        except Exception as error:  # whatever a damaged or foreign entry raises: compile again
            why = f"it could not be loaded ({type(error).__name__}: {error})"
            store.discard(key, why, read_as_hit=True)
            note.detail = "unreadable"
            return None, why
        note.detail = "hit"
        compiled = loaded.compiled
        if warm_upgrades.provisional(compiled):
            static = _static_primals(real_args, compiled.partition.joint.signature.primal_positions)
            upgraded = warm_upgrades.upgraded_in_background(
                compiled, compilers, static, lambda final: _stored_again(store, key, final, compilers))
            if upgraded is not None:
                compiled, note.detail = upgraded, "hit (its C++ builds made in the background)"
    return _entry_of(compiled, log, key, loaded.facts), None


def _stored_again(store: DiskCache, key: str, compiled: CompiledGraphs, compilers: tuple) -> None:
    fw_compiler, bw_compiler, inference_compiler = compilers
    forward_compiler = inference_compiler if compiled.backward is None else fw_compiler
    store.write(key, stored_bytes(compiled, forward_compiler, bw_compiler))


def _store(store: DiskCache, parts: KeyParts, compiled: CompiledGraphs, forward_compiler: Callable,
           backward_compiler: Callable) -> str:
    """Store `compiled` under the key of `parts`, with its manifest; what happened, for the
    compile log. Never fails a compile."""
    key = parts.key
    if compile_workers.outstanding():  # graphs still compiling in workers: stored once they are answered
        compile_workers.after_outstanding(
            lambda: _store(store, parts, compiled, forward_compiler, backward_compiler))
        return "stored when its compile workers answer"
    try:
        store.write(key, stored_bytes(compiled, forward_compiler, backward_compiler), manifest_json(parts))
    except NotStorable as why:
        logger.info("aotgraph: this entry is not cached on disk: %s", why)
        return "not storable"
    except Exception as error:  # a full disk, a compiled object pickle refuses: the entry stays in memory
        logger.warning("aotgraph: could not write the compile cache entry (%s: %s)", type(error).__name__, error)
        return "write failed"
    # Graphs whose faster builds are still being made (`compilers.background_builds`) are
    # stored again once all of them are ready.
    if when_all_built((compiled.forward, compiled.backward),
                      lambda: store.write(key, stored_bytes(compiled, forward_compiler, backward_compiler))):
        return "stored (again when its background builds are ready)"
    return "stored"


class _KeyingSplit:
    """The split of the regions of a capture made to find its entry on disk (`OnDisk.after_capture`):
    without the compiler's joint passes, which the key does not need (they are a function of
    the region's joint graph, which the split keeps op for op) and which cost Inductor's pattern
    tables, built and imported, on a warm start (switch ``keys_without_joint_passes``).
    `skipped_passes`: a region was split so; on a miss the program is captured again with them."""

    def __init__(self, partition_fn: Callable, traits):
        self.partition_fn, self.traits, self.skipped_passes = partition_fn, traits, False

    def __call__(self, joint: JointGraph) -> Partition:
        if self.traits.joint_passes is None or not config.enabled("keys_without_joint_passes"):
            return _split_region(self.partition_fn, self.traits, joint)
        self.skipped_passes = True
        return _split_region(self.partition_fn, replace(self.traits, joint_passes=None), joint)


def _split_region(partition_fn: Callable, traits, joint: JointGraph) -> Partition:
    """A region's joint graph (`capture.regions`) through the compiler's joint passes and the
    partition, which may save the region's outputs for free: its caller's graph holds them
    (switch ``region_outputs_kept``; `Region.backward_saved`'s ``("output", k)``)."""
    if traits.joint_passes is not None:
        joint = traits.joint_passes(joint)
    return partition(joint, partition_fn, fusing_compiler=traits.fuses_kernels,
                     outputs_kept=config.enabled("region_outputs_kept"))


@contextlib.contextmanager
def collector_paused():
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


@contextlib.contextmanager
def heap_frozen():
    """The objects alive when a compile starts (the model, torch's and Dynamo's state) moved out
    of the cyclic collector's reach while it runs (``gc.freeze``), and back after: a compile
    makes garbage fast enough to trigger full collections, and each one walked that whole heap
    again (on an Inductor compile of the CPU suite's transformer: 0.42 s of a 1.79 s first call;
    frozen, 0.05 s). What the compile itself makes is collected as usual. Switch: ``gc_freeze``."""
    if not config.enabled("gc_freeze") or not gc.isenabled() or gc.get_freeze_count():
        yield  # (already frozen: by the caller, or by a compile on another thread)
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


_dynamo_froze = False  # whether the Dynamo compile in progress froze the heap (`heap_frozen_in_dynamo_compiles`)


def heap_frozen_in_dynamo_compiles() -> None:
    """Where switch ``trace_heap_frozen`` is on (off by default) with ``gc_freeze``: from now on
    in this process, the heap is frozen (as `heap_frozen` does) for the whole of each of Dynamo's
    compiles, its trace of a frame included, not only for our stages inside it: on a transformers
    model Dynamo's trace takes seconds, long enough for full collections, each a walk over every
    object of the process (0.13 s on GPT-2 small on this CPU). Through Dynamo's compile callbacks
    (``torch._dynamo.callback``), registered by each backend built and each of its calls where they
    are not (``torch._dynamo.reset()`` clears them). Off by default: over thousands of small
    compiles it cost more than it saved (config.OFF_BY_DEFAULT)."""
    if not (config.enabled("gc_freeze") and config.enabled("trace_heap_frozen")):
        return
    try:
        from torch._dynamo.callback import callback_handler

        if _dynamo_compile_started not in callback_handler.start_callbacks:
            callback_handler.register_start_callback(_dynamo_compile_started)
            callback_handler.register_end_callback(_dynamo_compile_ended)
    except (ImportError, AttributeError):  # a torch without these callbacks: our stages alone
        return


def _dynamo_compile_started(*_) -> None:
    global _dynamo_froze
    if config.enabled("gc_freeze") and config.enabled("trace_heap_frozen") and gc.isenabled() \
            and not gc.get_freeze_count():
        gc.freeze()
        _dynamo_froze = True


def _dynamo_compile_ended(*_) -> None:
    global _dynamo_froze
    if _dynamo_froze:
        _dynamo_froze = False
        gc.unfreeze()


def _static_primals(flat_args: list, primal_positions) -> frozenset:
    """Primals that keep their memory across calls: parameters, and what Dynamo marks static
    (its graphs' parameters and buffers)."""
    return frozenset(p for p, i in enumerate(primal_positions)
                     if isinstance(flat_args[i], torch.nn.Parameter)
                     or getattr(flat_args[i], "_dynamo_static_input_type", None) is not None)
