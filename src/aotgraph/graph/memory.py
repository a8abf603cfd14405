"""Predicted memory of a partition: a liveness simulation of its forward and backward graphs.

Model (what a non-fusing compiler such as "eager" or "nop" does at run time):
- a node allocates the storages of its tensor results when it runs (storages are told
  apart by the fake tensors' storage identity); a view (by its op's schema) lives in its
  base's storage and costs nothing; a storage costs its bytes (``numel x itemsize`` of the whole storage);
- a storage is freed right after the last node that reads a value living in it (the
  generated code's ``x = None``, the runtime's early frees of saved tensors);
- graph inputs (parameters, the batch) are fixed memory, outside every figure here;
- forward outputs outlive the forward: saved values until their last use in the backward,
  the user's outputs (e.g. the loss) through the whole backward, as do the tangents (the
  autograd engine holds them); the backward's gradient outputs stay alive to its end (they
  become ``.grad``).
Only tensors on the graphs' device count (on CUDA, offloaded host copies do not).

Not modelled: allocator rounding and caching, workspaces, fused kernels (Inductor frees and
allocates differently), the prefetch of offloaded values (counted from the node that waits
for them), and a copy that ``AccumulateGrad`` may make of a gradient.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Optional

import torch
import torch.fx as fx
from torch.multiprocessing.reductions import StorageWeakRef

from .ops import op_facts, storage_of
from .naming import is_tangent


@dataclass(frozen=True)
class MemoryStep:
    """Bytes alive (above the fixed inputs) while `node` of `graph` runs: its inputs and its
    results are both alive at that moment."""

    graph: str  # "forward" or "backward"
    node: str
    live_bytes: int


@dataclass(frozen=True)
class MemoryTimeline:
    """Per-node live bytes of a forward then its backward, and the peaks a step reaches
    above its fixed memory (inputs). `saved_bytes`: storages the forward hands to the
    backward; `carried_bytes`: the user's forward outputs and the tangents, alive through the
    backward; `gradient_bytes`: what the backward leaves alive at its end (the gradients)."""

    steps: tuple[MemoryStep, ...]
    device: Optional[torch.device]
    forward_peak: int
    backward_peak: int
    saved_bytes: int
    carried_bytes: int
    gradient_bytes: int

    @property
    def peak(self) -> int:
        return max(self.forward_peak, self.backward_peak)

    @property
    def peak_step(self) -> Optional[MemoryStep]:
        return max(self.steps, key=lambda s: s.live_bytes, default=None)


def _tensors(value) -> list:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [v for v in value if isinstance(v, torch.Tensor)]
    return []


def _device_of(graph: fx.Graph) -> Optional[torch.device]:
    for node in graph.find_nodes(op="placeholder"):
        for tensor in _tensors(node.meta.get("val")):
            return tensor.device
    return None


def _storages(node: fx.Node, device) -> list[tuple[int, int]]:
    return [storage_of(t) for t in _tensors(node.meta.get("val")) if t.device == device]


def _storage_map(graph: fx.Graph, device, known: dict) -> dict:
    """node -> [(storage id, bytes)] of its results on `device`. A view (by its op's schema,
    whatever its fake value says) lives in its base's storages, as does a getitem of a view
    op's tuple; placeholders named in `known` take the storages given there."""
    storages: dict = {}
    for node in graph.nodes:
        base = node.args[0] if node.op == "call_function" and node.args and isinstance(node.args[0], fx.Node) else None
        if node.op == "placeholder" and node.name in known:
            storages[node] = known[node.name]
        elif base is not None and (op_facts(node.target).view
                                   or (node.target is operator.getitem and base.op == "call_function"
                                       and op_facts(base.target).view)):
            storages[node] = storages[base]
        else:
            storages[node] = _storages(node, device)
    return storages


def _run(graph: fx.Graph, name: str, storages: dict, live: dict, fixed: set, carried: int) -> tuple[list, int]:
    """Walk `graph`, allocating and freeing storages in `live` (id -> bytes, edited in place);
    returns (steps, peak). Storages that a graph output reads are never freed."""
    nodes = list(graph.nodes)
    position = {node: i for i, node in enumerate(nodes)}
    last_use: dict[int, int] = {}
    for node in nodes:
        end = max((position[user] for user in node.users), default=position[node])
        for storage, _ in storages[node]:
            last_use[storage] = max(last_use.get(storage, -1), end)
    frees: dict[int, list[int]] = {}
    for storage, end in last_use.items():
        frees.setdefault(end, []).append(storage)
    total = sum(live.values())
    steps, peak = [], total + carried
    for i, node in enumerate(nodes):
        if node.op == "output":
            break
        if node.op != "placeholder":
            for storage, nbytes in storages[node]:
                if storage not in fixed and storage not in live:
                    live[storage] = nbytes
                    total += nbytes
            steps.append(MemoryStep(name, node.name, total + carried))
            peak = max(peak, total + carried)
        for storage in frees.get(i, ()):
            total -= live.pop(storage, 0)
    return steps, peak


def simulate_memory(forward: fx.GraphModule, backward: Optional[fx.GraphModule], num_fwd_outputs: int,
                    num_user_outputs: Optional[int] = None) -> MemoryTimeline:
    """The `MemoryTimeline` of a partition's graphs (see the module docstring for the model).
    The first `num_user_outputs` forward outputs (default: all `num_fwd_outputs`) reach the
    user and live through the backward; the others (new values of mutated inputs) are
    written back and dropped after the forward. The backward's saved placeholders take the
    storages of the forward outputs of the same names (the runtime hands them over by name),
    alive from its start; its tangents are alive throughout (the autograd engine holds them),
    counted with the carried forward outputs."""
    device = _device_of(forward.graph)
    fixed = {s for p in forward.graph.find_nodes(op="placeholder") for s, _ in _storages(p, device)}
    forward_storages = _storage_map(forward.graph, device, {})
    live: dict[int, int] = {}
    steps, forward_peak = _run(forward.graph, "forward", forward_storages, live, fixed, carried=0)
    outputs = list(forward.graph.find_nodes(op="output")[0].args[0])
    saved_outputs = {node.name: forward_storages[node] for node in outputs[num_fwd_outputs:] if isinstance(node, fx.Node)}
    saved = {s for storages in saved_outputs.values() for s, _ in storages if s not in fixed}
    saved_bytes = sum(live.get(s, 0) for s in saved)
    user_outputs = outputs[:num_fwd_outputs if num_user_outputs is None else num_user_outputs]
    user = {s for node in user_outputs if isinstance(node, fx.Node) for s, _ in forward_storages[node]}
    carried = sum(nbytes for s, nbytes in live.items() if s not in saved and s in user)
    backward_peak = gradient_bytes = 0
    if backward is not None:
        backward_storages = _storage_map(backward.graph, device, saved_outputs)
        start: dict[int, int] = {}
        tangents: dict[int, int] = {}
        for placeholder in backward.graph.find_nodes(op="placeholder"):
            held = tangents if is_tangent(placeholder) else start
            for storage, nbytes in backward_storages[placeholder]:
                if storage not in fixed:
                    held[storage] = nbytes
        fixed = fixed | set(tangents)
        carried += sum(tangents.values())
        backward_steps, backward_peak = _run(backward.graph, "backward", backward_storages, start, fixed, carried)
        steps += backward_steps
        gradient_bytes = sum(start.values())
    return MemoryTimeline(tuple(steps), device, forward_peak, backward_peak, saved_bytes, carried, gradient_bytes)


def _storage_bytes(value: torch.Tensor) -> int:
    return value.untyped_storage().nbytes()


def saved_storage_bytes(forward: fx.GraphModule, num_fwd_outputs: int) -> int:
    """Distinct storages a forward graph hands to the backward, outside its inputs."""
    inputs = {StorageWeakRef(p.meta["val"].untyped_storage()) for p in forward.graph.find_nodes(op="placeholder")
              if isinstance(p.meta.get("val"), torch.Tensor)}
    seen, total = set(), 0
    for node in list(forward.graph.find_nodes(op="output")[0].args[0])[num_fwd_outputs:]:
        value = node.meta.get("val")
        if not isinstance(value, torch.Tensor):
            continue
        storage = StorageWeakRef(value.untyped_storage())
        if storage not in inputs and storage not in seen:
            seen.add(storage)
            total += _storage_bytes(value)
    return total
