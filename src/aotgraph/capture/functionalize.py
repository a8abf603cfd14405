"""Graph-level functionalization: turn a recorded graph with in-place ops and views
into a functional graph, and say which inputs were mutated.

Every tensor value has a *root* (the node that owns its storage: a placeholder, a
constant or a non-view op) and a *view chain* from that root. A mutation computes the
new value out of place, writes it back into the root through the chain's scatter
rules, and bumps the root's version; any alias read later is regenerated from the
root's current value by replaying its chain. Only programs that mutate pay for this.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch.multiprocessing.reductions import StorageWeakRef

from ..graph.nodes import memory_root
from ..graph.sizes import (SYMBOLIC_TYPES, has_symbolic_sizes, known_at_most, known_equal, layout_of, size_keys,
                           storage_positions)
from ..errors import UnsupportedOp
from ..torch_private.dispatch import HigherOrderOperator, OpOverload
from . import functional_ops as ops
from .fake_outputs import FakeOutputs
from .node_meta import INHERITED
from .recorder import append_call
from .symbolic_layout_rules import contiguous
from .symbols import SymbolNodes

aten = torch.ops.aten
# Their schemas alias, but ``to`` aliases only when it changes nothing, and the recorder does
# not record such calls (it hands back the argument itself): a recorded ``to`` copied.
_RECORDED_ONLY_WHEN_COPYING = frozenset({aten.to.dtype, aten.to.device, aten.to.dtype_layout, aten.to.other})
# In-place resizes: functionalized only where the tensor keeps its recorded shape.
_RESIZES = frozenset({aten.resize_.default, aten.resize_as_.default})


@dataclass(frozen=True)
class FunctionalGraph:
    """`graph` is functional. `final_value_of` maps each placeholder whose data or
    metadata the program changed to the node holding its final value (a view of its
    current root when the metadata changed)."""

    graph: fx.Graph
    data_mutated: tuple[str, ...]
    metadata_mutated: tuple[str, ...]
    final_value_of: dict[str, fx.Node] = field(default_factory=dict)
    storage_replaced: tuple[str, ...] = ()  # inputs the program ``set_`` (a subset of `metadata_mutated`)
    storage_source: dict[str, str] = field(default_factory=dict)  # of those, the input whose memory each ends in


@dataclass
class _Alias:
    root: fx.Node  # old-graph node owning the storage
    chain: tuple  # ((func, old args after the tensor, getitem index or None, old view node), ...)
    version: int


class _Functionalizer:
    def __init__(self, old: fx.Graph, fake_outputs: FakeOutputs):
        self.old = old
        self.fake_outputs = fake_outputs
        self.new = fx.Graph()
        self.env: dict[fx.Node, Any] = {}  # old node -> new node (value at alias.version)
        self.alias: dict[fx.Node, _Alias] = {}
        self.root_value: dict[fx.Node, fx.Node] = {}
        self.root_version: dict[fx.Node, int] = {}
        self.source_meta: dict = {}  # the `INHERITED` meta of the old node being functionalized
        self.storage_replaced: list[str] = []  # placeholders given another tensor's memory by ``set_``
        self.set_input: dict[fx.Node, fx.Node] = {}  # each ``set_`` of an input -> that input's placeholder
        # the new graph's node of each symbolic size a new node reads (a write-back's ``view`` to
        # its parent's sizes): one the program computed, else read from an input's layout
        self.symbols = SymbolNodes(self.new, fake_outputs.fake_mode.shape_env)

    # ---- emitting new nodes with fake values ----------------------------------
    def _append(self, func, args: tuple, kwargs: dict | None = None) -> fx.Node:
        """A new node calling `func`, with the stack trace, seq_nr and module stack of the old
        node being functionalized (`source_meta`)."""
        node = append_call(self.new, func, args, kwargs)
        node.meta.update(self.source_meta)
        return node

    def emit(self, func, *args, **kwargs) -> fx.Node:
        """A new node calling `func`; symbolic sizes among its arguments (SymInts of fake
        values' layouts) are read from the nodes computing them."""
        vals_args, vals_kwargs = _map_args(_val, (args, kwargs))
        args, kwargs = _map_args(self._size_node, (args, kwargs))
        node = self._append(func, args, kwargs)
        # Below autograd's recording, as the capture's ops ran: the values only describe layouts.
        with self.fake_outputs.fake_mode, torch.no_grad():
            node.meta["val"] = self.fake_outputs.run(func, vals_args, vals_kwargs, _call)
        return node

    def _size_node(self, a):
        return self.symbols.node_for(a) if isinstance(a, SYMBOLIC_TYPES) else a

    def read(self, old_node: fx.Node) -> Any:
        """The new node holding `old_node`'s current value (regenerated if stale)."""
        info = self.alias.get(old_node)
        if info is None or info.version == self.root_version[info.root]:
            return self.env[old_node]
        value = self.root_value[info.root]
        reader_meta = self.source_meta
        for func, args, index, view_node in info.chain:
            self.source_meta = _inherited(view_node)  # a view made again keeps its own op's meta
            if func is aten.as_strided.default:
                args = self._strided_args(info.root, args, view_node, writes=False)
            value = self._replay(func, value, args, index)
            self.env[view_node] = value
            self.alias[view_node].version = self.root_version[info.root]
        self.source_meta = reader_meta
        self.env[old_node] = value
        info.version = self.root_version[info.root]
        return value

    def read_as_view(self, old_node: fx.Node) -> Any:
        """`old_node`'s current value made again from its root's, so it has the layout of the
        view (a value last written through the view is a fresh tensor of another layout)."""
        info = self.alias[old_node]
        if info.chain:
            info.version = -1  # stale: `read` replays the chain
        return self.read(old_node)

    def read_output(self, old_node: Any) -> Any:
        """`old_node`'s current value as the program returns it: a view written in place (by an
        op whose functional twin lays its result out afresh, ``fill_`` of a strided view) is made
        again from its root, so the caller gets the view's strides and offset, as eager's."""
        return self._read_in_layout(old_node, offset_too=True)

    def _read_in_layout(self, old_node: Any, offset_too: bool = False) -> Any:
        """`old_node`'s current value with the view's strides (and storage offset, where
        `offset_too`): made again from its root where the value last written through the view
        has another layout. An op reading it then lays its result out as eager's does: ``sin``
        of a transposed input written by ``masked_fill_`` keeps the transposed strides, where
        ``masked_fill``'s own result is contiguous."""
        value = self._read_arg(old_node)
        info = self.alias.get(old_node) if isinstance(old_node, fx.Node) else None
        if info is None or not info.chain or not isinstance(value, fx.Node):
            return value
        new_val, old_val = value.meta.get("val"), old_node.meta.get("val")
        if offset_too and self.root_version[info.root] > 0 and isinstance(old_val, torch.Tensor) \
                and (has_symbolic_sizes(old_val) or isinstance(info.root.meta.get("val"), torch.Tensor)
                     and has_symbolic_sizes(info.root.meta["val"])):
            # An output viewing a written input or intermediate, with symbolic sizes: the runtime lays
            # it out by the graph's value (`OutputInfo.layout_from_graph`), which must view the root's
            # new value, not the value written through the view (``x[:, :h].relu_()[1]``); so do all
            # the outputs viewing that root, whose memory they share (seed 3199).
            return self.read_as_view(old_node)
        if new_val is old_val:  # the view as the program made it (its node keeps the old node's meta)
            return value
        if not isinstance(new_val, torch.Tensor) or not isinstance(old_val, torch.Tensor) \
                or has_symbolic_sizes(new_val) or has_symbolic_sizes(old_val):
            return value
        if _strides_differ(new_val, old_val) or (offset_too and new_val.storage_offset() != old_val.storage_offset()):
            return self.read_as_view(old_node)
        return value

    def _strided_args(self, root: fx.Node, args: tuple, view_node: fx.Node, writes: bool) -> tuple:
        """``as_strided``'s arguments for its view made again over `root`'s current value (or
        written back into it). Its storage offset counts from the start of the memory: where the
        root's value is a tensor of its own (the root was written), the offset moves with the
        root's. A view reaching memory outside the root's own elements (``as_strided`` of an
        input that is a slice of a larger tensor, past the slice's ends or into its gaps) is
        refused where the root was written before the read, or is written through: the graph
        holds the root's elements only, and eager's reads and writes there went to the memory
        beside them. The view is taken over the root's current value, not its base's: a base
        written through (``fill_`` of a view) holds a tensor of its own, whose memory starts at
        the view's first element (seed 8038: an offset read past its end)."""
        if len(args) < 3 or args[2] is None or (not writes and self.root_version[root] == 0):
            return args
        old, view = root.meta.get("val"), view_node.meta.get("val")
        current = self.root_value[root].meta.get("val")
        if not all(isinstance(t, torch.Tensor) for t in (old, view, current)):
            return args
        if any(has_symbolic_sizes(t) for t in (old, view, current)):
            if known_equal(current.storage_offset(), old.storage_offset()) and (
                    not writes or _known_within(args[:3], current)):
                return args
            # (an input at an offset in its memory, written: where the view lies in the new value
            # and whether it stays within the input's elements are conditions on the sizes)
            raise UnsupportedOp(
                f"an as_strided view of a tensor with symbolic sizes, {'written through' if writes else 'read'}, "
                "whose place in the tensor's memory (its offset, or its extent within the memory) depends on the "
                "sizes", "capture",
                "compile with static shapes (one compile per size), or take the view with the tensor's own view ops")
        if not _addresses_within(old, view):
            raise UnsupportedOp(
                f"an as_strided view of shape {tuple(view.shape)} reaches memory outside the elements of the "
                f"tensor of shape {tuple(old.shape)} it was taken from, and the program "
                + ("writes through it" if writes else "reads it after writing that tensor"), "capture",
                "pass the tensor that owns all that memory (the base) as the input and take the views inside the "
                "function, or keep as_strided within the tensor's own elements")
        shift = current.storage_offset() - old.storage_offset()
        if shift == 0:
            return args
        if _strides_differ(current, old):
            raise UnsupportedOp(
                f"an as_strided view of a written tensor of shape {tuple(old.shape)}, whose new value is laid "
                "out otherwise", "capture", "take the view with the tensor's own view ops (slicing, view, t)")
        return (args[0], args[1], args[2] + shift, *args[3:])

    def _strided_source(self, root: fx.Node, args: tuple) -> Any:
        """What ``as_strided(*args)`` (its tensor read, then sizes, strides, offset) is taken over:
        the root's current value where the offset is given (see `_strided_args`); the tensor read
        where it is not (the view then keeps that tensor's own offset)."""
        if len(args) < 4 or args[3] is None:
            return args[0]
        return self.root_value[root]

    def _replay(self, func, value, args, index):
        new_args = _map_args(self._read_arg, args)
        out = self.emit(func, value, *new_args)
        if index is not None:
            getter = self._append(ops.GETITEM, (out, index))
            getter.meta["val"] = out.meta["val"][index]
            return getter
        return out

    def _read_arg(self, a):
        return self.read(a) if isinstance(a, fx.Node) else a

    def _read_arg_or_size(self, a):
        if isinstance(a, fx.Node) and isinstance(a.meta.get("val"), SYMBOLIC_TYPES):
            return a.meta["val"]
        return self._read_arg(a)

    # ---- tracking roots --------------------------------------------------------
    def new_root(self, old_node: fx.Node, value: fx.Node):
        self.env[old_node] = value
        self.alias[old_node] = _Alias(old_node, (), 0)
        self.root_value[old_node] = value
        self.root_version[old_node] = 0

    def new_view(self, old_node: fx.Node, base: fx.Node, func, args, index, value):
        base_info = self.alias[base]
        chain = base_info.chain + ((func, args, index, old_node),)
        self.alias[old_node] = _Alias(base_info.root, chain, self.root_version[base_info.root])
        self.env[old_node] = value

    # ---- the walk --------------------------------------------------------------
    def fresh_outputs(self, old: list, new: list) -> list:
        """`new` (the values of the outputs `old`), with a copy where a value is (a view of) an
        input, or of another output, while eager's output has memory of its own: a copy into a
        tensor of the same layout is functionalized as its source (``y = torch.empty_like(x);
        y.copy_(x); return y``), so the graph would hand out the input, or the other output, and
        the caller's writes into it would reach them. Outputs that alias an input in eager are
        rebuilt from it by the runtime (no copy)."""
        inputs = {_storage(n.meta["val"]) for n in self.new.nodes
                  if n.op == "placeholder" and isinstance(n.meta.get("val"), torch.Tensor)}
        holder: dict = {}  # root node of a new value -> storage of eager's first output that returns it
        result = []
        for old_node, new_node in zip(old, new):
            old_val = old_node.meta.get("val") if isinstance(old_node, fx.Node) else None
            if isinstance(old_val, torch.Tensor) and isinstance(new_node, fx.Node):
                eager, root = _storage(old_val), memory_root(new_node)
                if eager not in inputs and not self._views_an_input(old_node) \
                        and (root.op == "placeholder" or holder.get(root, eager) != eager):
                    new_node = self._copied(new_node, old_val)
                    root = new_node
                holder.setdefault(root, eager)
            result.append(new_node)
        return result

    def _views_an_input(self, old_node: fx.Node) -> bool:
        """Whether eager's `old_node` is (a view of) an input's memory: the program sees an input
        that requires grad and has history as a copy of its own (`capture.inputs.program_inputs`),
        so the memory of its fake is not the placeholder's."""
        info = self.alias.get(old_node)
        return info is not None and info.root.op == "placeholder"

    def _copied(self, value: fx.Node, like: torch.Tensor) -> fx.Node:
        """A copy of `value` in memory of its own, laid out as `like`."""
        copied = self.emit(aten.clone.default, value)
        if has_symbolic_sizes(like) or layout_of(copied.meta["val"])[:2] == layout_of(like)[:2]:
            return copied
        empty = self.emit(aten.empty_strided.default, list(like.shape), list(like.stride()), dtype=like.dtype,
                          device=like.device)
        return self.emit(aten.copy.default, empty, value)

    def run(self) -> tuple[fx.Node, dict]:
        output_node = None
        for node in self.old.nodes:
            self.source_meta = _inherited(node)
            if node.op in ("placeholder", "get_attr"):
                copy = self.new.node_copy(node, lambda n: n)
                self.new_root(node, copy)
            elif node.op == "output":
                output_node = node
            elif node.target is ops.GETITEM:
                self._getitem(node)
            else:
                self._call(node)
            self._note_sizes(node)
        return output_node

    def _note_sizes(self, node: fx.Node) -> None:
        """Make the symbolic sizes `node` defines readable by later emitted nodes: its value
        (a size the program computed), or its layout (an input, an unbacked size's tensor)."""
        value = self.env.get(node)
        if not isinstance(value, fx.Node):
            return
        fake = value.meta.get("val")
        if isinstance(fake, SYMBOLIC_TYPES):
            self.symbols.note_node(value)
        elif isinstance(fake, torch.Tensor) and (node.op == "placeholder" or "unbacked_bindings" in node.meta) \
                and has_symbolic_sizes(fake):
            self.symbols.add_input(value, fake)

    def _getitem(self, node):
        source, index = node.args
        if isinstance(self.env.get(source), _Tuple):  # result of a multi-output mutating op
            self.new_root(node, self.env[source][index])
            return
        func = source.target
        if getattr(func, "is_view", False):
            value = self._append(ops.GETITEM, (self.env[source], index))
            value.meta["val"] = node.meta["val"]
            view_args = source.args[1:]
            self.new_view(node, source.args[0], func, view_args, index, value)
        else:
            value = self._append(ops.GETITEM, (self.env[source], index))
            value.meta["val"] = node.meta["val"]
            self.new_root(node, value)

    def _call(self, node):
        func = node.target
        if isinstance(func, HigherOrderOperator):  # a region or control flow node: functional subgraphs
            value = self._append(func, _map_args(self._read_arg, node.args), _map_args(self._read_arg, node.kwargs))
            value.meta = dict(node.meta)
            self.new_root(node, value)
            return
        if not isinstance(func, OpOverload) and _computes_a_size(node):  # (operator.mul on SymInts): as it is
            value = self._append(func, _map_args(self._read_arg, node.args), _map_args(self._read_arg, node.kwargs))
            value.meta = dict(node.meta)
            self.new_root(node, value)
            return
        if not isinstance(func, OpOverload):
            raise UnsupportedOp(f"{func} is not an ATen op", "capture", "report this program to aotgraph")
        if func._schema.is_mutable:
            self._mutation(node)
            return
        args = _map_args(self._read_in_layout, node.args)
        kwargs = _map_args(self._read_in_layout, node.kwargs)
        if func is aten.as_strided.default and not kwargs and node.args[0] in self.alias:
            root = self.alias[node.args[0]].root
            args = (self._strided_source(root, args), *self._strided_args(root, args[1:], node, writes=False))
        value = self._append(func, args, kwargs)
        value.meta = dict(node.meta)
        if func in _RECORDED_ONLY_WHEN_COPYING or (func.is_view and not isinstance(node.args[0], fx.Node)):
            self.new_root(node, value)  # (the latter: a view of a constant, ``_conj(1j)`` of a complex scalar)
        elif func.is_view and _is_single_tensor(node):
            self.new_view(node, node.args[0], func, node.args[1:], None, value)
        elif func.is_view:
            self.env[node] = value  # multi-output view: its getitems register themselves
        else:
            self.new_root(node, value)

    def _mutation(self, node):
        func = node.target
        if func is aten.set_.source_Tensor:
            self._set_storage(node)
            return
        if ops.is_metadata_mutation(func):
            base = node.args[0]
            view_func, view_args = ops.view_of_inplace_view(func, tuple(node.args[1:]), base.meta["val"].dim())
            read_args = _map_args(self._read_arg, view_args)
            source = self.read(base)
            if view_func is aten.as_strided.default and base in self.alias:
                root = self.alias[base].root
                read_args = self._strided_args(root, tuple(read_args), node, writes=False)
                source = self._strided_source(root, (source, *read_args))
            value = self.emit(view_func, source, *read_args)
            self.new_view(node, base, view_func, view_args, None, value)
            return
        twin = ops.multi_mutation_twin(func)
        if twin is not None:
            refusal = ops.twin_refusal(func, _map_args(_val, node.args), _map_args(_val, node.kwargs))
            if refusal is not None:
                raise UnsupportedOp(refusal, "capture", "run the model once eagerly before compiling it (a "
                                    "calibration or warm-up batch), so that its observers have their sizes")
            twin_func, written, num_outputs = twin
            args = _map_args(self._read_arg, node.args)
            kwargs = _map_args(self._read_arg, node.kwargs)
            result = self.emit(twin_func, *args, **kwargs)
            outputs = []
            for i in range(num_outputs):
                getter = self._append(ops.GETITEM, (result, i))
                getter.meta["val"] = result.meta["val"][i]
                outputs.append(getter)
            if _is_single_tensor(node):
                self.new_root(node, outputs[0])
            else:
                self.env[node] = _Tuple(outputs)
            for position, out_index in written.items():
                getter = self._append(ops.GETITEM, (result, out_index))
                getter.meta["val"] = result.meta["val"][out_index]
                self._write(node.args[position], getter)
            return
        out_twin = ops.out_variant_twin(func)
        if out_twin is not None:
            self._out_variant(node, *out_twin)
            return
        positions = ops.mutated_arg_positions(func)
        target = node.args[positions[0]] if positions and positions[0] < len(node.args) else None
        twin_func = ops.functional_twin(func)
        if positions == (0,) and twin_func is not None and isinstance(target, (list, tuple)):
            self._foreach_mutation(node, twin_func)
            return
        if (positions != (0,) or twin_func is None) and func.namespace != "aten":
            self._auto_functionalized(node)
            return
        if positions != (0,) or twin_func is None:
            raise UnsupportedOp(
                f"{func} mutates its arguments and has no functional twin aotgraph knows",
                "capture",
                "use the out-of-place form of this op in the compiled function",
            )
        args = _map_args(self._read_arg, ops.with_default_args(func, node.args))
        kwargs = _map_args(self._read_arg, node.kwargs)
        if func is aten.copy_.default and _same_layout(node.args[1], target):
            new_value = args[1]  # copying a value of the same layout: the new value is the source
        else:
            new_value = self.emit(twin_func, *args, **kwargs)
        new_val, target_val = new_value.meta["val"], target.meta["val"]
        same_shape = len(new_val.shape) == len(target_val.shape) and all(map(known_equal, new_val.shape,
                                                                             target_val.shape))
        if func in _RESIZES and not same_shape:
            raise UnsupportedOp(
                f"{func} changes the shape of {target.name} in place, from {tuple(target_val.shape)} to "
                f"{tuple(new_val.shape)}, which aotgraph does not capture yet", "capture",
                "resize it outside the compiled function, or make a new tensor of the new shape (x.new_empty(...))")
        if not same_shape or new_val.dtype != target_val.dtype:
            # (expand, then the copy: torch's expand_copy takes no symbolic sizes on fakes; also
            # where the shapes are equal but that is not known without a guard: data-dependent)
            new_value = self.emit(aten.expand.default, new_value, list(target_val.shape))
            new_value = self.emit(aten._to_copy.default, new_value, dtype=target_val.dtype)
        one_value = _writes_one_value(func, node.args, node.kwargs) or (
            func is aten.copy_.default and _ONE_VALUE_WRITES.get(node.meta.get("original_aten"), False) is None)
        self._write(target, new_value, one_value=one_value)  # (the latter: a copy_ a decomposition of fill_ made)
        info = self.alias[target]
        self.alias[node] = _Alias(info.root, info.chain, self.root_version[info.root])
        self.env[node] = self.env[target]

    def _foreach_mutation(self, node, twin_func):
        """An in-place foreach op (``_foreach_mul_(tensors, c)``, an optimizer's or
        ``clip_grad_norm_``'s): its out-of-place twin computes the list's new values, each
        written into its tensor. Where tensors of the list share memory (the same tensor twice
        included), eager's loop writes them one after another, each reading the writes before
        it: so is the twin emitted per tensor there."""
        targets = list(node.args[0])
        args = ops.with_default_args(node.target, node.args)
        roots = [self.alias[t].root for t in targets]
        groups = [range(len(targets))] if len(set(roots)) == len(roots) else [[i] for i in range(len(targets))]
        kwargs = _map_args(self._read_arg, node.kwargs)
        for indices in groups:
            part = [_map_args(self._read_arg, _foreach_part(a, indices, len(targets))) for a in args]
            result = self.emit(twin_func, *part, **kwargs)
            for k, i in enumerate(indices):
                value = self._append(ops.GETITEM, (result, k))
                value.meta["val"] = result.meta["val"][k]
                target_val = targets[i].meta["val"]
                if value.meta["val"].dtype != target_val.dtype:  # (an integer list scaled by a float, say)
                    value = self.emit(aten._to_copy.default, value, dtype=target_val.dtype)
                self._write(targets[i], value)
        self.env[node] = None  # (it returns nothing)

    def _auto_functionalized(self, node):
        """A custom op that writes its arguments (``torch.library.custom_op(mutates_args=...)``):
        ``auto_functionalized(op, **arguments)`` computes ``(*op results, *new values of the
        written arguments)`` out of place, as torch's functionalization records it; each new value
        is written back into its argument."""
        func = node.target
        schema = func._schema
        named = dict(zip((a.name for a in schema.arguments), ops.with_default_args(func, node.args)))
        named.update(node.kwargs)
        written = [a.name for a in schema.arguments if a.alias_info is not None and a.alias_info.is_write]
        if not all(isinstance(named.get(name), fx.Node) for name in written):
            raise UnsupportedOp(f"{func} writes an argument that is not a single tensor", "capture",
                                "write single tensors in the custom op, or call it outside the compiled function")
        result = self._append(ops.AUTO_FUNCTIONALIZED, (func,), _map_args(self._read_arg, named))
        with self.fake_outputs.fake_mode, torch.no_grad():
            result.meta["val"] = ops.AUTO_FUNCTIONALIZED(func, **_map_args(_val, named))
        num_results = len(result.meta["val"]) - len(written)
        values = []
        for index in range(len(result.meta["val"])):
            getter = self._append(ops.GETITEM, (result, index))
            getter.meta["val"] = result.meta["val"][index]
            values.append(getter)
        for name, value in zip(written, values[num_results:]):
            self._write(named[name], value)
        tensors = [v for v in values[:num_results] if isinstance(v.meta["val"], torch.Tensor)]
        if _is_single_tensor(node) and tensors:
            self.new_root(node, tensors[0])
        else:
            self.env[node] = _Tuple(values[:num_results])

    def _set_storage(self, node):
        """``x.set_(y)``: from here on `x` is an alias of `y` (writes through either reach the other).
        On an input of the compiled function (or the input as an earlier ``set_`` left it), the
        runtime hands its final value to the caller's tensor with ``set_``; on an intermediate or a
        view, only the program sees it: `x` takes `y`'s place among the aliases (views of `x`
        taken before keep the old memory, as eager's do). Gradients are `storage_changes`' concern
        (autograd has no derivative for ``set_``: it is captured under no_grad or without grad)."""
        target, source = node.args[0], node.args[1]
        info = self.alias[target]
        input_node = self.set_input.get(target, info.root if info.root.op == "placeholder" and not info.chain else None)
        if input_node is not None:
            if input_node.name not in self.storage_replaced:
                self.storage_replaced.append(input_node.name)
            self.set_input[node] = input_node
        source_info = self.alias[source]
        self.alias[node] = _Alias(source_info.root, source_info.chain, source_info.version)
        self.env[node] = self.env[source]

    def _out_variant(self, node, twin_func, out_names):
        """``op.out(..., out=buf)``: compute ``op(...)`` and write each result into its buffer."""
        args = _map_args(self._read_arg, node.args)
        kwargs = _map_args(self._read_arg, {k: v for k, v in node.kwargs.items() if k not in out_names})
        result = self.emit(twin_func, *args, **kwargs)
        values = [result]
        if len(out_names) > 1:
            values = []
            for i in range(len(out_names)):
                getter = self._append(ops.GETITEM, (result, i))
                getter.meta["val"] = result.meta["val"][i]
                values.append(getter)
        for name, value in zip(out_names, values):
            target = node.kwargs[name]
            if tuple(value.meta["val"].shape) != tuple(target.meta["val"].shape):
                raise UnsupportedOp(
                    f"{node.target} resizes its out= tensor, which aotgraph does not functionalize",
                    "capture", "use the op without out=, or pass an out= tensor of the result's shape")
            self._write(target, value)
        if len(out_names) == 1:
            info = self.alias[node.kwargs[out_names[0]]]
            self.alias[node] = _Alias(info.root, info.chain, self.root_version[info.root])
            self.env[node] = values[0]
        else:
            self.env[node] = _Tuple(values)

    def _write(self, target: fx.Node, new_value: fx.Node, one_value: bool = False):
        """Make `new_value` the value of `target`, propagating into its root. `one_value`: the op
        writes one value wherever it writes (`_writes_one_value`), which eager allows into a view
        that overlaps itself."""
        info = self.alias[target]
        if _overlaps_itself(target.meta["val"]) and any(link[0] is aten.expand.default for link in info.chain) \
                and not (one_value and not target.meta["val"].is_complex()):
            raise UnsupportedOp(  # eager raises too ("more than one element ... refers to a single memory location")
                "an in-place op writes a view of an expanded tensor in which several elements share one memory "
                "location", "capture", "clone() the expanded tensor before writing into it, as eager asks")
        value = new_value
        for k in range(len(info.chain) - 1, -1, -1):
            func, args, index, view_node = info.chain[k]
            # An as_strided view's offset counts from the start of the memory, which the root's value
            # starts: its write goes into the root itself, not into each view between. (A scatter into
            # a view at an offset is eager's `clone_preserve_strides`, where Inductor's lowering
            # clones the view afresh and reads the offset there, out of bounds: seed 12504;
            # and a view written through itself is a tensor of its own, which starts at the view's
            # first element: seed 26479, one element over.)
            # A root that is not contiguous keeps the way through the views (torch's scatter into it
            # would need a contiguous one where it requires grad: seed 1802), the parent made again
            # from the root at its own offset.
            strided_view_of_view = func is aten.as_strided.default and k > 0
            into_root = strided_view_of_view and _contiguous_value(info.root)
            parent = info.root if into_root else info.chain[k - 1][3] if k > 0 else info.root
            parent_value = self.read_as_view(parent) if strided_view_of_view and not into_root else self.read(parent)
            parent_val = parent.meta["val"]
            # sizes as their symbolic values, for the rules' arithmetic (a split's offsets); `emit` reads them back
            read_args = _map_args(self._read_arg_or_size, args)
            if func is aten.as_strided.default:
                read_args = self._strided_args(info.root, read_args, view_node, writes=True)
            if index is None:
                rule = ops.SCATTER_RULES.get(func)
                value = rule(self.emit, parent_value, value, read_args, parent_val, None) if rule else None
            else:
                value = ops.scatter_multi_output(self.emit, func, parent_value, value, read_args, index, parent_val)
            if value is None:
                raise UnsupportedOp(
                    f"an in-place op writes through a view made by {func}, which aotgraph cannot write back",
                    "capture",
                    "clone the view before mutating it, or mutate the base tensor directly",
                )
            if into_root:
                break
        if isinstance(value, fx.Node):
            value = self._in_root_layout(info.root, value)
        self.root_value[info.root] = value
        self.root_version[info.root] += 1
        self.env[target] = new_value if info.chain else value
        info.version = self.root_version[info.root]

    def _in_root_layout(self, root: fx.Node, value: fx.Node) -> fx.Node:
        """A root's new value in the root's own layout: an in-place op keeps its target's strides,
        but its functional twin (``masked_fill_`` on a transposed tensor) or the scatter of a view
        it wrote through may lay the value out afresh; eager's root keeps them, and later views
        and ops read them."""
        new_val, old_val = value.meta.get("val"), root.meta.get("val")
        if not isinstance(new_val, torch.Tensor) or not isinstance(old_val, torch.Tensor) \
                or tuple(new_val.shape) != tuple(old_val.shape) or new_val.dtype != old_val.dtype \
                or not _strides_differ(new_val, old_val) or _overlaps_itself(old_val):
            return value
        return self.emit(aten.copy.default, self.root_value[root], value)


def _known_within(layout: tuple, value: torch.Tensor) -> bool:
    """Whether the as_strided layout (sizes, strides, offset) reads only positions below
    `value`'s element count for every value of the symbols (a scatter of it into `value` stays in
    bounds), asked without a guard: torch's check of that would raise where it is not known."""
    sizes, strides, offset = layout
    if any(not isinstance(s, int) or s < 0 for s in strides):
        return False
    if any(type(n) is int and n == 0 for n in sizes):
        return True
    last = offset + sum((n - 1) * s for n, s in zip(sizes, strides))
    return known_at_most(last + 1, value.numel())


def _storage(value: torch.Tensor):
    return StorageWeakRef(value.untyped_storage())


def _strides_differ(value: torch.Tensor, target: torch.Tensor) -> bool:
    """Whether `value`'s strides differ from `target`'s (same shape) in a dimension of more than
    one element. With symbolic sizes, compared as expressions without a guard: strides not the
    same expression differ (``masked_fill_`` of a transposed input, whose twin lays out afresh)."""
    if has_symbolic_sizes(value) or has_symbolic_sizes(target):
        return any(size != 1 and a != b for size, a, b in zip(size_keys(tuple(target.shape)), size_keys(value.stride()),
                                                             size_keys(target.stride())))
    return any(size > 1 and a != b for size, a, b in zip(target.shape, value.stride(), target.stride()))


def _addresses_within(base: torch.Tensor, view: torch.Tensor) -> bool:
    """Whether every memory location `view` (concrete sizes) reads is one of `base`'s elements."""
    if view.numel() == 0:
        return True
    if base.numel() == 0 or min(view.stride(), default=0) < 0 or min(base.stride(), default=0) < 0:
        return False
    low, high = view.storage_offset(), view.storage_offset() + _last_offset(view)
    base_low, base_high = base.storage_offset(), base.storage_offset() + _last_offset(base)
    if low < base_low or high > base_high:
        return False
    if base_high - base_low + 1 == base.numel() and not _overlaps_itself(base):
        return True  # the base fills its span: every location inside it is an element
    if view.numel() > 1 << 16 or base.numel() > 1 << 16:
        return False
    return storage_positions(*layout_of(view)) <= storage_positions(*layout_of(base))


def _last_offset(value: torch.Tensor) -> int:
    return sum((size - 1) * stride for size, stride in zip(value.shape, value.stride()))


# In-place ops that write one value wherever they write, given a scalar (or a one-element tensor)
# as that value (its argument's position and name, None where the op takes no tensor value); eager
# runs them on a tensor some of whose elements share memory (an expanded one). (Not ``fill_.Tensor``,
# nor ``copy_``: eager checks those for overlap and refuses.)
_ONE_VALUE_WRITES = {aten.fill_.Scalar: None, aten.zero_.default: None, aten.masked_fill_.Scalar: None,
                     aten.masked_fill_.Tensor: (2, "value"), aten.index_put_.default: (2, "values")}


def _writes_one_value(func, args: tuple, kwargs: dict) -> bool:
    """Whether the in-place op `func` on these (graph) arguments writes a single value."""
    if func not in _ONE_VALUE_WRITES:
        return False
    if func is aten.index_put_.default and (args[3] if len(args) > 3 else kwargs.get("accumulate", False)):
        return False  # (accumulating: each copy adds)
    if _ONE_VALUE_WRITES[func] is None:
        return True
    position, name = _ONE_VALUE_WRITES[func]
    value = args[position] if len(args) > position else kwargs.get(name)
    val = value.meta.get("val") if isinstance(value, fx.Node) else value
    return not isinstance(val, torch.Tensor) or known_equal(val.numel(), 1)  # (unknown: data-dependent sizes)


def _contiguous_value(node: fx.Node) -> bool:
    """Whether `node`'s value is known contiguous; with symbolic sizes, where its strides are the
    contiguous strides of its sizes as expressions (asked without a guard)."""
    value = node.meta.get("val")
    if not isinstance(value, torch.Tensor):
        return False
    if not has_symbolic_sizes(value):
        return value.is_contiguous()
    return size_keys(value.stride()) == size_keys(contiguous(tuple(value.shape))[0])


def _overlaps_itself(value: torch.Tensor) -> bool:
    """Whether some memory location backs two elements of `value` (`torch._debug_has_internal_overlap`
    answers 1; 2, too hard to tell, counts as no, as eager's check does)."""
    return not has_symbolic_sizes(value) and torch._debug_has_internal_overlap(value) == 1


class _Tuple(tuple):
    """The new nodes standing for a multi-output mutating op's results (read by getitem)."""


def _same_layout(a: Any, b: fx.Node) -> bool:
    """Whether node `a`'s value has `b`'s layout for every value of their symbolic sizes (no
    guard is taken for it: a copy between layouts equal only at the hints, or of data-dependent
    sizes, stays a copy)."""
    if not isinstance(a, fx.Node):
        return False
    x, y = a.meta["val"], b.meta["val"]
    return (x.dtype == y.dtype and x.device == y.device and x.dim() == y.dim()
            and all(known_equal(p, q) for p, q in zip((*x.shape, *x.stride()), (*y.shape, *y.stride()))))


def _inherited(node: fx.Node) -> dict:
    meta = node.meta
    return {k: meta[k] for k in INHERITED if k in meta}


def _foreach_part(argument: Any, indices, length: int) -> Any:
    """A foreach op's `argument` for the tensors at `indices`: a list (of tensors or scalars, one
    per tensor) cut to them; any other argument as it is."""
    if isinstance(argument, (list, tuple)) and len(argument) == length:
        return [argument[i] for i in indices]
    return argument


def _is_single_tensor(node: fx.Node) -> bool:
    return isinstance(node.meta.get("val"), torch.Tensor)


def _val(a):
    return a.meta["val"] if isinstance(a, fx.Node) else a


_CONTAINERS = (tuple, list, dict)


def _map_args(fn, value):
    """`fn` on every leaf of fx node arguments (nested tuples, lists, dicts): a cheaper tree_map.
    Leaves are mapped in place of a recursive call (most arguments are flat)."""
    if isinstance(value, tuple):
        return tuple([_map_args(fn, v) if isinstance(v, _CONTAINERS) else fn(v) for v in value])
    if isinstance(value, list):
        return [_map_args(fn, v) if isinstance(v, _CONTAINERS) else fn(v) for v in value]
    if isinstance(value, dict):
        return {k: _map_args(fn, v) if isinstance(v, _CONTAINERS) else fn(v) for k, v in value.items()}
    return fn(value)


def _call(func, args, kwargs):
    return func(*args, **kwargs)


def functionalize(
    graph: fx.Graph, fake_outputs: FakeOutputs, final_nodes: dict[str, fx.Node], layout_changed: tuple[str, ...] = ()
) -> FunctionalGraph:
    """Functionalize `graph` (its output node is copied with reads made current).

    `final_nodes` maps placeholder names to the old node each input is bound to at the
    end of the program (differs from the placeholder after an in-place op on it);
    `layout_changed` names the inputs whose sizes or strides the program changed in place.
    New nodes get their fake values from the capture's `fake_outputs` memo.
    """
    walker = _Functionalizer(graph, fake_outputs)
    output_node = walker.run()
    placeholders = {n.name: n for n in graph.nodes if n.op == "placeholder"}
    data_mutated, metadata_mutated, final_value_of = [], [], {}
    for name, placeholder in placeholders.items():
        if walker.root_version[placeholder] > 0:
            data_mutated.append(name)
            final_value_of[name] = walker.root_value[placeholder]
        if name in walker.storage_replaced:
            metadata_mutated.append(name)
            final_value_of[name + ".view"] = walker.read(final_nodes[name])
        elif name in layout_changed:
            metadata_mutated.append(name)
            final_value_of[name + ".view"] = walker.read_as_view(final_nodes[name])
    # A new value that is another written input's memory (``d.copy_(a)`` is functionalized as
    # ``a``) gets memory of its own: the runtime writes the inputs back one by one, and ``a``'s
    # write would reach ``d``'s value before it is read (seed 16374: ``d.copy_(a); a.fill_(3)``).
    for name in data_mutated:
        source = memory_root(final_value_of[name])
        if source.op == "placeholder" and source.name != name and source.name in data_mutated:
            final_value_of[name] = walker._copied(final_value_of[name], placeholders[name].meta["val"])
    user_outs, *rest = output_node.args[0]
    # (then the gradients, and the bases that outputs are rebuilt from: read as the outputs are,
    # in their own layout)
    groups = [tuple(user_outs), *(tuple(group) for group in rest[1:])]
    fresh = iter(walker.fresh_outputs([n for group in groups for n in group],
                                      [walker.read_output(n) for group in groups for n in group]))
    groups = [tuple(next(fresh) for _ in group) for group in groups]
    outputs = (groups[0], *_map_args(walker._read_arg, tuple(rest[:1])), *groups[1:])
    walker.new.output(outputs)
    storage_source = {name: walker.alias[final_nodes[name]].root.name for name in walker.storage_replaced
                      if walker.alias[final_nodes[name]].root.op == "placeholder"}
    return FunctionalGraph(walker.new, tuple(data_mutated), tuple(metadata_mutated), final_value_of,
                           tuple(walker.storage_replaced), storage_source)


def _computes_a_size(node: fx.Node) -> bool:
    """A size computation recorded with symbolic sizes (``operator.mul`` of SymInts, ``sym_max``):
    a Python function whose result is a number, which writes nothing."""
    return callable(node.target) and isinstance(node.meta.get("val"), (*SYMBOLIC_TYPES, int, float, bool))
