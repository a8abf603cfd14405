"""Stage 1: program + example inputs -> JointGraph, in one walk over the program.

The program runs once on fake tensors under `GraphRecorder`: its forward, then (when
anything needs a gradient) ``torch.autograd.grad`` on tangent placeholders, both
recorded into one graph. Programs that mutate are then functionalized; programs that
do not skip that pass entirely. Recording runs with the Python dispatcher on (as make_fx
does), so composite ops with Python decompositions (nn.LSTM, nn.GRU, nn.RNN) trace to
plain ops instead of fused kernels whose outputs depend on grad mode at run time. It stays
on for every program: without it, composite ops take their C++ paths (cuDNN batch norm and
the like), which Inductor cannot fuse (measured: ResNet-50 step 1.50x torch.compile's instead
of 0.93x).
"""
from __future__ import annotations

import contextlib
import enum
import sys
import threading
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.fx as fx
from torch._dispatch.python import enable_python_dispatcher
from torch._guards import detect_fake_mode
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._pytree import TreeSpec, tree_flatten, tree_unflatten

from ..artifacts import InputInfo, JointGraph, OutputInfo, Signature, TensorMeta
from ..errors import BadArgument, DataDependentControlFlow, UnsupportedOp
from .cse import merge_common_subexpressions
from .fake_outputs import fake_cache_replaced
from .functionalize import functionalize
from .recorder import GraphRecorder, _user_line

__all__ = ["capture"]

try:  # generates the joint's Python code only if someone reads or runs it (torch >= 2.3)
    from torch.fx._lazy_graph_module import _LazyGraphModule as JointModule
except ImportError:
    JointModule = fx.GraphModule

# Output leaves returned as they are: tensors, and constants that cannot hold a tensor.
_OUTPUT_LEAF_TYPES = (torch.Tensor, int, float, bool, complex, str, bytes, type(None), enum.Enum, torch.Size,
                      torch.dtype, torch.device, torch.layout, torch.memory_format)


def capture(
    fn: Callable,
    flat_args: Sequence[Any],
    in_spec: TreeSpec,
    *,
    decompositions: Mapping | None = None,
) -> JointGraph:
    """Trace ``fn(*args, **kwargs)`` (``(args, kwargs) = tree_unflatten(flat_args, in_spec)``).

    Tensor leaves become placeholders; other leaves are specialized as constants. The
    result is an inference graph when grad mode is off or no output needs a gradient.
    """
    if not callable(fn):
        raise BadArgument(f"expected a function or module to compile, got {type(fn).__name__}", "capture",
                          "pass a callable (a function or an nn.Module)")
    fake_mode = detect_fake_mode(list(flat_args)) or FakeTensorMode()
    recorder = GraphRecorder(fake_mode, {**(decompositions or {}), **_STORAGE_CHANGES_REFUSED})
    try:
        with fake_cache_replaced(fake_mode):
            return _trace_joint(fn, flat_args, in_spec, fake_mode, recorder)
    finally:
        recorder.random_draws.restore()  # the caller gets back the RNG state it had


def _trace_joint(fn, flat_args, in_spec, fake_mode, recorder) -> JointGraph:
    """The body of `capture`: one walk over the program, then the joint graph around it."""
    _refuse_freed_inputs(flat_args)
    fake_flat = _fake_inputs(flat_args, fake_mode)
    primal_fakes, program_flat = _program_inputs(fake_flat, fake_mode)
    program_fakes = [f for f in program_flat if isinstance(f, torch.Tensor)]
    placeholders = [recorder.add_placeholder(f"primals_{k + 1}", f) for k, f in enumerate(primal_fakes)]
    for placeholder, program_fake in zip(placeholders, program_fakes):
        recorder.node_of.setdefault(id(program_fake), placeholder)

    metas_before = [TensorMeta.of(f) for f in primal_fakes]
    versions_before = [f._version for f in program_fakes]
    input_positions = [k for k, a in enumerate(program_flat) if isinstance(a, torch.Tensor)]
    bytes_before = [f.untyped_storage().nbytes() for f in program_fakes]
    args, kwargs = tree_unflatten(program_flat, in_spec)
    wants_grad = torch.is_grad_enabled()
    try:
        with fake_mode, recorder, enable_python_dispatcher(), _storage_resizes_refused, \
                _rnns_as_plain_ops(wants_grad and any(f.requires_grad for f in primal_fakes)):
            out = fn(*args, **kwargs)
        recorder.random_draws.position("the program returns")
    except RuntimeError as error:
        if "data is not allocated yet" in str(error):  # a C++ kernel read a fake tensor's data
            raise DataDependentControlFlow(
                "an op read the values of a tensor inside its kernel (e.g. tensor_split with tensor indices)",
                "capture", "pass those values as Python ints, or run that op eagerly outside the compiled function",
            ) from error
        raise
    # A torch.Size stays one leaf: pytree would flatten it and rebuild a plain tuple.
    flat_out, out_spec = tree_flatten(out, is_leaf=lambda value: isinstance(value, torch.Size))
    _refuse_resized_inputs(program_fakes, bytes_before, input_positions)
    for o in flat_out:
        if isinstance(o, torch.Tensor) and o.layout != torch.strided:
            raise UnsupportedOp(f"the program returns a tensor with layout {o.layout}", "capture",
                                "return dense tensors (e.g. .to_dense()) or run that part eagerly")
    opaque = [(k, o) for k, o in enumerate(flat_out) if not isinstance(o, _OUTPUT_LEAF_TYPES)]
    if opaque:
        position, value = opaque[0]
        raise UnsupportedOp(
            f"output leaf {position} is a {type(value).__name__}, which may hold tensors that aotgraph cannot see "
            "(they would come back as fake tensors)",
            "capture",
            "return tensors and Python scalars in tuples, lists, dicts or namedtuples, or register the class "
            "as a pytree node (torch.utils._pytree.register_dataclass)",
        )
    with fake_mode, recorder, enable_python_dispatcher():
        out_nodes = [recorder.node_for(o) for o in flat_out if isinstance(o, torch.Tensor)]
    final_nodes = {p.name: recorder.node_of[id(f)] for p, f in zip(placeholders, program_fakes)}
    layout_changed = _restore_input_layouts(placeholders, program_fakes, metas_before, fake_mode)
    relaid_with_grad = [p.name for p, f in zip(placeholders, program_fakes)
                        if p.name in layout_changed and wants_grad and f.requires_grad]
    if relaid_with_grad:
        raise UnsupportedOp(
            f"an in-place view op (t_, unsqueeze_, transpose_, ...) changes the layout of inputs {relaid_with_grad}, "
            "which require grad", "capture",
            "use the out-of-place view (x = x.t()) inside the function, or detach the input first")

    tensor_outs = [o for o in flat_out if isinstance(o, torch.Tensor)]
    # An input mutated under autograd (a non-leaf input, or a plain input that took a value
    # requiring grad) returns its new value as a differentiable output, as eager's history does.
    mutated_with_grad = tuple(
        p.name for p, f, v in zip(placeholders, program_fakes, versions_before)
        if wants_grad and f._version != v and f.requires_grad and f.grad_fn is not None
    )
    diff_outs = [o for o in tensor_outs if o.requires_grad] if wants_grad else []
    diff_outs += [f for p, f in zip(placeholders, program_fakes) if p.name in mutated_with_grad]
    diff_inputs = _unique([f for f in primal_fakes if f.requires_grad]) if wants_grad else []
    is_inference = not (diff_outs and diff_inputs)
    if torch.is_grad_enabled():
        _refuse_lost_gradients([o for o in tensor_outs if o.requires_grad], primal_fakes)
    grad_nodes: list[Any] = []
    if not is_inference:
        grad_nodes = _record_backward(recorder, fake_mode, diff_outs, diff_inputs, primal_fakes)
    else:
        mutated_with_grad = ()

    graph = recorder.graph
    graph.output((tuple(out_nodes), tuple(grad_nodes)))
    data_mutated: tuple[str, ...] = ()
    metadata_mutated: tuple[str, ...] = ()
    if recorder.saw_mutation:
        functional = functionalize(graph, recorder.fake_outputs, final_nodes, layout_changed)
        graph, data_mutated, metadata_mutated = functional.graph, functional.data_mutated, functional.metadata_mutated
        extra = [functional.final_value_of[n] for n in data_mutated]
        extra += [functional.final_value_of[n + ".view"] for n in metadata_mutated]
    else:
        extra = []
    output = graph.find_nodes(op="output")[0]
    user_outs, grads = output.args[0]
    output.args = ((*user_outs, *extra, *grads),)
    merge_common_subexpressions(graph)
    eliminate_dead_code(graph)

    root = torch.nn.Module()
    for name, constant in recorder.constants.items():
        setattr(root, name, constant)
    graph_module = JointModule(root, graph)

    missing = set(mutated_with_grad) - set(data_mutated)
    if missing:
        raise UnsupportedOp(f"inputs {sorted(missing)} changed under autograd without a data mutation aotgraph saw",
                            "capture", "report this program to aotgraph")
    _refuse_mutated_aliased_inputs(fake_flat, data_mutated + metadata_mutated)
    signature = _signature(flat_args, program_flat, metas_before, in_spec, flat_out, out_spec, data_mutated,
                           metadata_mutated, mutated_with_grad, is_inference)
    return JointGraph(graph_module, signature, is_inference, fake_mode)


def _rnns_as_plain_ops(training: bool):
    """With the Python dispatcher on, ``nn.LSTM`` decomposes in Python, and that decomposition
    takes oneDNN's fused CPU kernel (``mkldnn_rnn_layer`` with ``train=False``: no workspace
    for a backward) whenever the LSTM's input does not require grad, even if its weights do.
    Training a model on data that needs no gradient then fails in the backward. While
    capturing for training, oneDNN is off, so the LSTM is recorded as plain ops, as eager
    trains it. Inference keeps the fused kernel."""
    if not training or not torch._C._get_mkldnn_enabled():
        return contextlib.nullcontext()
    return _mkldnn_off()


@contextlib.contextmanager
def _mkldnn_off():
    # torch.backends.mkldnn.flags would also reset oneDNN's TF32 setting, with a warning.
    torch._C._set_mkldnn_enabled(False)
    try:
        yield
    finally:
        torch._C._set_mkldnn_enabled(True)


def _record_backward(recorder, fake_mode, diff_outs, diff_inputs, primal_fakes) -> list:
    first_op = next((n for n in recorder.graph.nodes if n.op != "placeholder"), None)
    tangents = []
    for k, out in enumerate(diff_outs):
        with fake_mode:
            tangent = torch.empty(out.shape, dtype=out.dtype, device=out.device)
        with recorder.graph.inserting_before(first_op):  # None: the end, when the forward has no op
            recorder.add_placeholder(f"tangents_{k + 1}", tangent)
        tangents.append(tangent)
    with fake_mode, recorder, enable_python_dispatcher(), _storage_resizes_refused:  # hooks may resize
        grads = torch.autograd.grad(diff_outs, diff_inputs, tangents, allow_unused=True)
        grad_of = {id(i): g for i, g in zip(diff_inputs, grads)}
        grad_nodes, seen = [], set()
        for fake in primal_fakes:
            grad = grad_of.get(id(fake)) if id(fake) not in seen else None
            seen.add(id(fake))
            grad_nodes.append(recorder.node_for(grad) if grad is not None else None)
    return grad_nodes


def _refuse_lost_gradients(diff_outs, primal_fakes) -> None:
    """A real tensor that requires grad but is not an input (a global, a closure, a module
    attribute) would get a gradient in eager and none from the graph: refuse it. Leaves the
    program makes itself (``t.detach().requires_grad_()``) are fake and stay allowed."""
    inputs = {id(f) for f in primal_fakes}
    seen, pending = set(), [o.grad_fn for o in diff_outs]
    while pending:
        node = pending.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        leaf = getattr(node, "variable", None)  # set on AccumulateGrad nodes only
        if leaf is not None and id(leaf) not in inputs and not isinstance(leaf, FakeTensor):
            raise BadArgument(
                f"the program reads a tensor of shape {tuple(leaf.shape)} that requires grad but is not an "
                "input (a global, a closure or a module attribute), so its gradient would be lost",
                "capture",
                "pass it as an argument (aot_module passes a module's parameters and buffers for you)",
            )
        pending.extend(next_node for next_node, _ in node.next_functions)


# Storage changes. FSDP frees a parameter's memory between uses (``untyped_storage().resize_(0)``)
# and reallocates it before the next. aotgraph does not capture that yet: it refuses it rather
# than compile a graph that would read or write freed memory (a segmentation fault, not an
# error) or keep memory eager frees. ``UntypedStorage.resize_`` calls C++ directly, past every
# dispatch mode, so it is refused by a hook on the class while the program runs; the ops below
# reach the recorder and are refused there; inputs that arrive freed are refused on entry.
_STORAGE_FIX = "resize the storage outside the compiled function (before or after calling it), or run this part eagerly"


def _refuse_storage_op(func, fix: str, what: str) -> Callable:
    """A decomposition of `func` that refuses it; `what` says what it does to ``{tensor}``."""
    def refuse(tensor, *args, **kwargs):
        tensor_text = f"a tensor of shape {tuple(tensor.shape)}"
        raise UnsupportedOp(f"{func} {what.format(tensor=tensor_text)}{_user_line()}, which aotgraph does not "
                            "capture yet", "capture", fix)
    return refuse


aten = torch.ops.aten
_SET_FIX = "use the source tensor (or a view of it) instead of set_, or run this part eagerly"
# Given to the recorder as decompositions: its hook already looks each op up there.
_STORAGE_CHANGES_REFUSED = {
    op: _refuse_storage_op(op, _SET_FIX, "makes {tensor} use other memory")
    for op in (aten.set_.source_Tensor, aten.set_.source_Storage, aten.set_.source_Storage_storage_offset,
               aten.set_.default)
}
if hasattr(torch.ops.inductor, "resize_storage_bytes_"):
    _resize_storage_bytes = torch.ops.inductor.resize_storage_bytes_.default
    _STORAGE_CHANGES_REFUSED[_resize_storage_bytes] = _refuse_storage_op(
        _resize_storage_bytes, _STORAGE_FIX, "resizes the storage of {tensor}")


_FAKE_CONVERSION = "torch._subclasses.meta_utils"  # gives the fake of a freed tensor a freed storage


class _StorageResizesRefused:
    """``with _storage_resizes_refused:`` ``UntypedStorage.resize_`` (and ``TypedStorage``'s, which
    calls it) raises UnsupportedOp on this thread. The hook is on the class while any thread is
    inside; other threads' resizes pass through to the original."""

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._original: Any = None
        self._on_thread = threading.local()

    def __enter__(self):
        with self._lock:
            if self._users == 0:
                self._original = torch.UntypedStorage.__dict__.get("resize_")
                torch.UntypedStorage.resize_ = self._hooked_resize()
            self._users += 1
        self._on_thread.depth = getattr(self._on_thread, "depth", 0) + 1

    def __exit__(self, *exc_info):
        self._on_thread.depth -= 1
        with self._lock:
            self._users -= 1
            if self._users == 0:
                if self._original is None:
                    del torch.UntypedStorage.resize_
                else:
                    torch.UntypedStorage.resize_ = self._original

    def _hooked_resize(self) -> Callable:
        original_resize = torch.UntypedStorage.resize_
        on_thread = self._on_thread

        def resize_(storage, size):
            if not getattr(on_thread, "depth", 0):
                return original_resize(storage, size)
            if sys._getframe(1).f_globals.get("__name__") == _FAKE_CONVERSION:  # a fake of a freed tensor
                raise UnsupportedOp(
                    f"the program reads a tensor it closes over (not an input) whose memory was freed{_user_line()}",
                    "capture", "resize its storage back (and fill it) before calling the compiled function")
            raise UnsupportedOp(
                f"the program resizes a tensor's storage to {size} bytes (untyped_storage().resize_, as FSDP frees "
                f"and reallocates parameters){_user_line()}, which aotgraph does not capture yet", "capture",
                _STORAGE_FIX)

        return resize_


_storage_resizes_refused = _StorageResizesRefused()


def _bytes_needed(tensor: torch.Tensor) -> int:
    """The storage bytes `tensor`'s sizes, strides and offset reach."""
    if tensor.numel() == 0:
        return 0
    last = tensor.storage_offset() + sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride()))
    return (last + 1) * tensor.element_size()


def _refuse_freed_inputs(flat_args: Sequence[Any]) -> None:
    """An input whose storage is smaller than its layout (freed): the graph would read or write
    memory that is not there."""
    for position, value in enumerate(flat_args):
        if not isinstance(value, torch.Tensor) or value.layout != torch.strided or not torch._C._has_storage(value):
            continue
        nbytes, needed = value.untyped_storage().nbytes(), _bytes_needed(value)
        if nbytes < needed:
            raise UnsupportedOp(
                f"the input at flat position {position} has a storage of {nbytes} bytes, fewer than its sizes and "
                f"strides need ({needed}): its memory was freed (untyped_storage().resize_, as FSDP does)",
                "capture", "resize its storage back (and fill it) before calling the compiled function, "
                "or run this part eagerly")


def _refuse_resized_inputs(program_fakes, bytes_before, input_positions) -> None:
    """A net for storage changes no hook saw: an input whose storage changed size."""
    for fake, before, position in zip(program_fakes, bytes_before, input_positions):
        after = fake.untyped_storage().nbytes()
        if after != before:
            raise UnsupportedOp(
                f"the storage of the input at flat position {position} changed from {before} to {after} bytes "
                "inside the program (x.resize_(), ...), which aotgraph does not capture yet", "capture", _STORAGE_FIX)


def _restore_input_layouts(placeholders, primal_fakes, metas_before, fake_mode) -> tuple[str, ...]:
    """In-place view ops (``x.t_()``) change the fake input itself; give each such placeholder
    a fake of the layout it had on entry, and name the inputs whose layout changed."""
    changed = []
    for placeholder, fake, before in zip(placeholders, primal_fakes, metas_before):
        if (tuple(fake.shape), fake.stride(), fake.storage_offset()) != (before.shape, before.stride,
                                                                          before.storage_offset):
            changed.append(placeholder.name)
            with fake_mode:
                placeholder.meta["val"] = torch.empty_strided(
                    before.shape, before.stride, dtype=before.dtype, device=before.device
                ).requires_grad_(before.requires_grad)
    return tuple(changed)


def _program_inputs(fake_flat: list, fake_mode: FakeTensorMode) -> tuple[list, list]:
    """(placeholder fakes, what the program sees) for each tensor input.

    Placeholders are autograd leaves, the tensors gradients are taken with respect to.
    An input that is not a leaf in the caller (it requires grad and has history) is seen
    by the program as a grad-tracking copy of its leaf, so in-place ops on it are legal
    exactly as in eager, and their history reaches the placeholder. The copy is not
    recorded: the graph reads the placeholder directly.
    """
    primal_of: dict[int, tuple] = {}
    primals, program_flat = [], []
    for fake in fake_flat:
        if not isinstance(fake, torch.Tensor):
            program_flat.append(fake)
            continue
        if id(fake) not in primal_of:
            if fake.requires_grad and not fake.is_leaf:
                leaf = fake.detach().requires_grad_(True)
                primal_of[id(fake)] = (leaf, _grad_tracking_copy(leaf, fake_mode))
            else:
                primal_of[id(fake)] = (fake, fake)
        leaf, seen = primal_of[id(fake)]
        primals.append(leaf)
        program_flat.append(seen)
    return primals, program_flat


class _PassThroughCopy(torch.autograd.Function):
    """A copy whose backward hands the gradient straight to its source: nothing of it is
    recorded, whatever the layout (a copy through ``as_strided`` would record a backward that
    zero-fills and scatters into a buffer the size of the input's storage)."""

    @staticmethod
    def forward(ctx, leaf):
        # Not a view (autograd forbids in-place ops on views made inside a custom Function).
        copy = torch.empty(0, dtype=leaf.dtype, device=leaf.device)
        storage = torch.empty(leaf.untyped_storage().nbytes(), dtype=torch.uint8, device=leaf.device)
        copy.set_(storage.untyped_storage(), leaf.storage_offset(), leaf.shape, leaf.stride())
        return copy.copy_(leaf)

    @staticmethod
    def backward(ctx, grad):
        return grad


def _grad_tracking_copy(leaf: torch.Tensor, fake_mode: FakeTensorMode) -> torch.Tensor:
    """A non-leaf copy of `leaf` with its exact sizes, strides and storage offset."""
    with fake_mode, torch.enable_grad():
        return _PassThroughCopy.apply(leaf)


def _fake_inputs(flat_args: Sequence[Any], fake_mode: FakeTensorMode) -> list:
    """`flat_args` with each real tensor replaced by a fake (the same fake for the same tensor).

    A plain leaf tensor that is the only input on its storage gets its fake directly: a meta
    tensor of its layout wrapped as a FakeTensor (~5x cheaper than ``from_tensor``'s general
    conversion, and a module has many parameters). Views, tensors sharing storage with
    another input, non-leaves and anything unusual go through ``from_tensor``, which keeps
    their aliasing and autograd history.
    """
    tensors = [a for a in flat_args if isinstance(a, torch.Tensor)]
    # Tensors made in inference mode would be inference tensors; other tensor types may share
    # storage in ways a storage check cannot see.
    direct = not torch.is_inference_mode_enabled() and all(type(a) in _PLAIN_TENSOR_TYPES for a in tensors)
    holders: dict[int, set] = {}
    for a in (t for t in tensors if t.layout == torch.strided) if direct else ():
        holders.setdefault(a.untyped_storage()._cdata, set()).add(id(a))
    fake_of: dict[int, Any] = {}
    fakes = []
    for a in flat_args:
        fake = fake_of.get(id(a))
        if fake is None:
            if direct and _is_plain_leaf(a) and len(holders[a.untyped_storage()._cdata]) == 1:
                fake = _fake_of_plain_leaf(a, fake_mode)
            if fake is None:
                fake = _to_fake(a, fake_mode)
            fake_of[id(a)] = fake
        fakes.append(fake)
    return fakes


_PLAIN_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)


def _is_plain_leaf(value: Any) -> bool:
    return (type(value) in _PLAIN_TENSOR_TYPES and value.layout == torch.strided
            and value.grad_fn is None and value._base is None and value.storage_offset() == 0
            and value.grad is None and not (value.is_conj() or value.is_neg() or value.is_inference()
                                            or value.is_quantized or value.is_meta))


def _fake_of_plain_leaf(real: torch.Tensor, fake_mode: FakeTensorMode) -> FakeTensor | None:
    """A fake with `real`'s layout and requires_grad; None if `real`'s storage is larger than its
    layout needs (``from_tensor`` keeps that size on some torch versions, not on others)."""
    with torch._C._DisableTorchDispatch():
        meta = torch.empty_strided(real.shape, real.stride(), dtype=real.dtype, device="meta",
                                   requires_grad=real.requires_grad)
    if meta.untyped_storage().nbytes() != real.untyped_storage().nbytes():
        return None
    return FakeTensor(fake_mode, meta, real.device)


def _to_fake(value: Any, fake_mode: FakeTensorMode) -> Any:
    if not isinstance(value, torch.Tensor) or isinstance(value, FakeTensor):
        return value
    if value.is_sparse or value.layout != torch.strided:
        raise BadArgument(f"input tensor with layout {value.layout} is not supported", "capture",
                          "pass dense (strided) tensors")
    return fake_mode.from_tensor(value, static_shapes=True)


def _unique(tensors: list) -> list:
    seen, unique = set(), []
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            unique.append(t)
    return unique


def _signature(flat_args, fake_flat, metas_before, in_spec, flat_out, out_spec, data_mutated, metadata_mutated,
               mutated_with_grad, is_inference):
    primal_names = [f"primals_{k + 1}" for k in range(sum(isinstance(f, torch.Tensor) for f in fake_flat))]
    inputs, storage_of_input, k = [], {}, 0
    for real, fake in zip(flat_args, fake_flat):
        if isinstance(fake, torch.Tensor):
            name, meta = primal_names[k], metas_before[k]
            k += 1
            inputs.append(InputInfo(meta, None, name in data_mutated, name in metadata_mutated, name in mutated_with_grad))
            storage_of_input.setdefault(StorageWeakRef(fake.untyped_storage()), len(inputs) - 1)
        else:
            inputs.append(InputInfo(None, real))
    outputs, storage_of_output = [], {}
    for position, o in enumerate(flat_out):
        if isinstance(o, torch.Tensor):
            meta = TensorMeta.of(o)
            if is_inference and meta.requires_grad:
                meta = TensorMeta(meta.shape, meta.stride, meta.storage_offset, meta.dtype, meta.device, False)
            storage = StorageWeakRef(o.untyped_storage()) if isinstance(o, FakeTensor) else None
            base = storage_of_input.get(storage)
            if base is not None and o.dtype != fake_flat[base].dtype:
                base = None  # a dtype view (view_as_complex) cannot be rebuilt by as_strided; the graph returns it
            base_output = None
            if base is None and storage is not None:
                # An alias of an earlier output is rebuilt from it, if that one carries the gradient it needs.
                earlier = storage_of_output.get(storage)
                if earlier is not None and outputs[earlier].meta.dtype == meta.dtype and (
                        outputs[earlier].requires_grad or not meta.requires_grad):
                    base_output = earlier
                elif earlier is None or meta.requires_grad:
                    storage_of_output[storage] = position
            outputs.append(OutputInfo(meta, None, base, base is not None and o is fake_flat[base], base_output))
        else:
            outputs.append(OutputInfo(None, o))
    return Signature(in_spec, out_spec, tuple(inputs), tuple(outputs))


def _refuse_mutated_aliased_inputs(fake_flat, mutated_names) -> None:
    """Two different inputs sharing storage, one of them mutated: refuse rather than miss the alias."""
    owners: dict = {}
    names: dict = {}
    for position, fake in enumerate(fake_flat):
        if isinstance(fake, torch.Tensor):
            owners.setdefault(StorageWeakRef(fake.untyped_storage()), []).append(position)
            names[position] = f"primals_{len(names) + 1}"
    for positions in owners.values():
        distinct = {id(fake_flat[p]) for p in positions}
        if len(distinct) > 1 and any(names[p] in mutated_names for p in positions):
            raise UnsupportedOp(
                f"inputs at flat positions {positions} share memory and one of them is mutated",
                "capture",
                "pass the base tensor once and take the views inside the function, or clone one of the inputs",
            )


def eliminate_dead_code(graph: fx.Graph) -> None:
    """Remove nodes nobody reads. Random ops stay: dropping them would shift the RNG stream."""
    for node in reversed(list(graph.nodes)):
        if node.op in ("placeholder", "output") or node.users:
            continue
        target = node.target
        if node.op == "call_function" and isinstance(target, torch._ops.OpOverload) and (
            torch.Tag.nondeterministic_seeded in target.tags
        ):
            continue
        graph.erase_node(node)
