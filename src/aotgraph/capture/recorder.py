"""Record every ATen op of one fake-tensor run into an fx graph.

`GraphRecorder` is a dispatch mode that sits *below* autograd and *above* the fake
tensor mode: autograd decides what the backward computes, the fake mode computes
shapes, and the recorder writes each op down once. Forward and backward are recorded
in the same walk. Tensors are tracked by identity; an op that returns its input
(in-place ops) rebinds that tensor to the new node, so later readers see the new value.
"""
from __future__ import annotations

import functools
import operator
import os
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import torch
import torch.fx as fx

from .. import config
from ..errors import DataDependentControlFlow, OpRefused, UnsupportedOp, fake_tensor_failure
from ..graph.fx_args import set_args
from ..graph.ops import bytes_needed, op_facts
from ..graph.sizes import SYMBOLIC_TYPES, has_symbolic_sizes, known_equal, layout_of
from ..torch_private.dispatch import HigherOrderOperator, OpOverload, TorchDispatchMode
from ..torch_private.fake import (DataDependentOutputException, DynamicOutputShapeException, FakeTensor, FakeTensorMode,
                                  UnsupportedOperatorException)
from ..torch_private.subclasses import is_traceable_wrapper_subclass, is_traceable_wrapper_subclass_type
from .fake_outputs import FakeOutputs
from .functional_ops import functional_twin, is_metadata_mutation, mutated_arg_positions, with_default_args
from .higher_order import unsupported_hop
from .node_meta import NodeMeta
from .random_draws import RandomDraws
from .symbols import SymbolNodes

aten = torch.ops.aten
_DEVICE_QUERY = torch.ops.prim.device.default
_LAYOUT_QUERIES = {aten.size.default: lambda t: tuple(t.shape), aten.stride.default: lambda t: tuple(t.stride()),
                   aten.storage_offset.default: lambda t: t.storage_offset()}
# Ops that give a tensor other memory: legal on a tensor whose storage is freed.
_STORAGE_SETS = frozenset((aten.set_.source_Tensor, aten.set_.source_Storage, aten.set_.source_Storage_storage_offset,
                           aten.set_.default))

# Ops whose eager kernel mutates an argument that its schema does not mark as written.
# Each is recorded as an op with the same results whose schema states the mutation.
_HIDDEN_MUTATION_REWRITES: dict[Any, Callable] = {}


def _batch_norm_with_declared_mutation(input, weight, bias, running_mean, running_var, training, momentum, eps):
    if running_mean is None or running_var is None:
        return aten._native_batch_norm_legit.no_stats(input, weight, bias, training, momentum, eps)
    return aten._native_batch_norm_legit.default(input, weight, bias, running_mean, running_var, training, momentum, eps)


_HIDDEN_MUTATION_REWRITES[aten.native_batch_norm.default] = _batch_norm_with_declared_mutation


def _dropout_all_like_eager(input, p, train):
    """Eager's CPU dropout with p == 1 multiplies by zero and draws nothing; the traced
    decomposition calls native_dropout, whose kernel would draw. Other cases: as recorded."""
    if not (train and p == 1):
        return NotImplemented
    return input * torch.zeros((), dtype=input.dtype, device=input.device), torch.zeros_like(input, dtype=torch.bool)


# Ops whose traced form would draw random numbers where eager's kernel does not.
_EAGER_RNG_REWRITES: dict[Any, Callable] = {aten.native_dropout.default: _dropout_all_like_eager}


def _masked_select_of_broadcast_operands(input, mask):
    """masked_select's fake kernel bounds its result's length by the input's element count, not
    by the shape input and mask broadcast to (torch 2.11-2.13): with a mask that broadcasts the
    input, the bound is too small, and Inductor's runtime assert of it fails (``u0 <= 10`` for 49
    elements selected). Recorded on the operands expanded to their common shape, as eager's
    kernel broadcasts them; already of one shape: as recorded."""
    shape = torch.broadcast_shapes(input.shape, mask.shape)
    if input.shape == shape and mask.shape == shape:
        return NotImplemented
    return aten.masked_select.default(input.expand(shape), mask.expand(shape))


def _take_without_a_value_read(input, index):
    """torch's decomposition of take (Inductor's table has it) indexes in Python,
    ``input.reshape(-1)[index]``, which reads a 0-d index's value (``.item()``) where eager's
    kernel reads none: recorded as the advanced indexing that means. Other indices: as recorded."""
    if index.dim() != 0:
        return NotImplemented
    return aten.index.Tensor(input.reshape(-1), [index])


# Ops whose fake kernel bounds an unbacked output size more tightly than eager's kernel allows,
# or whose decomposition reads a tensor's value where eager's kernel does not.
_DATA_DEPENDENT_REWRITES: dict[Any, Callable] = {aten.masked_select.default: _masked_select_of_broadcast_operands,
                                                 aten.take.default: _take_without_a_value_read}


class GraphRecorder(TorchDispatchMode):
    """Writes each dispatched op into `graph`, running it on fake tensors.

    Invariants: every tensor the program touches maps to exactly one live node
    (`node_of`); every node has ``meta["val"]``; real tensors that the program
    closes over become ``get_attr`` constants held in `constants`.
    """

    # A higher-order operator that no rule of `higher_order.HigherOrderCalls` answered reaches
    # `__torch_dispatch__` (not torch's NotImplementedError), which refuses it by name.
    supports_higher_order_operators = True

    def __init__(self, fake_mode: FakeTensorMode, decompositions: Mapping | None = None,
                 fake_outputs: FakeOutputs | None = None):
        super().__init__()
        self.fake_mode = fake_mode
        # out= overloads are left to functionalization (their functional twin), as torch does:
        # tables register decompositions per op, and those do not all take ``out``.
        self.decompositions = {op: fn for op, fn in (decompositions or {}).items() if not _writes_out(op)}
        self.graph = fx.Graph()
        self.constants: dict[str, Any] = {}  # tensors the program closes over, generators it passes, subgraphs
        self.subgraph_nodes: dict[str, fx.Node] = {}  # name -> its get_attr node (`regions.record_call`)
        self.node_of: dict[int, fx.Node] = {}
        self.saw_mutation = False
        self._fake_of_constant: dict[int, FakeTensor] = {}
        # An enclosing capture's memo (a region's capture) where it is of the same fake mode.
        shared = fake_outputs is not None and fake_outputs.fake_mode is fake_mode
        self.fake_outputs = fake_outputs if shared else FakeOutputs(fake_mode)
        # The caller's RNG state is restored (and seeding unpatched) by `random_draws.restore()`.
        self.random_draws = RandomDraws(self._record_seeding)
        # The program's op that the ops being recorded decompose from (None: not inside a
        # decomposition). Each node's ``meta["original_aten"]``: Inductor names its kernels
        # after these (``triton_poi_fused_native_layer_norm_...``), as it does torch.compile's.
        self._decomposing = None
        self._in_place_decompositions: dict[Any, Optional[Callable]] = {}  # see `_in_place_decomposition`
        self._composite_decomposing: dict[tuple, bool] = {}  # (op, device type) -> see `_composite_decomposes`
        self._composite_kernels_kept = config.enabled("composite_kernels_kept")
        # ids of the tensors the decomposition under way made and did not view (`_in_place_on_fresh`)
        self._fresh_in_decomposition: set[int] = set()
        self._fresh_twins: dict[Any, Optional[Callable]] = {}  # in-place op -> its twin, where one applies
        self._in_place_on_fresh_on = config.enabled("in_place_on_fresh")
        self.node_meta = NodeMeta()  # stack_trace, seq_nr, nn_module_stack, source_fn_stack of each op
        self.symbols = SymbolNodes(self.graph, fake_mode.shape_env)  # the nodes of symbolic sizes ops read
        # The inputs' storage resizes (`storage_changes.InputStorageResizes`): ops on a freed input are refused.
        self.storage_resizes: Any = None
        self.input_view_bases: dict[int, int] = {}  # id(the base fake of a view input, not an input) -> position
        # id(view) -> (view, its base's layout then), of views taken before an in-place layout
        # change of their base (`_snapshot_layout`).
        self._stale_views: dict[int, tuple] = {}
        # The same for views that required no grad then: a write with gradients into one of
        # them makes autograd record it over the base's new layout (`_refuse_writes_into_stale_views`).
        self._stale_views_without_grad: dict[int, tuple] = {}
        self._view_relaid = False  # some view requiring grad changed its layout in place (`_refuse_stale_view_writes`)
        self._relaid: set[int] = set()  # ids of the tensors relaid in place, and of their bases (`_refuse_failed_replay`)

    # ---- building the graph -------------------------------------------------
    def add_placeholder(self, name: str, fake: torch.Tensor) -> fx.Node:
        node = self.graph.placeholder(name)
        node.meta["val"] = fake
        if has_symbolic_sizes(fake):
            self.symbols.add_input(node, fake)
        # The same tensor passed twice reads through its first placeholder.
        self.node_of.setdefault(id(fake), node)
        return node

    def node_for(self, value: Any) -> Any:
        """The node standing for `value` if it is a tensor or a symbolic value, else `value` itself."""
        if not isinstance(value, torch.Tensor):
            return self.symbols.node_for(value) if isinstance(value, SYMBOLIC_TYPES) else value
        node = self.node_of.get(id(value))
        if node is not None:
            return node
        if is_traceable_wrapper_subclass(value):
            raise UnsupportedOp(
                f"a {type(value).__name__} (a tensor subclass) would enter the graph as a value: only the compiled "
                "function's inputs and outputs are flattened to their inner tensors (here, likely, the gradient of a "
                f"plain input that meets a {type(value).__name__} input)",
                "capture",
                f"pass that input as a {type(value).__name__} too, or keep the mixing outside the compiled function",
            )
        if isinstance(value, FakeTensor) and id(value) in self.input_view_bases:
            position = self.input_view_bases[id(value)]
            raise UnsupportedOp(
                f"tensor input {position} is a view of a tensor that is not an input, and autograd needs that base "
                "(an in-place op wrote a value that requires grad into the view, which gives the base a history)",
                "capture", f"pass input {position} as a tensor of its own (.clone() or .contiguous() before the "
                "call), or pass its base and take the view inside the function")
        if isinstance(value, FakeTensor):
            raise UnsupportedOp(
                "a fake tensor reached an op without being produced by the traced program",
                "capture",
                "pass every tensor the function reads as an input, or create it inside the function",
            )
        return self._lift_constant(value)

    def _generator_node(self, generator: torch.Generator) -> fx.Node:
        """A ``get_attr`` node reading `generator` (a random op's ``generator=``): the graph draws
        from the caller's generator object itself at run time, advancing its state as eager does.
        (The compiled function is specialized to that object, as to any non-tensor input.)"""
        for name, constant in self.constants.items():
            if constant is generator:
                return self.graph.get_attr(name)
        name = f"_generator{len(self.constants)}"
        self.constants[name] = generator
        return self.graph.get_attr(name)

    def _lift_constant(self, real: torch.Tensor) -> fx.Node:
        if real.layout == torch.strided and real.untyped_storage().nbytes() < bytes_needed(real):
            raise UnsupportedOp(
                f"the program reads a tensor it closes over (not an input) whose memory was freed{_user_line()}",
                "capture", "resize its storage back (and fill it) before calling the compiled function")
        name = f"_tensor_constant{len(self.constants)}"
        self.constants[name] = real
        node = self.graph.get_attr(name)
        node.meta["val"] = self._fake_constant(real)
        self.node_of[id(real)] = node
        return node

    def _fake_constant(self, real: torch.Tensor) -> FakeTensor:
        fake = self._fake_of_constant.get(id(real))
        if fake is None:
            fake = self.fake_mode.from_tensor(real, static_shapes=True)
            self._fake_of_constant[id(real)] = fake
        return fake

    def _as_fake(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor) and not isinstance(value, FakeTensor):
            return self._fake_constant(value)
        return value

    # ---- the dispatch hook --------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is _DEVICE_QUERY and type(args[0]) is FakeTensor:
            # Autograd asks each fake tensor's device (most dispatches of a capture);
            # answer it here instead of passing it down to the fake mode.
            return args[0].fake_device
        layout_query = _LAYOUT_QUERIES.get(func)
        if layout_query is not None and isinstance(args[0], FakeTensor):
            # TorchScript's overloads a backward formula can call (masked_select's): the fake
            # mode's answer would turn symbolic sizes into ints and pin them.
            return layout_query(args[0])
        if func is _LOCAL_SCALAR_DENSE and type(args[0]) is FakeTensor:
            fixed = _fixed_value(args[0])
            if fixed is not None:
                return fixed
        for tensor_type in types:
            if tensor_type is not FakeTensor and is_traceable_wrapper_subclass_type(tensor_type):
                # A tensor subclass (DTensor): its own dispatch turns the op into ops on its
                # inner tensors, which come back here (see `subclasses`).
                return NotImplemented
        facts = hook_facts(func)
        kwargs = kwargs or {}
        if self._stale_views and torch.is_grad_enabled() and func not in _READS_WITHOUT_HISTORY:
            self._refuse_stale_views(func, args, kwargs)
        if facts.is_mutable and not facts.mutates_metadata and torch.is_grad_enabled():
            if self._view_relaid:
                self._refuse_stale_view_writes(func, args, kwargs)
            if self._stale_views_without_grad:
                self._refuse_writes_into_stale_views(func, args, kwargs)
            _refuse_writes_replayed_from_offset_bases(func, args, kwargs)
        if facts.is_mutable and torch.Tag.pointwise in func.tags:
            _refuse_narrowing_in_place(func, args, kwargs, self)
        decomposition = self.decompositions.get(func)
        if decomposition is None and facts.is_mutable and self.decompositions:
            decomposition = self._in_place_decomposition(func, facts)
        if facts.rewrite is not None or decomposition is not None or (facts.is_composite and self._composite_decomposes(func, args)):
            outer = self._decomposing
            self._decomposing = outer or func
            try:
                result = self._decompose(func, facts, decomposition, args, kwargs)
            except (RuntimeError, IndexError) as error:  # (a view replayed by a decomposition, as below)
                self._refuse_failed_replay(func, args, error)
                raise
            finally:
                self._decomposing = outer
                if outer is None:
                    self._fresh_in_decomposition.clear()
            if result is not NotImplemented:
                return result
        if func is aten.lift_fresh.default:  # torch.tensor(...) inside the program: a fresh copy
            func = aten.lift_fresh_copy.default
            facts = hook_facts(func)

        if self.storage_resizes is not None and self.storage_resizes.freed and not getattr(func, "is_view", False) \
                and func not in _STORAGE_SETS:
            self.storage_resizes.refuse_freed_access(func, _tensors_in(args, kwargs))
        if facts.mutates_metadata:
            self._snapshot_layout(args[0])
        elif func in _STORAGE_SETS and isinstance(args[0], torch.Tensor):
            self._keep_earlier_layouts(args[0])  # (views taken before keep the old memory: not stale)
        as_fake = self._as_fake
        fake_args = _map_tensors(as_fake, args)
        fake_kwargs = {k: _map_tensors(as_fake, v) if type(v) in _SEQUENCES else as_fake(v)
                       for k, v in kwargs.items()} if kwargs else {}
        draws_global_rng = facts.is_random and kwargs.get("generator") is None
        if draws_global_rng and facts.is_mutable and functional_twin(func) is not None:
            # An in-place draw is recorded as a fresh draw copied in, so the drawn values stay
            # addressable after later in-place ops on the tensor (see `_redraw`).
            with self:
                drawn = functional_twin(func)(*with_default_args(func, args), **kwargs)
                if isinstance(drawn, torch.Tensor):
                    return aten.copy_.default(args[0], drawn)
                # (``rrelu_with_noise_`` writes its noise too: its twin returns each written argument's value)
                written = [a for a, schema in zip(args, func._schema.arguments)
                           if schema.alias_info is not None and schema.alias_info.is_write]
                for target, value in zip(written, drawn):
                    aten.copy_.default(target, value)
                return args[0]
        if facts.is_mutable and self._decomposing is not None and self._fresh_in_decomposition:
            result = self._in_place_on_fresh(func, args, kwargs)
            if result is not NotImplemented:
                return result
        if draws_global_rng:
            position = self.random_draws.position(str(func))
            if position < len(self.random_draws.draws):
                return self._redraw(func, fake_args, fake_kwargs, position)
        try:
            out = self.fake_outputs.run(func, fake_args, fake_kwargs, self._run_fake)
        except (RuntimeError, IndexError) as error:
            self._refuse_failed_replay(func, args, error)
            raise
        # .item(), nonzero: sizes and scalars known only at run time; or the symbol an input's fake
        # remembers as its value (Dynamo's float wrapped in a 0-d tensor), read by `func` here.
        unbacked = self.symbols.has_fresh_unbacked() or (func is aten._local_scalar_dense.default
                                                         and self.symbols.is_unbound_symbol(out))
        if not _has_tensor(out) and not facts.is_mutable and not unbacked:
            return out  # device / size queries: nothing to record (an op that only writes its arguments is)
        if not func._schema.is_mutable and isinstance(out, torch.Tensor):
            # A no-op that hands back its argument itself (``x.to(x.dtype)`` inside a
            # decomposition): the same tensor, so the same node; recording it would make the
            # tensor look like a view of itself.
            for original in _tensors_in(args, kwargs):
                if as_fake(original) is out:
                    return original

        node_for = self.node_for
        node_args = _map_tensors(node_for, args)
        node_kwargs = {k: _map_tensors(node_for, v) if type(v) in _SEQUENCES else node_for(v)
                       for k, v in kwargs.items()} if kwargs else {}
        if facts.is_random and not draws_global_rng and isinstance(kwargs.get("generator"), torch.Generator):
            node_kwargs["generator"] = self._generator_node(kwargs["generator"])
        node = append_call(self.graph, func, node_args, node_kwargs)
        op_meta = self.node_meta.of_op()
        node.meta.update(op_meta)
        node.meta["val"] = out
        node.meta["original_aten"] = self._decomposing or func
        if facts.is_mutable:
            self.saw_mutation = True
        if self._decomposing is not None:
            self._note_fresh(func, facts, args, out)
        if isinstance(out, torch.Tensor):
            self.node_of[id(out)] = node
            out_nodes = [node]
        elif isinstance(out, SYMBOLIC_TYPES):
            out_nodes = []
        else:
            out_nodes = []
            for index, item in enumerate(out if out is not None else ()):
                if isinstance(item, torch.Tensor):
                    getter = append_call(self.graph, operator.getitem, (node, index), {})
                    getter.meta.update(op_meta)
                    getter.meta["val"] = item
                    self.node_of[id(item)] = getter
                out_nodes.append(self.node_of.get(id(item)))
        if draws_global_rng:
            self.random_draws.record(func, out_nodes)
        if unbacked:
            self.symbols.bind_results(node, out, out_nodes)
        return out

    def _record_seeding(self, op, args: tuple) -> fx.Node:
        """The program seeded the RNG: `op` (``aotgraph::manual_seed``, ...) on `args` (tensors,
        plain values, or nodes) recorded; its node returned."""
        node = append_call(self.graph, op, tuple(self.node_for(a) for a in args), {})
        node.meta["val"] = None
        return node

    def _in_place_decomposition(self, func, facts: "_OpFacts") -> Optional[Callable]:
        """For an in-place op that the table lacks but whose functional twin it has (``lerp_``:
        Inductor lowers neither ``lerp_`` nor ``lerp``, only ``lerp``'s pieces): the twin, run
        through the table, copied into ``self``. Torch's functionalization hands the table the
        twin in the same way; recorded as the in-place op itself, the twin would reach the
        compiler undecomposed after functionalization. None for random draws (recorded as
        drawn), in-place view ops, and ops that write other arguments or lists."""
        known = self._in_place_decompositions.get(func, _UNKNOWN)
        if known is not _UNKNOWN:
            return known
        twin = _twin_of_plain_in_place(func, facts)
        usable = twin is not None and twin in self.decompositions
        decomposition = functools.partial(_twin_copied_in, func, twin) if usable else None
        self._in_place_decompositions[func] = decomposition
        return decomposition

    def _note_fresh(self, func, facts: "_OpFacts", args: tuple, out: Any) -> None:
        """Inside a decomposition: a tensor a plain op just made is fresh (nothing outside the
        decomposition can see it, nothing aliases it); an argument that a view op reads is not."""
        fresh = self._fresh_in_decomposition
        if getattr(func, "is_view", False):
            for tensor in _tensors_in(args, {}):
                fresh.discard(id(tensor))
        elif isinstance(out, torch.Tensor) and not facts.is_mutable and self._in_place_on_fresh_on:
            fresh.add(id(out))

    def _in_place_on_fresh(self, func, args: tuple, kwargs: dict) -> Any:
        """An in-place op of a decomposition on a tensor it made itself (C++'s ``1 - t`` is
        ``empty_like(t).fill_(1).sub_(t)``) recorded as its functional twin, whose node then
        stands for the tensor: the graph stays functional, and the capture skips functionalizing
        it whole for a mutation nobody could see (switch ``in_place_on_fresh``). NotImplemented
        where that does not apply (recorded as it is)."""
        target = args[0] if args else None
        if id(target) not in self._fresh_in_decomposition:
            return NotImplemented
        twin = self._fresh_twins.get(func, _UNKNOWN)
        if twin is _UNKNOWN:
            twin = self._fresh_twins[func] = _twin_of_plain_in_place(func, hook_facts(func))
        if twin is None:
            return NotImplemented
        with self:
            result = twin(*with_default_args(func, args), **kwargs)
        if (result.shape, result.stride(), result.dtype) != (target.shape, target.stride(), target.dtype):
            with self:
                return aten.copy_.default(target, result)  # another layout: written in, as recorded
        self.node_of[id(target)] = self.node_of[id(result)]
        return target

    def _decompose(self, func, facts: "_OpFacts", decomposition, args, kwargs):
        """`func` recorded as what it rewrites or decomposes into, or NotImplemented: our
        rewrites first, then the decomposition table, then a composite op's own ATen pieces
        (with the Python dispatcher on, composite ops such as ``aten.to.dtype`` reach the
        mode whole; compilers expect their pieces, ``_to_copy``, as make_fx records)."""
        with self:
            if facts.rewrite is not None:
                result = facts.rewrite(*args, **kwargs)
                if result is not NotImplemented:
                    return result
            if decomposition is not None:
                result = decomposition(*args, **kwargs)
                if result is not NotImplemented:
                    return result
            if facts.is_composite and self._composite_decomposes(func, args):
                return func.decompose(*args, **kwargs)
        return NotImplemented

    def _composite_decomposes(self, func, args: tuple) -> bool:
        """Whether eager's autograd would run `func`'s CompositeImplicitAutograd kernel on these
        arguments: only where the device of the first tensor has no kernel of its own
        (``silu_backward`` has a CPU and a CUDA kernel: recorded whole, as make_fx records it and
        eager runs it; switch ``composite_kernels_kept``)."""
        tensor = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if tensor is None or not self._composite_kernels_kept:
            return True
        device = tensor.fake_device.type if type(tensor) is FakeTensor else tensor.device.type
        known = self._composite_decomposing.get((func, device))
        if known is None:
            key = torch._C._dispatch_key_for_device(device)
            try:
                known = not torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), key)
            except RuntimeError:  # a device type without a dispatch key of its own
                known = True
            self._composite_decomposing[(func, device)] = known
        return known

    def _redraw(self, func, fake_args, fake_kwargs, position):
        """Eager would draw exactly the values of an earlier draw again (a checkpointed region
        recomputed from a restored RNG state): reuse that draw's nodes."""
        nodes = self.random_draws.replayed(position, func)
        out = self.fake_outputs.run(func, fake_args, fake_kwargs, self._run_fake)  # fresh fakes of the same layout
        for item, node in zip([out] if isinstance(out, torch.Tensor) else out, nodes):
            if isinstance(item, torch.Tensor):
                self.node_of[id(item)] = node
        return out

    def _snapshot_layout(self, tensor: torch.Tensor) -> None:
        """An in-place view op (``t_``) is about to change `tensor`'s sizes: the nodes that
        held it so far (its producer and in-place ops on it) keep a fake of the layout it had then.
        Where `tensor` is a base, its views taken so far that require grad become stale (see
        `_refuse_stale_views`)."""
        self._relaid.update(id(t) for t in (tensor, tensor._base) if t is not None)
        if tensor._base is not None and (tensor.requires_grad or tensor._base.requires_grad):
            self._view_relaid = True
        self._keep_earlier_layouts(tensor, mark_views=tensor._base is None)

    def _keep_earlier_layouts(self, tensor: torch.Tensor, mark_views: bool = False) -> None:
        """An op is about to change `tensor`'s sizes, strides or memory in place (``t_``, ``set_``):
        the nodes that held it so far (its producer and in-place ops on it) keep a fake of the
        layout it had then. `mark_views`: its views taken so far become stale (in the same walk
        over the nodes)."""
        snapshot = None
        layout = layout_of(tensor) if mark_views else None
        for node in self.graph.nodes:
            value = node.meta.get("val")
            if value is tensor:
                if snapshot is None:
                    snapshot = tensor.as_strided(tensor.shape, tensor.stride(), tensor.storage_offset())
                node.meta["val"] = snapshot
            elif mark_views and isinstance(value, torch.Tensor) and value._base is tensor:
                stale = self._stale_views if value.requires_grad else self._stale_views_without_grad
                stale.setdefault(id(value), (value, layout))

    @property
    def relaid_any(self) -> bool:
        """Whether the program changed a tensor's layout in place (``t_``, ``squeeze_``, ...)."""
        return bool(self._relaid)

    def _refuse_stale_views(self, func, args: tuple, kwargs: dict) -> None:
        """Refuse an op that autograd records on a view taken before an in-place layout change of
        its base (``v = x[0]; x.t_(); v.exp()``). Autograd makes such a view's history again at
        its next use: in eager as an ``as_strided`` of the base's memory, which reads the elements
        the view reads; on the capture's fake tensors by replaying the view op on the base's new
        layout, which reads other elements where the shapes allow it at all (a square base
        transposed): a wrong gradient, silently. Other changes of such a base's layout make
        autograd refuse the replay (`_after_layout_change`). A base back in its old layout (a
        second ``t_``, a ``squeeze_`` that found no size 1) replays as eager reads."""
        for value in (*args, *kwargs.values()):
            for item in value if type(value) in _SEQUENCES else (value,):
                if isinstance(item, torch.Tensor):
                    self._refuse_if_stale(item, f"{func} reads")

    def refuse_stale_outputs(self, outputs: list) -> None:
        """`_refuse_stale_views` for the program's outputs that require grad: the capture reads
        their history (``grad_fn``), which autograd makes again as it does for an op's argument
        (seed 3719: a ``select`` replayed over its base's ``unsqueeze_``d layout raised)."""
        if self._stale_views:
            for item in outputs:
                if isinstance(item, torch.Tensor) and item.requires_grad:
                    self._refuse_if_stale(item, "the program returns")
        if self._relaid:  # a view that required no grad when its base was relaid, and does now (seed 8103)
            for item in outputs:
                if isinstance(item, torch.Tensor) and item.requires_grad and item._base is not None:
                    try:
                        item.grad_fn
                    except RuntimeError:  # a view made under no_grad, its base written since: no history to read
                        continue
                    except ValueError as error:  # autograd's replay of the view over the new layout
                        raise _stale_view_refused(
                            f"the program returns, with gradients, a view of shape {tuple(item.shape)}",
                            f"autograd's replay of it failed ({str(error).splitlines()[0][:120]})") from error

    @property
    def has_stale_views(self) -> bool:
        return bool(self._stale_views)

    def is_stale(self, item: torch.Tensor) -> bool:
        """Whether `item` is a view requiring grad taken before an in-place layout change of its
        base, which the base has not undone (`_refuse_stale_views`)."""
        stale = self._stale_views.get(id(item))
        return stale is not None and stale[0] is item and layout_of(item._base) != stale[1]

    def _refuse_if_stale(self, item: torch.Tensor, what: str) -> None:
        if self.is_stale(item):
            raise _stale_view_refused(f"{what}, with gradients, a view of shape {tuple(item.shape)}",
                                      "the view's gradient would be replayed over the base's new layout, not eager's")

    def _refuse_failed_replay(self, func, args: tuple, error: Exception) -> None:
        """A view op failed on a base some of whose views are stale: autograd making such a view's
        history again at its next use (``v = x.expand(3, 3, 4); x.t_(); v.transpose(2, 0)``: the
        ``expand`` replayed over the transposed base fails, where eager's ``as_strided`` reads
        the view's own memory, seed 4089)."""
        base = args[0] if args else None
        if not getattr(func, "is_view", False) or not isinstance(base, torch.Tensor) or not base.requires_grad:
            return
        root = base if base._base is None else base._base
        if id(base) in self._relaid or id(root) in self._relaid:
            raise _stale_view_refused("the program reads, with gradients, a view",
                                      f"autograd's replay of it failed ({str(error).splitlines()[0][:120]})") from error

    def _refuse_writes_into_stale_views(self, func, args: tuple, kwargs: dict) -> None:
        """Refuse an in-place write of values that need a gradient into a view that needed none
        when its base's layout changed in place, taken before that change (``v = x.squeeze();
        x.t_(); v.copy_(y)``, x and v needing no grad): autograd records the write on the base,
        now needing a gradient, by replaying the view op over the base's new layout, which
        addresses other elements, or the same ones in another order (a transposed base): a wrong
        gradient, silently (fuzzer seed 82334). A replay that addresses the view's own elements
        as it does is left alone."""
        if not any(t.requires_grad for t in _flat_tensors(args, kwargs)):
            return
        arguments = func._schema.arguments
        for position in mutated_arg_positions(func):
            target = args[position] if position < len(args) else kwargs.get(arguments[position].name)
            stale = self._stale_views_without_grad.get(id(target))
            if stale is None or stale[0] is not target or layout_of(target._base) == stale[1]:
                continue
            try:
                with torch.no_grad():
                    replayed = target._view_func(target._base)
            except Exception:  # no replay: autograd refuses the write itself
                continue
            if not _same_elements(replayed, target):
                raise _stale_view_refused(f"{func} writes in place, with gradients, into a view of shape "
                                          f"{tuple(target.shape)}",
                                          "autograd would record the write over the base's new layout, not eager's")

    def _refuse_stale_view_writes(self, func, args: tuple, kwargs: dict) -> None:
        """Refuse an in-place write, with gradients, into a view whose layout its view ops no
        longer make over its base: one changed in place by ``t_``/``transpose_``/... after it was
        taken (``v = x.t(); v.t_(); v.add_(y)``), or a view of such a view. Autograd records the
        write on the base through the view; in eager it takes the view's current sizes and
        strides (``as_strided``), on the capture's fake tensors it replays the view ops that made
        the view, which read other elements: a wrong gradient, silently (fuzzer seed 6876)."""
        arguments = func._schema.arguments
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        for position in mutated_arg_positions(func):
            name = arguments[position].name
            target = args[position] if position < len(args) else kwargs.get(name)
            if not isinstance(target, torch.Tensor) or target._base is None \
                    or not any(t.requires_grad for t in tensors):
                continue
            try:
                with torch.no_grad():
                    replayed = target._view_func(target._base)
            except Exception:  # no replay to compare with: autograd uses the view's layout then
                continue
            # Sizes of 1 aside, unless indices or masks address the view by its dimensions (seed
            # 10950: index_put_ at (0, 2) of an unsqueeze_d row, replayed over the 1-d row).
            indexed = tuple(replayed.shape) != tuple(target.shape) and any(
                t is not target and t.dim() > 0 and (t.dtype == torch.bool or not t.is_floating_point()
                                                     and not t.is_complex()) for t in _flat_tensors(args, kwargs))
            if indexed or not _same_elements(replayed, target):
                raise UnsupportedOp(
                    f"{func} writes in place, with gradients, into a view of shape {tuple(target.shape)} whose "
                    "layout was changed in place (t_, transpose_, unsqueeze_, squeeze_, as_strided_) after it "
                    "was taken: its gradient would go through the view's old layout, not eager's",
                    "capture", "change the layout with the out-of-place t(), transpose(), unsqueeze(), or write "
                    "into a clone")

    def _run_fake(self, func, args, kwargs):
        try:
            return func(*args, **kwargs)
        except DataDependentOutputException as error:
            raise fake_tensor_failure(DataDependentControlFlow(
                f"the program reads the value of a tensor ({func}, e.g. .item(), bool(t), or `if t > 0`)"
                f"{_user_line()}",
                "capture",
                "make the branch depend on shapes or Python values instead, or run that part eagerly "
                "outside the compiled function",
            ), error) from error
        except DynamicOutputShapeException as error:
            raise fake_tensor_failure(UnsupportedOp(
                f"{func} has a data-dependent output shape",
                "capture",
                "use a fixed-shape alternative (e.g. torch.where instead of nonzero/masked_select), compile it "
                "with torch.compile and torch._dynamo.config.capture_dynamic_output_shape_ops=True, "
                "or run that part eagerly outside the compiled function",
            ), error) from error
        except UnsupportedOperatorException as error:
            raise fake_tensor_failure(_no_fake_kernel(func), error) from error
        except RuntimeError as error:
            # torch.library.custom_op without register_fake raises a plain RuntimeError
            # (torch.export recognizes it by this same text).
            if "no fake impl registered" in str(error):
                raise _no_fake_kernel(func) from error
            if type(error) is not RuntimeError:  # (torch's own kinds: guards on unbacked sizes, ...)
                raise
            raise OpRefused(
                f"{func} raised on the fake tensors of capture{_user_line()}: {error}",
                "capture",
                "if eager raises the same for these inputs, fix the call; if eager runs it, the op's fake "
                "(meta) kernel is stricter than its eager kernel (a dtype or layout check): give it inputs "
                "both accept, or run that part eagerly outside the compiled function",
            ) from error


_UNKNOWN = object()


def _twin_of_plain_in_place(func, facts: "_OpFacts") -> Optional[Callable]:
    """The functional twin of an in-place op that writes its first argument's data only and
    returns it, drawing no random numbers; None for any other op."""
    if facts.is_random or facts.mutates_metadata or mutated_arg_positions(func) != (0,):
        return None
    schema = func._schema
    if str(schema.arguments[0].type) != "Tensor" or len(schema.returns) != 1:
        return None
    twin = functional_twin(func)
    return None if twin is None or twin.is_view else twin


def _twin_copied_in(func, twin, target: torch.Tensor, *args, **kwargs):
    """In-place `func` as its functional `twin` copied into `target`; NotImplemented (`func`
    recorded as it is) where the twin's result has another shape (``resize_as_``)."""
    result = twin(*with_default_args(func, (target, *args)), **kwargs)
    if result.shape != target.shape:
        return NotImplemented
    return aten.copy_.default(target, result)


@dataclass(frozen=True)
class _OpFacts:
    """What the dispatch hook asks of an op on every call, computed once per op: the op's
    `graph.ops.OpFacts` it needs, and capture's own (its rewrites, argument defaults)."""

    rewrite: Optional[Callable]
    is_mutable: bool
    mutates_metadata: bool
    is_random: bool
    is_composite: bool  # has a CompositeImplicitAutograd kernel: recorded as what it decomposes into
    positional_defaults: tuple  # per positional argument of the schema: its default, or _REQUIRED
    positional_index: Mapping[str, int]  # name -> position of each positional argument
    sized_int_lists: tuple  # (position, N) of each positional ``int[N]``: an int given there stands for N copies
    keyword_defaults: Mapping[str, Any]  # name -> default (or _REQUIRED) of each keyword-only argument

    @staticmethod
    def of(func) -> "_OpFacts":
        facts = op_facts(func)
        arguments = func._schema.arguments
        positional = [a for a in arguments if not a.kwarg_only]
        rewrite = _HIDDEN_MUTATION_REWRITES.get(func) or _EAGER_RNG_REWRITES.get(func) or _DATA_DEPENDENT_REWRITES.get(func)
        return _OpFacts(rewrite, facts.mutable,
                        is_metadata_mutation(func), facts.random, facts.composite,
                        tuple(_default_of(a) for a in positional), {a.name: i for i, a in enumerate(positional)},
                        tuple((i, a.N) for i, a in enumerate(positional) if a.N and str(a.type) == "List[int]"),
                        {a.name: _default_of(a) for a in arguments if a.kwarg_only})


_REQUIRED = object()  # an argument without a default


def _stale_view_refused(what: str, why: str) -> UnsupportedOp:
    return UnsupportedOp(
        f"{what} taken before an in-place layout change of its base (t_, transpose_, unsqueeze_, squeeze_, "
        f"as_strided_): {why}", "capture",
        "take the view after the change, or change the layout of a clone (or use the out-of-place t(), "
        "transpose(), unsqueeze())")


def _flat_tensors(args: tuple, kwargs: dict) -> list:
    """The tensors among an op's arguments, those in lists (``index_put_``'s indices) included."""
    return [t for value in (*args, *kwargs.values())
            for t in (value if type(value) in _SEQUENCES else (value,)) if isinstance(t, torch.Tensor)]


def _refuse_writes_replayed_from_offset_bases(func, args: tuple, kwargs: dict) -> None:
    """Refuse an in-place write, with gradients, into a view that ``as_strided`` made of a tensor
    starting at a storage offset (a view input: the program sees its copy at the caller's
    offset). Autograd records the write on the view's base; on the capture's fake tensors it
    replays the view ops on a fresh tensor of the base's layout at offset 0, and ``as_strided``
    takes an absolute storage offset: replayed there it reads other elements than in eager (which
    re-takes the view's layout relative to its base): a wrong gradient, silently (fuzzer seed 55805).
    Other views (slices, transposes) replay relative to their base and are kept."""
    tensors = None
    for position in mutated_arg_positions(func):
        target = args[position] if position < len(args) else kwargs.get(func._schema.arguments[position].name)
        if not isinstance(target, torch.Tensor) or target._base is None:
            continue
        base = target._base
        offset, base_offset = target.storage_offset(), base.storage_offset()
        if type(base_offset) is not int or base_offset == 0 or type(offset) is not int:
            continue
        tensors = tensors if tensors is not None else _flat_tensors(args, kwargs)
        if not any(t.requires_grad for t in tensors):
            continue
        try:
            with torch.no_grad():
                fresh = torch.empty_strided(base.shape, base.stride(), dtype=base.dtype, device=base.device)
                replayed = getattr(target, "_view_func_unsafe", target._view_func)(fresh)
        except Exception:  # no replay: autograd re-takes the view's layout, as eager does
            continue
        if replayed is not None and replayed.storage_offset() != offset - base_offset:
            raise UnsupportedOp(
                f"{func} writes in place, with gradients, into a view that as_strided took of a tensor at storage "
                f"offset {base_offset} (an input that views a larger tensor): autograd would record the write at "
                "other elements than eager's, a wrong gradient",
                "capture", "take that view with slicing or view ops (offsets relative to the tensor), or call "
                "as_strided on a clone of the input")


def _same_elements(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether `a` and `b` address the same memory in the same order, dimensions of size 1
    aside (an ``unsqueeze_`` reshapes a view's gradient, it does not reorder it); symbolic sizes
    and strides count as equal only where provably so (no guard is added)."""
    def addressing(t):
        kept = [(size, stride) for size, stride in zip(t.shape, t.stride()) if not (type(size) is int and size == 1)]
        return [x for pair in kept for x in pair] + [t.storage_offset()]

    left, right = addressing(a), addressing(b)
    return len(left) == len(right) and all(known_equal(x, y) for x, y in zip(left, right))


def _default_of(argument) -> Any:
    return argument.default_value if argument.has_default_value() else _REQUIRED


_OP_FACTS: dict[Any, _OpFacts] = {}


_LOCAL_SCALAR_DENSE = aten._local_scalar_dense.default


def _fixed_value(fake: FakeTensor):
    """The number ``.item()`` of `fake` gives where its fake remembers a value that the shape
    environment has fixed (Dynamo's float attribute, a norm's ``eps``, under ``dynamic=True``:
    guarded by Dynamo, so a constant of the graph); else None. The fake mode would answer the
    same, through a dispatch of its own for each such read."""
    memo = fake.item_memo
    if memo is None:
        return None
    node = memo.node
    return node.maybe_as_float() if node.pytype is float else node.maybe_as_int() if node.pytype is int else None


def hook_facts(func) -> _OpFacts:
    """`_OpFacts` of an ATen op, computed once per op."""
    facts = _OP_FACTS.get(func)
    if facts is None:
        if isinstance(func, HigherOrderOperator):  # reaches the mode: see `GraphRecorder.supports_higher_order_operators`
            raise unsupported_hop(func.name())
        facts = _OP_FACTS[func] = _OpFacts.of(func)
    return facts
_SEQUENCES = (list, tuple)


# Ops autograd records no history for, whose outputs are fresh (boolean, integer, a number): a
# view taken before its base's layout change reads its own memory through them, as eager's.
# (Not ``detach``: its output is a view, made again over the base's new layout where returned.)
_READS_WITHOUT_HISTORY = frozenset({
    aten._local_scalar_dense.default, aten.argmax.default, aten.argmin.default,
    *(getattr(aten, name).Scalar for name in ("eq", "ne", "lt", "le", "gt", "ge")),
    *(getattr(aten, name).Tensor for name in ("eq", "ne", "lt", "le", "gt", "ge")),
})


_SCALAR_KINDS = {bool: 0, int: 1, float: 2, complex: 3}


def _kind(dtype: torch.dtype) -> int:
    """A dtype's kind, as promotion orders them: bool < integer < floating < complex."""
    return 3 if dtype.is_complex else 2 if dtype.is_floating_point else 0 if dtype == torch.bool else 1


def _refuse_narrowing_in_place(func, args: tuple, kwargs: dict, recorder: "GraphRecorder") -> None:
    """An in-place pointwise op whose result's dtype ``self`` cannot hold (``ints.mul_(1.5)``,
    ``floats.add_(complex)``): eager raises, a fake kernel would cast; raised as eager's error.
    Only an argument of a wider kind than ``self``'s (bool < integer < floating < complex) costs
    more than a look at the dtypes: the out-of-place op's result, on fakes."""
    target = args[0] if args else None
    if not isinstance(target, torch.Tensor) or target.dtype.is_complex:
        return
    kind = _kind(target.dtype)
    if not any((_kind(a.dtype) if isinstance(a, torch.Tensor) else _SCALAR_KINDS.get(type(a), -1)) > kind
               for a in (*args[1:], *kwargs.values())):
        return
    twin = functional_twin(func)
    if twin is None:
        return
    with recorder.fake_mode:
        result = twin(*_map_tensors(recorder._as_fake, args), **{k: recorder._as_fake(v) for k, v in kwargs.items()})
    if isinstance(result, torch.Tensor) and not torch.can_cast(result.dtype, target.dtype):
        raise RuntimeError(f"result type {_scalar_type(result.dtype)} can't be cast to the desired output type "
                           f"{_scalar_type(target.dtype)}")


def _scalar_type(dtype: torch.dtype) -> str:
    """Eager's name of a dtype in its messages (``Float``, ``Long``)."""
    return torch.empty(0, dtype=dtype, device="meta").type().split(".")[-1].replace("Tensor", "")


def _map_tensors(fn: Callable, args: Any) -> Any:
    """`fn` applied to every leaf of ATen arguments (nested lists/tuples); a cheaper
    ``tree_map`` for the only containers an op's positional arguments hold."""
    return type(args)([_map_tensors(fn, a) if type(a) in _SEQUENCES else fn(a) for a in args])


def append_call(graph: fx.Graph, target: Callable, args: tuple, kwargs: dict[str, Any] | None = None) -> fx.Node:
    """``graph.call_function(target, args, kwargs)`` without create_node's per-argument pytree
    scan (a warning check for raw SymInts, most of the recorder's graph-building time): the
    node is created bare and its arguments set as the ``args`` setter sets them, without
    ``Node.__setattr__``'s lookup-table update; same name, same users.
    An ATen op's arguments are stored in the schema's own form (`schema_args`)."""
    node = graph.create_node("call_function", target)
    if type(target) is OpOverload:
        args, kwargs = schema_args(target, args, kwargs or {})
    set_args(node, args, kwargs or {})
    return node


def schema_args(func, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
    """`args` and `kwargs` of a call of ATen op `func` as the dispatcher hands them to a
    dispatch mode, and so as make_fx records them: positional arguments by position, without
    the trailing ones that equal their defaults; keyword-only ones by name, without those equal
    to their defaults; lists as lists (an int given for an ``int[N]``: N copies of it).
    Compilers' lowerings are written against that form: Inductor's ``add.Scalar`` takes
    ``alpha`` only by keyword, so ``add.Scalar(x, 1e-6, 1)`` (the functional twin of
    ``add_.Scalar(x, 1e-6)`` with its default spelled out) fails to lower."""
    facts = hook_facts(func)
    if tuple in map(type, args):
        args = tuple(list(a) if type(a) is tuple else a for a in args)
    if kwargs and tuple in map(type, kwargs.values()):
        kwargs = {k: list(v) if type(v) is tuple else v for k, v in kwargs.items()}
    if kwargs and not kwargs.keys().isdisjoint(facts.positional_index):
        args, kwargs = _positional_by_position(facts, args, kwargs)
    if facts.sized_int_lists:
        args = _int_lists_spelled_out(facts.sized_int_lists, args)
    defaults = facts.positional_defaults
    end = len(args)
    if end > len(defaults):
        return args, kwargs  # not a call of this schema: left for the op itself to reject
    while end and _is_default(args[end - 1], defaults[end - 1]):
        end -= 1
    if end < len(args):
        args = tuple(args[:end])
    if kwargs:
        keyword_defaults = facts.keyword_defaults
        kwargs = {k: v for k, v in kwargs.items() if not _is_default(v, keyword_defaults.get(k, _REQUIRED))}
    return args, kwargs


def _int_lists_spelled_out(sized_int_lists: tuple, args: tuple) -> tuple:
    if not any(position < len(args) and type(args[position]) is int for position, _ in sized_int_lists):
        return args
    values = list(args)
    for position, size in sized_int_lists:
        if position < len(values) and type(values[position]) is int:
            values[position] = [values[position]] * size
    return tuple(values)


def _positional_by_position(facts: _OpFacts, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Positional arguments passed by name moved to their positions (those skipped between
    take their defaults), or the call unchanged where one skipped has no default."""
    named = {facts.positional_index[k]: v for k, v in kwargs.items() if k in facts.positional_index}
    if min(named) < len(args):
        return args, kwargs  # one argument passed twice: left for the op itself to reject
    values = list(args)
    for position in range(len(values), max(named) + 1):
        if position in named:
            values.append(named[position])
        elif facts.positional_defaults[position] is not _REQUIRED:
            values.append(facts.positional_defaults[position])
        else:
            return args, kwargs
    return tuple(values), {k: v for k, v in kwargs.items() if k not in facts.positional_index}


def _is_default(value: Any, default: Any) -> bool:
    """Whether `value` is `default` as the dispatcher compares them: same type, same value (an
    int 1 is not a float 1.0; a SymInt or a tensor is never a default)."""
    if default is _REQUIRED:
        return False
    if type(default) is list:
        return (type(value) in _SEQUENCES and len(value) == len(default)
                and all(_is_default(v, d) for v, d in zip(value, default)))
    return type(value) is type(default) and value == default


_LIBRARY_DIRS = (os.path.dirname(torch.__file__), os.path.dirname(os.path.dirname(__file__)))


def _user_line(error: Optional[BaseException] = None) -> str:
    """`` at FILE:LINE: CODE`` for the innermost frame of the user's program, if any: on the
    current stack, or on `error`'s traceback."""
    frames = traceback.extract_stack() if error is None else traceback.extract_tb(error.__traceback__)
    for frame in reversed(frames):
        if not frame.filename.startswith(_LIBRARY_DIRS):
            return f" at {frame.filename}:{frame.lineno}: {(frame.line or '').strip()}"
    return ""


def data_dependent_branch(error: BaseException) -> DataDependentControlFlow:
    """The error for torch's `GuardOnDataDependentSymNode` raised while the program ran: Python
    code (the program's, or a torch function it called) branched on a value read from a tensor's
    data (``.item()``, ``bool(t)``), which a compile with symbolic sizes keeps as a symbol."""
    first_line = str(error).splitlines()[0]  # "Could not guard on / extract ... data-dependent expression E (...)"
    condition = first_line.partition("data-dependent expression ")[2].split(" (unhinted")[0] or first_line
    where = _user_line(error) or (" in the backward of one of its ops (torch's gradient formula decides on it, "
                                  "not the program's own code)")
    return DataDependentControlFlow(
        f"the program branches on, or needs as a Python number, a value read from a tensor's data "
        f"({condition.strip()}){where}",
        "capture",
        "make the branch depend on shapes or Python values instead, keep .item()'s result as it is (int() or "
        "float() of it needs its value now), use torch._check() to state what holds, or run that part eagerly "
        "outside the compiled function",
    )


def _no_fake_kernel(func) -> UnsupportedOp:
    return UnsupportedOp(
        f"{func} has no fake (meta) kernel, so its output shape cannot be traced",
        "capture",
        f"register one with torch.library.register_fake('{func._schema.name}') "
        "or run that op eagerly outside the compiled function",
    )


def _writes_out(op) -> bool:
    schema = getattr(op, "_schema", None)
    return schema is not None and any(argument.is_out for argument in schema.arguments)


def _tensors_in(args: tuple, kwargs: dict):
    """The tensor arguments of an ATen call (directly or in a list argument)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            yield value
        elif type(value) in _SEQUENCES:
            yield from (t for t in value if isinstance(t, torch.Tensor))


def _has_tensor(out: Any) -> bool:
    if isinstance(out, torch.Tensor):
        return True
    return isinstance(out, (tuple, list)) and any(isinstance(o, torch.Tensor) for o in out)
