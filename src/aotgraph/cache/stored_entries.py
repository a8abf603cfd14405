"""A compiled entry's artifacts as bytes and back: the Partition (joint, forward and backward
graphs, saved values, plan, calling convention) and each compiler's output.

Graphs go through `graph_codec`; each compiled graph through its compiler's ``store`` /
``restore`` traits (`compilers.CompilerTraits`). `stored_bytes` answers None where anything
cannot be stored (a compiler without those traits, a value pickle cannot name): the entry
is then simply not cached.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from ..artifacts import CompiledGraphs, JointGraph, Partition
from ..compilers import traits_of
from ..torch_private.fake import FakeTensorMode
from . import graph_codec
from .graph_codec import NotStorable

__all__ = ["stored_bytes", "loaded_graphs", "NotStorable"]

_FORMAT = 1


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
    return graph_codec.dumps((_FORMAT, joint.graph_module, parts.forward, parts.backward, joint.signature,
                              joint.is_inference, fields, compiled.mutations_in_graph, compiled.note, outputs))


def loaded_graphs(data: bytes, forward_compiler: Callable, backward_compiler: Callable,
                  inference_compiler: Callable) -> CompiledGraphs:
    """The CompiledGraphs that `stored_bytes` stored, its graphs' fake values in a new fake mode;
    the compilers are those of the function (their identities are in the key)."""
    fake_mode = FakeTensorMode()
    version, *rest = graph_codec.loads(data, fake_mode)
    if version != _FORMAT:
        raise ValueError(f"entry format {version}, expected {_FORMAT}")
    joint_graph, forward, backward, signature, is_inference, fields, mutations_in_graph, note, outputs = rest
    joint = JointGraph(joint_graph, signature, is_inference, fake_mode)
    parts = Partition(forward=forward, backward=backward, joint=joint, **fields)
    kind = "inference" if is_inference else "forward"
    compiled_forward = traits_of(inference_compiler if is_inference else forward_compiler).restore(
        outputs[0], forward, kind)
    compiled_backward = (traits_of(backward_compiler).restore(outputs[1], backward, "backward")
                         if backward is not None else None)
    return CompiledGraphs(compiled_forward, compiled_backward, parts, mutations_in_graph, note)


def _compiled_bytes(compiler: Callable, compiled: Callable) -> bytes:
    traits = traits_of(compiler)
    stored = traits.store(compiled) if traits.store is not None and traits.restore is not None else None
    if stored is None:
        raise NotStorable(f"the compiler {getattr(compiler, '__name__', compiler)!r} cannot store what it compiled")
    return stored
