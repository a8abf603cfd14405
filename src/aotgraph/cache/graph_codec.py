"""fx GraphModules to bytes and back, with what the stages after capture read of them.

A graph is stored as its nodes (op, name, target, arguments, the shape of ``meta["val"]``)
and the attributes its ``get_attr`` / ``call_module`` nodes reach (tensors, nested
GraphModules of higher-order ops, other picklable modules). Loading rebuilds each node's
``meta["val"]`` as a fake tensor of the stored layout, in one `FakeTensorMode` per loaded
entry: the runtime, the reports and the memory simulation read those; nothing reads the
other keys of ``node.meta`` after a graph is compiled. Ops are stored by name
(``aten::add.Tensor``), functions by their import path (pickle's rule); a graph that holds
anything else unpicklable, a symbolic size, or a user Triton kernel (known by its index in
this process's kernel table) is `NotStorable`.
"""
from __future__ import annotations

import io
import operator
import pickle
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.fx as fx

from ..torch_private.dispatch import DisableTorchDispatch, OpOverload
from ..torch_private.fake import FakeTensor, FakeTensorMode
from ..torch_private.fx import LazyGraphModule

__all__ = ["NotStorable", "dumps", "loads"]


class NotStorable(Exception):
    """A value that the disk cache cannot store faithfully (the entry is then not stored)."""


@dataclass(frozen=True)
class _Ref:
    """An argument that is the node at `index` of the same graph."""

    index: int


@dataclass(frozen=True)
class _Fake:
    """A fake tensor's layout, rebuilt as a fake tensor on load."""

    layout: tuple


@dataclass(frozen=True)
class _StoredGraph:
    """One GraphModule: node records and the attributes they reach (nested graphs as `_StoredGraph`)."""

    nodes: list
    attributes: dict
    class_name: str


def _op_overload(namespace: str, name: str, overload: str):
    return getattr(getattr(getattr(torch.ops, namespace), name), overload)


def _op_packet(namespace: str, name: str):
    return getattr(getattr(torch.ops, namespace), name)


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj):
        if isinstance(obj, OpOverload):
            namespace, name = obj._schema.name.split("::")
            return _op_overload, (namespace, name, obj._overloadname)
        if isinstance(obj, torch._ops.OpOverloadPacket):
            namespace, name = obj._qualified_op_name.split("::")
            return _op_packet, (namespace, name)
        if isinstance(obj, torch._ops.HigherOrderOperator):
            if obj.name().startswith("triton_kernel_wrapper"):
                raise NotStorable("a user Triton kernel: its index in torch's kernel side table names another "
                                  "kernel, or none, in another process")
            return _op_packet, ("higher_order", obj.name())
        if isinstance(obj, (torch.SymInt, torch.SymFloat, torch.SymBool)):
            raise NotStorable(f"a symbolic value ({obj}): graphs with dynamic shapes are not stored")
        if isinstance(obj, fx.Node):
            raise NotStorable(f"a graph node ({obj.name}) outside the graph's arguments")
        return NotImplemented


def dumps(value: Any) -> bytes:
    """Pickle `value`, in which every GraphModule is stored as described above. Fake values
    shared between graphs (a forward's nodes and the joint's) stay shared, and fake tensors
    that share a storage still do after `loads` (the memory accounting tells storages apart)."""
    buffer = io.BytesIO()
    try:
        _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(_Encoder().stored(value))
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        raise NotStorable(str(error)) from None
    return buffer.getvalue()


def loads(data: bytes, fake_mode: Optional[FakeTensorMode]) -> Any:
    """The value `dumps` stored, its graphs' fake values made in `fake_mode` (None: `data`
    holds no graph)."""
    with warnings.catch_warnings():  # unpickling a leaf TreeSpec trips torch's LeafSpec deprecation
        warnings.simplefilter("ignore", FutureWarning)
        stored = pickle.loads(data)
    return _Decoder(fake_mode).rebuilt(stored)


class _Encoder:
    def __init__(self):
        self.storage_index: dict[int, int] = {}
        self.described: dict[int, _Fake] = {}
        self.keep_alive: list = []  # ids above stay unique while encoding

    def stored(self, value: Any) -> Any:
        if isinstance(value, fx.GraphModule):
            return self.stored_graph(value)
        if isinstance(value, tuple) and not hasattr(value, "_fields"):
            return tuple(map(self.stored, value))
        if isinstance(value, list):
            return list(map(self.stored, value))
        if isinstance(value, dict):
            return {k: self.stored(v) for k, v in value.items()}
        return value

    def stored_graph(self, graph_module: fx.GraphModule) -> _StoredGraph:
        index = {node: i for i, node in enumerate(graph_module.graph.nodes)}
        as_ref = lambda node: _Ref(index[node])  # noqa: E731
        nodes, attributes = [], {}
        for node in graph_module.graph.nodes:
            if node.op in ("get_attr", "call_module"):
                attributes[node.target] = self.stored_attribute(graph_module, node.target)
            nodes.append((node.op, node.name, node.target, fx.node.map_arg(node.args, as_ref),
                          fx.node.map_arg(node.kwargs, as_ref), self.described_value(node.meta.get("val"))))
        return _StoredGraph(nodes, attributes, type(graph_module).__name__)

    def stored_attribute(self, graph_module: fx.GraphModule, path: str) -> Any:
        value = operator.attrgetter(path)(graph_module)
        if isinstance(value, fx.GraphModule):
            return self.stored_graph(value)
        if isinstance(value, torch.Tensor) and type(value) not in (torch.Tensor, torch.nn.Parameter):
            raise NotStorable(f"the attribute {path} is a {type(value).__name__}, not a plain tensor")
        return value

    def described_value(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            known = self.described.get(id(value))
            if known is None:
                storage = value.untyped_storage()
                number = self.storage_index.setdefault(storage._cdata, len(self.storage_index))
                known = self.described[id(value)] = _Fake((
                    tuple(value.shape), tuple(value.stride()), value.storage_offset(), value.dtype, value.device,
                    value.requires_grad, number, storage.nbytes()))
                self.keep_alive.append(value)
            return known
        if isinstance(value, (tuple, list)):
            return type(value)(map(self.described_value, value))
        return value


class _Decoder:
    def __init__(self, fake_mode: FakeTensorMode):
        self.fake_mode = fake_mode
        self.storages: dict[int, Any] = {}
        self.fakes: dict[int, Any] = {}

    def rebuilt(self, value: Any) -> Any:
        if isinstance(value, _StoredGraph):
            return self.rebuilt_graph(value)
        if isinstance(value, tuple):
            return tuple(map(self.rebuilt, value))
        if isinstance(value, list):
            return list(map(self.rebuilt, value))
        if isinstance(value, dict):
            return {k: self.rebuilt(v) for k, v in value.items()}
        return value

    def rebuilt_graph(self, stored: _StoredGraph) -> fx.GraphModule:
        graph = fx.Graph()
        nodes: list[fx.Node] = []
        resolve = lambda v: nodes[v.index] if isinstance(v, _Ref) else v  # noqa: E731
        for op, name, target, args, kwargs, val in stored.nodes:
            node = graph.create_node(op, target, fx.node.map_aggregate(args, resolve),
                                     fx.node.map_aggregate(kwargs, resolve), name)
            if val is not None:
                node.meta["val"] = self.fake_of(val)
            nodes.append(node)
        root = torch.nn.Module()
        for path, value in stored.attributes.items():
            _set_attribute(root, path, self.rebuilt(value))
        return LazyGraphModule(root, graph, stored.class_name)

    def fake_of(self, value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return type(value)(map(self.fake_of, value))
        if not isinstance(value, _Fake):
            return value
        fake = self.fakes.get(id(value))  # pickle keeps shared descriptions shared
        if fake is None:
            shape, stride, offset, dtype, device, requires_grad, number, nbytes = value.layout
            storage = self.storages.get(number)
            if storage is None:
                storage = self.storages[number] = torch.empty(nbytes, dtype=torch.uint8, device="meta").untyped_storage()
            with DisableTorchDispatch(), torch.no_grad():
                meta = torch.empty(0, dtype=dtype, device="meta").set_(storage, offset, shape, stride)
            meta.requires_grad_(requires_grad)
            fake = self.fakes[id(value)] = FakeTensor(self.fake_mode, meta, device)
        return fake


def _set_attribute(root: torch.nn.Module, path: str, value: Any) -> None:
    *owners, leaf = path.split(".")
    module = root
    for name in owners:
        if not hasattr(module, name):
            module.add_module(name, torch.nn.Module())
        module = getattr(module, name)
    if isinstance(value, torch.nn.Module):
        module.add_module(leaf, value)
    elif isinstance(value, torch.nn.Parameter):
        module.register_parameter(leaf, value)
    elif isinstance(value, torch.Tensor):
        module.register_buffer(leaf, value)
    else:
        setattr(module, leaf, value)
