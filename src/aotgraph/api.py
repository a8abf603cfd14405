"""Entry points, drop-in for functorch's compile API: flatten inputs, look up the compiled
entry for this input signature, run the stages on a miss, call the runtime."""
from __future__ import annotations

import operator
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Optional

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from .artifacts import CompiledGraphs, JointGraph, Partition
from .capture import capture
from .capture.aliased_inputs import aliased_input_groups, with_shared_bases
from .compilers import compile_partition, eager, inductor, resolve_compiler
from .compilers.inductor import inductor_joint_passes, wake_compile_workers
from .errors import BadArgument
from .partition import default_partition, partition
from .runtime import autocast_on, build_runtime
from .timings import CompileLog, time_first_call

__all__ = ["aot_function", "aot_module", "aot_module_simplified", "aot_export_joint", "CompiledEntry"]


@dataclass
class CompiledEntry:
    """Everything one input signature compiled to, kept for reports and tests."""

    partition: Partition
    compiled: CompiledGraphs
    run: Callable[[list], list]
    log: CompileLog
    unflatten: Callable[[list], Any]
    mutates_inputs: bool = False
    has_run: bool = False  # the first call is timed as the "first run" stage

    @property
    def joint(self) -> JointGraph:
        return self.partition.joint


def compile_stages(fn, flat_args, in_spec, *, fw_compiler, bw_compiler, inference_compiler, partition_fn,
                   decompositions) -> CompiledEntry:
    """capture -> partition -> compile -> runtime, each stamped into one CompileLog."""
    log = CompileLog()
    if inductor in (fw_compiler, inference_compiler):
        wake_compile_workers(flat_args)
    with log.stage("capture") as note:
        joint = capture(fn, flat_args, in_spec, decompositions=decompositions)
        note.detail = f"{len(joint.graph_module.graph.nodes)} nodes"
    if (inference_compiler if joint.is_inference else fw_compiler) is inductor:
        with log.stage("joint passes"):
            joint = inductor_joint_passes(joint)
    with log.stage("partition"):
        parts = partition(joint, partition_fn)
    with log.stage("compile"):
        compiled = compile_partition(parts, fw_compiler, bw_compiler, inference_compiler)
    # The runtime calls a timed backward; the artifact keeps what the compiler returned.
    timed = compiled if compiled.backward is None else replace(
        compiled, backward=time_first_call(compiled.backward, log, "first backward"))
    sig = joint.signature
    return CompiledEntry(parts, compiled, build_runtime(timed), log, _unflattener(sig.out_spec),
                         bool(sig.mutated_primals or sig.metadata_mutated_primals))


def _signature_key(flat_args: list, in_spec) -> tuple:
    key: list = [in_spec, torch.is_grad_enabled(), *_autocast_state()]
    first_position: dict[int, int] = {}
    for position, a in enumerate(flat_args):
        if isinstance(a, torch.Tensor):
            if a.layout != torch.strided:
                raise BadArgument(f"input tensor with layout {a.layout} is not supported", "api",
                                  "pass dense (strided) tensors, e.g. t.to_dense()")
            key.append((a.shape, a.stride(), a.storage_offset(), a.dtype, a.device, a.requires_grad,
                        first_position.setdefault(id(a), position)))
        else:
            key.append((type(a), a if _hashable(a) else repr(a)))
    return tuple(key)


def _plain_args_key(layout: tuple, tensors: list) -> tuple:
    """The signature key of `_flatten_plain_args`'s result: the same facts as
    `_signature_key`, gathered without a pytree walk (duplicates are rare: checked in bulk)."""
    key = (layout, torch.is_grad_enabled(), *_autocast_state(),
           *[(t.shape, t.stride(), t.storage_offset(), t.dtype, t.device, t.requires_grad) for t in tensors])
    if len(set(map(id, tensors))) != len(tensors):
        first_position: dict[int, int] = {}
        key += tuple(first_position.setdefault(id(t), p) for p, t in enumerate(tensors))
    return key


def _flatten_plain_args(args: tuple) -> tuple[Optional[list], Optional[list], Optional[tuple]]:
    """``(flat leaves, tensor leaves, layout)`` when every argument is a tensor, a list/tuple
    of tensors (aot_module's parameters) or a tuple of bools (its training flags): the common
    calls, flattened without pytree. Else ``(None, None, None)``. The layout stands in for the
    TreeSpec in the cache key and holds the bools' values."""
    flat: list = []
    tensors: list = []
    layout: list = []
    for a in args:
        if isinstance(a, torch.Tensor):
            flat.append(a)
            tensors.append(a)
            layout.append(None)
        elif type(a) in (list, tuple) and all(isinstance(t, torch.Tensor) for t in a):
            flat.extend(a)
            tensors.extend(a)
            layout.append((type(a), len(a)))
        elif type(a) is tuple and all(type(v) is bool for v in a):
            flat.extend(a)
            layout.append((tuple, a))
        else:
            return None, None, None
    return flat, tensors, tuple(layout)


_AUTOCAST_DEVICES = ("cpu", "cuda")


def _autocast_state() -> tuple:
    """Autocast's state for the cache key, on every device: graphs hold its casts."""
    if not autocast_on():
        return (False,)
    return tuple((device, torch.get_autocast_dtype(device)) for device in _AUTOCAST_DEVICES
                 if torch.is_autocast_enabled(device))


def _hashable(value: Any) -> bool:
    try:
        hash(value)
        return True
    except TypeError:
        return False


def _unflattener(out_spec) -> Callable[[list], Any]:
    """``tree_unflatten(·, out_spec)``, short-cut for a single tensor and a flat tuple."""
    if out_spec.is_leaf():
        return operator.itemgetter(0)
    if out_spec == tree_flatten((0,) * out_spec.num_leaves)[1]:
        return tuple
    return lambda flat_out: tree_unflatten(flat_out, out_spec)


def aot_function(
    fn: Callable,
    fw_compiler: Optional[Callable] = None,
    bw_compiler: Optional[Callable] = None,
    partition_fn: Callable = default_partition,
    decompositions: Optional[Mapping] = None,
    num_params_buffers: int = 0,
    keep_inference_input_mutations: bool = False,
    inference_compiler: Optional[Callable] = None,
    *,
    dynamic: bool = False,
    enable_log: bool = True,
) -> Callable:
    """Compile `fn` ahead of time for each distinct input signature it is called with.

    Same call shape as functorch's ``aot_function``. Compilers may be callables or
    names (``"eager"``, ``"inductor"``); ``bw_compiler`` and ``inference_compiler``
    default to ``fw_compiler``, which defaults to ``"eager"``. The returned function
    has ``aotgraph_entries``: the compiled entry of each signature seen, and
    ``aotgraph_compile(*args, **kwargs)``, which compiles for those inputs (real or fake)
    without running. With the ``"inductor"`` forward compiler, `decompositions` defaults
    to Inductor's table.
    """
    if not callable(fn):
        raise BadArgument(f"aot_function expects a callable, got {type(fn).__name__}", "api",
                          "pass the function (or module) to compile")
    if dynamic:
        raise BadArgument("dynamic=True is not supported yet", "api", "leave dynamic=False (shapes are specialized)")
    fw = resolve_compiler(fw_compiler, eager)
    bw = resolve_compiler(bw_compiler, fw)
    inference = resolve_compiler(inference_compiler, fw)
    if decompositions is None and fw is inductor:
        from .compilers.inductor import inductor_decompositions

        decompositions = inductor_decompositions()
    entries: dict[tuple, CompiledEntry] = {}

    def compile_entry(program, flat_args, in_spec) -> CompiledEntry:
        return compile_stages(program, flat_args, in_spec, fw_compiler=fw, bw_compiler=bw,
                              inference_compiler=inference, partition_fn=partition_fn,
                              decompositions=decompositions)

    def entry_for(args: tuple, kwargs: dict) -> tuple[CompiledEntry, list]:
        """The entry for these inputs (compiled on a miss) and the flat inputs it takes."""
        flat_args, tensors, layout = (None, None, None) if kwargs else _flatten_plain_args(args)
        if flat_args is not None:
            try:
                key, in_spec = _plain_args_key(layout, tensors), None
            except RuntimeError:  # a sparse tensor has no strides: `_signature_key` names it
                flat_args = None
        if flat_args is None:
            flat_args, in_spec = tree_flatten((args, kwargs))
            key = _signature_key(flat_args, in_spec)
        entry = entries.get(key)
        if entry is not None and not entry.mutates_inputs:
            return entry, flat_args
        if in_spec is None:
            in_spec = tree_flatten((args, kwargs))[1]
        # Distinct inputs sharing memory: only checked where a mutation could make it matter.
        groups = aliased_input_groups(flat_args)
        program = fn
        if groups:
            program, flat_args, in_spec = with_shared_bases(fn, flat_args, in_spec, groups)
            key = (key, groups)
            entry = entries.get(key)
        if entry is None:
            entry = entries[key] = compile_entry(program, flat_args, in_spec)
        return entry, flat_args

    def compiled_fn(*args, **kwargs):
        entry, flat_args = entry_for(args, kwargs)
        if entry.has_run:
            return entry.unflatten(entry.run(flat_args))
        entry.has_run = True
        with entry.log.stage("first run"):
            return entry.unflatten(entry.run(flat_args))

    def compile_for(*args, **kwargs) -> CompiledEntry:
        return entry_for(args, kwargs)[0]

    compiled_fn.aotgraph_entries = entries
    compiled_fn.aotgraph_compile = compile_for
    compiled_fn.__wrapped__ = fn
    return compiled_fn


def _named_state(module: torch.nn.Module) -> tuple[list[str], list[torch.Tensor]]:
    named = dict(module.named_parameters(remove_duplicate=False))
    named.update(module.named_buffers(remove_duplicate=False))
    return list(named), list(named.values())


def _state_slots(module: torch.nn.Module, names: list[str]) -> list[tuple[dict, str]]:
    """For each parameter/buffer name, the ``_parameters``/``_buffers`` dict that holds it:
    reading those per call sees reassigned parameters and buffers without walking the tree."""
    slots = []
    for name in names:
        owner_name, _, leaf = name.rpartition(".")
        owner = module.get_submodule(owner_name)
        slots.append((owner._parameters if leaf in owner._parameters else owner._buffers, leaf))
    return slots


class AotModule(torch.nn.Module):
    """The module returned by `aot_module`: calls the compiled function with the wrapped
    module's current parameters and buffers, so optimizer steps and buffer updates show,
    and with its submodules' training flags, so ``train()``/``eval()`` select their own graph."""

    def __init__(self, module: torch.nn.Module, compiled: Callable, names: list[str]):
        super().__init__()
        self.orig_module = module
        self._compiled = compiled
        self._state_slots = _state_slots(module, names)
        self._submodules = list(module.modules())

    def forward(self, *args, **kwargs):
        values = [slot[name] for slot, name in self._state_slots]
        training_flags = tuple([m.training for m in self._submodules])
        return self._compiled(values, training_flags, *args, **kwargs)

    @property
    def aotgraph_entries(self):
        return self._compiled.aotgraph_entries


def _functional_module_fn(module: torch.nn.Module, names: list[str]) -> Callable:
    def call_with_state(state_values, *args, **kwargs):
        state = dict(zip(names, state_values))
        return torch.func.functional_call(module, state, args, kwargs, tie_weights=False, strict=False)

    return call_with_state


def _keyed_by_training_flags(call_with_state: Callable) -> Callable:
    """Takes the module's training flags as an argument only so they enter the cache key;
    the module itself holds the flags the trace reads."""

    def call(state_values, training_flags, *args, **kwargs):
        return call_with_state(state_values, *args, **kwargs)

    return call


def aot_module(mod: torch.nn.Module, *args, **kwargs) -> torch.nn.Module:
    """Compile an ``nn.Module``: parameters and buffers become graph inputs (same call shape
    as functorch's ``aot_module``; extra arguments go to `aot_function`)."""
    if not isinstance(mod, torch.nn.Module):
        raise BadArgument(f"aot_module expects an nn.Module, got {type(mod).__name__}", "api",
                          "use aot_function for plain functions")
    names, _ = _named_state(mod)
    compiled = aot_function(_keyed_by_training_flags(_functional_module_fn(mod, names)), *args, **kwargs)
    return AotModule(mod, compiled, names)


def aot_module_simplified(
    mod: torch.nn.Module,
    args,
    fw_compiler: Callable,
    bw_compiler: Optional[Callable] = None,
    partition_fn: Callable = default_partition,
    decompositions: Optional[Mapping] = None,
    keep_inference_input_mutations: bool = False,
    inference_compiler: Optional[Callable] = None,
    cudagraphs=None,
    **_ignored,
) -> Callable:
    """The Dynamo-backend entry (functorch's ``aot_module_simplified``): `mod` is
    typically an fx GraphModule, `args` its example inputs (real or fake); compiles for
    them now and returns ``forward(*args)`` with the module's parameters and buffers
    bound. A call with another input signature compiles again. Shapes are specialized:
    symbolic example inputs (Dynamo's dynamic shapes) are not compiled for; each
    concrete signature compiles on its first call instead."""
    names, values = _named_state(mod)
    compiled = aot_function(_functional_module_fn(mod, names), fw_compiler, bw_compiler, partition_fn,
                            decompositions, len(values), keep_inference_input_mutations, inference_compiler)
    if not _has_symbolic_shapes(args):
        compiled.aotgraph_compile(values, *args)

    def forward(*runtime_args):
        return compiled(values, *runtime_args)

    forward.aotgraph_entries = compiled.aotgraph_entries
    forward.zero_grad = mod.zero_grad
    forward.named_parameters = mod.named_parameters
    forward.named_buffers = mod.named_buffers
    return forward


def _has_symbolic_shapes(args) -> bool:
    for value in tree_flatten(args)[0]:
        if isinstance(value, torch.SymInt):
            return True
        if isinstance(value, torch.Tensor) and any(
            isinstance(s, torch.SymInt) for s in (*value.shape, *value.stride(), value.storage_offset())
        ):
            return True
    return False


def aot_export_joint(fn: Callable, args: tuple, kwargs: Optional[dict] = None, *,
                     decompositions: Optional[Mapping] = None) -> JointGraph:
    """The joint forward+backward graph of ``fn(*args, **kwargs)`` with its signature."""
    flat_args, in_spec = tree_flatten((tuple(args), dict(kwargs or {})))
    return capture(fn, flat_args, in_spec, decompositions=decompositions)
