"""Entry points, drop-in for functorch's compile API: flatten inputs, look up the compiled
entry for this input signature, run the stages on a miss, call the runtime. A call of only
tensors that matches the previous one (a C++ check, see `_LastCall`) skips the lookup."""
from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import operator
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Optional

import torch
from torch.utils._pytree import tree_flatten

from .artifacts import CompiledGraphs, JointGraph, Partition
from .capture import capture
from .capture.aliased_inputs import aliased_input_groups, with_shared_bases
from .compilers import compile_partition, eager, is_inductor, resolve_compiler
from .compilers.torchinductor import inductor_joint_passes, wake_compile_workers
from .errors import BadArgument, UnsupportedOp
from .guards import GuardSet, reads_recorded
from .partition import default_partition, partition
from .partition.mincut import FUSING_COMPILER_KEY
from .recompiles import CallFacts, RecompileWatch, call_facts, describe_change
from .runtime import autocast_on, build_runtime
from .timings import CompileLog, time_first_call

try:  # Dynamo's C++ tensor check; without it every call builds the cache key
    from torch._C._dynamo.guards import TensorGuards as _TensorGuards
except ImportError:
    _TensorGuards = None

__all__ = ["aot_function", "aot_module", "aot_module_simplified", "aot_export_joint", "CompiledEntry"]


@dataclass
class CompiledEntry:
    """Everything one input signature compiled to, kept for reports and tests."""

    partition: Partition
    compiled: CompiledGraphs
    run: Callable[..., Any]  # run(*flat_inputs) -> the user's outputs
    log: CompileLog
    mutates_inputs: bool = False
    has_run: bool = False  # the first call is timed as the "first run" stage
    guards: GuardSet = field(default_factory=lambda: GuardSet(()))  # Python values the program read
    call_facts: Optional[CallFacts] = None  # the call that compiled it
    reason: str = "first call"  # why it was compiled

    @property
    def joint(self) -> JointGraph:
        return self.partition.joint

    def __str__(self) -> str:
        """A headline (ops per graph, tensors saved for backward and their bytes), then the CompileLog."""
        from .report.text import entry_headline

        return f"{entry_headline(self)}\n{self.log}"


def compile_stages(fn, flat_args, in_spec, *, fw_compiler, bw_compiler, inference_compiler, partition_fn,
                   decompositions) -> CompiledEntry:
    """capture -> partition -> compile -> runtime, each stamped into one CompileLog."""
    log = CompileLog()
    if is_inductor(fw_compiler) or is_inductor(inference_compiler):
        wake_compile_workers(flat_args)
    with _collector_paused():
        with log.stage("capture") as note:
            joint = capture(fn, flat_args, in_spec, decompositions=decompositions)
            note.detail = f"{len(joint.graph_module.graph.nodes)} nodes"
        if is_inductor(inference_compiler if joint.is_inference else fw_compiler):
            with log.stage("joint passes"):
                joint = inductor_joint_passes(joint)
            joint.graph_module.meta[FUSING_COMPILER_KEY] = True  # the partitioner plans for fused backward kernels
        with log.stage("partition"):
            parts = partition(joint, partition_fn)
    with log.stage("compile") as note:
        compiled = compile_partition(parts, fw_compiler, bw_compiler, inference_compiler,
                                     _static_primals(flat_args, joint.signature.primal_positions))
        if getattr(compiled.forward, "aotgraph_wrapper", None) == "cpp":
            note.detail = "Inductor's C++ wrapper"
    # The runtime calls a timed backward; the artifact keeps what the compiler returned.
    timed = compiled if compiled.backward is None else replace(
        compiled, backward=time_first_call(compiled.backward, log, "first backward"))
    sig = joint.signature
    return CompiledEntry(parts, compiled, build_runtime(timed), log,
                         bool(sig.mutated_primals or sig.metadata_mutated_primals))


@contextlib.contextmanager
def _collector_paused():
    """Python's cyclic garbage collector off while we build graphs, back on after (as it was).
    Capture and partition allocate hundreds of thousands of short-lived objects, and the
    collector's full passes over a large process (a model, Dynamo's and Inductor's state)
    took up to 0.6 s of a ResNet-50 partition on the GPU host; afterwards one pass collects
    whatever cycles they left."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _static_primals(flat_args: list, primal_positions) -> frozenset:
    """Primals that keep their memory across calls: parameters, and what Dynamo marks static
    (its graphs' parameters and buffers)."""
    return frozenset(p for p, i in enumerate(primal_positions)
                     if isinstance(flat_args[i], torch.nn.Parameter)
                     or getattr(flat_args[i], "_dynamo_static_input_type", None) is not None)


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


def _flatten_plain_args(args: tuple) -> tuple[Optional[list], Optional[tuple]]:
    """``(flat tensors, layout)`` when every argument is a tensor or a list/tuple of tensors:
    the common calls, flattened without pytree. Else ``(None, None)``. The layout stands in
    for the TreeSpec in the cache key."""
    flat: list = []
    layout: list = []
    for a in args:
        if isinstance(a, torch.Tensor):
            flat.append(a)
            layout.append(None)
        elif type(a) in (list, tuple) and all(isinstance(t, torch.Tensor) for t in a):
            flat.extend(a)
            layout.append((type(a), len(a)))
        else:
            return None, None
    return flat, tuple(layout)


class _LastCall:
    """What a call whose arguments are all tensors must match to reuse the entry that the
    previous such call ran, checked without building the cache key.

    `tensors_match` is torch's C++ tensor check (Dynamo's ``TensorGuards``): Python type,
    dispatch keys (device type, conj/neg bits, the thread's dispatch state), dtype, device
    index, shape, stride, requires_grad; it fails when one tensor is passed twice. The rest
    of the key is checked here: grad mode, autocast (one C call when it is off), storage offsets;
    for an entry that mutates an input, also that no two inputs share memory (the key path
    would compile such a call for their common base)."""

    __slots__ = ("num_args", "tensors_match", "grad_enabled", "autocast", "offsets", "run", "check_storages",
                 "offset_bytes", "guards")

    def __init__(self, args: tuple, run: Callable, check_storages: bool, guards: GuardSet):
        self.num_args = len(args)
        self.tensors_match = _TensorGuards(*args, dynamic_dims_sizes=None, dynamic_dims_strides=None).check
        self.grad_enabled = torch.is_grad_enabled()
        self.autocast = _autocast_state()
        self.offsets = list(map(_storage_offset, args))
        self.run = run
        self.guards = guards  # the entry's guards on Python values (module attributes)
        self.check_storages = check_storages  # a mutating entry: inputs must not share memory
        # With the offsets checked, data_ptr - offset_bytes is each tensor's storage pointer.
        self.offset_bytes = [t.storage_offset() * t.element_size() for t in args]

    def distinct_storages(self, args: tuple) -> bool:
        """`_distinct_storages` for a call whose storage offsets match: no storage objects made
        (ResNet-50's 320 inputs: 0.3 ms per call otherwise)."""
        pointers = set(map(operator.sub, map(_data_ptr, args), self.offset_bytes))
        return len(pointers) == len(args) and 0 not in pointers


def _remembered_call(args: tuple, kwargs: dict, entry: CompiledEntry,
                     by_entry: dict[int, _LastCall]) -> Optional[_LastCall]:
    """The `_LastCall` for this call, which the cache key resolved to `entry`, or None where
    it cannot take the fast path. A call that passes one tensor twice is not remembered: the
    C++ check rejects duplicates in the calls it checks, not their absence. `by_entry` keeps
    each entry's last one: a call that reached the same entry has the same key, so only the
    C++ check's extra facts (Python type, dispatch keys) can differ, and a call that switches
    between entries rebuilds none while those match."""
    if (_TensorGuards is None or kwargs
            or not all(isinstance(a, torch.Tensor) for a in args) or len(set(map(id, args))) != len(args)
            or (entry.mutates_inputs and not _distinct_storages(args))):
        return None
    known = by_entry.get(id(entry))
    if known is not None and known.tensors_match(*args):
        return known
    try:
        by_entry[id(entry)] = _LastCall(args, entry.run, entry.mutates_inputs, entry.guards)
    except (TypeError, RuntimeError):  # a tensor the C++ check cannot describe: keep the key path
        return None
    return by_entry[id(entry)]


def _distinct_storages(tensors: tuple) -> bool:
    """No two of `tensors` share memory (an empty storage counts as shared: pointer 0)."""
    pointers = {t.untyped_storage().data_ptr() for t in tensors}
    return len(pointers) == len(tensors) and 0 not in pointers


_AUTOCAST_DEVICES = ("cpu", "cuda")
_grad_enabled = torch.is_grad_enabled
_storage_offset = torch.Tensor.storage_offset
_data_ptr = torch.Tensor.data_ptr


_AUTOCAST_OFF = (False,)


def _autocast_state() -> tuple:
    """Autocast's state for the cache key, on every device: graphs hold its casts."""
    if not autocast_on():
        return _AUTOCAST_OFF
    return tuple((device, torch.get_autocast_dtype(device)) for device in _AUTOCAST_DEVICES
                 if torch.is_autocast_enabled(device))


def _hashable(value: Any) -> bool:
    try:
        hash(value)
        return True
    except TypeError:
        return False


# functorch parameters aotgraph accepts and does not use, with the value that changes nothing.
_IGNORED_PARAMETERS = {
    "num_params_buffers": 0, "keep_inference_input_mutations": False, "enable_log": True,
    "disable_functionalization": False, "cudagraphs": None, "boxed_forward_device_index": None,
    "ignore_shape_env": False, "compiler_config_extra": None, "compile_region_name": None,
    "_record_nn_module_stack": False, "_disable_torch_fn_metadata_mode": False,
}
_warned_ignored: set[str] = set()
logger = logging.getLogger("aotgraph")


def _warn_ignored(given: dict) -> None:
    """Warn once per parameter name for functorch parameters given a value that aotgraph ignores."""
    for name, value in given.items():
        if value is not _IGNORED_PARAMETERS[name] and value != _IGNORED_PARAMETERS[name] and name not in _warned_ignored:
            _warned_ignored.add(name)
            warnings.warn(f"aotgraph ignores functorch's {name}={value!r}: "
                          f"{_WHY_IGNORED.get(name, 'it has no effect on aotgraph')}", stacklevel=3)


_WHY_IGNORED = {
    "num_params_buffers": "aotgraph finds parameters and buffers itself",
    "keep_inference_input_mutations": "input mutations are always kept (written back, or in the graph with Inductor)",
    "cudagraphs": "pass options={'triton.cudagraphs': True} to aotgraph.backend instead",
    "disable_functionalization": "aotgraph's graphs are always functional",
    "enable_log": "set AOTGRAPH_LOG=1 for aotgraph's log",
}


def _program_name(fn: Callable) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _watched_module(fn: Callable) -> Optional[torch.nn.Module]:
    """The module whose Python attributes the program reads, to be guarded (see `guards`)."""
    if hasattr(fn, "aotgraph_module"):
        return fn.aotgraph_module
    module = fn if isinstance(fn, torch.nn.Module) else getattr(fn, "__self__", None)
    return module if isinstance(module, torch.nn.Module) and not isinstance(module, torch.fx.GraphModule) else None


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
    disable_functionalization: bool = False,
    _disable_torch_fn_metadata_mode: bool = False,
) -> Callable:
    """Compile `fn` ahead of time for each distinct input signature it is called with.

    Same call shape as functorch's ``aot_function``. Compilers may be callables or
    names (``"eager"``, ``"inductor"``); ``bw_compiler`` and ``inference_compiler``
    default to ``fw_compiler``, which defaults to ``"eager"``. The returned function
    has ``aotgraph_entries``: the compiled entry of each signature seen, and
    ``aotgraph_compile(*args, **kwargs)``, which compiles for those inputs (real or fake)
    without running. With the ``"inductor"`` forward compiler, `decompositions` defaults
    to Inductor's table. Python values the program reads from a module's attributes or
    from argument objects are guarded: when one changes, the next call compiles again
    (see `aotgraph.guards`). functorch's `num_params_buffers`, `keep_inference_input_mutations`,
    `enable_log` and `disable_functionalization` are accepted and ignored, with a warning
    when set.
    """
    if not callable(fn):
        raise BadArgument(f"aot_function expects a callable, got {type(fn).__name__}", "api",
                          "pass the function (or module) to compile")
    if dynamic:
        raise BadArgument("dynamic=True is not supported yet", "api", "leave dynamic=False (shapes are specialized)")
    _warn_ignored({"num_params_buffers": num_params_buffers,
                   "keep_inference_input_mutations": keep_inference_input_mutations, "enable_log": enable_log,
                   "disable_functionalization": disable_functionalization,
                   "_disable_torch_fn_metadata_mode": _disable_torch_fn_metadata_mode})
    if not callable(partition_fn):
        raise BadArgument(f"partition_fn must be a function, got {type(partition_fn).__name__}", "api",
                          "pass default_partition, min_cut_rematerialization_partition or partition_for(...)")
    fw = resolve_compiler(fw_compiler, eager)
    bw = resolve_compiler(bw_compiler, fw)
    inference = resolve_compiler(inference_compiler, fw)
    if decompositions is None and is_inductor(fw):
        from .compilers.torchinductor import inductor_decompositions

        decompositions = inductor_decompositions()
    entries: dict[tuple, CompiledEntry] = {}
    variants_of: dict[tuple, list[CompiledEntry]] = {}  # one per set of guarded Python values
    name = _program_name(fn)
    watched_module = _watched_module(fn)
    input_names = tuple(getattr(fn, "aotgraph_input_names", ()))
    watch = RecompileWatch(name)
    latest: list[CompiledEntry] = []

    def compile_entry(key, program, program_args, program_spec, flat_args, in_spec) -> CompiledEntry:
        facts = call_facts(flat_args, in_spec, torch.is_grad_enabled(), _autocast_state())
        reason = _recompile_reason(variants_of.get(key, ()), latest, facts, flat_args, input_names)
        logger.info("aotgraph %s %s: %s", "recompiling" if latest else "compiling", name, reason)
        with reads_recorded(watched_module, flat_args, input_names) as guards:
            entry = compile_stages(program, program_args, program_spec, fw_compiler=fw, bw_compiler=bw,
                                   inference_compiler=inference, partition_fn=partition_fn,
                                   decompositions=decompositions)
        entry.guards, entry.call_facts, entry.reason = GuardSet(guards), facts, reason
        variants = variants_of.setdefault(key, [])
        entries[key if not variants else (key, len(variants))] = entry
        variants.append(entry)
        latest[:] = [entry]
        watch.compiled(reason)
        return entry

    def lookup(key, flat_args) -> Optional[CompiledEntry]:
        for entry in variants_of.get(key, ()):
            if not entry.guards or entry.guards.holds(flat_args):
                return entry
        return None

    def entry_for(args: tuple, kwargs: dict) -> tuple[CompiledEntry, list]:
        """The entry for these inputs (compiled on a miss) and the flat inputs it takes."""
        flat_args, layout = (None, None) if kwargs else _flatten_plain_args(args)
        if flat_args is not None:
            try:
                key, in_spec = _plain_args_key(layout, flat_args), None
            except RuntimeError:  # a sparse tensor has no strides: `_signature_key` names it
                flat_args = None
        if flat_args is None:
            flat_args, in_spec = tree_flatten((args, kwargs))
            key = _signature_key(flat_args, in_spec)
        entry = lookup(key, flat_args)
        if entry is not None and not entry.mutates_inputs:
            return entry, flat_args
        if in_spec is None:
            in_spec = tree_flatten((args, kwargs))[1]
        # Distinct inputs sharing memory: only checked where a mutation could make it matter.
        groups = aliased_input_groups(flat_args)
        if not groups:
            if entry is None:
                entry = compile_entry(key, fn, flat_args, in_spec, flat_args, in_spec)
            return entry, flat_args
        try:
            program, shared_args, shared_spec = with_shared_bases(fn, flat_args, in_spec, groups)
        except UnsupportedOp:
            # No base to pass instead: fine unless the program turns out to mutate an input.
            if entry is None:
                entry = compile_entry(key, fn, flat_args, in_spec, flat_args, in_spec)
            if entry.mutates_inputs:
                raise
            return entry, flat_args
        entry = lookup((key, groups), flat_args)
        if entry is None:
            entry = compile_entry((key, groups), program, shared_args, shared_spec, flat_args, in_spec)
        return entry, shared_args

    last_call: Optional[_LastCall] = None
    last_call_by_entry: dict[int, _LastCall] = {}  # entries live as long as `entries`: ids stay theirs

    def compiled_fn(*args, **kwargs):
        last = last_call
        if (last is not None and not kwargs and len(args) == last.num_args and last.tensors_match(*args)
                and _grad_enabled() is last.grad_enabled
                and (_autocast_state() if autocast_on() else _AUTOCAST_OFF) == last.autocast
                and list(map(_storage_offset, args)) == last.offsets
                and (not last.check_storages or last.distinct_storages(args))
                and (not last.guards or last.guards.holds(args))):
            return last.run(*args)
        return call_with_key(args, kwargs)

    def call_with_key(args: tuple, kwargs: dict):
        nonlocal last_call
        entry, flat_args = entry_for(args, kwargs)
        last_call = _remembered_call(args, kwargs, entry, last_call_by_entry)
        if entry.has_run:
            return entry.run(*flat_args)
        entry.has_run = True
        with entry.log.stage("first run"):
            return entry.run(*flat_args)

    def compile_for(*args, **kwargs) -> CompiledEntry:
        return entry_for(args, kwargs)[0]

    compiled_fn.aotgraph_entries = entries
    compiled_fn.aotgraph_compile = compile_for
    compiled_fn.__wrapped__ = fn
    return compiled_fn


def _recompile_reason(same_key: list, latest: list, facts: CallFacts, flat_args: list, input_names) -> str:
    """Why this call compiles: "first call", a failed guard of an entry of the same key, or
    what differs from the latest compiled call (``"argument 0: shape (4,) -> (5,)"``)."""
    for entry in reversed(same_key):
        failed = entry.guards.failed(flat_args)
        if failed is not None:
            return failed.describe_change(flat_args)
    if not latest or latest[0].call_facts is None:
        return "first call"
    return describe_change(latest[0].call_facts, facts, input_names)


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
    module's current parameters and buffers, so optimizer steps and buffer updates show.
    Each combination of its submodules' training flags gets its own compiled function,
    so ``train()``/``eval()`` select their own graph."""

    def __init__(self, module: torch.nn.Module, compile_program: Callable[[], Callable], names: list[str]):
        super().__init__()
        self.orig_module = module
        self._compile_program = compile_program
        self._compiled_by_flags: dict[tuple, Callable] = {}
        self._state_slots = _state_slots(module, names)
        self._submodules = list(module.modules())

    def forward(self, *args, **kwargs):
        training_flags = tuple([m.training for m in self._submodules])
        compiled = self._compiled_by_flags.get(training_flags)
        if compiled is None:
            compiled = self._compiled_by_flags[training_flags] = self._compile_program()
        return compiled(*[slot[name] for slot, name in self._state_slots], *args, **kwargs)

    @property
    def aotgraph_entries(self) -> dict:
        return {(flags, key): entry for flags, compiled in self._compiled_by_flags.items()
                for key, entry in compiled.aotgraph_entries.items()}


def _functional_module_fn(module: torch.nn.Module, names: list[str], guard_attributes: bool = True) -> Callable:
    """``fn(*state_values, *args, **kwargs)``: the module called with the given parameters
    and buffers (flat, so that a call of tensors takes the per-call fast path). With
    `guard_attributes`, the Python attributes of `module`'s tree that a capture reads are
    guarded (`aot_function` reads ``aotgraph_module``)."""
    num_state = len(names)

    def call_with_state(*state_then_args, **kwargs):
        state = dict(zip(names, state_then_args[:num_state]))
        return torch.func.functional_call(module, state, state_then_args[num_state:], kwargs,
                                          tie_weights=False, strict=False)

    call_with_state.__name__ = call_with_state.__qualname__ = type(module).__name__
    call_with_state.aotgraph_input_names = tuple(names)
    call_with_state.aotgraph_module = module if guard_attributes else None
    return call_with_state


def aot_module(mod: torch.nn.Module, *args, **kwargs) -> torch.nn.Module:
    """Compile an ``nn.Module``: parameters and buffers become graph inputs (same call shape
    as functorch's ``aot_module``; extra arguments go to `aot_function` and are checked now)."""
    if not isinstance(mod, torch.nn.Module):
        raise BadArgument(f"aot_module expects an nn.Module, got {type(mod).__name__}", "api",
                          "use aot_function for plain functions")
    try:
        inspect.signature(aot_function).bind(mod, *args, **kwargs)
    except TypeError as error:
        raise TypeError(f"aot_module: {error}") from None
    names, _ = _named_state(mod)
    program = _functional_module_fn(mod, names)
    aot_function(program, *args, **kwargs)  # checks the arguments' values now, not at the first call
    return AotModule(mod, lambda: aot_function(program, *args, **kwargs), names)


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
    boxed_forward_device_index=None,
    ignore_shape_env: bool = False,
    disable_functionalization: bool = False,
    _record_nn_module_stack: bool = False,
    *,
    compiler_config_extra=None,
    pre_grad_passes: Optional[Callable] = None,
    compile_region_name: Optional[str] = None,
) -> Callable:
    """The Dynamo-backend entry (functorch's ``aot_module_simplified``): `mod` is
    typically an fx GraphModule, `args` its example inputs (real or fake); compiles for
    them now and returns ``forward(*args)`` with the module's parameters and buffers
    bound. A call with another input signature compiles again. Shapes are specialized:
    symbolic example inputs (Dynamo's dynamic shapes) are not compiled for; each
    concrete signature compiles on its first call instead. Parameter names are the union
    of functorch's over torch 2.11-2.14: `pre_grad_passes` runs on `mod` first; the others
    that aotgraph does not use are accepted and ignored, with a warning when set."""
    _warn_ignored({"keep_inference_input_mutations": keep_inference_input_mutations, "cudagraphs": cudagraphs,
                   "boxed_forward_device_index": boxed_forward_device_index, "ignore_shape_env": ignore_shape_env,
                   "disable_functionalization": disable_functionalization,
                   "_record_nn_module_stack": _record_nn_module_stack, "compiler_config_extra": compiler_config_extra,
                   "compile_region_name": compile_region_name})
    if pre_grad_passes is not None:
        mod = pre_grad_passes(mod, args)
    names, values = _named_state(mod)
    compiled = aot_function(_functional_module_fn(mod, names, guard_attributes=not isinstance(mod, torch.fx.GraphModule)),
                            fw_compiler, bw_compiler, partition_fn, decompositions,
                            inference_compiler=inference_compiler)
    if not _has_symbolic_shapes(args):
        compiled.aotgraph_compile(*values, *args)

    def forward(*runtime_args):
        return compiled(*values, *runtime_args)

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
