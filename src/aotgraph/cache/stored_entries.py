"""A compiled entry's artifacts as bytes and back: the Partition (joint, forward and backward
graphs, saved values, plan, calling convention), each compiler's output, and what the
runtime reads of the forward graph (`runtime.ForwardFacts`).

Graphs go through `graph_codec`; each compiled graph through its compiler's ``store`` /
``restore`` traits (`compilers.CompilerTraits`), and a graph compiled around its regions
(`compilers.region_steps`) as its steps, each step's compiled code through those traits.
`stored_bytes` raises `NotStorable` where anything cannot be stored (a compiler without those
traits, a value pickle cannot name): the entry is then simply not cached.

A loaded entry decodes its three graphs (with their fake values) only when something reads
one: reports, the debug log, a compiler whose ``restore`` reads its graph. The runtime
reads none of them (its `ForwardFacts` are stored), so a warm start with Inductor, whose
restore reads no graph, decodes no graph at all. The graphs' bytes are part of the payload
that `disk.DiskCache.read` checksums: decoding later checks nothing less.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable, NamedTuple, Optional

from ..artifacts import CompiledGraphs, JointGraph, Partition
from ..compilers import traits_of
from ..compilers.boxed_code import boxed_graph_function
from ..compilers.region_steps import Step, SteppedCode, code_of_steps
from ..runtime import ForwardFacts, forward_facts
from ..torch_private.fake import FakeTensorMode
from . import graph_codec
from .graph_codec import NotStorable

__all__ = ["stored_bytes", "loaded_graphs", "LoadedGraphs", "graphs_decoded", "NotStorable"]

_FORMAT = 4  # 3: each compiled graph tagged, "code" or "steps" (a graph compiled around its regions); 4: facts'
            # `viewed_primals`
_JOINT, _FORWARD, _BACKWARD = range(3)  # positions in the stored graphs


class LoadedGraphs(NamedTuple):
    """What `loaded_graphs` gives: the CompiledGraphs (its graphs decoded when first read) and
    the runtime's `ForwardFacts` (None for an inference entry)."""

    compiled: CompiledGraphs
    facts: Optional[ForwardFacts]


def stored_bytes(compiled: CompiledGraphs, forward_compiler: Callable, backward_compiler: Callable) -> bytes:
    """`compiled` (with its Partition) as bytes; `forward_compiler` compiled its forward (or
    inference) graph, `backward_compiler` its backward. Raises `NotStorable`."""
    parts = compiled.partition
    joint = parts.joint
    outputs = [_compiled_bytes(forward_compiler, compiled.forward)]
    if compiled.backward is not None:
        outputs.append(_compiled_bytes(backward_compiler, compiled.backward))
    fields = {f.name: getattr(parts, f.name) for f in dataclasses.fields(Partition)
              if f.name not in ("joint", "forward", "backward")}
    graphs = graph_codec.dumps((joint.graph_module, parts.forward, parts.backward))
    return graph_codec.dumps((_FORMAT, joint.signature, joint.is_inference, fields, compiled.mutations_in_graph,
                              compiled.note, outputs, forward_facts(compiled), graphs))


def loaded_graphs(data: bytes, forward_compiler: Callable, backward_compiler: Callable,
                  inference_compiler: Callable) -> LoadedGraphs:
    """The CompiledGraphs that `stored_bytes` stored, with its runtime facts; its graphs are
    decoded (their fake values in a new fake mode) when first read. The compilers are those
    of the function (their identities are in the key)."""
    version, *rest = graph_codec.loads(data, None)
    if version != _FORMAT:
        raise ValueError(f"entry format {version}, expected {_FORMAT}")
    signature, is_inference, fields, mutations_in_graph, note, outputs, facts, graphs_data = rest
    fake_mode = FakeTensorMode()
    graphs = _GraphsOnDemand(graphs_data, fake_mode)
    joint = _with_graphs_on_demand(_LoadedJointGraph, graphs, signature=signature, is_inference=is_inference,
                                   fake_mode=fake_mode)
    parts = _with_graphs_on_demand(_LoadedPartition, graphs, joint=joint, **fields)
    forward_traits = traits_of(inference_compiler if is_inference else forward_compiler)
    compiled_forward = _restored(forward_traits, outputs[0], parts, "forward",
                                 "inference" if is_inference else "forward", fake_mode)
    compiled_backward = None
    if len(outputs) > 1:
        compiled_backward = _restored(traits_of(backward_compiler), outputs[1], parts, "backward", "backward",
                                      fake_mode)
    return LoadedGraphs(CompiledGraphs(compiled_forward, compiled_backward, parts, mutations_in_graph, note,
                                       checks_viewed_versions=not forward_traits.views_keep_versions), facts)


def graphs_decoded(artifact: Any) -> bool:
    """Whether `artifact` (a JointGraph or Partition) holds its graphs decoded: False only for
    a loaded one none of whose graphs has been read yet."""
    on_demand = vars(artifact).get("_graphs_on_demand")
    return on_demand is None or on_demand.decoded


def _graph_for(traits, parts: Partition, name: str):
    """The graph `name` of `parts` for a restore that reads it; None for one that does not."""
    return getattr(parts, name) if traits.restore_reads_graph else None


class _GraphsOnDemand:
    """One entry's stored joint, forward and backward graphs, decoded together on the first
    read of any of them (so the fake values they share stay shared), then kept."""

    def __init__(self, data: bytes, fake_mode: FakeTensorMode):
        self._data: Optional[bytes] = data
        self._fake_mode = fake_mode
        self._graphs: Optional[tuple] = None
        self._lock = threading.Lock()

    @property
    def decoded(self) -> bool:
        return self._graphs is not None

    def graph(self, index: int) -> Any:
        """The graph at `index` (`_JOINT`, `_FORWARD`, `_BACKWARD`; None: the entry has none there)."""
        with self._lock:
            if self._graphs is None:
                self._graphs = graph_codec.loads(self._data, self._fake_mode)
                self._data = None
        return self._graphs[index]


class _Decoded:
    """A field of a loaded artifact whose value is its entry's graph at `index`, decoded on
    first access and then kept in the instance (which then answers it as any field)."""

    def __init__(self, index: int):
        self.index = index

    def __set_name__(self, owner, name: str):
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        value = instance.__dict__["_graphs_on_demand"].graph(self.index)
        instance.__dict__[self.name] = value
        return value


class _LoadedJointGraph(JointGraph):
    """A JointGraph loaded from the disk cache: `graph_module` decoded when first read."""

    graph_module = _Decoded(_JOINT)


class _LoadedPartition(Partition):
    """A Partition loaded from the disk cache: `forward` and `backward` decoded when first read."""

    forward = _Decoded(_FORWARD)
    backward = _Decoded(_BACKWARD)


def _with_graphs_on_demand(cls: type, graphs: _GraphsOnDemand, **fields):
    """An instance of `cls` (a frozen dataclass's subclass whose `_Decoded` attributes name
    some of its fields) with `fields`, those others read from `graphs` on first access."""
    deferred = [name for name, value in vars(cls).items() if isinstance(value, _Decoded)]
    instance = cls(**fields, **dict.fromkeys(deferred))
    for name in deferred:
        del instance.__dict__[name]  # the class's _Decoded answers until the first read
    instance.__dict__["_graphs_on_demand"] = graphs
    return instance


def _compiled_bytes(compiler: Callable, compiled: Callable) -> tuple[str, bytes]:
    """What `compiler` compiled, tagged: ("code", its store's bytes), or for a graph compiled
    around its regions (`compilers.region_steps`) ("steps", its `SteppedCode` with each
    step's compiled code as its store's bytes), restored by `_restored`."""
    traits = traits_of(compiler)
    if traits.store is None or traits.restore is None:
        raise NotStorable(f"the compiler {getattr(compiler, '__name__', compiler)!r} cannot store what it compiled")
    stepped = getattr(compiled, "aotgraph_steps", None)
    if stepped is None:
        return "code", _stored(traits, compiler, compiled)
    if traits.restore_reads_graph:
        raise NotStorable(f"the compiler {getattr(compiler, '__name__', compiler)!r} restores from a graph, and "
                          "the parts of a graph compiled around its regions are not stored as graphs")
    stored_code: dict[int, bytes] = {}
    steps = []
    for step in stepped.steps:
        if step.views is None and id(step.code) not in stored_code:
            stored_code[id(step.code)] = _stored(traits, compiler, step.code)
        code = step.views if step.views is not None else stored_code[id(step.code)]
        steps.append((code, step.views is not None, step.reads, step.drops, step.writes))
    # plain tuples: graph_codec stores the GraphModules it finds in tuples and lists
    return "steps", graph_codec.dumps((steps, stepped.num_inputs, stepped.unread, stepped.returned,
                                       stepped.template))


def _stored(traits, compiler: Callable, compiled: Callable) -> bytes:
    stored = traits.store(compiled)
    if stored is None:
        raise NotStorable(f"the compiler {getattr(compiler, '__name__', compiler)!r} cannot store what it compiled")
    return stored


def _restored(traits, tagged: tuple[str, bytes], parts: Partition, name: str, kind: str,
              fake_mode: FakeTensorMode) -> Callable:
    """The callable `_compiled_bytes` stored as `tagged`, for the graph `name` of `parts`."""
    tag, data = tagged
    if tag == "code":
        return traits.restore(data, _graph_for(traits, parts, name), kind)
    stored_steps, num_inputs, unread, returned, template = graph_codec.loads(data, fake_mode)
    restored: dict[int, Callable] = {}  # a step's code stored once, restored once (a region called again)
    steps = []
    for code, views, reads, drops, writes in stored_steps:
        if views:
            steps.append(Step(boxed_graph_function(code), reads, drops, writes, code))
            continue
        if id(code) not in restored:
            restored[id(code)] = traits.restore(code, None, kind)
        steps.append(Step(restored[id(code)], reads, drops, writes))
    run = code_of_steps(SteppedCode(tuple(steps), num_inputs, unread, returned, template))
    if any(getattr(code, "aotgraph_provisional", False) for code in restored.values()):
        run.aotgraph_provisional = True
    return run
