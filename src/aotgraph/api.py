"""Entry points, drop-in for ``functorch.compile``: flatten inputs, look up the compiled
entry for this input signature, run the stages on a miss, call the runtime."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from .artifacts import CompiledGraphs, JointGraph, Partition
from .capture import capture
from .capture.aliased_inputs import aliased_input_groups, with_shared_bases
from .compilers import compile_graph, eager, resolve_compiler
from .errors import BadArgument
from .partition import default_partition, partition
from .runtime import build_runtime
from .timings import CompileLog

__all__ = ["aot_function", "aot_module", "aot_module_simplified", "aot_export_joint", "CompiledEntry"]


@dataclass
class CompiledEntry:
    """Everything one input signature compiled to, kept for reports and tests."""

    partition: Partition
    compiled: CompiledGraphs
    run: Callable[[list], list]
    log: CompileLog
    mutates_inputs: bool = False

    @property
    def joint(self) -> JointGraph:
        return self.partition.joint


def compile_stages(fn, flat_args, in_spec, *, fw_compiler, bw_compiler, inference_compiler, partition_fn,
                   decompositions) -> CompiledEntry:
    """capture -> partition -> compile -> runtime, each stamped into one CompileLog."""
    log = CompileLog()
    with log.stage("capture"):
        joint = capture(fn, flat_args, in_spec, decompositions=decompositions)
    log.records[-1] = type(log.records[-1])("capture", log.records[-1].seconds,
                                            f"{len(joint.graph_module.graph.nodes)} nodes")
    with log.stage("partition"):
        parts = partition(joint, partition_fn)
    with log.stage("compile"):
        fake_inputs = [n.meta["val"] for n in parts.forward.graph.find_nodes(op="placeholder")]
        if joint.is_inference:
            forward = compile_graph(inference_compiler, parts.forward, fake_inputs, "inference")
            backward = None
        else:
            forward = compile_graph(fw_compiler, parts.forward, fake_inputs, "forward")
            bw_inputs = [n.meta["val"] for n in parts.backward.graph.find_nodes(op="placeholder")]
            backward = compile_graph(bw_compiler, parts.backward, bw_inputs, "backward")
    compiled = CompiledGraphs(forward, backward, parts)
    sig = joint.signature
    return CompiledEntry(parts, compiled, build_runtime(compiled), log,
                         bool(sig.mutated_primals or sig.metadata_mutated_primals))


def _signature_key(flat_args: list, in_spec) -> tuple:
    key: list = [in_spec, torch.is_grad_enabled(), torch.is_autocast_enabled("cpu"),
                 torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None]
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


def _hashable(value: Any) -> bool:
    try:
        hash(value)
        return True
    except TypeError:
        return False


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

    Same call shape as ``functorch.compile.aot_function``. Compilers may be callables or
    names (``"eager"``, ``"inductor"``); ``bw_compiler`` and ``inference_compiler``
    default to ``fw_compiler``, which defaults to ``"eager"``. The returned function
    has ``aotgraph_entries``: the compiled entry of each signature seen.
    """
    if not callable(fn):
        raise BadArgument(f"aot_function expects a callable, got {type(fn).__name__}", "api",
                          "pass the function (or module) to compile")
    if dynamic:
        raise BadArgument("dynamic=True is not supported yet", "api", "leave dynamic=False (shapes are specialized)")
    fw = resolve_compiler(fw_compiler, eager)
    bw = resolve_compiler(bw_compiler, fw)
    inference = resolve_compiler(inference_compiler, fw)
    entries: dict[tuple, CompiledEntry] = {}

    def compile_entry(program, flat_args, in_spec):
        return compile_stages(program, flat_args, in_spec, fw_compiler=fw, bw_compiler=bw,
                              inference_compiler=inference, partition_fn=partition_fn,
                              decompositions=decompositions)

    def compiled_fn(*args, **kwargs):
        flat_args, in_spec = tree_flatten((args, kwargs))
        key = _signature_key(flat_args, in_spec)
        entry = entries.get(key)
        if entry is None or entry.mutates_inputs:
            # Distinct inputs sharing memory: only checked where a mutation could make it matter.
            groups = aliased_input_groups(flat_args)
            if groups:
                program, flat_args, in_spec = with_shared_bases(fn, flat_args, in_spec, groups)
                entry = entries.get((key, groups))
                if entry is None:
                    entry = entries[(key, groups)] = compile_entry(program, flat_args, in_spec)
        if entry is None:
            entry = entries[key] = compile_entry(fn, flat_args, in_spec)
        flat_out = entry.run(flat_args)
        return tree_unflatten(flat_out, entry.joint.signature.out_spec)

    compiled_fn.aotgraph_entries = entries
    compiled_fn.__wrapped__ = fn
    return compiled_fn


def _named_state(module: torch.nn.Module) -> tuple[list[str], list[torch.Tensor]]:
    named = dict(module.named_parameters(remove_duplicate=False))
    named.update(module.named_buffers(remove_duplicate=False))
    return list(named), list(named.values())


class AotModule(torch.nn.Module):
    """The module returned by `aot_module`: calls the compiled function with the wrapped
    module's current parameters and buffers, so optimizer steps and buffer updates show,
    and with its submodules' training flags, so ``train()``/``eval()`` select their own graph."""

    def __init__(self, module: torch.nn.Module, compiled: Callable):
        super().__init__()
        self.orig_module = module
        self._compiled = compiled

    def forward(self, *args, **kwargs):
        names, values = _named_state(self.orig_module)
        training_flags = tuple(m.training for m in self.orig_module.modules())
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
    as ``functorch.compile.aot_module``; extra arguments go to `aot_function`)."""
    if not isinstance(mod, torch.nn.Module):
        raise BadArgument(f"aot_module expects an nn.Module, got {type(mod).__name__}", "api",
                          "use aot_function for plain functions")
    names, _ = _named_state(mod)
    compiled = aot_function(_keyed_by_training_flags(_functional_module_fn(mod, names)), *args, **kwargs)
    return AotModule(mod, compiled)


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
    """The Dynamo-backend entry (``functorch.compile.aot_module_simplified``): `mod` is
    typically an fx GraphModule, `args` its example inputs; returns ``forward(*args)``
    with the module's parameters and buffers bound."""
    names, values = _named_state(mod)
    compiled = aot_function(_functional_module_fn(mod, names), fw_compiler, bw_compiler, partition_fn,
                            decompositions, len(values), keep_inference_input_mutations, inference_compiler)

    def forward(*runtime_args):
        return compiled(values, *runtime_args)

    forward.aotgraph_entries = compiled.aotgraph_entries
    forward.zero_grad = mod.zero_grad
    forward.named_parameters = mod.named_parameters
    forward.named_buffers = mod.named_buffers
    return forward


def aot_export_joint(fn: Callable, args: tuple, kwargs: Optional[dict] = None, *,
                     decompositions: Optional[Mapping] = None) -> JointGraph:
    """The joint forward+backward graph of ``fn(*args, **kwargs)`` with its signature."""
    flat_args, in_spec = tree_flatten((tuple(args), dict(kwargs or {})))
    return capture(fn, flat_args, in_spec, decompositions=decompositions)
