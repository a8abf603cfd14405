"""A compiled entry's artifacts as bytes and back: the Partition (joint, forward and backward
graphs, saved values, plan, calling convention), each compiler's output, and what the
runtime reads of the forward graph (`runtime.ForwardFacts`).

Graphs go through `graph_codec`; each compiled graph through its compiler's ``store`` /
``restore`` traits (`compilers.CompilerTraits`). `stored_bytes` answers None where anything
cannot be stored (a compiler without those traits, a value pickle cannot name): the entry
is then simply not cached.

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
from ..runtime import ForwardFacts, forward_facts
from ..torch_private.fake import FakeTensorMode
from . import graph_codec
from .graph_codec import NotStorable

__all__ = ["stored_bytes", "loaded_graphs", "LoadedGraphs", "graphs_decoded", "NotStorable"]

_FORMAT = 2
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
    compiled_forward = forward_traits.restore(outputs[0], _graph_for(forward_traits, parts, "forward"),
                                              "inference" if is_inference else "forward")
    compiled_backward = None
    if len(outputs) > 1:
        backward_traits = traits_of(backward_compiler)
        compiled_backward = backward_traits.restore(outputs[1], _graph_for(backward_traits, parts, "backward"),
                                                    "backward")
    return LoadedGraphs(CompiledGraphs(compiled_forward, compiled_backward, parts, mutations_in_graph, note), facts)


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


def _compiled_bytes(compiler: Callable, compiled: Callable) -> bytes:
    traits = traits_of(compiler)
    stored = traits.store(compiled) if traits.store is not None and traits.restore is not None else None
    if stored is None:
        raise NotStorable(f"the compiler {getattr(compiler, '__name__', compiler)!r} cannot store what it compiled")
    return stored
