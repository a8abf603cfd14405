"""Entry points, drop-in for functorch's compile API: flatten inputs, look up the compiled
entry for this input signature (see `cache`), run the stages on a miss (see `pipeline`),
call the runtime."""
from __future__ import annotations

import contextlib
import copy
import inspect
import threading
import warnings
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import torch
from torch.nn.parameter import UninitializedTensorMixin
from torch.utils._pytree import tree_flatten, tree_leaves

from .artifacts import JointGraph
from . import config
from .cache.disk import DiskCache
from .cache.disk_keys import NotKeyable, call_key, settings_key
from .cache.entries import EntryStore
from .cache.fast_path import LastCall, distinct_storages, remembered_call
from .cache.guards import GuardSet, reads_recorded
from .cache.module_tree import ModuleTree
from .cache.keys import (AUTOCAST_OFF, autocast_state, flatten_plain_args, plain_args_key,
                         refuse_torch_function_subclass, refuse_unsupported_tensor, signature_key, size_free_key)
from .cache.size_guards import ConcreteSizes, size_guard
from .cache.recompiles import RecompileWatch, call_facts
from .capture import capture, until_capture_ends
from .capture.inputs import fake_inputs, traced_fakes
from .capture.repeated_blocks import with_repeated_blocks
from .capture.aliased_inputs import aliased_input_groups, base_facts, shared_bases, with_shared_bases
from .capture.symbolic_ints import (carrier_device, carrier_fakes, reading_ints_from_sizes,
                                     symbolic_int_positions, with_size_carriers)
from .capture.subclasses import SubclassOutputs, SubclassProgram, inner_example_args, subclass_layouts, subclass_run
from .compilers import eager, is_users, resolve_compiler, traits_of
from .debug import logger
from .torch_private.subclasses import is_functorch_wrapped_tensor
from .errors import BadArgument, UnsupportedOp
from .graph.sizes import layout_key, layout_of
from .module_writes import ModuleWrites, apply_writes, attribute_owner, tensor_writes_recorded, with_writes
from .partition import default_partition, plans_whole_program
from .pipeline import CompiledEntry, OnDisk, collector_paused, compile_stages
from .runtime import autocast_on
from .torch_private.dynamo import dynamo_compile_lock, mark_dynamic_dims_for_dynamo
from .torch_private.fake import FakeTensor, being_traced, cuda_device_guard_set, detect_fake_mode
from .torch_private.forward_ad import carries_tangent, forward_ad as _forward_ad
from .torch_private.symbolic import new_symbolic_fake_mode

__all__ = ["aot_function", "aot_module", "aot_module_simplified", "aot_export_joint", "AotFunction",
           "CompiledEntry"]

_grad_enabled = torch.is_grad_enabled
_default_dtype = torch.get_default_dtype
_storage_offset = torch.Tensor.storage_offset

# functorch parameters aotgraph accepts and does not use, with the value that changes nothing.
_IGNORED_PARAMETERS = {
    "num_params_buffers": 0, "keep_inference_input_mutations": False, "enable_log": True,
    "disable_functionalization": False, "cudagraphs": None, "boxed_forward_device_index": None,
    "ignore_shape_env": False, "compiler_config_extra": None, "compile_region_name": None,
    "_record_nn_module_stack": False, "_disable_torch_fn_metadata_mode": False,
}
_WHY_IGNORED = {
    "num_params_buffers": "aotgraph finds parameters and buffers itself",
    "keep_inference_input_mutations": "input mutations are always kept (written back, or in the graph with Inductor)",
    "cudagraphs": "pass options={'triton.cudagraphs': True} to aotgraph.backend instead",
    "disable_functionalization": "aotgraph's graphs are always functional",
    "enable_log": "set AOTGRAPH_DEBUG=1 for aotgraph's log",
}
_warned_ignored: set[str] = set()
# Held while a compiled function looks up or compiles its entry, and while an `AotModule` reads
# its state: a capture swaps a module's parameters for fakes in the module itself, which another
# thread's call read (and a racing capture put back as the originals); two threads' first calls
# compiled twice. One compile at a time in a process, as torch.compile's compile lock does. A
# compile takes Dynamo's lock first, as Dynamo's calls of the backend do (a program compiled here
# may call a torch.compile'd function: two orders of the locks would deadlock two threads).
_COMPILE_LOCK = threading.RLock()


def _warn_ignored(given: dict) -> None:
    """Warn once per parameter name for functorch parameters given a value that aotgraph ignores."""
    for name, value in given.items():
        if value is not _IGNORED_PARAMETERS[name] and value != _IGNORED_PARAMETERS[name] and name not in _warned_ignored:
            _warned_ignored.add(name)
            warnings.warn(f"aotgraph ignores functorch's {name}={value!r}: "
                          f"{_WHY_IGNORED.get(name, 'it has no effect on aotgraph')}", stacklevel=3)


def _program_name(fn: Callable) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _watched_module(fn: Callable) -> Optional[torch.nn.Module]:
    """The module whose Python attributes the program reads, to be guarded (see `cache.guards`)."""
    if hasattr(fn, "aotgraph_module"):
        return fn.aotgraph_module
    module = fn if isinstance(fn, torch.nn.Module) else getattr(fn, "__self__", None)
    return module if isinstance(module, torch.nn.Module) and not isinstance(module, torch.fx.GraphModule) else None


class AotFunction:
    """What `aot_function` returns: ``compiled(*args, **kwargs)`` runs the entry compiled for
    this call's signature, compiling it on a miss.

    `aotgraph_entries` maps each cache key to its `CompiledEntry`; `aotgraph_compile(*args,
    **kwargs)` compiles for those inputs (real or fake) without running. A call of only
    tensors that matches the previous one takes the fast path (`cache.fast_path`)."""

    def __init__(self, fn: Callable, stages: dict, disk: Optional[tuple[DiskCache, str, bool]] = None,
                 dynamic: bool = False):
        """`disk`: (the disk cache, the settings key, whether the program is keyed after capture)."""
        self.__wrapped__ = fn
        self._dynamic = dynamic  # compile with symbolic sizes, guarded (see `_compile_symbolic`)
        self.__name__ = _program_name(fn)
        self._stages = stages  # compile_stages' keyword arguments
        self._disk = disk
        self._store = EntryStore()
        self.aotgraph_entries = self._store.entries
        self._watched_module = _watched_module(fn)
        self._input_names = tuple(getattr(fn, "aotgraph_input_names", ()))
        self._recompiles = RecompileWatch(self.__name__)
        self._last_call: Optional[LastCall] = None
        self._last_call_by_entry: dict[int, LastCall] = {}  # entries live as long as the store: ids stay theirs
        self._subclass_entries: set[int] = set()  # their tensor checks cannot see a subclass's layout: no fast path
        self.torch_functions_traced = False  # a graph of Dynamo's: inputs' __torch_function__ already in it

    def __call__(self, *args, **kwargs):
        last = self._last_call
        # `LastCall.matches`, inlined: this is every call's path.
        if (last is not None and not kwargs and len(args) == last.num_args and last.tensors_match(*args)
                and _grad_enabled() is last.grad_enabled and _default_dtype() is last.default_dtype
                and (autocast_state() if autocast_on() else AUTOCAST_OFF) == last.autocast
                and list(map(_storage_offset, args)) == last.offsets
                and (not last.check_storages or last.distinct_storages(args))
                and (last.guards is None or last.guards.holds(args)) and _forward_ad._current_level < 0):
            return last.run(*args)
        if _under_functorch_transform(args, kwargs) or _inside_a_trace(args, kwargs) or _carries_tangents(args, kwargs):
            return self.__wrapped__(*args, **kwargs)
        with dynamo_compile_lock(), _COMPILE_LOCK:
            entry, flat_args = self._entry_for(args, kwargs)
            self._last_call = (None if id(entry) in self._subclass_entries
                               else remembered_call(args, kwargs, entry, self._last_call_by_entry))
        if entry.has_run:
            return entry.run(*flat_args)
        entry.has_run = True
        with entry.log.stage("first run"):
            return entry.run(*flat_args)

    def _on_disk(self, program_args: list, program_spec) -> tuple[Optional[OnDisk], Optional[str]]:
        """``(where this compile looks on disk, None)``, or ``(None, why not)`` where the
        function is not cached on disk or this call cannot be keyed."""
        if self._disk is None or config.disk_cache == "0":
            return None, None
        store, settings, after_capture = self._disk
        try:
            parts = call_key(settings, program_args, program_spec)
        except NotKeyable as why:
            logger.info("aotgraph: this call of %s is not cached on disk: %s", self.__name__, why)
            return None, f"not keyable: {why}"
        return OnDisk(store, parts, after_capture), None

    def aotgraph_compile(self, *args, **kwargs) -> CompiledEntry:
        return self._entry_for(args, kwargs)[0]

    def _static_positions(self, flat_args: list) -> frozenset:
        """Flat inputs whose sizes stay concrete under ``dynamic=True``: parameters, and the
        parameters and buffers `aot_module` passes first."""
        return frozenset(p for p, a in enumerate(flat_args)
                         if p < len(self._input_names) or isinstance(a, torch.nn.Parameter))

    def _concrete_sizes(self, flat_args: list) -> ConcreteSizes:
        """The guard of an entry compiled for these concrete sizes under ``dynamic=True``
        (whose cache key holds no sizes)."""
        static = self._static_positions(flat_args)
        return ConcreteSizes(flat_args, tuple(p for p, a in enumerate(flat_args)
                                              if isinstance(a, torch.Tensor) and p not in static))

    def _compile_symbolic(self, program, flat_args: list, in_spec, size_guards: list) -> Optional[CompiledEntry]:
        """The entry for `flat_args` compiled with a shape environment of its own, every size of
        a tensor input symbolic (but those of `_static_positions`, and sizes 0 and 1), with the
        guard of what the compile assumed appended to `size_guards`; None, logged, where the
        program cannot keep its sizes symbolic."""
        fake_mode = new_symbolic_fake_mode(config.enabled("unused_relations_unbuilt"))
        static = self._static_positions(flat_args)
        sources = _views_as_own_tensors(flat_args, static)
        fakes = fake_inputs(sources, fake_mode, frozenset(
            p for p, a in enumerate(sources) if isinstance(a, torch.Tensor) and p not in static
            and _can_be_symbolic(a)))
        layouts = [layout_of(f) if isinstance(f, torch.Tensor) else None for f in fakes]
        try:
            entry = compile_stages(program, fakes, in_spec, real_args=flat_args, **self._stages)
        except UnsupportedOp as error:
            logger.info("aotgraph %s: symbolic sizes refused, compiling for these sizes: %s", self.__name__, error)
            size_guards.append(self._concrete_sizes(flat_args))
            return None
        guard = size_guard(fake_mode.shape_env, _in_layouts(fakes, layouts, fake_mode), static)
        if guard is not None:
            size_guards.append(guard)
        return entry

    def compile_symbolic(self, args: list, fake_mode, static: frozenset = frozenset(),
                         int_inputs: tuple[int, ...] = (), traced: Optional[dict] = None) -> Optional[CompiledEntry]:
        """One entry for every size `args` (flat, a tensor's sizes SymInts of `fake_mode`'s
        shape environment) stand for, run with ``run_entry`` (the caller guards the sizes, as
        Dynamo does); None, with the reason logged, where the program cannot be captured with
        symbolic sizes (the caller then compiles per concrete signature). `static`: positions
        of real tensors the caller traced with static sizes (Dynamo's buffers, its floats
        wrapped as tensors). `int_inputs`: positions of SymInt arguments the entry takes as
        size carriers (`capture.symbolic_ints`; the caller passes them so). `traced`: position ->
        the fake the caller traced that real tensor with (`capture.inputs.traced_fakes`), used
        as it is."""
        program = self.__wrapped__
        if int_inputs:
            program = reading_ints_from_sizes(program, int_inputs)
            args = carrier_fakes(args, int_inputs, fake_mode)
        # Parameters and the `static` tensors get their fakes as `capture`'s inputs do (switch
        # ``direct_fakes``); other real tensors the fake mode's own, with the symbols Dynamo gave them.
        direct = [k for k, a in enumerate(args) if isinstance(a, torch.nn.Parameter)
                  or (k in static and isinstance(a, torch.Tensor) and not isinstance(a, FakeTensor))]
        traced = traced or {}
        fakes = [traced[k] if k in traced else fake_mode.from_tensor(a)
                 if isinstance(a, torch.Tensor) and not isinstance(a, FakeTensor) and k not in direct else a
                 for k, a in enumerate(args)]
        for position, fake in zip(direct, fake_inputs([args[k] for k in direct], fake_mode)):
            fakes[position] = fake
        in_spec = tree_flatten((tuple(args), {}))[1]
        try:
            entry = compile_stages(program, fakes, in_spec, real_args=list(args), **self._stages)
        except UnsupportedOp as error:
            logger.info("aotgraph %s: symbolic sizes refused, compiling per signature: %s", self.__name__, error)
            return None
        entry.reason = "symbolic sizes"
        self._store.add("symbolic", entry)
        self._recompiles.compiled(entry.reason)
        return entry

    @staticmethod
    def run_entry(entry: CompiledEntry, flat_args: list):
        if entry.has_run:
            return entry.run(*flat_args)
        entry.has_run = True
        with entry.log.stage("first run"):
            return entry.run(*flat_args)

    def _entry_for(self, args: tuple, kwargs: dict) -> tuple[CompiledEntry, list]:
        """The entry for these inputs (compiled on a miss) and the flat inputs it takes."""
        flat_args, layout = (None, None) if kwargs or self._dynamic else flatten_plain_args(args)
        if self._dynamic:
            flat_args, in_spec = tree_flatten((args, kwargs))
            key = size_free_key(flat_args, in_spec, self._static_positions(flat_args))
        elif flat_args is not None:
            try:
                key, in_spec = plain_args_key(layout, flat_args), None
            except (RuntimeError, NotImplementedError):  # a sparse or nested tensor: `signature_key` names it
                flat_args = None
        if flat_args is None:
            flat_args, in_spec = tree_flatten((args, kwargs))
            key = signature_key(flat_args, in_spec)
        layouts = subclass_layouts(flat_args)
        if layouts is not None:
            return self._subclass_entry(flat_args, in_spec or tree_flatten((args, kwargs))[1], layouts), flat_args
        entry = self._store.lookup(key, flat_args)
        if entry is not None and not entry.mutates_inputs:
            return entry, flat_args
        if in_spec is None:
            in_spec = tree_flatten((args, kwargs))[1]
        fn = self.__wrapped__
        if entry is None:  # (a layout aotgraph refuses never compiled an entry)
            for position, value in enumerate(flat_args):
                if isinstance(value, torch.Tensor):
                    refuse_unsupported_tensor(position, value)
                    if not self.torch_functions_traced:
                        refuse_torch_function_subclass(position, value)
        # Distinct inputs sharing memory: only checked where a mutation could make it matter.
        groups = aliased_input_groups(flat_args)
        if not groups:
            if entry is None:
                try:
                    entry = self._compile(key, fn, flat_args, in_spec, flat_args, in_spec, None)
                except SubclassOutputs:  # plain inputs, a subclass output: compiled to rebuild it
                    entry = self._subclass_entry(flat_args, in_spec, (None,) * len(flat_args), key)
            return entry, flat_args
        leaf_views = False
        try:
            bases = shared_bases(flat_args, groups)
        except UnsupportedOp as no_base:
            # No base to pass instead: fine unless the program turns out to mutate an input (capture
            # refuses a mutation of inputs sharing memory); then leaf views requiring grad among plain
            # views get a base of their own, and other groups this error.
            refusal: UnsupportedOp = no_base
            try:
                if entry is None:
                    entry = self._compile(key, fn, flat_args, in_spec, flat_args, in_spec, None)
                if not any(p in entry.mutated_positions for group in groups for p in group):
                    return entry, flat_args  # it mutates no input that shares memory
            except UnsupportedOp as error:
                refusal = error
            try:
                bases, leaf_views = shared_bases(flat_args, groups, leaf_views=True), True
            except UnsupportedOp:
                raise refusal from None
        shared_key = (key, groups, base_facts(bases), leaf_views)
        entry = self._store.lookup(shared_key, flat_args)
        if entry is None:
            shared = with_shared_bases(fn, flat_args, in_spec, groups, bases, leaf_views)
            entry = self._compile(shared_key, shared.program, shared.flat_args, shared.spec, flat_args, in_spec,
                                  groups)
            # The entry runs on the caller's own inputs, as every entry does.
            entry.run, entry.takes_shared_bases = shared.runner(entry.run), True
        return entry, flat_args

    def _subclass_entry(self, flat_args: list, in_spec, layouts: tuple, key=None) -> CompiledEntry:
        """The entry for a call with tensor subclasses among its inputs (their `layouts`) or
        outputs: compiled for their inner tensors (`capture.subclasses`), run on the subclasses
        themselves. Stored under `key` if given, else under a key of the layouts."""
        inner_args = inner_example_args(flat_args, layouts)
        inner_spec = tree_flatten((tuple(inner_args), {}))[1]
        if key is None:
            key = ("subclasses", tuple(layout.key() if layout else None for layout in layouts),
                   signature_key(inner_args, inner_spec))
        entry = self._store.lookup(key, inner_args)
        if entry is None:
            program = SubclassProgram(self.__wrapped__, in_spec, layouts)
            entry = self._compile(key, program, inner_args, inner_spec, inner_args, inner_spec, None)
            entry.run = subclass_run(program, entry.run)
            self._subclass_entries.add(id(entry))
        return entry

    def _compile(self, key, program, program_args, program_spec, flat_args, in_spec, groups) -> CompiledEntry:
        """Compile `program` for `program_args`; `flat_args` and `in_spec` are the call's own
        (they differ where inputs sharing memory are passed as their base, `groups`)."""
        facts = call_facts(flat_args, in_spec, torch.is_grad_enabled(), autocast_state())
        reason = self._store.reason_to_compile(key, facts, flat_args, self._input_names)
        logger.info("aotgraph %s %s: %s", "recompiling" if len(self._store) else "compiling", self.__name__, reason)
        size_guards = []
        with reads_recorded(self._watched_module, flat_args, self._input_names) as guards:
            entry = None
            if self._dynamic and program_args is flat_args and not isinstance(program, SubclassProgram):
                entry = self._compile_symbolic(program, flat_args, program_spec, size_guards)
            elif self._dynamic:  # inputs sharing memory passed as their bases, subclasses: concrete sizes
                size_guards.append(self._concrete_sizes(flat_args))
            if entry is None:
                # A SubclassProgram learns its outputs' layouts by being captured, a program on shared bases
                # the inputs' layout changes and which outputs are inputs: never loaded from disk.
                on_disk, refused = (None, None) if isinstance(program, SubclassProgram) or groups is not None \
                    else self._on_disk(program_args, program_spec)
                entry = compile_stages(program, program_args, program_spec, **self._stages, on_disk=on_disk)
                entry.disk_miss = entry.disk_miss or refused
        entry.guards, entry.call_facts, entry.reason = GuardSet([*guards, *size_guards]), facts, reason
        self._store.add(key, entry)
        self._recompiles.compiled(reason)
        return entry


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
    cache: Optional[bool] = None,
) -> AotFunction:
    """Compile `fn` ahead of time for each distinct input signature it is called with.

    Same call shape as functorch's ``aot_function``. Compilers may be callables or
    names (``"eager"``, ``"inductor"``); ``bw_compiler`` and ``inference_compiler``
    default to ``fw_compiler``, which defaults to ``"eager"``. `decompositions` defaults to
    the forward compiler's own table (Inductor's for ``"inductor"``). Python values the
    program reads from a module's attributes or from argument objects are guarded: when one
    changes, the next call compiles again (see `cache.guards`). `dynamic=True`: every size of a
    tensor input that is not a parameter (nor one of `aot_module`'s parameters and buffers) is
    symbolic in one shape environment per compile; what the compile assumed about the sizes
    (0 and 1 specialized, equalities, relations, divisibility) is its entry's guard
    (`cache.size_guards`), so a call outside it compiles a new entry; a program that cannot keep
    its sizes symbolic (`capture.symbols`) compiles per concrete size. functorch's
    `num_params_buffers`, `keep_inference_input_mutations`, `enable_log` and
    `disable_functionalization` are accepted and ignored, with a warning when set.

    `cache=True` also keeps compiled entries in the disk cache (`cache.disk`), shared by
    processes: a later process captures the program again and, when the captured graph and
    everything else in the key (`cache.disk_keys`) match, loads the partitioned and compiled
    graphs instead of building them. None: as ``AOTGRAPH_CACHE`` says (``all``: on).
    """
    if not callable(fn):
        raise BadArgument(f"aot_function expects a callable, got {type(fn).__name__}", "api",
                          "pass the function (or module) to compile")
    _warn_ignored({"num_params_buffers": num_params_buffers,
                   "keep_inference_input_mutations": keep_inference_input_mutations, "enable_log": enable_log,
                   "disable_functionalization": disable_functionalization,
                   "_disable_torch_fn_metadata_mode": _disable_torch_fn_metadata_mode})
    fw = resolve_compiler(fw_compiler, eager)
    bw = resolve_compiler(bw_compiler, fw)
    inference = resolve_compiler(inference_compiler, fw)
    return _compiled_function(fn, fw, bw, inference, partition_fn, decompositions,
                              cache if cache is not None else config.disk_cache == "all", None, bool(dynamic))


def check_decompositions(decompositions) -> None:
    """A `BadArgument` unless `decompositions` is None or a mapping from ops to functions."""
    if decompositions is None:
        return
    if not isinstance(decompositions, Mapping):
        raise BadArgument(f"decompositions must be a dict from ops to functions, got {type(decompositions).__name__}",
                          "api", "pass e.g. torch._decomp.get_decompositions([torch.ops.aten.gelu]), or None")
    ops = (torch._ops.OperatorBase, torch._ops.OpOverloadPacket)
    wrong = next(((op, fn) for op, fn in decompositions.items() if not isinstance(op, ops) or not callable(fn)), None)
    if wrong is not None:
        raise BadArgument(f"decompositions maps {wrong[0]!r} to {type(wrong[1]).__name__}: keys must be ATen ops "
                          "(torch.ops.aten.gelu.default) and values functions", "api",
                          "key the dict by OpOverloads, as torch._decomp.get_decompositions returns")


def _compiled_function(fn: Callable, fw: Callable, bw: Callable, inference: Callable, partition_fn: Callable,
                       decompositions: Optional[Mapping], cache: bool,
                       program_graph: Optional[torch.fx.GraphModule], dynamic: bool = False) -> AotFunction:
    """The AotFunction of `fn`; with `cache`, on the disk cache: keyed by `program_graph` (the
    program as a graph) where given, else by the graph each call captures."""
    if not callable(partition_fn):
        raise BadArgument(f"partition_fn must be a function, got {type(partition_fn).__name__}", "api",
                          "pass default_partition, min_cut_rematerialization_partition or partition_for(...)")
    check_decompositions(decompositions)
    stages = dict(fw_compiler=fw, bw_compiler=bw, inference_compiler=inference, partition_fn=partition_fn,
                  decompositions=decompositions)
    disk = None
    if cache and config.disk_cache != "0":
        try:
            disk = (DiskCache(), settings_key(stages, decompositions, program_graph), program_graph is None)
        except NotKeyable as why:
            logger.info("aotgraph: %s is not cached on disk: %s", _program_name(fn), why)
    cuda_device_guard_set()
    return AotFunction(fn, stages, disk, dynamic)


def _named_state(module: torch.nn.Module) -> tuple[list[str], list[torch.Tensor]]:
    named = dict(module.named_parameters(remove_duplicate=False))
    named.update(module.named_buffers(remove_duplicate=False))
    return list(named), list(named.values())


def _read_by(compiled: Callable, module: torch.nn.Module, path: str) -> bool:
    """Whether an entry of `compiled` read attribute `path` of `module` (it guards it)."""
    owner, name = attribute_owner(module, path)
    return any(guard.root is owner and guard.path == (name,) and not guard.from_argument
               for entry in compiled.aotgraph_entries.values() for guard in entry.guards.guards)


def _attribute(module: torch.nn.Module, path: str) -> Any:
    """``module.a.b.name`` for ``path`` "a.b.name", read from the owner's ``__dict__`` (None if absent)."""
    owner, name = attribute_owner(module, path)
    return vars(owner).get(name)


def _uninitialized(values: Sequence[torch.Tensor]) -> bool:
    """Whether a parameter or buffer among `values` is a lazy module's, still without its shape."""
    return any(isinstance(value, UninitializedTensorMixin) for value in values)


class AotModule(torch.nn.Module):
    """The module returned by `aot_module`: calls the compiled function with the wrapped
    module's current parameters and buffers, so optimizer steps and buffer updates show.
    Each combination of its submodules' training flags gets its own compiled function,
    so ``train()``/``eval()`` select their own graph."""

    def __init__(self, module: torch.nn.Module, compile_program: Callable[[], Callable], names: list[str],
                 compiled_now: Callable, lazy: bool = False, attribute_state: Sequence[str] = ()):
        """`compiled_now`: `compile_program`'s result for the submodules' current flags. `lazy`:
        the module holds a lazy module's uninitialized parameters or buffers: until they have their
        shapes, a call runs the module eagerly (which gives them those from its inputs, exactly as
        eager's first call does); the calls after it run compiled."""
        super().__init__()
        self.orig_module = module
        self._lazy = lazy
        self._compile_program = compile_program
        self._submodules = list(module.modules())
        self._compiled_by_flags: dict[tuple, Callable] = {tuple([m.training for m in self._submodules]): compiled_now}
        self._state_slots = _state_slots(module, names)
        self._tree = ModuleTree(module)
        self._state_names = set(names)
        self._attribute_state = list(attribute_state)  # plain tensor attributes, inputs as buffers are
        self._unread: dict[str, tuple] = {}  # attributes assigned and found unread -> (compiled, its entries) then
        self._stale_names = False
        self._earlier_trees: list[dict] = []  # programs of trees it had before (heads swapped per task): newest last

    def forward(self, *args, **kwargs):
        with _COMPILE_LOCK:  # (no other thread's capture has this module's parameters swapped)
            if self._stale_names or not self._tree.unchanged():
                self._rebuilt()
            if self._lazy:
                if _uninitialized([slot[name] for slot, name in self._state_slots]):
                    return self.orig_module(*args, **kwargs)
                self._lazy = False
            training_flags = tuple([m.training for m in self._submodules])
            compiled = self._compiled_by_flags.get(training_flags)
            if compiled is None:
                compiled = self._compiled_by_flags[training_flags] = self._compile_program()
            try:
                state = [slot[name] for slot, name in self._state_slots]
            except KeyError:  # an attribute of the state deleted
                self._stale_names = True
                state = None
        if state is None:
            return self.forward(*args, **kwargs)
        result = compiled(*state, *args, **kwargs)
        if type(result) is ModuleWrites:
            self._note_attribute_state(result, compiled)
        return apply_writes(self.orig_module, result)

    def _note_attribute_state(self, writes: ModuleWrites, compiled: Callable) -> None:
        """A tensor the forward assigns to a plain attribute that it also reads
        (``self.hidden = h.detach()``, read back by the next call) becomes an input of the
        program, as a buffer is: read as a constant, it was guarded by identity, and every call
        compiled again. (One only assigned, for logging, stays an output.)"""
        entries = (id(compiled), len(compiled.aotgraph_entries))  # (an unread path is looked for again after a compile)
        candidates = [path for path, value, kind in zip(writes.paths, writes.values, writes.kinds)
                      if kind == "set" and path not in self._state_names and self._unread.get(path) != entries
                      and _holds_own_memory(value)]
        new = [path for path in candidates if _read_by(compiled, self.orig_module, path)]
        self._unread.update((path, entries) for path in candidates if path not in new)
        if new:
            self._attribute_state += new
            self._state_names.update(new)
            self._stale_names = True

    def _rebuilt(self) -> None:
        """The module's tree changed (a child module replaced or added, a forward hook added or
        removed), or the tensor attributes its forward keeps did: its program is made again from
        the tree as it is now, as `aot_module` would."""
        if not self._stale_names:
            self._earlier_trees = [*self._earlier_trees, self._program_state()][-_EARLIER_TREES:]
            earlier = next((state for state in reversed(self._earlier_trees) if state["_tree"].unchanged()), None)
            if earlier is not None:  # back to a tree it compiled for: its programs again
                self._earlier_trees.remove(earlier)
                self.__dict__.update(earlier)
                return
            logger.info("aotgraph: the module tree of %s changed (%s); compiling it again",
                        type(self.orig_module).__name__, self._tree.change())
        module = self.orig_module
        names, values = _named_state(module)
        kept = [path for path in self._attribute_state if isinstance(_attribute(module, path), torch.Tensor)]
        self._attribute_state = kept + [path for path in _tensor_attributes(module, values) if path not in kept]
        names += self._attribute_state
        values += [_attribute(module, path) for path in self._attribute_state]
        self._state_names, self._stale_names, self._unread = set(names), False, {}
        self._compile_program = self._compile_program.rebuilt(_functional_module_fn(module, names))
        self._submodules = list(module.modules())
        self._compiled_by_flags = {}
        self._state_slots = _state_slots(module, names)
        self._lazy = _uninitialized(values)
        self._tree = ModuleTree(module)

    def __deepcopy__(self, memo: dict) -> "AotModule":
        """A copy compiled from a copy of the module (``copy.deepcopy``, swa_utils' AveragedModel,
        an EMA or target network): it compiles its own programs, of its own module, with the
        same settings, when first called; sharing the original's would run the original's
        module (its training flags, its attributes) whenever the copy compiles."""
        module = copy.deepcopy(self.orig_module, memo)
        clone = aot_module(module, *self._compile_program.args, **self._compile_program.kwargs)
        memo[id(self)] = clone
        return clone

    def __reduce__(self):
        """Pickled (``torch.save``) as its module and settings; compiled again when loaded."""
        return _aot_module_of, (self.orig_module, self._compile_program.args, self._compile_program.kwargs)

    def _program_state(self) -> dict:
        """What `_rebuilt` replaces: the programs of the tree as it was, to go back to."""
        return {name: getattr(self, name) for name in _PROGRAM_STATE}

    @property
    def aotgraph_entries(self) -> dict:
        return {(flags, key): entry for flags, compiled in self._compiled_by_flags.items()
                for key, entry in compiled.aotgraph_entries.items()}


@contextlib.contextmanager
def _state_swapped(module: torch.nn.Module, names: list[str], values: Sequence[torch.Tensor]) -> Iterator[None]:
    """`module`'s parameters and buffers `names` replaced by `values` in the ``_parameters`` /
    ``_buffers`` dicts that hold them for the body, then put back, as
    ``torch.func.functional_call(..., tie_weights=False, strict=False)`` swaps them, without
    its attribute reads per tensor, each of which a capture's guard recorder sees (switch
    ``direct_state_swap``)."""
    slots = _state_slots(module, names)
    originals = [slot[leaf] for slot, leaf in slots]
    for (slot, leaf), value in zip(slots, values):
        slot[leaf] = value
    try:
        yield
    finally:
        for (slot, leaf), original in zip(slots, originals):
            slot[leaf] = original


def _state_slots(module: torch.nn.Module, names: list[str]) -> list[tuple[dict, str]]:
    """For each parameter/buffer name, the ``_parameters``/``_buffers`` dict that holds it (the
    module's ``__dict__`` for a plain tensor attribute, `AotModule`'s attribute state):
    reading those per call sees reassigned parameters and buffers without walking the tree.
    Found through the modules' ``__dict__`` (object's own read: no attribute read for a
    capture's guard recorder to see), each submodule looked up once."""
    dicts: dict[str, dict] = {"": object.__getattribute__(module, "__dict__")}

    def dict_of(path: str) -> dict:
        found = dicts.get(path)
        if found is None:
            parent, _, name = path.rpartition(".")
            found = dicts[path] = object.__getattribute__(dict_of(parent)["_modules"][name], "__dict__")
        return found

    slots = []
    for name in names:
        owner_name, _, leaf = name.rpartition(".")
        owner = dict_of(owner_name)
        slots.append((owner["_parameters"] if leaf in owner["_parameters"] else
                      owner["_buffers"] if leaf in owner["_buffers"] else owner, leaf))  # (a tensor attribute)
    return slots


def _functional_module_fn(module: torch.nn.Module, names: list[str], guard_attributes: bool = True) -> Callable:
    """``fn(*state_values, *args, **kwargs)``: the module called with the given parameters
    and buffers (flat, so that a call of tensors takes the per-call fast path). With
    `guard_attributes`, the Python attributes of `module`'s tree that a capture reads are
    guarded (`aot_function` reads ``aotgraph_module``)."""
    num_state = len(names)

    def call_with_state(*state_then_args, **kwargs):
        if config.enabled("direct_state_swap"):
            # Swapped until the capture ends: a checkpointed block recomputed in the backward
            # reads the parameters again (real ones there became constants of the graph).
            swap = _state_swapped(module, names, state_then_args[:num_state])
            if until_capture_ends(swap):
                swap = contextlib.nullcontext()
            with swap, tensor_writes_recorded(module) as writes:
                return with_writes(module(*state_then_args[num_state:], **kwargs), writes)
        state = dict(zip(names, state_then_args[:num_state]))
        with tensor_writes_recorded(module) as writes:
            return with_writes(torch.func.functional_call(module, state, state_then_args[num_state:], kwargs,
                                                          tie_weights=False, strict=False), writes)

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
    names, values = _named_state(mod)
    attributes = _tensor_attributes(mod, values)
    program = _functional_module_fn(mod, names + attributes)
    compiled_now = aot_function(program, *args, **kwargs)  # checks the arguments' values now, not at the first call
    return AotModule(mod, _ProgramCompiler(program, args, kwargs), names + attributes, compiled_now,
                     _uninitialized(values), attributes)


def _tensor_attributes(module: torch.nn.Module, state: Sequence[torch.Tensor]) -> list[str]:
    """Paths of the plain tensor attributes in `module`'s tree (a mask or table kept as
    ``self.mask = ...``, neither parameter nor buffer) that hold memory of their own, apart from
    the `state` tensors': inputs of the program as buffers are, so that a value written into one
    in place, or one put in its place, is what a call reads (read as constants, a compiler could
    fold them, and each replacement compiled again)."""
    shared = {tensor.untyped_storage()._cdata for tensor in state if isinstance(tensor, torch.Tensor)
              and not isinstance(tensor, UninitializedTensorMixin)}
    return [f"{prefix}.{name}" if prefix else name for prefix, submodule in module.named_modules()
            for name, value in vars(submodule).items()
            if _holds_own_memory(value) and value.untyped_storage()._cdata not in shared]


def _holds_own_memory(value: Any) -> bool:
    """Whether `value` is a plain (not fake) strided tensor that is all of its storage, not part
    of a larger tensor's memory (two chunks of one tensor would be inputs sharing a storage)."""
    return type(value) is torch.Tensor and value.layout == torch.strided \
        and value.untyped_storage().nbytes() == value.nbytes


_EARLIER_TREES = 8  # trees an AotModule keeps the programs of, besides its current one
_PROGRAM_STATE = ("_compile_program", "_submodules", "_compiled_by_flags", "_state_slots", "_state_names",
                  "_attribute_state", "_unread", "_lazy", "_tree")


def _aot_module_of(module: torch.nn.Module, args: tuple, kwargs: dict) -> "AotModule":
    """`aot_module(module, *args, **kwargs)`: how a pickled `AotModule` is made again."""
    return aot_module(module, *args, **kwargs)


class _ProgramCompiler:
    """``aot_function(program, *args, **kwargs)`` on each call (an `AotModule`'s compile for
    another combination of training flags); `rebuilt(program)`: the same for another program."""

    def __init__(self, program: Callable, args: tuple, kwargs: dict):
        self.program, self.args, self.kwargs = program, args, kwargs

    def __call__(self) -> Callable:
        return aot_function(self.program, *self.args, **self.kwargs)

    def rebuilt(self, program: Callable) -> "_ProgramCompiler":
        return _ProgramCompiler(program, self.args, self.kwargs)


def _under_functorch_transform(args: tuple, kwargs: dict) -> bool:
    """Whether an input is a tensor of a torch.func transform (vmap's batched tensors, jvp's and
    grad's wrappers): the program runs as it is on them (it has no storage to capture), once
    logged, as functorch's compiled functions do under the transforms."""
    transformed = any(isinstance(leaf, torch.Tensor) and is_functorch_wrapped_tensor(leaf)
                      for leaf in tree_leaves((args, kwargs)))
    if transformed and not _under_functorch_transform.logged:
        _under_functorch_transform.logged = True
        logger.info("aotgraph: called under a torch.func transform (vmap, jvp, grad): the program runs uncompiled "
                    "there, on the transform's tensors")
    return transformed


_under_functorch_transform.logged = False


def _carries_tangents(args: tuple, kwargs: dict) -> bool:
    """Whether an input is a dual tensor of forward-mode AD (``forward_ad.make_dual``): the
    program then runs as it is, so that its ops carry the tangents (compiled kernels drop them
    silently, and the autograd.Function has no jvp)."""
    if _forward_ad._current_level < 0:
        return False
    dual = any(isinstance(leaf, torch.Tensor) and carries_tangent(leaf)
               for leaf in tree_leaves((args, kwargs)))
    if dual and not _carries_tangents.logged:
        _carries_tangents.logged = True
        logger.info("aotgraph: called with forward-mode AD's dual tensors: the program runs uncompiled there")
    return dual


_carries_tangents.logged = False


def _inside_a_trace(args: tuple, kwargs: dict) -> bool:
    """Whether this call is made while another program is traced (an `aot_function` or
    `aot_module` called from a program aotgraph or make_fx captures): its program then runs as
    it is, inlined in the outer trace, as torch.compile inlines a compiled function it meets.
    Compiled code cannot run on the trace's fake tensors (Inductor's kernels read their memory)."""
    return being_traced(tree_leaves((args, kwargs)))


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
    cache: Optional[bool] = None,
) -> Callable:
    """The Dynamo-backend entry (functorch's ``aot_module_simplified``): `mod` is
    typically an fx GraphModule, `args` its example inputs (real or fake); compiles for
    them now and returns ``forward(*args)`` with the module's parameters and buffers
    bound. Example inputs with symbolic sizes (Dynamo's dynamic shapes: their SymInts belong
    to the shape environment of Dynamo's fake mode) compile one entry for every size, which
    Dynamo's guards (the shape environment's, with what capture added) keep in range; where a
    program cannot keep its sizes symbolic (`capture.symbols`), each concrete signature
    compiles on its first call instead, and so does a call with another input signature
    when the inputs are concrete. Parameter names are the union
    of functorch's over torch 2.11-2.14: `pre_grad_passes` runs on `mod` first; the others
    that aotgraph does not use are accepted and ignored, with a warning when set.

    In a GraphModule from Dynamo, the calls of repeated submodules (Dynamo inlines them) become
    regions, captured and partitioned once, as if marked with ``nested_compile_region``
    (`capture.repeated_blocks`; switch ``auto_regions``; not with a plan for the whole program).

    A GraphModule is compiled through the disk cache unless ``cache=False`` or
    ``AOTGRAPH_CACHE=0``: keyed by its nodes and the inputs, a later process loads the compiled
    graphs without capturing. Other modules: as `aot_function`'s `cache`."""
    _warn_ignored({"keep_inference_input_mutations": keep_inference_input_mutations, "cudagraphs": cudagraphs,
                   "boxed_forward_device_index": boxed_forward_device_index, "ignore_shape_env": ignore_shape_env,
                   "disable_functionalization": disable_functionalization,
                   "_record_nn_module_stack": _record_nn_module_stack, "compiler_config_extra": compiler_config_extra,
                   "compile_region_name": compile_region_name})
    if not isinstance(args, (list, tuple)):
        raise BadArgument(f"aot_module_simplified expects args as a list or tuple of example inputs, got "
                          f"{type(args).__name__}", "api", "pass [x] for a single input")
    if pre_grad_passes is not None:
        mod = pre_grad_passes(mod, args)
    is_graph = isinstance(mod, torch.fx.GraphModule)
    fw = resolve_compiler(fw_compiler, eager)
    bw, inference = resolve_compiler(bw_compiler, fw), resolve_compiler(inference_compiler, fw)
    if is_graph and _finds_repeated_blocks(partition_fn) and not any(map(is_users, (fw, bw, inference))):
        mod = _repeated_blocks_as_regions(mod)
    names, values = _named_state(mod)
    if cache is None:
        cache = is_graph or config.disk_cache == "all"
    compiled = _compiled_function(_functional_module_fn(mod, names, guard_attributes=not is_graph), fw, bw, inference,
                                  partition_fn, decompositions, cache, mod if is_graph else None)
    compiled.torch_functions_traced = getattr(mod, "aotgraph_traced_by_dynamo", False)
    symbolic, ints = None, ()
    if not _has_symbolic_shapes(args) and not (is_graph and _reads_symbolic_numbers(mod)):
        compiled.aotgraph_compile(*values, *args)
    else:
        fake_mode = detect_fake_mode(list(args))
        if fake_mode is not None and fake_mode.shape_env is not None:
            traced_static = _traced_with_static_sizes(mod, args) if is_graph else []
            static = frozenset(len(values) + k for k in traced_static)
            ints = symbolic_int_positions([*values, *args]) if config.enabled("symbolic_int_inputs") else ()
            traced = {}
            if is_graph:
                placeholders = mod.graph.find_nodes(op="placeholder")
                traced = {len(values) + k: fake for k, fake in traced_fakes(
                    args, [node.meta.get("example_value") for node in placeholders], fake_mode).items()}
            symbolic = compiled.compile_symbolic([*values, *args], fake_mode, static, ints, traced)

    def finished(result):
        """The program's output, its module writes assigned (the next call passes the new tensors)."""
        if type(result) is ModuleWrites:
            result = apply_writes(mod, result)
            values[:] = _named_state(mod)[1]
        return result

    # Dynamo guards what the symbolic entry assumes of sizes, not that the inputs it writes share no
    # memory with another input: a call where they do is compiled by the key path, for their base.
    writes_inputs = symbolic is not None and symbolic.mutates_inputs and config.enabled("symbolic_aliasing_checked")
    if symbolic is not None and ints:
        device = carrier_device([*values, *args])  # as `compile_symbolic` made them

        def forward(*runtime_args):
            if writes_inputs and not _tensors_apart(values, runtime_args):
                return finished(compiled(*values, *runtime_args))
            return finished(compiled.run_entry(symbolic, with_size_carriers([*values, *runtime_args], ints, device)))
    elif symbolic is not None:
        def forward(*runtime_args):
            if writes_inputs and not _tensors_apart(values, runtime_args):
                return finished(compiled(*values, *runtime_args))
            return finished(compiled.run_entry(symbolic, [*values, *runtime_args]))
    else:
        def forward(*runtime_args):
            return finished(compiled(*values, *runtime_args))

    if symbolic is not None and (dynamic_dims := _symbolic_output_dims(symbolic)):
        run = forward

        def forward(*runtime_args):
            outputs = run(*runtime_args)
            for position, dims in dynamic_dims:
                mark_dynamic_dims_for_dynamo(outputs[position], dims)
            return outputs

    forward.aotgraph_entries = compiled.aotgraph_entries
    forward.zero_grad = mod.zero_grad
    forward.named_parameters = mod.named_parameters
    forward.named_buffers = mod.named_buffers
    return forward


def _symbolic_output_dims(entry: CompiledEntry) -> tuple[tuple[int, frozenset], ...]:
    """(position, dims) of each output of a Dynamo graph's symbolic entry whose sizes at `dims`
    are symbolic (`mark_dynamic_dims_for_dynamo`); none where the graph returns no flat list."""
    signature = entry.joint.signature
    spec = signature.out_spec
    if spec.type not in (tuple, list) or spec.num_children != spec.num_leaves:
        return ()
    found = []
    for position, info in enumerate(signature.outputs):
        if info.is_tensor:
            dims = frozenset(d for d, size in enumerate(info.meta.shape) if isinstance(size, torch.SymInt))
            if dims:
                found.append((position, dims))
    return tuple(found)


def _tensors_apart(values: list, runtime_args: tuple) -> bool:
    """No two tensors among a call's inputs share memory."""
    return distinct_storages(tuple(a for a in (*values, *runtime_args) if isinstance(a, torch.Tensor)))


def _finds_repeated_blocks(partition_fn: Callable) -> bool:
    """Whether a graph's repeated blocks become regions (`capture.repeated_blocks`), as an
    ``aot_module``'s repeated layers do: switches ``auto_regions`` and ``region_reuse``, and a
    partition that plans each region apart (not a budget or policy for the whole program)."""
    return config.enabled("auto_regions") and config.enabled("region_reuse") and not plans_whole_program(partition_fn)


def _repeated_blocks_as_regions(graph_module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """`capture.repeated_blocks.with_repeated_blocks(graph_module)`, or `graph_module` itself,
    with a warning, where the search fails (a graph it does not expect: captured flat, as
    without the search)."""
    try:
        with collector_paused():  # its many small tuples would trigger full passes over a large process
            return with_repeated_blocks(graph_module)
    except Exception as error:  # the search is an optimization: never a reason to fail a compile
        warnings.warn(f"aotgraph: the search for repeated blocks failed ({type(error).__name__}: {error}); "
                      "the graph is captured flat (AOTGRAPH_DISABLE=auto_regions skips the search)", stacklevel=2)
        return graph_module


def _has_symbolic_shapes(args) -> bool:
    for value in tree_flatten(args)[0]:
        if isinstance(value, torch.SymInt):
            return True
        if isinstance(value, torch.Tensor) and any(
            isinstance(s, torch.SymInt) for s in (*value.shape, *value.stride(), value.storage_offset())
        ):
            return True
    return False


def _reads_symbolic_numbers(graph_module: torch.fx.GraphModule) -> bool:
    """Whether Dynamo traced a placeholder of `graph_module` as a 0-d tensor whose ``.item()``
    is a number of its shape environment (a float it wraps as a tensor under ``dynamic=True``, a
    norm's ``eps``; a symbol, or a value its guards fixed): only Dynamo's fake knows it, so the
    graph is captured on Dynamo's fakes, sizes static or not."""
    return any(isinstance(getattr(node.meta.get("example_value"), "item_memo", None), (torch.SymInt, torch.SymFloat))
               for node in graph_module.graph.find_nodes(op="placeholder"))


def _traced_with_static_sizes(graph_module: torch.fx.GraphModule, args) -> list:
    """Positions of `args` whose placeholder in `graph_module` Dynamo traced with a fake of
    static sizes and at least one dimension (its ``example_value``): a module's buffers. (A
    float Dynamo wrapped as a 0-dim tensor is left out: its fake in Dynamo's fake mode
    remembers the SymFloat that ``.item()`` gives back.)"""
    placeholders = graph_module.graph.find_nodes(op="placeholder")
    if len(placeholders) != len(args):
        return []
    values = [node.meta.get("example_value") for node in placeholders]
    return [k for k, value in enumerate(values)
            if isinstance(value, FakeTensor) and value.dim() > 0 and not _has_symbolic_shapes([value])]


def aot_export_joint(fn: Callable, args: tuple, kwargs: Optional[dict] = None, *,
                     decompositions: Optional[Mapping] = None) -> JointGraph:
    """The joint forward+backward graph of ``fn(*args, **kwargs)`` with its signature."""
    flat_args, in_spec = tree_flatten((tuple(args), dict(kwargs or {})))
    return capture(fn, flat_args, in_spec, decompositions=decompositions)


def _in_layouts(fakes: list, layouts: list, fake_mode) -> list:
    """`fakes`, each in its layout of `layouts` (taken before the capture): an input the
    program relaid in place (``as_strided_``, ``t_``) left its fake in the new layout, while the
    size guard speaks of the layout the caller passes. Such a fake's stand-in is a view of it in
    the old layout, made without guards (that layout held on entry)."""
    out = list(fakes)
    for k, (fake, layout) in enumerate(zip(fakes, layouts)):
        if layout is not None and layout_key(layout_of(fake)) != layout_key(layout):
            with fake_mode, fake_mode.shape_env.suppress_guards():
                out[k] = fake.as_strided(*layout)
    return out


def _views_as_own_tensors(flat_args: list, static: frozenset) -> list:
    """`flat_args`, each view that needs no gradient and shares its memory with no other input
    (``x.transpose(1, 2)`` passed in) replaced by a detached alias, which is no view: its fake
    then gets symbolic sizes and strides of its own (a view keeps its concrete layout, see
    `_can_be_symbolic`, and compiled once per size). The program runs on the caller's view."""
    holders: dict[int, int] = {}
    for a in flat_args:
        if isinstance(a, torch.Tensor) and a.layout == torch.strided:
            key = a.untyped_storage()._cdata
            holders[key] = holders.get(key, 0) + 1
    return [a.detach() if p not in static and type(a) is torch.Tensor and a._is_view() and not a.requires_grad
            and a.layout == torch.strided and holders[a.untyped_storage()._cdata] == 1 else a
            for p, a in enumerate(flat_args)]


def _can_be_symbolic(tensor: torch.Tensor) -> bool:
    """Whether ``dynamic=True`` makes `tensor`'s sizes symbols. Not a 0-dim tensor (it has no
    sizes, and the fake mode would make its value a size) nor a view (its base's symbols would
    have no source to guard them by): those keep their concrete layout."""
    return tensor.dim() > 0 and not tensor._is_view()
