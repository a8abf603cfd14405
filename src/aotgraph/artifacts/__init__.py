"""The typed artifacts that flow between stages.

capture  -> JointGraph   (one functional ATen graph for forward + backward, with its Signature)
partition-> Partition    (forward graph, backward graph, the saved values between them)
compile  -> CompiledGraphs (callables in the boxed calling convention)

Artifacts are frozen: a stage builds a new one, it never edits an earlier one.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Optional

import torch
import torch.fx as fx
from torch.utils._pytree import TreeSpec

from ..graph.sizes import concrete_if_constant, size_hint


@dataclass(frozen=True)
class TensorMeta:
    """What a tensor looks like, not what it holds. Sizes may be ints or SymInts (a SymInt
    that a guard made a constant is stored as its int: the runtime lays out real tensors with it)."""

    shape: tuple
    stride: tuple
    storage_offset: int
    dtype: torch.dtype
    device: torch.device
    requires_grad: bool

    @staticmethod
    def of(t: torch.Tensor) -> "TensorMeta":
        shape, stride, offset = tuple(t.shape), tuple(t.stride()), t.storage_offset()
        if type(offset) is not int or not all(type(size) is int for size in shape + stride):
            shape, stride, offset = tuple(map(concrete_if_constant, shape)), tuple(map(concrete_if_constant, stride)), \
                concrete_if_constant(offset)
        return TensorMeta(shape, stride, offset, t.dtype, t.device, t.requires_grad)

    @property
    def nbytes(self) -> int:
        """Bytes of its elements; symbolic sizes count at their hints."""
        numel = 1
        for size in self.shape:
            numel *= size_hint(size)
        return numel * self.dtype.itemsize


@dataclass(frozen=True)
class Leaf:
    """One flat leaf of a pytree: a tensor described by `meta`, or a non-tensor `constant`."""

    meta: Optional[TensorMeta]
    constant: Any = None

    @property
    def is_tensor(self) -> bool:
        return self.meta is not None

    @property
    def requires_grad(self) -> bool:
        return self.meta is not None and self.meta.requires_grad


@dataclass(frozen=True)
class InputInfo(Leaf):
    """One flat leaf of the user's inputs. Non-tensor leaves are specialized into the graph.

    `mutates_with_grad`: a data mutation that autograd records (the input is not a leaf
    requiring grad, and its new value requires grad); the new value is a differentiable
    forward output with a tangent, written back with a grad-tracking ``copy_``. `relayout`: the
    program's in-place view ops on the input itself (``t_``, ``unsqueeze_``, ...), in order, which
    the runtime replays on the real input (empty: it relays with ``as_strided_``).
    `written_in_backward`: a backward (a custom Function's) writes into the input in place; the
    joint returns its new value after the gradients, and the runtime writes it when the backward
    runs, as eager does (not a mutation of the forward: `mutates_data` is False).
    `replaces_storage`: the program gave the input another tensor's memory (``x.set_(y)``); its
    metadata view is that tensor, and the runtime ``set_``s the caller's input to it; or, when that
    memory is another input's (`storage_source`, a primal index), to that input's storage with
    `storage_layout`, so both share memory as in eager. `storage_resize`: the program resizes the
    input's storage (``untyped_storage().resize_``, as FSDP frees and reallocates parameters).
    `views_relaid`: the input is the base of inputs sharing memory (`capture.aliased_inputs`), and
    the program changes the layout of one of them in place (``x.t_()``), which the runner replays
    on the caller's tensor after the graphs: that bumps the memory's version, so the forward's
    saved aliases of this input are copies (as those of a relaid input are). `sets_requires_grad`:
    the program sets the input's ``requires_grad`` to this before reading it
    (`capture.requires_grad_flags`); the runtime sets the caller's tensor's first (None: untouched).
    `moves_version`: the program moves the input's version counter with neither a data change nor a
    layout change to replay (``x.copy_(x)``, ``t_()`` of a 1-D tensor); the runtime moves the
    caller's after the graphs, so a tensor saved for an earlier backward reads as modified there,
    as in eager. `keeps_version`: the program replaced the input's storage without moving its
    version counter (``t.data = value``); the runtime's ``set_`` puts the caller's counter back."""

    mutates_data: bool = False
    mutates_metadata: bool = False
    mutates_with_grad: bool = False
    relayout: tuple["ViewStep", ...] = ()
    written_in_backward: bool = False
    replaces_storage: bool = False
    storage_source: Optional[int] = None
    storage_layout: Optional[TensorMeta] = None
    storage_resize: Optional["StorageResize"] = None
    views_relaid: bool = False
    sets_requires_grad: Optional[bool] = None
    moves_version: bool = False
    keeps_version: bool = False


@dataclass(frozen=True)
class StorageResize:
    """What the program does to an input's storage size, for the runtime to do to the caller's.

    `bytes_inside`: the most bytes the program gives the storage (None: it only frees it); the
    runtime gives the caller's storage that many before the graphs run when it holds fewer than
    the input's sizes need, so the graphs never touch freed memory. `bytes_after`: its size when
    the program returns (0: freed), set by the runtime after writing the input's new values.
    `arrives_freed`: the compile saw the input arrive with less memory than its sizes need."""

    bytes_inside: Optional[int]
    bytes_after: int
    arrives_freed: bool


@dataclass(frozen=True)
class ViewStep:
    """One view op to replay: ``op(tensor, *args, **dict(kwargs))``, no tensor among the args;
    with `index`, the view of that position among a multi-output view op's results (``split``,
    ``unbind``: autograd then refuses in-place writes into it, as eager's)."""

    op: Any
    args: tuple = ()
    kwargs: tuple = ()
    index: Optional[int] = None

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        out = self.op(tensor, *self.args, **dict(self.kwargs))
        return out if self.index is None else out[self.index]


@dataclass(frozen=True)
class OutputInfo(Leaf):
    """One flat leaf of the user's outputs.

    A tensor leaf is returned by the forward graph; `requires_grad` says whether it is
    differentiable. `base_input` names the flat input it is a view of, if any; `is_input`
    says it is that input itself (eager returns the same object). `base_output` names another
    flat output it is a view of or shares memory with (when it aliases no input); `is_output`
    says it is that output itself (the program returned one tensor twice).
    `base_of_outputs` names the entry of `Signature.view_bases` (an intermediate the forward
    returns in addition) it is a view of. The runtime rebuilds such an output outside the
    autograd.Function from its base: by replaying `view_chain` (the program's own view ops,
    so ``._base``, ``grad_fn`` and in-place writes behave as in eager), or, with no chain,
    by ``as_strided``. A view of an intermediate gets no tangent (`has_tangent`): its gradient
    reaches the base through autograd's view backward.
    A non-tensor leaf is the `constant` seen while tracing. A symbolic Python number (a value
    of ``.item()`` under Dynamo's ``capture_scalar_outputs``) is returned by the graph as a 0-d
    tensor, and by the runtime as that tensor's ``.item()``: `python_scalar` is its kind (int,
    float or bool), None for other leaves.
    An output that requires grad but has no autograd history where the program ran under no_grad
    (a leaf requiring grad returned) takes no tangent (`tangent_free`) while other outputs do.
    A view of an input that requires grad is `detached` where eager's view does not (``x.detach()``,
    taken under no_grad too, where eager's other views of it report requires_grad).
    An output in an input's memory with a history of its own (``x.detach().mul_(x)``: eager's
    output is that memory, its gradient the write's) has `written_alias_of`, that input's flat
    position: the graph returns its value, and the runtime writes it, recorded by autograd, into
    a detached alias of the input's memory at the output's layout, which it returns.
    A view whose view ops or layout hold symbolic sizes has `layout_from_graph`: the runtime
    rebuilds it by ``as_strided`` on its base (an input, another output, a base the forward
    returns) at the layout of the graph's own output for it (its sizes at this call), which must
    be that input's memory (for the other bases, where a compiler copied it, the graph's output
    stands). With `written_alias_of` it marks an output of symbolic sizes that is the input's
    whole memory, in the input's own layout. `creation_meta`: how eager's output, a view, was
    made where autograd refuses writes into it (``"MULTI_OUTPUT_NODE"``: a ``split`` output;
    `torch_private.views`); the runtime marks its view so where it rebuilt it otherwise.
    """

    base_input: Optional[int] = None
    is_input: bool = False
    base_output: Optional[int] = None
    view_chain: tuple[ViewStep, ...] = ()
    base_of_outputs: Optional[int] = None
    python_scalar: Optional[type] = None
    layout_from_graph: bool = False  # a view of symbolic sizes laid out by the graph's output: see below
    detached: bool = False  # a view of an input requiring grad that eager gives without it (``x.detach()``)
    tangent_free: bool = False  # requires grad, but no history to take a tangent for: see below
    is_output: bool = False  # the very tensor of output `base_output` again (eager returns one object twice)
    written_alias_of: Optional[int] = None  # the flat input whose memory it is, with a history of its own: below
    creation_meta: Optional[str] = None  # eager's view made by a multi-output op, under no_grad, ...: below
    made_leaf: bool = False  # a leaf the program made require grad (``requires_grad_()``): returned as one

    @property
    def has_tangent(self) -> bool:
        return self.requires_grad and self.base_of_outputs is None and not self.tangent_free


@dataclass(frozen=True)
class Signature:
    """How the user's pytrees map onto the flat graph inputs and outputs."""

    in_spec: TreeSpec
    out_spec: TreeSpec
    inputs: tuple[InputInfo, ...]
    outputs: tuple[OutputInfo, ...]
    view_bases: tuple[TensorMeta, ...] = ()  # intermediates that outputs are views of (`OutputInfo.base_of_outputs`)
    # The grad mode the program leaves set (``torch.set_grad_enabled(False)`` not undone), or None
    # when it returns in the mode it was called in; the runtime sets it after each call, as eager.
    grad_enabled_after: Optional[bool] = None

    @property
    def primal_positions(self) -> tuple[int, ...]:
        """Flat input positions of the tensor leaves, in graph placeholder order."""
        return tuple(i for i, info in enumerate(self.inputs) if info.is_tensor)

    @property
    def tensor_output_positions(self) -> tuple[int, ...]:
        return tuple(i for i, info in enumerate(self.outputs) if info.is_tensor)

    @property
    def mutated_primals(self) -> tuple[int, ...]:
        """Primal indices (not flat positions) whose data the program mutates."""
        return tuple(p for p, i in enumerate(self.primal_positions) if self.inputs[i].mutates_data)

    @property
    def grad_mutated_primals(self) -> tuple[int, ...]:
        """Primal indices whose data mutation autograd records (a subset of `mutated_primals`)."""
        return tuple(p for p, i in enumerate(self.primal_positions) if self.inputs[i].mutates_with_grad)

    @property
    def backward_written_primals(self) -> tuple[int, ...]:
        """Primal indices a backward writes into (`InputInfo.written_in_backward`), in the order the
        joint returns their new values after the gradients."""
        return tuple(p for p, i in enumerate(self.primal_positions) if self.inputs[i].written_in_backward)

    @property
    def metadata_mutated_primals(self) -> tuple[int, ...]:
        return tuple(p for p, i in enumerate(self.primal_positions) if self.inputs[i].mutates_metadata)

    def __str__(self) -> str:
        """Tables of the flat inputs and outputs, and the pytree structure (``artifacts/signature_text.py``)."""
        from .signature_text import format_signature

        return format_signature(self)


@dataclass(frozen=True)
class RegionUse:
    """One region the capture reused (`capture.regions`): its graph name, whether it was found
    without a marker (`capture.repeated_layers`), how many calls of the program it served, and the
    seconds its one capture and partition took (each further occurrence saved about as much)."""

    name: str
    automatic: bool
    occurrences: int
    seconds: float


@dataclass(frozen=True)
class JointGraph:
    """Forward and backward as one functional ATen graph.

    Placeholders: ``primals_1..P`` (the tensor inputs), then ``tangents_1..T`` (one per
    tensor output with `OutputInfo.has_tangent`, then one per input in
    `Signature.grad_mutated_primals`, then one per differentiable entry of
    `Signature.view_bases`; absent when `is_inference`). Output tuple:
    ``(*user tensor outputs, *new values of mutated primals, *new metadata views of
    metadata-mutated primals, *bases of aliased outputs, *grads, *new values of
    `Signature.backward_written_primals`)`` with one grad per primal
    (``None`` where it needs none); no grads when `is_inference`. A user output that is a view
    of a base stays in its slot, but the runtime rebuilds it from the base. Every node carries
    ``meta["val"]``, a fake tensor.
    """

    graph_module: fx.GraphModule
    signature: Signature
    is_inference: bool
    fake_mode: Any
    regions: tuple[RegionUse, ...] = ()  # the regions captured once and called per occurrence
    # per primal, a bit mask of the tangents whose outputs' autograd histories reach it
    # (`capture.grad_reach`): it gets a gradient, zeros at least, when one of them gets one
    tangents_reaching_grads: tuple[int, ...] = ()

    @property
    def num_primals(self) -> int:
        return len(self.signature.primal_positions)

    @property
    def num_tangents(self) -> int:
        if self.is_inference:
            return 0
        sig = self.signature
        return (sum(o.has_tangent for o in sig.outputs) + len(sig.grad_mutated_primals)
                + sum(b.requires_grad for b in sig.view_bases))

    @property
    def num_fwd_outputs(self) -> int:
        """Graph outputs that the forward produces: user tensors, mutated inputs, metadata views,
        bases of aliased outputs."""
        sig = self.signature
        return (len(sig.tensor_output_positions) + len(sig.mutated_primals) + len(sig.metadata_mutated_primals)
                + len(sig.view_bases))


@dataclass(frozen=True)
class SavedValue:
    """A value the forward hands to the backward, and why."""

    name: str
    meta: Optional[TensorMeta]
    producer: str
    reason: str = "used by backward"

    @property
    def nbytes(self) -> int:
        return self.meta.nbytes if self.meta is not None else 0


@dataclass(frozen=True)
class PartitionPlan:
    """What a partitioner decided, with its predictions. Byte counts are distinct storages
    outside the graph inputs (the caller keeps inputs alive anyway)."""

    saved: tuple[str, ...]
    recomputed: tuple[str, ...]
    offloaded: tuple[str, ...]
    saved_bytes: int
    offloaded_bytes: int
    recompute_flops: int
    reasons: tuple[tuple[str, str], ...]
    budget: Optional[int] = None  # memory budget, bytes
    recompute_budget: Optional[int] = None  # recompute budget, FLOPs
    note: str = ""

    @property
    def device_saved_bytes(self) -> int:
        return self.saved_bytes - self.offloaded_bytes


@dataclass(frozen=True)
class CallingConvention:
    """How the graphs of a Partition are called, built once where they are built.

    Forward: ``(*primals) -> (*forward outputs, *saved values)``: its placeholders are
    the joint's primals in order; the first `num_fwd_outputs` outputs are the joint's
    forward outputs (user tensors, new values of mutated primals, metadata views, bases of
    aliased outputs), the rest
    the values in `saved_names`. Backward: ``(*saved values, *tangents) -> grads``: its first
    placeholders are the saved values named in `backward_saved_names` (a subset of
    `saved_names`, in the backward's order), then one placeholder per entry of
    `backward_tangents`, the joint tangent it receives (tangent k is the gradient of the
    k-th differentiable forward output); it returns one gradient per primal, then the new values
    of `Signature.backward_written_primals`."""

    num_fwd_outputs: int
    saved_names: tuple[str, ...]
    backward_saved_names: tuple[str, ...] = ()
    backward_tangents: tuple[int, ...] = ()


@dataclass(frozen=True)
class Partition:
    """Forward: ``primals -> (*fwd outputs, *saved tensors, *saved symbols)``.
    Backward: ``(*saved tensors, *saved symbols, *tangents) -> grads`` (one per primal).
    `recomputed` names joint nodes that the backward recomputes instead of loading.
    `convention` says which placeholder and output is which (see `CallingConvention`).
    `planned_for`: the partition's keyword arguments besides the joint and the function
    (``fusing_compiler``, ``kept_primals``...), for a plan made again with another function
    (the report's budgets)."""

    forward: fx.GraphModule
    backward: Optional[fx.GraphModule]
    saved: tuple[SavedValue, ...]
    num_saved_tensors: int
    joint: JointGraph
    recomputed: tuple[str, ...] = ()
    plan: Optional[PartitionPlan] = None  # what our partitioners decided; None from other partition functions
    convention: Optional[CallingConvention] = None
    planned_for: tuple = ()  # ((name, value), ...)

    @cached_property
    def saved_bytes(self) -> int:
        """Bytes the forward hands to the backward: distinct storages outside the graph inputs
        (as `PartitionPlan.saved_bytes` and the saved-tensor report count them; offloaded
        values included, in host memory)."""
        if self.backward is None:
            return 0
        from ..graph.memory import saved_storage_bytes

        return saved_storage_bytes(self.forward, self.joint.num_fwd_outputs)

    @cached_property
    def memory(self):
        """Predicted memory: a `MemoryTimeline` (per-node live bytes of forward and backward,
        their peaks above the inputs, saved bytes), simulated on first use (see
        ``graph/memory.py``)."""
        from ..graph.memory import simulate_memory

        return simulate_memory(self.forward, self.backward, self.joint.num_fwd_outputs,
                               len(self.joint.signature.tensor_output_positions))


@dataclass(frozen=True)
class CompiledGraphs:
    """Boxed callables (they take one list and may clear it) for each graph of a Partition.
    `mutations_in_graph`: primal indices whose mutation the forward graph writes itself (the
    runtime writes the other mutated inputs back). `checks_viewed_versions`: the compiled forward
    may return the saved views of inputs without the inputs' version counters (Inductor's), so
    the runtime checks those inputs' versions at the backward itself, as autograd would."""

    forward: Callable
    backward: Optional[Callable]
    partition: Partition
    mutations_in_graph: tuple[int, ...] = ()
    note: str = ""  # how they were compiled, for the compile log (e.g. "Inductor's C++ wrapper")
    checks_viewed_versions: bool = False
