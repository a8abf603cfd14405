"""Stage 1: program + example inputs -> JointGraph, in one walk over the program.

The program runs once on fake tensors under `GraphRecorder`: its forward, then (when
anything needs a gradient) ``torch.autograd.grad`` on tangent placeholders, both
recorded into one graph. Programs that mutate are then functionalized; programs that
do not skip that pass entirely. Recording runs with the Python dispatcher on (as make_fx
does), so composite ops with Python decompositions (nn.LSTM, nn.GRU, nn.RNN) trace to
plain ops instead of fused kernels whose outputs depend on grad mode at run time. It stays
on for every program: without it, composite ops take their C++ paths (cuDNN batch norm and
the like), which Inductor cannot fuse (benchmarks/RESULTS.md, "Design measurements").
"""
from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import sys
import threading
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.fx as fx
from torch.autograd.function import BackwardCFunction
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._pytree import TreeSpec, tree_flatten, tree_unflatten

from .. import config
from ..artifacts import InputInfo, JointGraph, OutputInfo, Signature, TensorMeta, ViewStep
from ..errors import BadArgument, DataDependentControlFlow, OpRefused, UnsupportedOp
from ..graph.naming import primal_name, tangent_name
from ..graph.ops import is_runtime_assert
from ..graph.sizes import has_symbolic_sizes, is_symbolic, layout_key, layout_of
from ..torch_private.dispatch import OpOverload, enable_python_dispatcher, mkldnn_enabled, set_mkldnn_enabled
from ..torch_private.lstm_decomposition import lstm_states_as_eager
from ..torch_private.fake import FakeTensor, FakeTensorDeviceMismatchError, FakeTensorMode, detect_fake_mode
from ..torch_private.fx import LazyGraphModule as JointModule
from ..torch_private.dynamo import compiling
from ..torch_private.views import creation_meta_of
from ..torch_private.symbolic import GuardOnDataDependentSymNode, SizeConditionTooLarge, has_symbols, memoized_size_arithmetic
from ..torch_private.autocast import autocast_nesting_kept
from ..torch_private.parametrize_cache import parametrize_cache_set_aside
from ..torch_private.saved_tensor_hooks import caller_hooks_set_aside
from ..module_writes import tensor_writes_refused
from .cse import merge_common_subexpressions
from .fake_outputs import FakeOutputs, fake_cache_replaced
from .functional_ops import is_metadata_mutation
from .functionalize import functionalize
from .grad_reach import reaching_tangent_masks
from .higher_order import HigherOrderCalls, public_apis_calling_operators
from .regions import Regions, SplitRegion
from .repeated_layers import RepeatedLayers
from .inputs import _PassThroughCopy, fake_inputs, program_inputs, restore_input_layouts, unique
from .node_meta import add_tensor_meta
from .outside_dispatch import kernels_outside_dispatch_refused
from .output_views import OutputViews, find_output_views
from .python_random import python_random_draws_warned
from .recorder import GraphRecorder, _user_line, data_dependent_branch
from .requires_grad_flags import RequiresGradFlags
from .stale_views import StaleViewsRenewed
from .runtime_asserts import insert_runtime_asserts
from .symbols import input_views_laid_out_by_graph, refuse_symbolic_replays
from .storage_changes import (STORAGE_CHANGES_REFUSED, InputStorageResizes, refuse_resized_inputs,
                              storage_resizes_refused)
from .subclasses import refuse_subclass_outputs

__all__ = ["capture", "until_capture_ends"]


# Output leaves returned as they are: tensors, and constants that cannot hold a tensor.
_OUTPUT_LEAF_TYPES = (torch.Tensor, int, float, bool, complex, str, bytes, type(None), enum.Enum, torch.Size,
                      torch.dtype, torch.device, torch.layout, torch.memory_format)


def capture(
    fn: Callable,
    flat_args: Sequence[Any],
    in_spec: TreeSpec,
    *,
    decompositions: Mapping | None = None,
    split_region: SplitRegion | None = None,
    repeated_layers: bool = True,
    fake_outputs: FakeOutputs | None = None,
    watch_calls: bool = False,
) -> JointGraph:
    """Trace ``fn(*args, **kwargs)`` (``(args, kwargs) = tree_unflatten(flat_args, in_spec)``).

    Tensor leaves become placeholders; other leaves are specialized as constants. The
    result is an inference graph when grad mode is off or no output needs a gradient.
    `split_region`: the partition of a region's joint graph (`capture.regions`); with it,
    each nested_compile_region is captured once and called per occurrence, without it inline;
    so is each repeated submodule of a module program (`capture.repeated_layers`) where
    `repeated_layers` (and the switch ``auto_regions``). `fake_outputs`: the fake-output memo of
    the enclosing capture, for a region or subgraph captured on its fakes (shared where they are
    of one fake mode; switch ``shared_fake_memo``). `watch_calls`: the program's torch-function
    calls watched (set by `capture` itself for a second walk where the first needs it).
    """
    if not callable(fn):
        raise BadArgument(f"expected a function or module to compile, got {type(fn).__name__}", "capture",
                          "pass a callable (a function or an nn.Module)")
    fake_mode = detect_fake_mode(list(flat_args)) or FakeTensorMode()
    recorder = GraphRecorder(fake_mode, {**(decompositions or {}), **STORAGE_CHANGES_REFUSED}, fake_outputs)
    capture_subgraph = functools.partial(capture, decompositions=decompositions, split_region=split_region,
                                         fake_outputs=recorder.fake_outputs if config.enabled("shared_fake_memo")
                                         else None)
    regions = None
    if split_region is not None and config.enabled("region_reuse"):
        regions = Regions(capture_subgraph, split_region)
    module = getattr(fn, "aotgraph_module", None)  # a module called with its state as inputs (`aot_module`)
    layers = contextlib.nullcontext()
    if regions is not None and repeated_layers and config.enabled("auto_regions") and isinstance(module,
                                                                                                torch.nn.Module):
        layers = RepeatedLayers(module, regions, recorder).active()
    try:
        with fake_cache_replaced(fake_mode), _size_arithmetic_memo(fake_mode), layers, \
                kernels_outside_dispatch_refused(), caller_hooks_set_aside(), _anomaly_mode_off(), _capture_scope(), \
                autocast_nesting_kept(), parametrize_cache_set_aside(), \
                python_random_draws_warned(getattr(fn, "__name__", type(fn).__name__)):
            joint = _trace_joint(fn, flat_args, in_spec, fake_mode, recorder,
                                 HigherOrderCalls(recorder, capture_subgraph, regions), watch_calls)
        return joint if regions is None else dataclasses.replace(joint, regions=regions.uses())
    except (UnsupportedOp, _CallsToWatch) as refusal:
        if watch_calls or not (isinstance(refusal, _CallsToWatch) or recorder.has_stale_views):
            raise
        if any(isinstance(a, FakeTensor) for a in flat_args):
            # Fake inputs (Dynamo's, or symbolic sizes): the program's in-place changes of their
            # layout and flags stay on them, and a second walk would start from those.
            raise refusal.refusal if isinstance(refusal, _CallsToWatch) else refusal from None
    finally:
        recorder.random_draws.restore()  # the caller gets back the RNG state it had
    # The program set an input's requires_grad, or read a view taken before its base's layout
    # changed: captured again, its torch-function calls watched (`requires_grad_flags`,
    # `stale_views`), which would cost every other capture a Python call per op.
    return capture(fn, flat_args, in_spec, decompositions=decompositions, split_region=split_region,
                   repeated_layers=repeated_layers, fake_outputs=fake_outputs, watch_calls=True)


class _CallsToWatch(Exception):
    """The program set a tensor input's ``requires_grad``: `capture` runs it again with the
    program's calls watched, to see whether it read the input before; or, where it cannot walk
    the program again, raises `refusal`."""

    def __init__(self, refusal: UnsupportedOp):
        super().__init__(str(refusal))
        self.refusal = refusal


_open_captures = threading.local()  # .scopes: an ExitStack per capture under way on this thread, innermost last


@contextlib.contextmanager
def _capture_scope():
    scopes = _open_captures.__dict__.setdefault("scopes", [])
    with contextlib.ExitStack() as scope:
        scopes.append(scope)
        try:
            yield
        finally:
            scopes.pop()


def until_capture_ends(context_manager) -> bool:
    """Enter `context_manager` now and exit it when the innermost capture under way on this
    thread ends, its backward recorded too (a module's parameters swapped for the capture's
    fakes stay so while the backward recomputes a checkpointed block, which reads them again);
    False, entering nothing, outside a capture."""
    scopes = getattr(_open_captures, "scopes", None)
    if not scopes:
        return False
    scopes[-1].enter_context(context_manager)
    return True


def _anomaly_mode_off():
    """``detect_anomaly`` off while the program is captured: its check of each gradient for NaNs
    reads a fake's values (refused as data-dependent). The compiled backward's gradients are
    still checked at run time, where autograd's engine checks every Function's outputs."""
    if not torch.is_anomaly_enabled():
        return contextlib.nullcontext()
    return torch.autograd.set_detect_anomaly(False)


def _size_arithmetic_memo(fake_mode: FakeTensorMode):
    """Repeated arithmetic on symbolic sizes answered from a memo while capturing with a shape
    environment (switch ``size_arithmetic_memo``)."""
    if fake_mode.shape_env is None or not config.enabled("size_arithmetic_memo"):
        return contextlib.nullcontext()
    return memoized_size_arithmetic(direct_guards=config.enabled("direct_guards"))


def _compiling():
    """``torch.compiler.is_compiling()`` True while the program runs on fakes (switch
    ``capture_is_compiling``), as under torch.compile: a program's checks of tensor data and
    caches keyed by sizes that it skips when compiled are skipped in the capture too."""
    return compiling() if config.enabled("capture_is_compiling") else contextlib.nullcontext()


def _sizes_too_large(error: SizeConditionTooLarge) -> UnsupportedOp:
    """The refusal of a capture with symbolic sizes whose size arithmetic grew too large to
    evaluate in reasonable time: aot_function/aot_module and the backend then compile for the
    call's concrete sizes."""
    return UnsupportedOp(f"the program's size arithmetic grew too large for symbolic sizes: {error}", "capture",
                         "compile with static sizes (dynamic=False): one compile per size, each fast")


def _trace_joint(fn, flat_args, in_spec, fake_mode, recorder, higher_order_calls, watch_calls: bool) -> JointGraph:
    """The body of `capture`: one walk over the program, then the joint graph around it."""
    fake_flat = fake_inputs(flat_args, fake_mode)
    primal_fakes, program_flat = program_inputs(fake_flat, fake_mode)
    program_fakes = [f for f in program_flat if isinstance(f, torch.Tensor)]
    placeholders = [recorder.add_placeholder(primal_name(k), f) for k, f in enumerate(primal_fakes)]
    for placeholder, program_fake in zip(placeholders, program_fakes):
        recorder.node_of.setdefault(id(program_fake), placeholder)

    metas_before = [TensorMeta.of(f) for f in primal_fakes]
    versions_before = [_version_of(f) for f in program_fakes]
    histories_before = [_history_of(f) for f in program_fakes]
    input_positions = [k for k, a in enumerate(program_flat) if isinstance(a, torch.Tensor)]
    bytes_before = [f.untyped_storage().nbytes() for f in program_fakes]
    storages_before = [StorageWeakRef(f.untyped_storage()) for f in program_fakes]
    resizes = InputStorageResizes(program_fakes, [flat_args[k] for k in input_positions], input_positions)
    recorder.storage_resizes = resizes
    recorder.input_view_bases = {id(f._base): k for f, k in zip(program_fakes, input_positions)
                                 if f._base is not None and not any(f._base is g for g in program_fakes)}
    args, kwargs = tree_unflatten(program_flat, in_spec)
    wants_grad = torch.is_grad_enabled()
    flags = RequiresGradFlags(program_fakes, placeholders, recorder.node_of) if watch_calls else None
    stale_views = StaleViewsRenewed(recorder, frozenset(
        id(f) for f, k in zip(program_fakes, input_positions) if flat_args[k]._base is not None)) \
        if watch_calls else None
    recorder.node_meta.outer_frame = sys._getframe()  # stack traces stop at the program's caller
    try:
        with fake_mode, recorder, enable_python_dispatcher(), storage_resizes_refused.watching(resizes), \
                higher_order_calls, public_apis_calling_operators(), _compiling(), tensor_writes_refused(), \
                _rnns_as_plain_ops(wants_grad and any(f.requires_grad for f in primal_fakes)), \
                lstm_states_as_eager(), \
                flags or contextlib.nullcontext(), stale_views or contextlib.nullcontext():
            try:
                out = fn(*args, **kwargs)
                if stale_views is not None:
                    out = stale_views.renewed_outputs(out)
            finally:
                # A grad-mode change the program leaves behind is the runtime's to replay after each
                # call; the rest of the capture runs in the caller's mode.
                grad_enabled_after = torch.is_grad_enabled()
                torch._C._set_grad_enabled(wants_grad)
        recorder.random_draws.program_returns()
    except GuardOnDataDependentSymNode as error:
        raise data_dependent_branch(error) from error
    except SizeConditionTooLarge as error:
        raise _sizes_too_large(error) from error
    except RuntimeError as error:
        if "data is not allocated yet" in str(error):  # a C++ kernel read a fake tensor's data
            raise DataDependentControlFlow(
                "an op read the values of a tensor inside its kernel (e.g. tensor_split with tensor indices)",
                "capture", "pass those values as Python ints, or run that op eagerly outside the compiled function",
            ) from error
        if "numpy() is not supported for tensor subclasses" in str(error):  # .numpy() of a fake
            raise DataDependentControlFlow(
                f"the program converts a tensor to NumPy{_user_line(error)} (.numpy() reads its values, which a "
                "captured tensor does not have)", "capture",
                "compute it with torch ops, or run that part eagerly outside the compiled function") from error
        if type(error) is RuntimeError or isinstance(error, FakeTensorDeviceMismatchError):
            # a check above the fake kernels (a broadcast, matmul's sizes, devices): eager's own error
            raise OpRefused(f"the program raised while it was captured{_user_line(error)}: {error}", "capture",
                            "eager raises the same for these inputs: fix the call (shapes, dtypes, devices)") from error
        raise
    except TypeError as error:  # a call with arguments of the wrong type: eager's own error, named where
        if "FakeTensor" in str(error) and hasattr(error, "add_note"):  # ... it says FakeTensor for Tensor
            error.add_note(f"aotgraph: raised while capturing the program{_user_line(error)}; FakeTensor is the "
                           "stand-in for a Tensor there, and eager raises the same TypeError with Tensor")
        raise
    finally:
        recorder.node_meta.outer_frame = None
    # Inputs whose version counter the program moved: a write of the same value (``x.copy_(x)``)
    # or an in-place view op that keeps the layout (``t_()`` of a 1-D tensor) moves it too.
    versions_moved = frozenset(p.name for p, f, v in zip(placeholders, program_fakes, versions_before)
                               if v is not None and _version_of(f) != v)
    # A torch.Size stays one leaf: pytree would flatten it and rebuild a plain tuple.
    flat_out, out_spec = tree_flatten(out, is_leaf=lambda value: isinstance(value, torch.Size))
    refuse_resized_inputs(program_fakes, bytes_before, storages_before, input_positions, resizes)
    refuse_subclass_outputs(flat_out)
    flat_out, python_scalars = _symbolic_numbers_as_tensors(flat_out, fake_mode, recorder)
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
    # In-place view ops on an input requiring grad (eager allows them on non-leaves only: on a
    # leaf the program itself raised) are replayed on the real input by the runtime, under autograd.
    layout_changed = restore_input_layouts(placeholders, program_fakes, metas_before, fake_mode)

    tensor_outs = [o for o in flat_out if isinstance(o, torch.Tensor)]
    recorder.refuse_stale_outputs(tensor_outs)
    # Views among the outputs are rebuilt from their bases by the runtime.
    # In-place view ops bump the version too, without writing data.
    relayouts, relayout_steps, final_layouts = _in_place_view_ops(recorder.graph)
    views = find_output_views(out_nodes, tensor_outs, placeholders, program_fakes, recorder.node_of, fake_mode,
                              relaid_inputs=frozenset(relayouts if getattr(fn, "aotgraph_member_views", False)
                                                      else layout_changed), final_layouts=final_layouts)
    views, from_functions = _returned_by_functions(views, tensor_outs)
    # An input mutated under autograd (a non-leaf input, or a plain input that took a value
    # requiring grad) returns its new value as a differentiable output, as eager's history does.
    # The same tensor passed twice is one input to write back: its first placeholder.
    first_of_each = {id(f): p.name for p, f in reversed(list(zip(placeholders, program_fakes)))}
    # A write autograd recorded changed the history of the input's memory (its base's, for a view);
    # one through a detached alias (``x.detach().mul_(w)``) wrote the memory alone (seed 18912).
    mutated_with_grad = tuple(
        p.name for p, f, v, h in zip(placeholders, program_fakes, versions_before, histories_before)
        if wants_grad and f.requires_grad and f.grad_fn is not None and f._version - v > relayouts.get(p.name, 0)
        and first_of_each[id(f)] == p.name and _history_of(f) is not h
    )
    # Tangent order (`JointGraph`): outputs that are not views of a base the forward returns in
    # addition, inputs mutated under autograd, then those bases.
    # Under no_grad, only what the program computes in its enable_grad regions has a grad_fn.
    # An input returned as it is, with no write autograd recorded (relaid or written under no_grad),
    # keeps the caller's history there (seed 1716).
    callers_history = set() if wants_grad else {
        id(f) for f, h in zip(program_fakes, histories_before) if _history_of(f) is h}
    # A leaf the program made require grad, and a view of a tensor requiring grad made under
    # no_grad (eager's quirk), require grad with no history: no tangent, as an input returned as it is.
    made_leaves = _made_leaves(flat_out, program_fakes)
    made_leaf_ids = {id(flat_out[k]) for k in made_leaves}
    tangent_outs = [k for k, (o, v) in enumerate(zip(tensor_outs, views.views))
                    if o.requires_grad and (wants_grad or (_grad_fn(o) is not None and id(o) not in callers_history))
                    and (v is None or v.base is None) and id(o) not in made_leaf_ids
                    and not (_grad_fn(o) is None and creation_meta_of(o) == "NO_GRAD_MODE")]
    diff_outs = [tensor_outs[k] for k in tangent_outs]
    diff_outs += [_in_layout(f, before, p.name in layout_changed, fake_mode, recorder)
                  for p, f, before in zip(placeholders, program_fakes, metas_before) if p.name in mutated_with_grad]
    diff_outs += [b for b in views.base_fakes if b.requires_grad] if wants_grad else []
    diff_inputs = unique([f for f in primal_fakes if f.requires_grad]) if wants_grad or diff_outs else []
    is_inference = not (diff_outs and diff_inputs)
    if torch.is_grad_enabled():
        _refuse_lost_gradients([o for o in tensor_outs if o.requires_grad], primal_fakes)
    flags_set = _requires_grad_changes(primal_fakes, program_fakes, metas_before, flat_out, placeholders, flags)
    grad_nodes: list[Any] = []
    written_in_backward: tuple[str, ...] = ()
    reaching: tuple[int, ...] = ()
    if not is_inference:
        reaching = reaching_tangent_masks(diff_outs, primal_fakes)
        versions_before_backward = [_version_of(f) for f in program_fakes]
        layouts_before_backward = [TensorMeta.of(f) for f in program_fakes]
        try:
            grad_nodes = _record_backward(recorder, fake_mode, diff_outs, diff_inputs, primal_fakes)
        except RuntimeError as error:
            if "modified by an inplace operation" not in str(error):
                raise
            raise UnsupportedOp(  # (under torch.compile, a checkpoint's recompute bumped a buffer's counter)
                f"the program's backward reads a tensor written after it was saved ({str(error).split('. Hint')[0]}): "
                "a checkpoint recomputing a module that updates its buffers, such as BatchNorm in training, or a "
                "program writing a saved tensor", "capture",
                "keep a module that updates its buffers outside the checkpoint, or clone the tensor before writing "
                "into it") from error
        written_in_backward = _written_during_backward(placeholders, program_fakes, versions_before,
                                                       versions_before_backward, layouts_before_backward,
                                                       first_of_each)
    else:
        mutated_with_grad = ()

    graph = recorder.graph
    graph.output((tuple(out_nodes), tuple(grad_nodes), tuple(views.base_nodes)))
    data_mutated: tuple[str, ...] = ()
    metadata_mutated: tuple[str, ...] = ()
    storage_replaced: tuple[str, ...] = ()
    storage_source: dict[str, str] = {}
    if recorder.saw_mutation:
        # With symbolic sizes, the functional twins' fake kernels need the Python dispatcher, as the
        # program's ops had it (torch's broadcasting ``addcmul`` and ``lerp`` fail without it).
        with enable_python_dispatcher() if has_symbols(fake_mode) else contextlib.nullcontext():
            functional = functionalize(graph, recorder.fake_outputs, final_nodes, layout_changed)
        # A backward that writes its incoming gradient (a custom Function's ``grad_output.mul_(2)``)
        # writes a buffer local to the backward: tangents have no caller's tensor to write back.
        primal_names = {p.name for p in placeholders}
        graph = functional.graph
        metadata_mutated = tuple(n for n in functional.metadata_mutated if n in primal_names)
        storage_replaced, storage_source = functional.storage_replaced, functional.storage_source
        data_mutated = tuple(n for n in functional.data_mutated if n in primal_names and n not in written_in_backward)
        extra = [functional.final_value_of[n] for n in data_mutated]
        extra += [functional.final_value_of[n + ".view"] for n in metadata_mutated]
        written_values = [functional.final_value_of[n] for n in written_in_backward]
    else:
        extra, written_values = [], []
    output = graph.find_nodes(op="output")[0]
    user_outs, grads, bases = output.args[0]
    output.args = ((*user_outs, *extra, *bases, *grads, *written_values),)
    insert_runtime_asserts(graph, fake_mode.shape_env, recorder.node_meta.user_line)
    if config.enabled("cse"):
        merge_common_subexpressions(graph, (*user_outs, *bases), (*user_outs, *extra, *bases))
    eliminate_dead_code(graph)
    add_tensor_meta(graph)

    root = torch.nn.Module()
    for name, constant in recorder.constants.items():
        setattr(root, name, constant)
    graph_module = JointModule(root, graph)

    missing = set(mutated_with_grad) - set(data_mutated)
    if missing:
        raise UnsupportedOp(f"inputs {sorted(missing)} changed under autograd without a data mutation aotgraph saw",
                            "capture", "report this program to aotgraph")
    _refuse_mutated_aliased_inputs(fake_flat, data_mutated + metadata_mutated, storage_replaced)
    resizes.refuse_set_on_resized({p.name: f for p, f in zip(placeholders, program_fakes)}, storage_replaced)
    signature = _signature(flat_args, program_flat, metas_before, in_spec, flat_out, out_spec, data_mutated,
                           metadata_mutated, mutated_with_grad, is_inference, views, from_functions, relayout_steps,
                           written_in_backward, storage_replaced, storage_source, resizes,
                           frozenset(relayouts) if getattr(fn, "aotgraph_member_views", False) else frozenset(),
                           versions_moved)
    if made_leaves:
        signature = dataclasses.replace(signature, outputs=tuple(
            dataclasses.replace(info, made_leaf=True) if k in made_leaves else info
            for k, info in enumerate(signature.outputs)))
    if flags_set:
        inputs = list(signature.inputs)
        for p, flag in flags_set.items():
            position = signature.primal_positions[p]
            inputs[position] = dataclasses.replace(inputs[position], sets_requires_grad=flag)
        signature = dataclasses.replace(signature, inputs=tuple(inputs))
    if python_scalars:
        outputs = tuple(dataclasses.replace(info, python_scalar=python_scalars[k]) if k in python_scalars else info
                        for k, info in enumerate(signature.outputs))
        signature = dataclasses.replace(signature, outputs=outputs)
    if not is_inference:
        signature = _without_history_tangents(signature, frozenset(tangent_outs))
    if grad_enabled_after != wants_grad:
        signature = dataclasses.replace(signature, grad_enabled_after=grad_enabled_after)
    if fake_mode.shape_env is not None:
        if config.enabled("symbolic_input_views"):
            signature = input_views_laid_out_by_graph(signature)
        refuse_symbolic_replays(signature)
    return JointGraph(graph_module, signature, is_inference, fake_mode, tangents_reaching_grads=reaching)


# The dtype a symbolic Python number of each kind travels in as a graph output, and its kind.
_NUMBER_DTYPES = {torch.SymInt: (torch.int64, int), torch.SymFloat: (torch.float64, float),
                  torch.SymBool: (torch.bool, bool)}


def _symbolic_numbers_as_tensors(flat_out: list, fake_mode, recorder) -> tuple[list, dict[int, type]]:
    """The output leaves with each symbolic Python number (``x.sum().item()`` under Dynamo's
    ``capture_scalar_outputs``) recorded as a 0-d tensor that the graph returns, and {its
    position: int, float or bool}: the runtime returns that tensor's ``.item()``, the number
    eager returns (int64 and float64 hold it exactly)."""
    positions = [k for k, o in enumerate(flat_out) if is_symbolic(o)]
    if not positions:
        return flat_out, {}
    flat_out = list(flat_out)
    kinds = {}
    with fake_mode, recorder, enable_python_dispatcher():
        for k in positions:
            dtype, kinds[k] = _NUMBER_DTYPES[type(flat_out[k])]
            flat_out[k] = torch.scalar_tensor(flat_out[k], dtype=dtype)
    return flat_out, kinds


def _history_of(fake: torch.Tensor) -> Any:
    """The autograd node of the tensor whose memory `fake` is (its base's, for a view): an in-place
    op autograd records replaces it; a write through a detached alias does not."""
    return (fake._base if fake._base is not None else fake).grad_fn


def _version_of(fake: torch.Tensor) -> int | None:
    """The version counter, None for an inference tensor (it keeps none; it cannot require grad)."""
    return None if fake.is_inference() else fake._version


def _in_place_view_ops(graph: fx.Graph) -> tuple[dict[str, int], dict[str, tuple], dict[fx.Node, fx.Node]]:
    """For each placeholder name: how many in-place view ops (``t_``) the program applied to it
    or to one of its views (each bumps the shared version counter), and those it applied to the
    input itself, in order, as `ViewStep`s the runtime replays on the real input; and the last
    of those on each input, mapped to its placeholder (the input in the layout the runtime
    leaves it in)."""
    counts: dict[str, int] = {}
    steps: dict[str, list] = {}
    last: dict[fx.Node, fx.Node] = {}
    for node in graph.nodes:
        if node.op == "call_function" and is_metadata_mutation(node.target):
            root, on_input_itself = node.args[0], True
            while (root.op == "call_function" and isinstance(root.target, OpOverload)
                   and root.target._schema.returns and root.target._schema.returns[0].alias_info is not None):
                # an in-place op returns the tensor it wrote (the same object); a view returns another
                on_input_itself = on_input_itself and root.target._schema.returns[0].alias_info.is_write
                root = root.args[0]  # through views and in-place ops, which alias their first argument
            if root.op == "placeholder":
                counts[root.name] = counts.get(root.name, 0) + 1
                if on_input_itself:
                    steps.setdefault(root.name, []).append(
                        ViewStep(node.target, tuple(node.args[1:]), tuple(node.kwargs.items())))
                    last[root] = node
    replayable = {name: tuple(chain) for name, chain in steps.items()
                  if not any(isinstance(a, fx.Node) for step in chain for a in step.args)}
    return counts, replayable, {node: placeholder for placeholder, node in last.items()}


def _in_layout(fake, before: TensorMeta, relaid: bool, fake_mode, recorder):
    """The new value of a mutated input in the layout it had on entry (the layout the joint
    graph returns it in), recorded so its gradient reaches the placeholder."""
    if not relaid:
        return fake
    with fake_mode, recorder, enable_python_dispatcher():
        return fake.as_strided(before.shape, before.stride, before.storage_offset)


def _rnns_as_plain_ops(training: bool):
    """With the Python dispatcher on, ``nn.LSTM`` decomposes in Python, and that decomposition
    takes oneDNN's fused CPU kernel (``mkldnn_rnn_layer`` with ``train=False``: no workspace
    for a backward) whenever the LSTM's input does not require grad, even if its weights do.
    Training a model on data that needs no gradient then fails in the backward. While
    capturing for training, oneDNN is off, so the LSTM is recorded as plain ops, as eager
    trains it. Inference keeps the fused kernel."""
    if not training or not mkldnn_enabled():
        return contextlib.nullcontext()
    return _mkldnn_off()


@contextlib.contextmanager
def _mkldnn_off():
    # torch.backends.mkldnn.flags would also reset oneDNN's TF32 setting, with a warning.
    set_mkldnn_enabled(False)
    try:
        yield
    finally:
        set_mkldnn_enabled(True)


def _written_during_backward(placeholders, program_fakes, versions_before, versions_before_backward,
                             layouts_before_backward, first_of_each) -> tuple[str, ...]:
    """Placeholders a backward (a custom autograd.Function's) writes into in place: eager writes
    them when the backward runs, so the joint returns their new values after the gradients and
    the runtime writes them then. Refused: an input written by the forward as well (one final
    value cannot be written at two times), and a backward that changes an input's layout."""
    written = []
    for p, f, before, before_backward, layout in zip(placeholders, program_fakes, versions_before,
                                                      versions_before_backward, layouts_before_backward):
        if _version_of(f) == before_backward or first_of_each[id(f)] != p.name:
            continue
        if TensorMeta.of(f) != layout or before_backward != before:
            what = "changes the sizes or strides of" if TensorMeta.of(f) != layout else "writes into"
            raise UnsupportedOp(
                f"a backward {what} input {p.name} in place (a custom autograd.Function's backward changing a "
                "saved input, or a checkpoint recomputing a module that updates its buffers, such as BatchNorm in "
                "training)" + (", which the forward also mutates" if before_backward != before else ""),
                "capture", "clone the saved tensor in that backward before changing it, call that Function outside "
                "the compiled function, or keep a module that updates its buffers outside the checkpoint")
        written.append(p.name)
    return tuple(written)


def _record_backward(recorder, fake_mode, diff_outs, diff_inputs, primal_fakes) -> list:
    first_op = next((n for n in recorder.graph.nodes if n.op != "placeholder"), None)
    tangents = []
    for k, out in enumerate(diff_outs):
        with fake_mode:
            tangent = torch.empty(out.shape, dtype=out.dtype, device=out.device)
        with recorder.graph.inserting_before(first_op):  # None: the end, when the forward has no op
            recorder.add_placeholder(tangent_name(k), tangent)
        tangents.append(tangent)
    with fake_mode, recorder, enable_python_dispatcher(), storage_resizes_refused, _compiling():  # hooks may resize
        try:
            grads = torch.autograd.grad(diff_outs, diff_inputs, tangents, allow_unused=True)
        except GuardOnDataDependentSymNode as error:  # (a custom backward branching on data)
            raise data_dependent_branch(error) from error
        except SizeConditionTooLarge as error:
            raise _sizes_too_large(error) from error
        except RuntimeError as error:
            # ("returned an invalid gradient", "invalid gradient at index"); or after an in-place
            # layout change, any failure of a backward formula over a view replayed on the new
            # layout (seed 8362: clamp_ through a squeeze_d view, a broadcast of the wrong shapes)
            if "invalid gradient" not in str(error) and not recorder.relaid_any:
                raise
            raise _after_layout_change(error, "its backward failed") from error
        grad_of = {id(i): g for i, g in zip(diff_inputs, grads)}
        grad_nodes, seen = [], set()
        for fake in primal_fakes:
            grad = grad_of.get(id(fake)) if id(fake) not in seen else None
            seen.add(id(fake))
            grad_nodes.append(recorder.node_for(grad) if grad is not None else None)
    return grad_nodes


def _after_layout_change(error: RuntimeError, what: str) -> UnsupportedOp:
    """The refusal of a program whose autograd history capture cannot record, which eager runs: a
    view taken before an in-place layout change of its base (autograd's error names a shape)."""
    return UnsupportedOp(
        f"autograd's record of the program failed while capture recorded it ({what}): "
        f"{str(error).splitlines()[0]}", "capture",
        "if the program changes a tensor's layout in place (unsqueeze_, squeeze_, t_, transpose_, as_strided_) "
        "after taking a view of it or of its base, take the view after the change, change a clone, or use the "
        "out-of-place op (unsqueeze(), squeeze(), t(), ...)")


def _refuse_lost_gradients(diff_outs, primal_fakes) -> None:
    """A real tensor that requires grad but is not an input (a global, a closure, a module
    attribute) would get a gradient in eager and none from the graph: refuse it. Leaves the
    program makes itself (``t.detach().requires_grad_()``) are fake and stay allowed."""
    inputs = {id(f) for f in primal_fakes}
    try:
        seen, pending = set(), [o.grad_fn for o in diff_outs]
    except RuntimeError as error:  # a view's history made again over its base's new layout
        raise _after_layout_change(error, "a view's history could not be made again") from error
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


def _requires_grad_changes(primal_fakes, program_fakes, metas_before, flat_out, placeholders,
                           flags: RequiresGradFlags | None) -> dict[int, bool]:
    """The inputs whose ``requires_grad`` the program sets before reading them (primal index ->
    the flag), which the runtime sets on the caller's tensors (`requires_grad_flags`; where the
    walk did not watch the program's calls, `_CallsToWatch` asks `capture` for one that does). Refused:
    an input's flag set after a read (the compiled function would give the reads before the new
    flag), and a leaf the program made requiring grad returned, or an output computed only from
    such leaves (it would come back as a tensor that does not require grad)."""
    flags_set = {}
    for position, (fake, before) in enumerate(zip(primal_fakes, metas_before)):
        # (an in-place op writing a value that requires grad into a plain input is a mutation under
        # autograd, which the runtime replays: the input is then no leaf)
        if fake.requires_grad != before.requires_grad and fake.is_leaf:
            if flags is None:
                raise _CallsToWatch(UnsupportedOp(
                    f"the program calls requires_grad_({fake.requires_grad}) on tensor input {position}, which aotgraph "
                    "captures only for the caller's own tensors (not Dynamo's fake inputs, nor with dynamic=True)",
                    "capture", "set requires_grad on that tensor before calling the compiled function"))
            if flags.set_unread(placeholders[position].name) and fake is program_fakes[position]:
                flags_set[position] = fake.requires_grad
                continue
            raise UnsupportedOp(
                f"the program calls requires_grad_({fake.requires_grad}) on tensor input {position} after reading "
                "it, which aotgraph does not capture (the reads before would see the new flag)", "capture",
                "set requires_grad on that tensor before calling the compiled function, or at the start of the "
                "function, before any op reads it")
    if not torch.is_grad_enabled():
        return flags_set
    inputs = {id(f) for f in primal_fakes} | {id(f) for f in program_fakes}
    any_input_requires_grad = any(f.requires_grad for f in primal_fakes)
    for position, out in enumerate(flat_out):
        if not isinstance(out, torch.Tensor) or not out.requires_grad or id(out) in inputs:
            continue
        if out.grad_fn is None:
            continue  # a leaf the program made (`_made_leaves`), or eager's view made under no_grad
        if not any_input_requires_grad:
            raise UnsupportedOp(
                f"output leaf {position} requires grad because the program called requires_grad_() on it or on a "
                "tensor it is computed from (not an input that requires grad), which aotgraph does not capture "
                "(it would return a tensor that does not require grad, or is not a leaf)", "capture",
                "call requires_grad_() on the result outside the compiled function, or pass that tensor as an "
                "input that requires grad")
    return flags_set


def _made_leaves(flat_out: list, program_fakes: list) -> frozenset[int]:
    """Output positions of leaves the program made require grad (``b = a * 2; b.requires_grad_()``,
    or ``a.view(-1).requires_grad_()`` of an input needing none): eager returns a leaf requiring
    grad, with no history; the runtime makes its output one (`OutputInfo.made_leaf`)."""
    inputs = {id(f) for f in program_fakes}
    return frozenset(k for k, o in enumerate(flat_out)
                     if isinstance(o, torch.Tensor) and o.requires_grad and id(o) not in inputs
                     and _grad_fn(o) is None and creation_meta_of(o) != "NO_GRAD_MODE")


def _returned_by_functions(views: OutputViews, tensor_outs: list) -> tuple[OutputViews, frozenset[int]]:
    """Outputs (tensor-output indices) that a custom autograd.Function returned as an input of
    its own or a view of one, possibly viewed further: their gradient runs that Function's
    backward, which replaying the view ops on the base outside the compiled Function would skip.
    The graph returns them, and their entries in `views` become None."""
    from_functions = set()
    for k, (out, view) in enumerate(zip(tensor_outs, views.views)):
        node = _grad_fn(out)
        for _ in range(len(view.chain) if view is not None else 1):
            if node is None or _is_custom_function(node):
                break
            node = node.next_functions[0][0] if node.next_functions else None
        if _is_custom_function(node):
            from_functions.add(k)
    if not from_functions:
        return views, frozenset()
    kept = [None if k in from_functions else v for k, v in enumerate(views.views)]
    bases = sorted({v.base for v in kept if v is not None and v.base is not None})  # those still read
    renumbered = tuple(dataclasses.replace(v, base=bases.index(v.base)) if v is not None and v.base is not None
                       else v for v in kept)
    return (OutputViews(renumbered, tuple(views.base_nodes[b] for b in bases),
                        tuple(views.base_fakes[b] for b in bases)), frozenset(from_functions))


def _without_history_tangents(signature: Signature, tangent_outs: frozenset) -> Signature:
    """`signature` with `OutputInfo.tangent_free` on each tensor output that requires grad but
    takes no tangent: returned under no_grad without autograd history (a leaf requiring grad),
    while another output has one. Tensor outputs are numbered as in `tangent_outs`."""
    outputs, k = list(signature.outputs), 0
    for position, info in enumerate(outputs):
        if info.is_tensor:
            if info.has_tangent and k not in tangent_outs:
                outputs[position] = dataclasses.replace(info, tangent_free=True)
            k += 1
    return dataclasses.replace(signature, outputs=tuple(outputs))


def _grad_fn(tensor: torch.Tensor):
    """``tensor.grad_fn``; None for a view made under no_grad whose base was written since, whose
    history autograd refuses to read (eager's program never reads it either)."""
    try:
        return tensor.grad_fn
    except RuntimeError:
        return None


def _is_custom_function(node) -> bool:
    """The backward node of a program's custom autograd.Function (not that of the copy through
    which the program sees a non-leaf input: an input relaid in place keeps it in its history)."""
    return isinstance(node, BackwardCFunction) and getattr(node, "_forward_cls", None) is not _PassThroughCopy


def _relayout_of(name: str, fake, relayout_steps: dict, metadata_mutated: tuple, storage_replaced: tuple) -> tuple:
    """The in-place view ops the runtime replays on input `name`: the program's own where they
    can be replayed, else one ``as_strided_`` to the layout its fake ended in (concrete sizes;
    symbolic ones: none, and the runtime takes the layout of the view the graph returns). The
    fake's storage offset counts in the input's own memory, as the caller's does; the graph's
    view of a written input may be a tensor of its own, whose offset does not."""
    if name not in metadata_mutated:
        return ()
    steps = relayout_steps.get(name, ())
    if steps or name in storage_replaced or has_symbolic_sizes(fake):
        return steps
    return (ViewStep(torch.ops.aten.as_strided_.default, (tuple(fake.shape), fake.stride(), fake.storage_offset())),)


def _without_grad(meta: TensorMeta) -> TensorMeta:
    return TensorMeta(meta.shape, meta.stride, meta.storage_offset, meta.dtype, meta.device, False)


def _signature(flat_args, fake_flat, metas_before, in_spec, flat_out, out_spec, data_mutated, metadata_mutated,
               mutated_with_grad, is_inference, views: OutputViews, from_functions: frozenset[int],
               relayout_steps: dict[str, tuple], written_in_backward: tuple[str, ...],
               storage_replaced: tuple[str, ...], storage_source: dict[str, str], resizes: InputStorageResizes,
               views_relaid: frozenset[str], versions_moved: frozenset[str]):
    primal_names = [primal_name(k) for k in range(sum(isinstance(f, torch.Tensor) for f in fake_flat))]
    inputs, storage_of_input, k = [], {}, 0
    for real, fake in zip(flat_args, fake_flat):
        if isinstance(fake, torch.Tensor):
            name, meta = primal_names[k], metas_before[k]
            k += 1
            inputs.append(InputInfo(meta, None, name in data_mutated, name in metadata_mutated, name in mutated_with_grad,
                                    _relayout_of(name, fake, relayout_steps, metadata_mutated, storage_replaced),
                                    name in written_in_backward, name in storage_replaced,
                                    primal_names.index(storage_source[name]) if name in storage_source else None,
                                    TensorMeta.of(fake) if name in storage_source else None,
                                    resizes.resize_of(fake) if name not in storage_replaced else None,
                                    name in views_relaid, None,
                                    name in versions_moved and name not in data_mutated
                                    and name not in metadata_mutated,
                                    name in storage_replaced and name not in versions_moved))
            if name not in storage_replaced:  # its fake holds the memory it was set_ to now
                storage_of_input.setdefault(StorageWeakRef(fake.untyped_storage()), len(inputs) - 1)
        else:
            inputs.append(InputInfo(None, real))
    primal_positions = [k for k, f in enumerate(fake_flat) if isinstance(f, torch.Tensor)]
    tensor_positions = [k for k, o in enumerate(flat_out) if isinstance(o, torch.Tensor)]
    function_positions = {tensor_positions[k] for k in from_functions}  # the graph returns these as they are
    outputs, storage_of_output, views_left = [], {}, iter(views.views)
    storage_of_view_base = {StorageWeakRef(b.untyped_storage()): k for k, b in enumerate(views.base_fakes)
                            if isinstance(b, FakeTensor)}
    for position, o in enumerate(flat_out):
        if isinstance(o, torch.Tensor):
            meta = TensorMeta.of(o)
            eager_requires_grad = meta.requires_grad
            if is_inference and meta.requires_grad:
                meta = _without_grad(meta)
            view = next(views_left)
            same = next((j for j in range(position) if flat_out[j] is o), None)
            if same is not None:  # one tensor returned twice: the same object again
                outputs.append(OutputInfo(meta, None, None, False, same, is_output=True))
                continue
            if view is not None and view.base is not None:
                outputs.append(OutputInfo(meta, view_chain=view.chain, base_of_outputs=view.base,
                                          layout_from_graph=view.laid_out_by_graph))
                continue
            if view is not None and view.output is not None:
                outputs.append(OutputInfo(meta, base_output=tensor_positions[view.output], view_chain=view.chain,
                                          layout_from_graph=view.laid_out_by_graph))
                continue
            storage = StorageWeakRef(o.untyped_storage()) if isinstance(o, FakeTensor) else None
            base = storage_of_input.get(storage) if position not in function_positions else None
            written_alias = None
            if base is not None and o is not fake_flat[base]:  # an input itself, sharing memory with an earlier one
                base = next((k for n, k in zip(primal_names, primal_positions)
                             if fake_flat[k] is o and n not in storage_replaced), base)
            if base is not None and o.dtype != fake_flat[base].dtype:
                base = None  # a dtype view (view_as_complex) cannot be rebuilt by as_strided; the graph returns it
            if base is not None and o is not fake_flat[base] and eager_requires_grad \
                    and not _viewed_from(o, [f for f in fake_flat if isinstance(f, torch.Tensor)
                                             and StorageWeakRef(f.untyped_storage()) == storage]):
                # Memory of an input but a history of its own (``x.detach().mul_(x)``, or a view of
                # ``x.detach()`` written with gradients, seed 6174): no view of the input, whose
                # gradient would be the wrong one. The graph's value, with its gradient, written into
                # that memory by the runtime (`OutputInfo.written_alias_of`).
                # (with symbolic sizes, only where it is the input's whole memory, in its own layout:
                # elsewhere in it, the runtime could not tell where; refused, and compiled per size)
                if has_symbolic_sizes(o) and layout_key(layout_of(o)) != layout_key(layout_of(fake_flat[base])):
                    raise UnsupportedOp(f"output {position} lies in input {base}'s memory with a history of its own "
                                        "(a view of its .detach() written with gradients), at a layout of symbolic "
                                        "sizes other than the input's", "capture",
                                        "return a copy (.clone()), or compile with static shapes")
                written_alias = base
                base = None
            detached = base is not None and o is not fake_flat[base] and not eager_requires_grad and (
                fake_flat[base].requires_grad)
            if (view is not None and view.primal is not None and base == primal_positions[view.primal]
                    and (primal_names[view.primal] not in metadata_mutated  # a chain from its layout on entry
                         or view.after_relayout and primal_names[view.primal] not in storage_replaced)):
                outputs.append(OutputInfo(meta, None, base, False, view_chain=view.chain, detached=detached))
                continue
            base_output = None
            view_base = storage_of_view_base.get(storage) if base is None and storage is not None else None
            if view_base is not None and not meta.requires_grad and written_alias is None and not has_symbolic_sizes(o) \
                    and o.dtype == views.base_fakes[view_base].dtype and _within(o, views.base_fakes[view_base]):
                # In the memory of an intermediate that other outputs view, with no history (``v = y[0];
                # d = v.detach(); d.fill_(1)``, both returned): a detached view of that base, as eager's
                # shares its memory (seed 41116).
                outputs.append(OutputInfo(meta, base_of_outputs=view_base, detached=True))
                continue
            if base is None and storage is not None:
                # An alias of an earlier output is rebuilt from it, if that one carries the gradient it
                # needs: one history, not only one memory (seed 16827: ``d = y.detach(); d.add_(x)``
                # returned beside y, whose gradient is not d's).
                earlier = storage_of_output.get(storage)
                if earlier is not None and outputs[earlier].meta.dtype == meta.dtype and (
                        not meta.requires_grad or (outputs[earlier].requires_grad
                                                   and _view_root(o) is _view_root(flat_out[earlier]))) \
                        and _within(o, flat_out[earlier]):
                    base_output = earlier
                    written_alias = None  # a view of that one, sharing its history (``d, d.view(...)``)
                elif earlier is None or meta.requires_grad:
                    storage_of_output[storage] = position
            outputs.append(OutputInfo(meta, None, base, base is not None and o is fake_flat[base], base_output,
                                      detached=detached, written_alias_of=written_alias,
                                      layout_from_graph=written_alias is not None and has_symbolic_sizes(o)))
        else:
            outputs.append(OutputInfo(None, o))
    _rebuild_from_later_outputs(outputs, flat_out)
    for position, o in enumerate(flat_out):  # (eager refuses writes into these: the runtime's views too)
        info = outputs[position]
        made = creation_meta_of(o) if isinstance(o, torch.Tensor) and o.requires_grad and info.is_tensor else None
        if made == "NO_GRAD_MODE" and _grad_fn(o) is not None:
            made = None  # a view of a view made under no_grad, with history (an as_strided of a leaf view)
        if made is not None and not info.is_input and not info.is_output:
            outputs[position] = dataclasses.replace(outputs[position], creation_meta=made)
    view_bases = tuple(_without_grad(TensorMeta.of(b)) if is_inference else TensorMeta.of(b) for b in views.base_fakes)
    return Signature(in_spec, out_spec, tuple(inputs), tuple(outputs), view_bases)


def _viewed_from(value: torch.Tensor, inputs: list) -> bool:
    """Whether autograd sees `value` as a view of one of `inputs` (or of an input's own base), so
    that its history goes through the input's: not where it views a tensor of its own
    (``x.detach()``) that merely shares the input's memory."""
    if not value._is_view():
        return False
    bases = {id(f) for f in inputs} | {id(f._base) for f in inputs if f._base is not None}
    return id(value._base) in bases


def _view_root(value: torch.Tensor) -> torch.Tensor:
    """The tensor autograd sees `value` as a view of (its ``._base``), or `value` itself."""
    return value if value._base is None else value._base


def _rebuild_from_later_outputs(outputs: list, flat_out: list) -> None:
    """Outputs requiring no grad in the memory of a later output requiring grad (``v =
    y.detach().view(-1)`` returned before ``y``) are rebuilt from it, in place in `outputs`: a view
    of its memory as eager's is (seed 11334). The earlier one could not be the later one's base:
    that one carries a history of its own."""
    for i, info in enumerate(outputs):
        if not info.is_tensor or info.requires_grad or info.is_input or info.view_chain or any(
                index is not None for index in (info.base_input, info.base_output, info.base_of_outputs,
                                                info.written_alias_of, info.python_scalar)):
            continue
        value = flat_out[i]
        if not isinstance(value, FakeTensor):
            continue
        storage = StorageWeakRef(value.untyped_storage())
        later = next((j for j in range(i + 1, len(outputs))
                      if outputs[j].is_tensor and outputs[j].requires_grad and outputs[j].base_input is None
                      and outputs[j].base_output is None and isinstance(flat_out[j], FakeTensor)
                      and flat_out[j].dtype == value.dtype and StorageWeakRef(flat_out[j].untyped_storage()) == storage
                      and _within(value, flat_out[j])), None)
        if later is not None:
            outputs[i] = dataclasses.replace(info, base_output=later, detached=True)


def _within(value: torch.Tensor, base: torch.Tensor) -> bool:
    """Whether every element of `value` is an element of `base` (same storage assumed), so that
    ``as_strided`` on `base` rebuilds `value` and its gradient reaches `base` whole. Not so for
    siblings such as ``unbind``'s rows: each is returned by the graph, with its own gradient."""
    layouts = [(tuple(t.shape), tuple(t.stride()), t.storage_offset()) for t in (value, base)]
    if layouts[0] == layouts[1]:
        return True
    if any(has_symbolic_sizes(t) or is_symbolic(t.storage_offset()) for t in (value, base)):
        return False
    if value.numel() == 0:
        return True
    (value_low, value_high), (base_low, base_high) = _extent(*layouts[0]), _extent(*layouts[1])
    return _is_dense(*layouts[1]) and base_low <= value_low and value_high <= base_high


def _is_dense(shape, stride, offset) -> bool:
    """Whether a layout reads each storage position of its extent exactly once (some permutation
    of a contiguous layout)."""
    expected = 1
    for step, size in sorted((step, size) for size, step in zip(shape, stride) if size != 1):
        if step != expected:
            return False
        expected *= size
    return True


def _extent(shape, stride, offset) -> tuple[int, int]:
    """The lowest and highest storage positions a (non-empty) strided layout reads."""
    low = offset + sum(min(0, (size - 1) * step) for size, step in zip(shape, stride))
    high = offset + sum(max(0, (size - 1) * step) for size, step in zip(shape, stride))
    return low, high


def _refuse_mutated_aliased_inputs(fake_flat, mutated_names, storage_replaced=()) -> None:
    """Two different inputs sharing storage, one of them mutated: refuse rather than miss the alias.
    (An input the program ``set_`` shares the memory it was given only from then on.)"""
    owners: dict = {}
    names: dict = {}
    for position, fake in enumerate(fake_flat):
        if isinstance(fake, torch.Tensor):
            names[position] = primal_name(len(names))
            if names[position] not in storage_replaced:
                owners.setdefault(StorageWeakRef(fake.untyped_storage()), []).append(position)
    for positions in owners.values():
        distinct = {id(fake_flat[p]) for p in positions}
        if len(distinct) > 1 and any(names[p] in mutated_names for p in positions):
            raise UnsupportedOp(
                f"inputs at flat positions {positions} share memory and one of them is mutated; aotgraph passes such "
                "inputs as their common base only when they have one that carries their gradients (views with one "
                "._base and its dtype and requires_grad, none requiring grad, or leaves requiring grad among views "
                "requiring none)",
                "capture",
                "pass the base tensor once and take the views inside the function, or clone one of the inputs",
            )


def eliminate_dead_code(graph: fx.Graph) -> None:
    """Remove nodes nobody reads. Random ops stay: dropping them would shift the RNG stream;
    so do runtime asserts (`runtime_asserts`)."""
    for node in reversed(list(graph.nodes)):
        if node.op in ("placeholder", "output") or node.users or is_runtime_assert(node):
            continue
        target = node.target
        if node.op == "call_function" and isinstance(target, OpOverload) and (
            torch.Tag.nondeterministic_seeded in target.tags
        ):
            continue
        graph.erase_node(node)
