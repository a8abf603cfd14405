"""TorchInductor as one compiler: ``compile_fx_inner`` on our forward, backward and inference graphs.

``compile_fx_inner`` expects the setting that torch's ``compile_fx`` builds around it; ours is
the minimum of it: the graph's fake mode installed for Inductor (``V.set_fake_mode``), grad
and autocast off (our graphs already hold the backward and autocast's casts), CUDA graphs
as the options ask (``triton.cudagraphs``, ``mode="reduce-overhead"``: Inductor's cudagraph
trees, a forward and its backward sharing one on/off switch and device), and per graph: is it a backward or an
inference graph, a graph id shared by a forward and its backward, and which outputs the
user sees (Inductor gives those eager's strides; saved values may get its own layouts,
which it reports through the TracingContext that `compile_partition` opens). Inductor
rewrites the graph it is given, so it gets a copy: the Partition artifact stays as built.
CUDA graphs get Inductor's C++ wrapper by default (see `compile_with_inductor`).
"""
from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import logging
import operator
import pickle
import sys
import threading
import types
from dataclasses import replace
from typing import Callable, Iterator, Optional

import torch
import torch.fx as fx
from torch._guards import detect_fake_mode
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils import _pytree as pytree

from .. import config as aot_config
from ..torch_private.fake import FakeTensor
from . import (avg_pool_backward, background_builds, compile_workers, extern_kernel_bindings, flat_arg_reductions,
               input_offsets, output_copies, scalar_views, scatter_sources, stored_builds, symbol_inputs, tiled_adds)
from .vec_isa_memo import recall_vec_isa_probe, remembering_vec_isa_probe
from ..artifacts import JointGraph
from ..graph.nodes import view_chain
from ..errors import BadArgument, CompilerError, UnsupportedOp
from ..torch_private.dispatch import enable_python_dispatcher
from ..torch_private.fx import LazyGraphModule

logger = logging.getLogger("aotgraph")

__all__ = ["compile_with_inductor", "inductor_decompositions", "inductor_mode_options", "inductor_joint_passes",
           "wake_compile_workers", "inductor_cache_identity", "stored_output_code", "restored_output_code",
           "release_lock_during_cpp_builds"]

# Graphs on a CUDA device are compiled with Inductor's C++ wrapper unless the compiler's
# options say otherwise (see `compile_with_inductor`); False: the Python wrapper, as torch.compile.
CPP_WRAPPER_ON_CUDA = True


def wake_compile_workers(example_inputs) -> None:
    """Start Inductor's pool of kernel-compiling processes now when the graphs run on a GPU:
    it warms up while we capture, and Inductor compiles kernels in parallel instead of one by
    one in this process. `example_inputs` None: no input is known yet (a torch.compile backend
    being built, before Dynamo traces): start it where Triton is installed, as torch.compile's
    Inductor backend does (a cold pool's start, several seconds, would otherwise delay the
    first graph's kernels: on the H200, GPT-2's first step waited 10 s for kernels, torch 2 s).
    Our compile workers start here too, where switch ``compiles_in_workers`` is on."""
    if example_inputs is None:
        from torch.utils._triton import has_triton_package

        if not has_triton_package():
            return
    elif not any(isinstance(a, torch.Tensor) and a.device.type in ("cuda", "xpu") for a in example_inputs):
        return
    compile_workers.start(None if example_inputs is None else True)
    from torch._inductor.async_compile import AsyncCompile

    wake = getattr(AsyncCompile, "wakeup", None) or getattr(AsyncCompile, "warm_pool", None)
    if wake is not None:
        wake()


def inductor_decompositions() -> dict:
    """Inductor's decomposition table, to apply at capture when Inductor compiles the graphs:
    the one for ``fallback_random``, under which our graphs are compiled, so random ops stay
    the ATen ops eager runs (dropout draws eager's numbers) instead of Inductor's fast random
    rewrites. Max pooling's decompositions ask Inductor's lowerings whether it falls back, a
    module a process that has not compiled with Inductor yet has not imported: they import it
    when first called (switch ``lowerings_imported_when_needed``; off: at once, 0.5 s here,
    which a warm start that captures, `aot_module`'s, would pay for every program)."""
    from torch._inductor import config
    from torch._inductor.decomposition import select_decomp_table

    if not aot_config.enabled("lowerings_imported_when_needed"):
        import torch._inductor.lowering  # noqa: F401
    with config.patch(fallback_random=True):
        table = dict(select_decomp_table())
    for op in _ASKING_LOWERINGS:
        if op in table:
            table[op] = _lowerings_imported_first(table[op])
    return table


# Decompositions that read ``torch._inductor.lowering`` (torch 2.11-2.14).
_ASKING_LOWERINGS = (torch.ops.aten.max_pool2d_with_indices.default, torch.ops.aten.max_pool3d_with_indices.default)


def _lowerings_imported_first(decomposition):
    @functools.wraps(decomposition)
    def decompose(*args, **kwargs):
        import torch._inductor.lowering  # noqa: F401

        return decomposition(*args, **kwargs)

    return decompose


def _python_floats_as_tensors(graph_module: fx.GraphModule, fake_mode) -> None:
    """Dynamo passes a float it no longer specializes as a 0-d tensor whose ``.item()`` the graph
    reads; Inductor lowers ``.item()`` only for symbols made by it (fuzzer seeds 1760, 2651, 4279:
    ``KeyError: 'unbacked_bindings'`` after a recompile with a new float and new sizes). So torch's
    pass (``torch.fx.passes``) rewrites the graph to compute with the 0-d tensor instead, as
    torch.compile does on its joint graph. It may ask Dynamo to trace again with the float
    specialized."""
    if fake_mode is None or fake_mode.shape_env is None or not any(
            isinstance(n.args[0], fx.Node) and n.args[0].op == "placeholder"
            and getattr(n.args[0].meta.get("val"), "is_floating_point", lambda: False)()
            for n in graph_module.graph.find_nodes(op="call_function", target=torch.ops.aten._local_scalar_dense.default)):
        return
    from torch.fx.passes._tensorify_python_scalars import tensorify_python_scalars

    tensorify_python_scalars(graph_module, fake_mode.shape_env, fake_mode)


def inductor_joint_passes(joint: JointGraph) -> JointGraph:
    """The joint graph after Inductor's own joint-graph rewrites (pattern replacements such
    as padding matmuls whose sizes are not aligned, no-op removal), which torch.compile applies
    before partitioning. Random ops keep drawing from eager's generator (``fallback_random``),
    so compiled and eager runs stay identical."""
    from torch._inductor import config
    from torch._inductor.fx_passes.joint_graph import joint_graph_passes
    from torch._inductor.virtualized import V

    graph_module = _private_copy(joint.graph_module)
    placeholders = [n.meta.get("val") for n in graph_module.graph.find_nodes(op="placeholder")]
    device = next((v.device for v in placeholders if isinstance(v, torch.Tensor)), None)
    _python_floats_as_tensors(graph_module, joint.fake_mode)
    memory = _forward_output_memory(graph_module, joint.num_fwd_outputs)
    folding = config.joint_graph_constant_folding and not holds_real_constants(graph_module)
    with V.set_fake_mode(joint.fake_mode), config.patch(fallback_random=True, joint_graph_constant_folding=folding):
        graph_module = joint_graph_passes(graph_module, input_device=device)
    _values_of_new_nodes(graph_module, joint.fake_mode)
    _forward_outputs_kept_apart(graph_module, memory, joint.fake_mode)
    _sorted_where_out_of_order(graph_module)
    return replace(joint, graph_module=graph_module)


def _values_of_new_nodes(graph_module: fx.GraphModule, fake_mode) -> None:
    """A value (``meta["val"]``) for each op node the passes made without one (constant folding
    on the meta device leaves an ``empty_strided``), from its arguments' values: the partition
    and the runtime read every node's."""
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or "val" in node.meta:
            continue
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: n.meta.get("val"))
        try:
            with fake_mode:
                node.meta["val"] = node.target(*args, **kwargs)
        except Exception:  # (an argument without a value either: left as the passes made it)
            continue


def _forward_output_memory(graph_module: fx.GraphModule, count: int) -> list:
    """Per output of the graph's first `count`: (the node whose memory it is, through views but
    not a multi-output view's getitem; the node whose memory it is through those too; the views
    from the latter to the output, innermost first), or None for a non-tensor."""
    outputs = graph_module.graph.find_nodes(op="output")[0].args[0][:count]
    memory = []
    for node in outputs:
        if not isinstance(node, fx.Node) or not isinstance(node.meta.get("val"), torch.Tensor):
            memory.append(None)
            continue
        root, views = view_chain(node)
        near = next((v for v in reversed(views) if v.target is operator.getitem), root)
        memory.append((near, root, views))
    return memory


def _forward_outputs_kept_apart(graph_module: fx.GraphModule, memory: list, fake_mode) -> None:
    """Give each forward output whose memory Inductor's joint passes changed (a ``clone``
    removed as a no-op: the output became its source, which the backward may save) a copy of
    its own again, as before the passes: a caller's write into it under no_grad must not reach
    a value saved for the backward (eager's output is a tensor of its own; switch
    ``forward_outputs_kept_apart``). Outputs that shared that memory before (views of the
    clone, also through a multi-output view: seed 7525's ``unbind``) share the copy: their views
    are taken of it again. (An output whose own node the passes kept is left as it is where no
    output of its memory changed: seed 555's view through ``unbind`` of a stack the passes
    decomposed keeps the stack's layout.)"""
    if not aot_config.enabled("forward_outputs_kept_apart"):
        return
    graph = graph_module.graph
    output = graph.find_nodes(op="output")[0]
    now = _forward_output_memory(graph_module, len(memory))
    outputs = list(output.args[0])
    pairs = [(before, after) if before is not None and after is not None else None for before, after in zip(memory, now)]
    # (memory node before, memory node now) of the outputs whose own memory node changed
    changed = {(before[1], after[1]) for before, after in filter(None, pairs) if before[0] is not after[0]}
    copies: dict = {}  # such a key -> its copy
    for position, pair in enumerate(pairs):
        if pair is None or (pair[0][1], pair[1][1]) not in changed:
            continue
        (_, root_before, _), (_, root, views) = pair
        key = (root_before, root)
        with graph.inserting_before(output):
            if key not in copies:
                copies[key] = graph.call_function(torch.ops.aten.clone.default, (root,))
                with fake_mode:
                    copies[key].meta["val"] = torch.ops.aten.clone.default(root.meta["val"])
            value = copies[key]
            for view in views:
                value = graph.call_function(view.target, (value, *view.args[1:]), dict(view.kwargs))
                value.meta = dict(view.meta)
        outputs[position] = value
    if copies:
        output.args = (tuple(outputs),)
        graph_module.recompile()


def _sorted_where_out_of_order(graph_module: fx.GraphModule) -> None:
    """Put `graph_module`'s nodes in an order where each comes after its inputs, where they are not.
    Inductor's joint passes sort the graph only when a pattern matched: its constant folding
    alone can leave a uniform tensor rebuilt as ``full([sym_size(x, 0), ...])`` ahead of the
    size nodes it reads (softshrink's backward with symbolic sizes), which the partition's
    copies of the graph cannot follow."""
    from torch._inductor.pattern_matcher import stable_topological_sort

    seen = set()
    for node in graph_module.graph.nodes:
        if any(arg not in seen for arg in node.all_input_nodes):
            stable_topological_sort(graph_module.graph)
            graph_module.graph.lint()
            graph_module.recompile()
            return
        seen.add(node)


def compile_with_inductor(graph_module: fx.GraphModule, example_inputs: list, role,
                          options: Optional[dict] = None) -> Callable:
    """Inductor's compiled `graph_module` for `role`, with Inductor config `options` set.

    Graphs on a CUDA device get Inductor's C++ wrapper unless ``options["cpp_wrapper"]`` says
    otherwise (`CPP_WRAPPER_ON_CUDA`): their kernels are launched from C++ instead of
    Python, less host time per launch, which is what a training step is bound by when its
    kernels are small and many (benchmarks/RESULTS.md). Its cost is a C++ compile of each
    graph's launch code. Where that C++ build fails and the C++ wrapper was not asked for,
    the graph is compiled again with the Python wrapper, and a warning says why.
    """
    fake_mode = detect_fake_mode(example_inputs)
    if fake_mode is None:
        raise CompilerError(f"the {role.kind} graph's example inputs are not fake tensors", "compile",
                            "pass the fake tensors of the graph's placeholders (node.meta['val'])")
    _refuse_python_calls(graph_module, role)
    _refuse_flex_attention_training_on_cpu(graph_module, role)
    options = dict(options or {})
    if aot_config.enabled("symbol_inputs") and symbol_inputs.unbound_symbol_readings(example_inputs) is None:
        options["fx_graph_cache"] = False  # a symbol no input gives (`compile_graph` binds the others)
    asked, use_cpp_wrapper, devices = _wrapper_choice(options, example_inputs)
    options.pop("cpp_wrapper", None)
    checked = "cpp.simdlen" not in options and tiled_adds.may_add_in_tiles(graph_module, example_inputs)
    on_cpu = any(isinstance(v, torch.Tensor) and v.device.type == "cpu" for v in example_inputs)

    def compiled_with(cpp_wrapper: bool, role=role) -> Callable:
        try:
            compiled = _compiled(graph_module, example_inputs, role, fake_mode, options, cpp_wrapper=cpp_wrapper)
        except Exception as error:
            if not (on_cpu and "cpp.simdlen" not in options and tiled_adds.cpp_build_failed(error)):
                raise
            logger.warning("aotgraph: Inductor's C++ code for the %s graph failed to build; compiled again without "
                           "vectorized loops (compilers/tiled_adds.py)", role.kind)
            options["cpp.simdlen"] = 1
            _forget_reported_strides()
            return _compiled(graph_module, example_inputs, role, fake_mode, options, cpp_wrapper=cpp_wrapper)
        if checked and "cpp.simdlen" not in options and tiled_adds.adds_in_tiles(compiled):
            logger.info("aotgraph: the %s graph adds at computed positions in a 2-D tile; compiled "
                        "again without vectorized loops (compilers/tiled_adds.py)", role.kind)
            options["cpp.simdlen"] = 1  # the background C++ build's too
            _forget_reported_strides()
            compiled = _compiled(graph_module, example_inputs, role, fake_mode, options, cpp_wrapper=cpp_wrapper)
        return compiled

    def python_wrapped() -> Callable:
        # A forward in a compile worker, its backward here (compile_workers), where that switch is on.
        pending = compile_workers.submitted(graph_module, example_inputs, role, options, devices,
                                            lambda kept: _reporting_strides(fake_mode, compiled_with, False, kept))
        return pending if pending is not None else compiled_with(cpp_wrapper=False)

    if not use_cpp_wrapper:
        return python_wrapped()
    if asked is None and devices and aot_config.enabled("cpp_wrapper_in_background"):
        python = python_wrapped()
        release_lock_during_cpp_builds()
        # A forward compiled in a worker kept every output's traced strides, and its backward
        # was compiled for them: the C++ build of the pair keeps them too.
        in_worker = isinstance(python, compile_workers.PendingCode)

        def build():
            if not in_worker:
                return _on_threads_with_cuda_context(compiled_with(cpp_wrapper=True), devices)
            # In a compile worker where one is ready: this process only loads the build.
            with background_builds.lock_released_on_worker():
                built = compile_workers.built_in_worker(graph_module, example_inputs, python, options, devices)
            if built is None:
                if compile_workers.stopping():
                    raise compile_workers.WorkersStopped("the process is exiting")
                built, reported = _reporting_strides(fake_mode, compiled_with, True, python.role)
                built = _on_threads_with_cuda_context(python.promise.kept(built, reported), devices)
            return built

        return background_builds.upgradable(python, build, role, elsewhere=in_worker)
    try:
        compiled = compiled_with(cpp_wrapper=True)
    except Exception as error:
        if asked:
            raise
        logger.warning("aotgraph: Inductor's C++ wrapper failed for the %s graph (%s: %s); compiling it with "
                       "the Python wrapper. Pass options={'cpp_wrapper': False} to skip the attempt.",
                       role.kind, type(error).__name__, str(error).splitlines()[0][:200] if str(error) else "")
        _forget_reported_strides()
        return compiled_with(cpp_wrapper=False)
    if devices:
        return _on_threads_with_cuda_context(compiled, devices)
    compiled.aotgraph_wrapper = "cpp"
    return compiled


def _reporting_strides(fake_mode, compile_fn: Callable, *args) -> tuple:
    """``(compile_fn(*args), the output strides Inductor reported)``, inside a TracingContext of
    `fake_mode` where none is open (a compile worker's graph compiled here when first called,
    outside `compile_partition`)."""
    from torch._guards import TracingContext, tracing

    with contextlib.ExitStack() as stack:
        if TracingContext.try_get() is None:
            stack.enter_context(tracing(TracingContext(fake_mode)))
        reported = stack.enter_context(TracingContext.report_output_strides())
        code = compile_fn(*args)
    return code, list(reported or [])


def _forget_reported_strides() -> None:
    """Empty the output strides an earlier compile of this graph reported to the caller's
    TracingContext: Inductor reports them into an empty list only."""
    from torch._guards import TracingContext

    context = TracingContext.try_get()
    if context is not None and context.output_strides:
        context.output_strides.clear()


def _wrapper_choice(options: dict, example_inputs) -> tuple[Optional[bool], bool, set]:
    """(whether `options` or the process ask for the C++ wrapper, None where neither says,
    whether these inputs' graph gets it, their CUDA devices)."""
    asked = options.get("cpp_wrapper")  # None: not asked either way
    with background_builds.foreground_compile():  # not a background build's patched-in values
        process = _process_settings(("cpp_wrapper", "triton.cudagraphs"))
    if asked is None and process["cpp_wrapper"]:  # set for the whole process (TORCHINDUCTOR_CPP_WRAPPER=1)
        asked = True
    devices = {v.device for v in example_inputs if isinstance(v, torch.Tensor) and v.device.type == "cuda"}
    cuda_graphs = bool(options.get("triton.cudagraphs", process["triton.cudagraphs"]))
    # CUDA graphs replay every launch without the host, so the C++ wrapper's launches would
    # save nothing there and its build would only lengthen the first step.
    use_cpp_wrapper = asked if asked is not None else (_cpp_wrapper_by_default(devices) and not cuda_graphs)
    return asked, bool(use_cpp_wrapper), devices


def uses_cpp_wrapper(options: Optional[dict], example_inputs) -> bool:
    """Whether `compile_with_inductor` builds a graph of these inputs with Inductor's C++ wrapper
    (asked for, set for the process, or by default on CUDA): its code generation has no
    ``invoke_subgraph``, so a graph that calls regions is then compiled around them."""
    return _wrapper_choice(dict(options or {}), example_inputs)[1]


_CONVOLUTIONS = ("convolution", "convolution_backward")


def regions_hold_convolutions(graph_module: fx.GraphModule) -> bool:
    """Whether a region `graph_module` calls holds a convolution. Inductor's layout optimization
    then lays the regions' operands out differently at different calls: its check of a region's
    arguments refuses that inside one graph, or its backward computes wrong gradients. Such a
    graph is compiled with its regions inlined (`regions_inlined_for_inductor`) or around them."""
    from .boxed_code import region_modules

    return any(node.op == "call_function" and getattr(node.target, "_opname", None) in _CONVOLUTIONS
               for region in region_modules(graph_module) for node in region.graph.nodes)


def regions_inlined_for_inductor(graph_module: fx.GraphModule, options: Optional[dict], example_inputs) -> bool:
    """Whether Inductor gets `graph_module` with its regions inlined (flat): where they hold
    convolutions (switch ``convolution_regions_inlined``; off: compiled around them, each region
    once: a ResNet's graph then took 1.17x the flat compile and step on the CPU,
    benchmarks/RESULTS.md), and on CUDA with the Python wrapper (CUDA graphs; there Inductor
    pads the strides of values a region reads, which may differ between its calls)."""
    if aot_config.enabled("convolution_regions_inlined") and regions_hold_convolutions(graph_module):
        return True
    _, cpp_wrapper, cuda_devices = _wrapper_choice(dict(options or {}), example_inputs)
    return bool(cuda_devices) and not cpp_wrapper


def _cpp_wrapper_by_default(cuda_devices: set) -> bool:
    return CPP_WRAPPER_ON_CUDA and bool(cuda_devices)


def _compiled(graph_module: fx.GraphModule, example_inputs: list, role, fake_mode, options: dict,
              cpp_wrapper: bool) -> Callable:
    from torch._inductor import config
    from torch._inductor.virtualized import V

    graph_module = _private_copy(graph_module)
    _decompose_leftovers(graph_module)
    scalar_views.scalar_views_as_constants(graph_module)
    scalar_views.fill_values_in_dtype(graph_module)
    avg_pool_backward.keep_from_inductor(graph_module)
    scatter_sources.keep_scatter_sources_apart(graph_module)
    input_offsets.offsets_from_input_starts(graph_module)
    flat_arg_reductions.flat_arg_reductions(graph_module)
    if role.kind != "backward":
        output_copies.keep_output_copies(graph_module, [*range(role.num_user_outputs), *role.view_bases])
    _region_outputs_unaliased(graph_module, fake_mode)
    output = graph_module.graph.find_nodes(op="output")[0]
    values = [a.meta.get("val") if isinstance(a, fx.Node) else None for a in output.args[0]]
    output.meta["user_visible_output_idxs"] = [i for i in (*range(role.num_user_outputs), *role.view_bases)
                                               if values[i] is not None]
    output.meta["original_output_strides"] = [v.stride() if isinstance(v, torch.Tensor) else None for v in values]
    settings = dict(options, cpp_wrapper=cpp_wrapper)
    if cpp_wrapper:  # what torch's compile_fx sets around a C++-wrapped compile (stored kernel binaries, ...)
        from torch._inductor.compile_fx import get_cpp_wrapper_config

        settings.update(get_cpp_wrapper_config())
    # Random ops draw from eager's generator (``fallback_random``), as in the joint passes: the
    # graphs keep aten.rand and friends, which Inductor lowers only as fallbacks.
    settings.setdefault("fallback_random", True)
    real_constants = holds_real_constants(graph_module)
    if real_constants:
        settings["always_keep_tensor_constants"] = True
    with background_builds.foreground_compile():
        # A background build that let go of the lock for its C++ compiler has its settings patched
        # in: this compile sets back the process's own values of what the build patched.
        process = _process_settings({*_patched_keys(), *settings, "triton.cudagraphs"})
        settings = {**{key: process[key] for key in _patched_keys() if key in process}, **settings}
        cuda_graphs = _cuda_graphs_of(role.graph_id,
                                      bool(settings.get("triton.cudagraphs", process["triton.cudagraphs"])))
        builds = []
        # The Python dispatcher, as torch's compile_fx has it: Inductor runs a fallback kernel
        # (cholesky, bilinear's _trilinear) on fakes to learn its output's layout, and with
        # symbolic sizes only the Python meta functions take them (CUDA's composites want ints).
        with V.set_fake_mode(fake_mode), torch.no_grad(), torch._C._DisableAutocast(), config.patch(settings), \
                _patched_in({key: process[key] for key in settings if key in process}), _reuse_judged_with_outputs(), \
                remembering_vec_isa_probe(), stored_builds.recording_cpp_builds(builds), enable_python_dispatcher(), \
                _real_constants_allowed(real_constants, fake_mode), _random_ops_in_program_order():
            compiled = _compile_fx_inner(graph_module, example_inputs, role, cpp_wrapper, cuda_graphs)
    compiled = _unwritten_inputs_copied(compiled, graph_module)
    compiled.aotgraph_cpp_builds = tuple(builds)  # what a disk cache entry of it carries (stored_builds)
    if cuda_graphs.on:
        compiled.aotgraph_cuda_graphs = True  # recorded into cudagraph trees: not stored on disk
    return compiled


def _unwritten_inputs_copied(compiled: Callable, graph_module: fx.GraphModule) -> Callable:
    """`compiled`, or where Inductor's code writes into an input that `graph_module` does not
    write (an op writing a placeholder or a view of one is a write the graph means), a call of it on a
    copy of each such input. On CUDA, Inductor 2.11 computed a ``diagonal_scatter`` of a clone of
    a transposed input in the input's own memory, dropping the clone: the user's tensor changed,
    and the output was it (fuzzer seed 9834; torch.compile's graph of the program escapes it)."""
    mutated = getattr(compiled, "mutated_input_idxs", None)
    if not mutated or any(node.op == "call_function" and isinstance(node.target, torch._ops.HigherOrderOperator)
                          for node in graph_module.graph.nodes):  # (a subgraph's writes are not read here)
        return compiled
    placeholders = graph_module.graph.find_nodes(op="placeholder")
    meant = {placeholders.index(root) for root in map(_written_root, _written_arguments(graph_module))
             if root in placeholders}
    unmeant = tuple(sorted(set(mutated) - meant))
    if not unmeant:
        return compiled
    logger.info("aotgraph: Inductor's code writes into inputs %s that the graph does not write; "
                "they are copied before each call", list(unmeant))
    return _InputsCopied(compiled, unmeant)


def _written_arguments(graph_module: fx.GraphModule) -> list:
    """The nodes that `graph_module`'s in-place ops write into (``copy_``'s target, each tensor
    of a foreach op's written list, an ``out=`` argument, ...)."""
    written = []
    for node in graph_module.graph.nodes:
        schema = getattr(node.target, "_schema", None) if node.op == "call_function" else None
        if schema is None or not schema.is_mutable:
            continue
        values = {**dict(zip((argument.name for argument in schema.arguments), node.args)), **node.kwargs}
        for argument in schema.arguments:
            if argument.alias_info is not None and argument.alias_info.is_write:
                arg = values.get(argument.name)
                written += [a for a in (arg if isinstance(arg, (list, tuple)) else (arg,)) if isinstance(a, fx.Node)]
    return written


def _written_root(node: fx.Node) -> fx.Node:
    """The node `node` views, through view ops, back to one that is no view."""
    while node.op == "call_function" and getattr(node.target, "is_view", False) and node.args:
        node = node.args[0]
    return node


class _InputsCopied:
    """A boxed compiled graph called on copies (same strides) of the inputs at `positions`;
    other attributes are the compiled graph's."""

    def __init__(self, compiled: Callable, positions: tuple):
        self.compiled, self.positions = compiled, positions

    def __call__(self, args: list):
        for p in self.positions:
            source = args[p]
            args[p] = torch.empty_strided(source.size(), source.stride(), dtype=source.dtype,
                                          device=source.device).copy_(source)
        return self.compiled(args)

    def __getattr__(self, name: str):
        compiled = self.__dict__.get("compiled")
        if compiled is None:  # (before __init__: copy and pickle look attributes up on a bare object)
            raise AttributeError(name)
        return getattr(compiled, name)


def holds_real_constants(graph_module: fx.GraphModule) -> bool:
    """Whether `graph_module` reads a real tensor through ``get_attr``: one the program closes
    over (an argument object's or a global's tensor), whose values a caller may change in place
    between calls. Inductor must read its memory then, not fold or inline its values
    (``constant_fold_uniform_value``, tensors of up to 8 values written into the kernels)."""
    values = [functools.reduce(lambda owner, name: getattr(owner, name, None), node.target.split("."), graph_module)
              for node in graph_module.graph.find_nodes(op="get_attr")]
    return any(isinstance(value, torch.Tensor) and not isinstance(value, FakeTensor) for value in values)


@contextlib.contextmanager
def _real_constants_allowed(real_constants: bool, fake_mode) -> Iterator[None]:
    """For a graph that reads a real tensor through ``get_attr`` (`holds_real_constants`: a
    tensor the program closes over): Inductor's fake propagation runs ops on it in `fake_mode`,
    which refuses real tensors unless allowed, as torch's ``compile_fx`` allows them around its
    inner compile (``force_allow_non_fake_inputs``)."""
    if not real_constants or fake_mode is None or fake_mode.allow_non_fake_inputs:
        yield
        return
    fake_mode.allow_non_fake_inputs = True
    try:
        yield
    finally:
        fake_mode.allow_non_fake_inputs = False


@contextlib.contextmanager
def _random_ops_in_program_order() -> Iterator[None]:
    """While Inductor compiles our graphs, on a torch whose post-grad passes do not chain the
    random ops (``_chain_random_ops_for_ordering``, from torch 2.13): the fallback kernels of
    random ops and of our seeding ops (``nondeterministic_seeded``, ``fallback_random``) run in
    the graph's order. Nothing else orders them: on torch 2.11 Inductor's scheduler moved a draw
    after the seeding it preceded, across a fusion (``torch.manual_seed`` in the program drew other
    values than eager's, and a seeding op, a node with no outputs, freed an input before its last
    read). Each such kernel gets an ordering-only dependency on the one before it, as torch 2.13's
    ``control_deps`` chain gives. The scheduler's ``_init`` is wrapped once, for the process; the
    wrapper chains only in a thread inside this context (compiles in other threads, torch's own
    included, are left as they are)."""
    from torch._inductor import scheduler
    from torch._inductor.fx_passes import post_grad

    original = getattr(scheduler.Scheduler, "_init", None)
    if hasattr(post_grad, "_chain_random_ops_for_ordering") or original is None:
        yield
        return
    if not getattr(original, "aotgraph_chains_random_ops", False):
        def _init(self, nodes):
            if getattr(_chaining, "on", False):
                _chain_random_kernels(nodes)
            return original(self, nodes)

        _init.aotgraph_chains_random_ops = True
        scheduler.Scheduler._init = _init
    outer, _chaining.on = getattr(_chaining, "on", False), True
    try:
        yield
    finally:
        _chaining.on = outer


_chaining = threading.local()  # .on: this thread compiles one of our graphs (`_random_ops_in_program_order`)


def _chain_random_kernels(operations) -> None:
    from torch._inductor import config, ir
    from torch._inductor.virtualized import V

    if not config.fallback_random:
        return
    previous = None
    for operation in operations:
        op = getattr(operation, "op_overload", None)
        if not (isinstance(operation, ir.FallbackKernel) and isinstance(op, torch._ops.OpOverload)
                and torch.Tag.nondeterministic_seeded in op.tags):
            continue
        if previous is not None:
            V.graph.additional_buffer_deps[operation.get_operation_name()].add(previous.get_name())
        previous = operation


def _compile_fx_inner(graph_module, example_inputs, role, cpp_wrapper: bool, cuda_graphs) -> Callable:
    from torch._inductor.compile_fx import compile_fx_inner

    return compile_fx_inner(
        graph_module,
        example_inputs,
        cpp_wrapper=cpp_wrapper,
        cudagraphs=cuda_graphs.on,
        boxed_forward_device_index=cuda_graphs.device,
        static_input_idxs=list(role.static_inputs),
        is_backward=role.kind == "backward",
        is_inference=role.kind == "inference",
        graph_id=role.graph_id,
    )


# While a compile has its Inductor settings patched in: the process's own values of those
# settings (read and written with compile_lock held). A background C++ build lets go of the lock
# while its C++ compiler runs (`background_builds.lock_released_on_worker`); a compile that runs
# meanwhile takes the process's values from here, not the build's.
_process_values: Optional[dict] = None


def cuda_graphs_asked(options: dict) -> bool:
    """Whether `options` or the process ask Inductor for CUDA graphs (which replay on copies of
    the inputs that are not static: an output viewing such an input views the copy)."""
    with background_builds.foreground_compile():
        process = _process_settings(("triton.cudagraphs",))
    return bool(options.get("triton.cudagraphs", process["triton.cudagraphs"]))


def _process_settings(keys) -> dict:
    """The process's own values of Inductor settings `keys` (dotted names), not those of a
    compile under way. Call with `background_builds.compile_lock` held."""
    from torch._inductor import config

    values = {}
    for key in keys:
        if _process_values is not None and key in _process_values:
            values[key] = _process_values[key]
            continue
        value = config
        try:
            for part in key.split("."):
                value = getattr(value, part)
        except AttributeError:  # not a setting: config.patch names it
            continue
        values[key] = value
    return values


def process_inductor_settings() -> dict:
    """The process's own Inductor settings, those torch's config saves as portable (not the
    values a background build has patched in): what a compile worker sets around its compile."""
    from torch._inductor import config

    with background_builds.foreground_compile():
        settings = config.save_config_portable()
        settings.update(_process_settings(_patched_keys()))
    return settings


def _patched_keys() -> tuple:
    """The settings a compile under way has patched in (none when no compile is under way)."""
    return tuple(_process_values or ())


@contextlib.contextmanager
def _patched_in(process_values: dict):
    """Record `process_values`, the process's values of the settings a compile patches in, for
    the compile's duration; a compile nested in another's (run while a build let go of the lock)
    leaves the outer record, which it restores on leaving its own patch."""
    global _process_values
    if _process_values is not None:
        yield
        return
    _process_values = process_values
    try:
        yield
    finally:
        _process_values = None


def release_lock_during_cpp_builds() -> None:
    """Have Inductor's C++ compiler calls (``cpp_builder.run_compile_cmd``, checked on torch
    2.11-2.13) let go of compile_lock on the background build worker, once per process; where
    torch has no such function, builds keep the lock throughout."""
    from torch._inductor import cpp_builder

    run = getattr(cpp_builder, "run_compile_cmd", None)
    if run is None or getattr(run, "aotgraph_releases_lock", False):
        return

    def run_compile_cmd(*args, **kwargs):
        with background_builds.lock_released_on_worker():
            return run(*args, **kwargs)

    run_compile_cmd.aotgraph_releases_lock = True
    cpp_builder.run_compile_cmd = run_compile_cmd


def _refuse_python_calls(graph_module: fx.GraphModule, role) -> None:
    """A CompilerError, before any compile work, where the graph calls Python functions on
    tensors that Inductor has no lowering for (it lowers ops and the functions it registered
    itself, and stops at any other with an AssertionError). CUDA offload's copies are such
    calls: side-stream copies that rely on the caching allocator (``record_stream``), which
    Inductor's own buffer reuse would bypass."""
    from torch._inductor.lowering import lowerings

    calls = [node for node in graph_module.graph.nodes
             if node.op == "call_function" and isinstance(node.target, types.FunctionType)
             and node.target not in lowerings
             and not hasattr(node.target, "_inductor_lowering_function")
             and any(isinstance(v, torch.Tensor) for v in pytree.tree_leaves(node.meta.get("val")))]
    if not calls:
        return
    names = sorted({f"{node.target.__module__}.{node.target.__name__}" for node in calls})
    offload = any(node.target.__module__.endswith("partition.offload") for node in calls)
    fix = ("CUDA offload (a partition policy that returns Decision.OFFLOAD, such as offload_large or "
           "offload_early) copies through Python on a side stream: use it with compiler 'eager' or 'nop', or "
           "drop the offload from the policy to compile with Inductor" if offload else
           "compile this graph with 'eager' or 'nop', which run its Python code, or express these calls as ops")
    raise CompilerError(f"Inductor cannot compile the {role.kind} graph: it calls the Python functions {names}",
                        "compile", fix)


def _refuse_flex_attention_training_on_cpu(graph_module: fx.GraphModule, role) -> None:
    """An UnsupportedOp, before any compile work, where the graph needs flex_attention's
    logsumexp or its backward on the CPU: Inductor's CPU template for flex_attention computes
    the output only (inference; torch 2.11-2.14), and would fail deep inside the lowering."""
    hops = (torch.ops.higher_order.flex_attention, torch.ops.higher_order.flex_attention_backward)
    for node in graph_module.graph.find_nodes(op="call_function", target=hops[0]) + \
            graph_module.graph.find_nodes(op="call_function", target=hops[1]):
        on_cpu = node.args[0].meta["val"].device.type == "cpu"
        reads_logsumexp = any(user.target is operator.getitem and user.args[1] == 1 for user in node.users)
        if on_cpu and (node.target is hops[1] or reads_logsumexp):
            raise UnsupportedOp(
                f"higher-order operator {node.target.name()}: Inductor lowers flex_attention on the CPU for inference "
                f"only (no logsumexp, no backward), and the {role.kind} graph needs "
                f"{'its backward' if node.target is hops[1] else 'its logsumexp'}", "compile",
                "train flex_attention on the CPU with compiler='eager' (torch's dense implementation), or on a CUDA "
                "device, where Inductor lowers its backward")


def _region_outputs_unaliased(graph_module: fx.GraphModule, fake_mode) -> None:
    """Give each region `graph_module` calls (a private copy: `graph_module`'s attribute is
    replaced, the partition's region stays as it was) a fresh tensor, a clone, for each output
    that is one of its inputs or a view of one, or that it returns twice. Inductor compiles a
    region's calls as calls of one subgraph function, and its buffer planning takes a
    subgraph's outputs for buffers of their own; a region's backward returning its incoming
    gradient unchanged (a residual's path: Bloom's blocks) gave wrong gradients downstream of it
    (switch ``region_outputs_unaliased``; torch's own regions refuse such aliasing)."""
    if not aot_config.enabled("region_outputs_unaliased"):
        return
    calls = graph_module.graph.find_nodes(op="call_function", target=torch.ops.higher_order.invoke_subgraph)
    names = {node.args[0].target for node in calls if isinstance(node.args[0], fx.Node) and node.args[0].op == "get_attr"}
    for name in names:
        region = graph_module.get_submodule(name)
        output = region.graph.find_nodes(op="output")[0]
        aliased = _aliased_output_positions(output.args[0])
        if not aliased:
            continue
        graph = fx.Graph()
        results = graph.graph_copy(region.graph, {})
        results = list(results) if isinstance(results, (list, tuple)) else [results]
        for position in aliased:
            value = results[position]
            with graph.inserting_after(None):  # (at the end)
                clone = graph.call_function(torch.ops.aten.clone.default, (value,))
            with fake_mode:
                clone.meta["val"] = value.meta["val"].clone()
            results[position] = clone
        graph.output(tuple(results))
        setattr(graph_module, name, LazyGraphModule(region, graph))


def _aliased_output_positions(outputs) -> list[int]:
    """Positions of `outputs` (a region's output nodes) that are an input, a view of one, or an
    output already returned at an earlier position."""
    seen, aliased = set(), []
    for position, value in enumerate(outputs):
        base = value
        while isinstance(base, fx.Node) and base.op == "call_function" and getattr(base.target, "is_view", False):
            base = base.args[0]
        if isinstance(value, fx.Node) and (value in seen or (isinstance(base, fx.Node) and base.op == "placeholder")):
            aliased.append(position)
        seen.add(value)
    return aliased


def _decompose_leftovers(graph_module: fx.GraphModule) -> None:
    """Replace, in place, each op that Inductor lowers only in decomposed form (its
    decomposition table has the op and its lowerings do not) by the op's decomposition.
    Capture decomposes with that table, but nodes that a later stage adds arrive as they were
    written (offload's ``aten._to_copy`` host copies), and Inductor would stop on them ("both
    a fallback and a decomp for same op"). So do the out-of-place foreach ops that capture's
    functionalization wrote for in-place ones (an optimizer's ``_foreach_addcmul_``): Inductor
    lowers some of them, but only for the arguments its table's decomposition leaves (torch 2.11's
    ``_foreach_addcmul.Scalar`` lowering returns NotImplemented where the table would have applied)."""
    from torch._inductor.lowering import FALLBACK_ALLOW_LIST, lowerings

    graph = graph_module.graph
    leftovers = [node for node in graph.nodes
                 if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload)
                 and (node.target not in lowerings and node.target.name().split(".")[0] not in FALLBACK_ALLOW_LIST
                      or node.target.__name__.startswith("_foreach_"))]
    table = inductor_decompositions() if leftovers else {}
    decomposed = [node for node in leftovers
                  if node.target in table and _inline_decomposition(node, table[node.target])]
    if decomposed:
        graph_module.recompile()


def _inline_decomposition(node: fx.Node, decomposition: Callable) -> bool:
    """Put `decomposition` traced on `node`'s fake input values in `node`'s place (for a list
    result, each getitem of it by the value it reads); False (graph unchanged) where it declines
    these arguments."""
    users = list(node.users)
    several = isinstance(node.meta.get("val"), (list, tuple))
    if several and not all(u.op == "call_function" and u.target is operator.getitem for u in users):
        return False  # (a list result read other than by index: Inductor meets the op as it is)
    flat, spec = pytree.tree_flatten((node.args, node.kwargs))
    positions = [i for i, leaf in enumerate(flat) if isinstance(leaf, fx.Node)]

    def call(*values):
        leaves = list(flat)
        for i, value in zip(positions, values):
            leaves[i] = value
        args, kwargs = pytree.tree_unflatten(leaves, spec)
        return decomposition(*args, **kwargs)

    try:
        traced = make_fx(call)(*(flat[i].meta["val"] for i in positions))
    except NotImplementedError:  # it returned NotImplemented: Inductor meets the op as it is
        return False
    placeholders = traced.graph.find_nodes(op="placeholder")
    copied = {p: flat[i] for p, i in zip(placeholders, positions)}
    with node.graph.inserting_before(node):
        result = node.graph.graph_copy(traced.graph, copied)
    _constants_carried(traced, copied, node.graph.owning_module)
    if several:  # (a foreach op: a list of results, each read by a getitem, which now reads its result directly)
        for user in users:
            user.replace_all_uses_with(result[user.args[1]])
            node.graph.erase_node(user)
    else:
        node.replace_all_uses_with(result)
    node.graph.erase_node(node)
    return True


def _constants_carried(traced: fx.GraphModule, copied: dict, owner: fx.GraphModule) -> None:
    """Give `owner` each tensor constant that `traced`'s graph reads (``get_attr``; a
    decomposition that builds a tensor, traced by make_fx), under a name of its own, and point the
    node copied from that read (`copied`: traced node -> its copy) at it: a graph copy carries
    the node, not the attribute (Inductor stopped on "nonexistent target _tensor_constant0",
    fuzzer seed 9845)."""
    for read in traced.graph.find_nodes(op="get_attr"):
        index = 0
        while hasattr(owner, f"_decomposition_constant{index}"):
            index += 1
        name = f"_decomposition_constant{index}"
        setattr(owner, name, getattr(traced, read.target))
        copied[read].target = name


class _CudaGraphs(types.SimpleNamespace):
    """What a forward and its backward share when Inductor records them as CUDA graphs
    (its cudagraph trees): whether they are on (the forward turns it off for both when it
    cannot be recorded: a CPU graph, an op that cannot be captured) and the forward's device."""


_CUDA_GRAPHS: dict[int, _CudaGraphs] = {}  # graph id -> its state, for the backward compiled later
_CUDA_GRAPHS_LOCK = threading.Lock()


def _cuda_graphs_of(graph_id: int, asked: bool) -> _CudaGraphs:
    from torch._inductor.cudagraph_utils import BoxedDeviceIndex
    from torch._inductor.utils import BoxedBool

    with _CUDA_GRAPHS_LOCK:
        state = _CUDA_GRAPHS.get(graph_id)
        if state is None:
            state = _CudaGraphs(on=BoxedBool(asked), device=BoxedDeviceIndex(None))
            if asked:
                _CUDA_GRAPHS[graph_id] = state
        return state


def inductor_mode_options(mode: str) -> dict:
    """The Inductor settings of one of torch.compile's modes (``"reduce-overhead"``: CUDA
    graphs; ``"max-autotune"``, ...), as ``torch.compile(mode=...)`` applies them."""
    from torch._inductor import list_mode_options

    known = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
    if mode not in known:
        raise BadArgument(f"unknown mode {mode!r}", "api", f"use one of {list(known)}")
    return dict(list_mode_options(mode))


def _on_threads_with_cuda_context(compiled: Callable, devices: set) -> Callable:
    """`compiled`, called on threads that have a current CUDA context. Inductor's C++ wrapper
    launches kernels through the driver API, which needs one, and autograd runs a backward
    on its own thread per device, where nothing may have created it yet ("CUDA driver error:
    invalid device context"). A runtime call on the device creates it, once per thread."""
    ready = threading.local()

    def call(args):
        if not getattr(ready, "done", False):
            for device in devices:
                torch.cuda.synchronize(device)
            ready.done = True
        return _called(compiled, args)

    call._boxed_call = True
    call.aotgraph_wrapper = "cpp"
    call.aotgraph_output_code = compiled
    call.aotgraph_cuda_devices = devices  # what a disk cache entry of it needs to launch it again
    return call


class _LoadedCode:
    """A loaded graph's boxed code: Inductor's compiled graph, called as `_called` calls it;
    other attributes are the graph's (the disk cache and the report read them)."""

    _boxed_call = True

    def __init__(self, output: Callable):
        self.aotgraph_output_code = output

    def __call__(self, args: list):
        return _called(self.aotgraph_output_code, args)

    def __getattr__(self, name: str):
        if name == "aotgraph_output_code":  # not set yet (unpickling, copying)
            raise AttributeError(name)
        return getattr(self.aotgraph_output_code, name)


def _called(output: Callable, args: list):
    """``output(args)`` for Inductor's compiled graph `output`: straight through the callable it
    compiled (``current_callable``) where what its ``__call__`` adds around that is off: the
    profiler's label for the call, and the record of graph executions kept by
    ``torch._inductor.debug``, a module that reads it and that a process which compiled nothing
    has not imported (60 ms of a CPU warm start)."""
    if "torch._inductor.debug" not in sys.modules:  # (a compiling process has it: `__call__` as ever)
        direct = getattr(output, "current_callable", None)
        if direct is not None and not torch.autograd.profiler._is_profiler_enabled:
            return direct(args)
        importlib.import_module("torch._inductor.debug")  # read by ``CompiledFxGraph.__call__``
    return output(args)


def inductor_cache_identity(options: dict) -> str:
    """What decides how Inductor compiles a graph besides the graph: our options for it, the
    process's Inductor config (as torch's FxGraphCache keys it), and the C++-wrapper default."""
    from torch._inductor import config

    portable = config.save_config_portable()
    return repr(("inductor", sorted(options.items(), key=repr), sorted(portable.items(), key=repr),
                 CPP_WRAPPER_ON_CUDA))


def stored_output_code(compiled: Callable) -> Optional[bytes]:
    """Inductor's compiled graph as bytes, as torch's FxGraphCache stores it: the
    ``CompiledFxGraph`` without its loaded module (its wrapper source code, which loads the
    kernels Inductor built, by their hash, from Inductor's own cache directory; Triton kernels
    travel in its bundle), the CUDA devices our C++-wrapper launch needs, and the C++ libraries
    it loads (`stored_builds`: a warm start in another Inductor cache directory builds none). None for graphs
    run as CUDA graphs (their cudagraph trees live in the process that recorded them). The stored
    wrapper binds its extern kernels without importing Inductor's lowering (`extern_kernel_bindings`)."""
    from torch._inductor.output_code import CompiledFxGraph

    readings = getattr(compiled, "aotgraph_symbol_readings", ())
    compiled = getattr(compiled, "aotgraph_symbols_passed_to", compiled)
    output = getattr(compiled, "aotgraph_output_code", compiled)
    if output is not compiled and hasattr(output, "aotgraph_output_code"):  # a background build's C++ graph
        compiled, output = output, output.aotgraph_output_code
    if isinstance(output, compile_workers.PendingCode):  # what its worker sent
        return output.stored_bytes()
    if type(output) is not CompiledFxGraph or getattr(output, "aotgraph_cuda_graphs", False):
        return None
    stored = copy.copy(output)
    stored.prepare_for_serialization()
    light_source = extern_kernel_bindings.light_source(stored.source_code)
    if light_source is not None:
        stored.source_code, stored.cache_key = light_source, extern_kernel_bindings.light_cache_key(light_source)
    devices = sorted(str(d) for d in getattr(compiled, "aotgraph_cuda_devices", ()))
    builds = stored_builds.build_files(getattr(output, "aotgraph_cpp_builds", ()))
    return pickle.dumps((stored, devices, getattr(compiled, "aotgraph_wrapper", None), builds, readings))


def restored_output_code(stored: bytes, kind: str) -> Callable:
    """The callable that `stored_output_code` stored, loaded as FxGraphCache loads a hit:
    C++ libraries and Triton kernels put back, the wrapper module loaded (without precompiling
    headers for libraries that are all there), inputs realigned where Inductor asked; called
    through its compiled callable (`_called`)."""
    from torch._inductor.output_code import CompiledFxGraphConstants
    from torch._inductor.triton_bundler import TritonBundler
    from torch._inductor.utils import BoxedBool

    output, devices, wrapper, builds, *readings = pickle.loads(stored)  # (entries older than symbol inputs: no readings)
    readings = readings[0] if readings else ()
    stored_builds.put_back(builds)
    with remembering_vec_isa_probe(), stored_builds.without_header_precompiles(), \
            stored_builds.torch_arguments_remembered():
        recall_vec_isa_probe()
        if output._triton_bundle:
            TritonBundler.read_and_emit(output._triton_bundle)
        constants = CompiledFxGraphConstants()
        output.after_deserialization(constants)
        output.aotgraph_cpp_builds = stored_builds.paths_of(builds)  # carried again if stored again
        output.post_compile([], constants, {"cudagraphs": BoxedBool(False), "is_backward": kind == "backward",
                                            "boxed_forward_device_index": None})
    if devices:
        restored = symbol_inputs.passing_symbols(
            _on_threads_with_cuda_context(output, {torch.device(d) for d in devices}), readings)
    else:
        if wrapper is not None:
            output.aotgraph_wrapper = wrapper
        restored = symbol_inputs.passing_symbols(_LoadedCode(output), readings)
    if wrapper is not None and wrapper.startswith("python, C++"):  # stored before its C++ build was ready
        restored.aotgraph_provisional = True  # (`warm_upgrades` builds it)
    return restored


@contextlib.contextmanager
def _reuse_judged_with_outputs():
    """While Inductor compiles our graphs: reuse a freed buffer for a later one of its size
    where that keeps the estimated peak memory, counting the graph's outputs in the peak.

    Inductor reuses a buffer only where keeping it alive would not raise its estimate of the
    graph's peak (``AllocateLine.should_reuse_buffer``), and that estimate leaves out the
    outputs, which a forward holds to its end: the saved values, most of a training
    forward's memory. Which intermediates are not outputs depends on the plan, so the estimate
    is arbitrary, and can refuse small buffers their reuse (on ResNet-50: batch norm's
    reductions, benchmarks/RESULTS.md). Where Inductor has no such method, nothing changes."""
    from torch._inductor.codegen import wrapper

    allocate_line = getattr(wrapper, "AllocateLine", None)
    original = getattr(allocate_line, "should_reuse_buffer", None)
    if original is None or not aot_config.enabled("inductor_reuse_patch"):
        yield
        return

    def should_reuse_buffer(self, free_line, size) -> bool:
        if original(self, free_line, size):
            return True
        estimate = self.wrapper.estimate_peak
        held = getattr(estimate, "_aotgraph_output_bytes", None)
        if held is None:
            held = estimate._aotgraph_output_bytes = _output_bytes(estimate)
        return size + estimate.peak_between(free_line, self) <= estimate.overall_peak_memory + held

    allocate_line.should_reuse_buffer = should_reuse_buffer
    try:
        yield
    finally:
        allocate_line.should_reuse_buffer = original


def _output_bytes(estimate) -> int:
    """Bytes of the buffers the graph being compiled returns (0 where Inductor's API differs)."""
    from torch._inductor.virtualized import V

    try:
        buffers = V.graph.name_to_buffer
        return sum(estimate._get_size(buffers[name]) for name in V.graph.get_output_names() if name in buffers)
    except Exception:  # an Inductor without these internals: judge as Inductor does
        return 0


def _private_copy(graph_module: fx.GraphModule) -> fx.GraphModule:
    """A module with its own graph (node metadata shared) and the same attributes, its code
    made when first read: the joint's passes and partition read its graph, not its code (for
    a deep model's joint, two code generations of some thousand nodes)."""
    graph = fx.Graph()
    graph.output(graph.graph_copy(graph_module.graph, {}))
    return LazyGraphModule(graph_module, graph)
