"""Stage 3: Partition -> CompiledGraphs; each fx graph -> callable, in torch's boxed calling convention.

A compiler is ``compiler(graph_module, example_inputs) -> callable``. The embedded
default, ``"eager"``, runs the graph's generated Python code; any user callable works,
boxed (``_boxed_call = True``: takes one list) or not. Example inputs are fake tensors.
A compiler that needs to know which graph it gets (``"inductor"``) is marked
``_takes_role = True`` and is called with a third argument, its `GraphRole`. What the other
stages must know about a compiler is its `CompilerTraits` (``traits_of(compiler)``): code
outside this package never asks which compiler it has.
"""
from __future__ import annotations

import difflib
from contextlib import ExitStack, nullcontext, suppress
from dataclasses import dataclass
from itertools import count
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch
import torch.fx as fx

from .. import config
from ..artifacts import CompiledGraphs, JointGraph, Partition
from ..errors import BadArgument, CompilerError
from ..graph.naming import primal_name
from ..graph.sizes import has_symbolic_sizes, size_keys
from ..thread_values import held
from ..torch_private.dynamo import TracingContext, tracing
from ..torch_private.fake import detect_fake_mode
from . import symbol_inputs
from .input_mutations import with_mutations_in_graph
from .boxed_code import region_modules
from .region_graphs import compiled_around_regions, compiles_around_regions, regions_inlined

__all__ = ["compile_partition", "compile_graph", "eager", "nop", "inductor", "InductorCompiler", "CompilerTraits",
           "traits_of", "compiler_with_options", "make_boxed_func", "make_boxed_compiler", "resolve_compiler", "GraphRole", "COMPILER_NAMES"]


@dataclass(frozen=True)
class CompilerTraits:
    """What the pipeline needs to know about a compiler.

    `decompositions()`: the table to apply at capture when the user gives none.
    `joint_passes(joint) -> joint`: rewrites of the joint graph before it is partitioned.
    `fuses_kernels`: the compiler fuses pointwise work into its kernels, so the partitioner
    plans for fused backward kernels (see `min_cut_rematerialization_partition`).
    `writes_input_mutations`: the forward graph given to it writes plain input mutations
    itself (``copy_`` into the input) instead of returning new values.
    `warm_up(flat_args)`: called before capture, to start work that overlaps it; with None
    when a torch.compile backend is built (before Dynamo traces, no input known yet).
    `compiles_regions_apart`: a graph that calls regions is compiled around them, each region
    graph once, on its own (`region_graphs`), where switch ``regions_compiled_apart`` is on or
    `must_compile_regions_apart(graph_module, example_inputs)` says the compiler cannot compile
    them inside the calling graph (Inductor's C++ wrapper; regions holding convolutions).
    `inlines_regions(graph_module, example_inputs)`: the compiler gets `graph_module` with its
    regions' nodes inlined instead, as a flat graph (Inductor, for regions holding convolutions
    and on CUDA with its Python wrapper).
    For the disk cache (a compiler without these is not cached on disk): `cache_identity()`,
    a string that changes whenever the compiler would compile a graph differently (its
    settings); `store(compiled) -> bytes`, what the compiler returned for a graph, as bytes
    (None where this one cannot be stored); `restore(stored, graph_module, kind)`, the
    callable again, in another process, from those bytes and the graph it was compiled from;
    `restore_reads_graph` False: its restore reads no graph and is given None instead (a
    loaded entry then decodes its graphs only when something else reads them).
    `copies_inputs()`: the compiled graphs run on copies of some inputs (Inductor's CUDA
    graphs), so an output that views an input views the copy, not the caller's tensor.
    `views_keep_versions`: the graphs it compiles make their views of inputs with ATen's view
    ops, which share the input's version counter (autograd then checks the saved ones itself).
    `final_compiler()`: where `restore` gives a provisional graph (``aotgraph_provisional``:
    stored before its final build was ready, Inductor's Python wrapper before its C++ one),
    the compiler that makes the final build, in the background (`warm_upgrades`).
    A compiler declares its traits as an ``aotgraph_traits`` attribute; others get none."""

    decompositions: Optional[Callable[[], Mapping]] = None
    joint_passes: Optional[Callable[[JointGraph], JointGraph]] = None
    fuses_kernels: bool = False
    writes_input_mutations: bool = False
    warm_up: Optional[Callable[[list], None]] = None
    compiles_regions_apart: bool = False
    must_compile_regions_apart: Optional[Callable[[fx.GraphModule, Sequence[Any]], bool]] = None
    inlines_regions: Optional[Callable[[fx.GraphModule, Sequence[Any]], bool]] = None
    cache_identity: Optional[Callable[[], str]] = None
    store: Optional[Callable[[Callable], Optional[bytes]]] = None
    restore: Optional[Callable[[bytes, Optional[fx.GraphModule], str], Callable]] = None
    restore_reads_graph: bool = True
    copies_inputs: Optional[Callable[[], bool]] = None
    final_compiler: Optional[Callable[[], Callable]] = None
    views_keep_versions: bool = False


_NO_TRAITS = CompilerTraits()


def traits_of(compiler: Callable) -> CompilerTraits:
    return getattr(compiler, "aotgraph_traits", _NO_TRAITS)


def is_users(compiler: Callable) -> bool:
    """Whether `compiler` is a user's (no traits): it gets graphs as functorch hands them, flat
    ATen graphs of its own to rewrite, without the regions that capture finds (``invoke_subgraph``
    calls of repeated layers: a rewrite of its ops would miss the layers)."""
    return getattr(compiler, "aotgraph_traits", None) is None


@dataclass(frozen=True)
class GraphRole:
    """Which graph of a Partition a compiler is given.

    `kind` is "forward", "backward" or "inference"; the first `num_user_outputs` outputs of
    a graph reach the user (a backward's are all its gradients); a forward and its backward
    share `graph_id`. `static_inputs`: placeholder positions whose tensors keep their memory
    from call to call (parameters, buffers; a backward's saved values, which the forward
    allocates): a compiler may trust their alignment instead of checking it every call.
    `view_bases`: positions of further outputs that reach the user through views the runtime
    replays on them (bases of returned views): a compiler keeps eager's strides for them too.
    `alone`: no other graph depends on how this one was built (a part of a graph compiled
    around its regions, whose outputs keep their traced strides): a compiler that rebuilds
    graphs in the background may switch it on its own, not with its forward or backward.
    """

    kind: str
    num_user_outputs: int
    graph_id: int
    static_inputs: tuple[int, ...] = ()
    view_bases: tuple[int, ...] = ()
    alone: bool = False


def make_boxed_func(f: Callable) -> Callable:
    """Wrap ``f(*args)`` so it takes one list of arguments (torch's boxed convention)."""

    def boxed(args):
        return f(*args)

    boxed._boxed_call = True
    return boxed


def make_boxed_compiler(compiler: Callable) -> Callable:
    def boxed_compiler(graph_module: fx.GraphModule, example_inputs):
        return make_boxed_func(compiler(graph_module, example_inputs))

    return boxed_compiler


def nop(graph_module: fx.GraphModule, example_inputs) -> Callable:
    """The compiler that compiles nothing: the graph runs as its Python code (``GraphModule.forward``;
    a graph that calls regions, `capture.regions`, runs them without the invoke_subgraph
    operator's dispatch: `boxed_code.plain_graph_function`)."""
    from .boxed_code import plain_graph_function, region_modules

    if region_modules(graph_module) and config.enabled("direct_region_calls"):
        return make_boxed_func(plain_graph_function(graph_module))
    _recompiled(graph_module)
    return make_boxed_func(graph_module.forward)


def _recompiled(graph_module: fx.GraphModule) -> None:
    """A lazily generated module given its code (before `forward` is read)."""
    real_recompile = getattr(graph_module, "real_recompile", None)
    if real_recompile is not None:
        real_recompile()


def eager(graph_module: fx.GraphModule, example_inputs) -> Callable:
    """The embedded default compiler: the graph's own generated code, called without
    ``nn.Module.__call__`` overhead, in the boxed convention that clears its argument list
    so each input is freed after its last use (switch ``boxed_code``: GraphModule.forward instead)."""
    if not config.enabled("boxed_code"):
        return make_boxed_func(graph_module.forward)
    from .boxed_code import boxed_graph_function

    return boxed_graph_function(graph_module)


def _stored_as_graph(compiled: Callable) -> bytes:
    return b""  # the graph itself is stored with the partition


nop.aotgraph_traits = CompilerTraits(cache_identity=lambda: "nop", store=_stored_as_graph,
                                     restore=lambda stored, graph_module, kind: nop(graph_module, None),
                                     views_keep_versions=True)
eager.aotgraph_traits = CompilerTraits(cache_identity=lambda: "eager", store=_stored_as_graph,
                                       restore=lambda stored, graph_module, kind: eager(graph_module, None),
                                       views_keep_versions=True)


class InductorCompiler:
    """TorchInductor (``compile_fx_inner``) as a compiler, with Inductor settings of its own.

    `options`: Inductor config values (as ``torch.compile(options=...)``) set while it
    compiles our graphs. ``"cpp_wrapper"`` left out means: on for graphs on a CUDA device
    (kernels launched from C++, see `compile_with_inductor`), off elsewhere. Called without
    a role, the graph is taken as an inference graph.
    """

    _takes_role = True
    __name__ = "inductor"

    def __init__(self, options: Optional[dict] = None):
        self.options = dict(options or {})
        if not self.options:
            return  # `import aotgraph` builds the default one: Inductor is imported when used
        from torch._inductor import config

        unknown = [name for name in self.options if not isinstance(name, str) or not hasattr(config, name)]
        if unknown:
            raise BadArgument(f"unknown Inductor settings {unknown}", "compile",
                              _inductor_settings_hint(config, unknown))

    @property
    def aotgraph_traits(self) -> CompilerTraits:
        from . import torchinductor

        return CompilerTraits(torchinductor.inductor_decompositions, torchinductor.inductor_joint_passes,
                              fuses_kernels=True, writes_input_mutations=True,
                              warm_up=torchinductor.wake_compile_workers, compiles_regions_apart=True,
                              must_compile_regions_apart=lambda graph_module, inputs: (
                                  torchinductor.uses_cpp_wrapper(self.options, inputs)
                                  or torchinductor.regions_hold_convolutions(graph_module)),
                              inlines_regions=lambda graph_module, inputs: torchinductor.regions_inlined_for_inductor(
                                  graph_module, self.options, inputs),
                              cache_identity=lambda: torchinductor.inductor_cache_identity(self.options),
                              store=torchinductor.stored_output_code,
                              restore=lambda stored, graph_module, kind: torchinductor.restored_output_code(stored, kind),
                              restore_reads_graph=False,
                              copies_inputs=lambda: torchinductor.cuda_graphs_asked(self.options),
                              final_compiler=self._with_cpp_wrapper)

    def _with_cpp_wrapper(self) -> "InductorCompiler":
        """This compiler with Inductor's C++ wrapper asked for, for a build in the background."""
        from .torchinductor import release_lock_during_cpp_builds

        release_lock_during_cpp_builds()
        return InductorCompiler({**self.options, "cpp_wrapper": True})

    def __call__(self, graph_module: fx.GraphModule, example_inputs, role: Optional[GraphRole] = None) -> Callable:
        from .torchinductor import compile_with_inductor

        role = role or GraphRole("inference", 0, next(_graph_ids))
        return compile_with_inductor(graph_module, example_inputs, role, self.options)

    def __repr__(self) -> str:
        return f"InductorCompiler({self.options})" if self.options else "inductor"


_EXAMPLE_INDUCTOR_SETTINGS = ("cpp_wrapper", "max_autotune", "triton.cudagraphs")


def _inductor_settings_hint(config, unknown: list) -> str:
    """What to pass instead of the `unknown` option names: the settings of Inductor's `config`
    spelled closest to them, else real settings as examples; never a rejected name. A name
    that `config` lists but hides was deleted in this process (``del config.name``, as the
    undo of pytest's ``monkeypatch.setattr`` does), and the hint says so."""
    try:
        listed = list(config.get_config_copy())
    except AttributeError:  # torch 2.11 reads each value, and stops on a deleted one; 2.13 leaves it out
        listed = list(getattr(config, "_config", ()))
    hidden = [name for name in unknown if name in listed]
    others = [name for name in unknown if name not in listed]
    hints = []
    if hidden:
        hints.append(f"{hidden} were deleted from torch._inductor.config in this process, which hides them (the "
                     "undo of pytest's monkeypatch.setattr does that): change settings with "
                     "torch._inductor.config.patch(...) and start a new process")
    if others:
        known = [name for name in listed if hasattr(config, name)]
        close = [match for name in others if isinstance(name, str)
                 for match in difflib.get_close_matches(name, known, n=3)]
        examples = [name for name in _EXAMPLE_INDUCTOR_SETTINGS if name in known] or known[:3]
        hints.append(f"did you mean {' or '.join(map(repr, dict.fromkeys(close)))}?" if close else
                     f"use names of torch._inductor.config, e.g. {' or '.join(map(repr, examples))}")
    return "; ".join(hints)


inductor = InductorCompiler()

_NAMED = {"eager": eager, "nop": nop, "inductor": inductor}
COMPILER_NAMES = tuple(sorted(_NAMED))
_graph_ids = count()


def next_graph_id() -> int:
    """A new `GraphRole.graph_id`, shared by no other forward and backward."""
    return next(_graph_ids)


def resolve_compiler(compiler: Union[str, Callable, None], default: Callable = eager) -> Callable:
    if compiler is None:
        return default
    if isinstance(compiler, str):
        if compiler not in _NAMED:
            raise BadArgument(f"unknown compiler {compiler!r}", "compile", f"use one of {sorted(_NAMED)} or a callable")
        return _NAMED[compiler]
    if not callable(compiler):
        raise BadArgument(f"compiler must be a name or a callable, got {type(compiler).__name__}", "compile",
                          f"use one of {sorted(_NAMED)} or a callable (graph_module, example_inputs) -> callable")
    return compiler


def compiler_with_options(compiler: Union[str, Callable], options: Optional[dict] = None,
                          mode: Optional[str] = None) -> Callable:
    """The named compiler with settings of its own: for ``"inductor"``, Inductor config values
    (``torch.compile(options=...)``), after those of a torch.compile `mode`
    (``"reduce-overhead"``: CUDA graphs; ``"max-autotune"``, ...). CUDA graphs get Inductor's
    C++ wrapper unless ``options={"cpp_wrapper": False}`` or CUDA graphs are on (see
    `torchinductor.compile_with_inductor`). Other compilers take no options."""
    if compiler != "inductor":
        what = "options are Inductor settings" if options is not None else f"mode {mode!r} is an Inductor mode"
        raise BadArgument(f"{what}, but the compiler is {compiler!r}", "api",
                          "pass compiler='inductor', or leave options and mode out")
    if options is not None and not isinstance(options, dict):
        raise BadArgument(f"options must be a dict of Inductor settings, got {type(options).__name__}", "api",
                          "pass e.g. options={'cpp_wrapper': False}")
    settings = {}
    if mode is not None:
        from .torchinductor import inductor_mode_options

        settings.update(inductor_mode_options(mode))
    return InductorCompiler({**settings, **(options or {})})


def compile_graph(compiler: Callable, graph_module: fx.GraphModule, example_inputs: Sequence[Any],
                  role: Union[str, GraphRole]):
    """Run `compiler` on one graph and return a boxed callable (takes a list). A compiler other
    than the embedded two gets the graph as torch hands graphs to compilers: every symbol of its
    inputs' sizes a SymInt input (`symbol_inputs`, switch ``symbol_inputs``)."""
    readings = ()
    users = is_users(compiler)
    if users:  # a copy of its own, a plain GraphModule (TorchScript cannot script a lazy one)
        graph_module = _plain_copy(graph_module)
    if compiler is not eager and compiler is not nop:  # those two generate the code they run themselves
        _recompiled(graph_module)
        readings = symbol_inputs.unbound_symbol_readings(example_inputs) if config.enabled("symbol_inputs") else ()
        if readings:
            graph_module, example_inputs = symbol_inputs.with_symbol_inputs(graph_module, example_inputs, readings)
    role = role if isinstance(role, GraphRole) else GraphRole(role, 0, next(_graph_ids))
    if getattr(compiler, "_takes_role", False):
        compiled = compiler(graph_module, list(example_inputs), role)
    else:
        compiled = compiler(graph_module, list(example_inputs))
    if not callable(compiled):
        name = getattr(compiler, "__name__", type(compiler).__name__)
        raise CompilerError(
            f"the {role.kind} compiler {name} returned {type(compiled).__name__}, which is not callable",
            "compile",
            "return a callable, e.g. graph_module.forward or make_boxed_func(...)",
        )
    if not getattr(compiled, "_boxed_call", False):
        compiled = make_boxed_func(compiled)
    if users:  # (one with traits may store its callable)
        name = getattr(compiler, "__name__", type(compiler).__name__)
        compiled = _outputs_counted(compiled, len(graph_module.graph.find_nodes(op="output")[0].args[0]), name,
                                    role.kind)
    return symbol_inputs.passing_symbols(compiled, readings or ())


def _plain_copy(graph_module: fx.GraphModule) -> fx.GraphModule:
    """A plain ``fx.GraphModule`` of a copy of `graph_module`'s graph (node metadata kept): a user
    compiler may edit the graph it gets in place, and the partition's graph, which the runtime
    and the reports read after the compile, stays as it was."""
    graph = fx.Graph(tracer_cls=graph_module.graph._tracer_cls)
    graph._codegen = graph_module.graph._codegen
    output = graph.graph_copy(graph_module.graph, {})
    graph.output(output)
    copy = fx.GraphModule(graph_module, graph)
    copy.meta.update(graph_module.meta)
    return copy


def _outputs_counted(compiled: Callable, expected: int, name: str, kind: str) -> Callable:
    """`compiled` (a user compiler's boxed callable) whose first call checks that it returns the
    graph's number of outputs: the runtime reads them by position (an IndexError, or values
    in the wrong places, otherwise)."""
    checked = []

    def boxed(args):
        out = compiled(args)
        if not checked:
            count = len(out) if isinstance(out, (list, tuple)) else None
            if count != expected:
                raise CompilerError(f"the {kind} compiler {name}'s callable returned "
                                    f"{type(out).__name__ if count is None else f'{count} values'}, where the graph "
                                    f"returns {expected}", "compile",
                                    "return what the graph module returns: a list or tuple with one value per output")
            checked.append(True)
        return out

    boxed._boxed_call = True
    return boxed


def compile_partition(parts: Partition, fw_compiler: Callable, bw_compiler: Callable,
                      inference_compiler: Callable, static_primals: frozenset = frozenset()) -> CompiledGraphs:
    """Compile the graphs of `parts`.

    `static_primals`: primal indices whose tensors keep their memory across calls (see
    `GraphRole.static_inputs`). The backward is compiled for the strides its saved inputs
    really have: a compiler that picks its own output layouts (Inductor) reports them through
    torch's TracingContext (``report_output_strides``), and the backward's example inputs are
    re-strided to match.
    """
    joint = parts.joint
    graph_id = next(_graph_ids)
    compile_one = _compiler_around_regions({})  # a region called by both graphs is compiled once
    num_user_outputs = len(joint.signature.tensor_output_positions)
    fw_inputs = _placeholder_values(parts.forward)
    static_names = {primal_name(p) for p in static_primals}
    fw_static = tuple(i for i, n in enumerate(parts.forward.graph.find_nodes(op="placeholder")) if n.name in static_names)
    forward_graph, in_graph = parts.forward, ()
    if traits_of(inference_compiler if joint.is_inference else fw_compiler).writes_input_mutations:
        forward_graph, in_graph = with_mutations_in_graph(parts)
    # The bases of returned views close the forward's own outputs (before the saved values).
    num_returned = joint.num_fwd_outputs - len(in_graph)
    view_bases = tuple(range(num_returned - len(joint.signature.view_bases), num_returned))
    with ExitStack() as stack:
        if TracingContext.try_get() is None:
            fake_mode = detect_fake_mode(fw_inputs) or joint.fake_mode
            stack.enter_context(tracing(TracingContext(fake_mode)))
        if joint.is_inference:
            role = GraphRole("inference", num_user_outputs, graph_id, fw_static, view_bases)
            forward = compile_one(inference_compiler, forward_graph, fw_inputs, role)
            return CompiledGraphs(forward, None, parts, in_graph, _note_of(forward))
        with TracingContext.report_output_strides() as output_strides, _strides_as_expressions():
            forward = compile_one(fw_compiler, forward_graph, fw_inputs, GraphRole("forward", num_user_outputs,
                                                                                   graph_id, fw_static, view_bases))
        saved_strides = list(output_strides or [])[joint.num_fwd_outputs - len(in_graph):]
        bw_inputs = _restrided(_placeholder_values(parts.backward), parts, saved_strides)
        # Every gradient reaches the user (a .grad, or the next graph's backward): all user outputs,
        # so a compiler keeps eager's strides for them (Inductor would otherwise pad rows).
        num_grads = len(parts.backward.graph.find_nodes(op="output")[0].args[0])
        bw_static = tuple(range(len(parts.convention.backward_saved_names)))  # the saved values
        backward = compile_one(bw_compiler, parts.backward, bw_inputs,
                               GraphRole("backward", num_grads, graph_id, bw_static))
    return CompiledGraphs(forward, backward, parts, in_graph, _note_of(forward),
                          checks_viewed_versions=not traits_of(fw_compiler).views_keep_versions)


def _compiler_around_regions(compiled_regions: dict) -> Callable:
    """`compile_graph`, except that a graph whose compiler asks for it is compiled around the
    regions it calls (`region_graphs`), each region once across the graphs sharing `compiled_regions`."""

    def compile_one(compiler: Callable, graph_module: fx.GraphModule, example_inputs: Sequence[Any],
                    role: GraphRole) -> Callable:
        traits = traits_of(compiler)
        if (traits.inlines_regions is not None and region_modules(graph_module)
                and traits.inlines_regions(graph_module, example_inputs)):
            code = compile_graph(compiler, regions_inlined(graph_module), example_inputs, role)
            with suppress(AttributeError):  # for the compile log's note (`_note_of`)
                code.aotgraph_regions_inlined = True
            return code
        must = traits.must_compile_regions_apart
        if not compiles_around_regions(traits.compiles_regions_apart, graph_module,
                                       forced=lambda: must is not None and must(graph_module, example_inputs)):
            return compile_graph(compiler, graph_module, example_inputs, role)

        def compile_part(part: fx.GraphModule, part_inputs: list) -> Callable:
            # Every output of a region (or a stretch between regions) reaches its caller's code:
            # the compiler keeps their traced strides.
            num_outputs = len(part.graph.find_nodes(op="output")[0].args[0])
            return compile_graph(compiler, part, part_inputs,
                                 GraphRole(role.kind, num_outputs, next(_graph_ids), alone=True))

        return compiled_around_regions(graph_module, list(example_inputs), compile_part, compiled_regions)

    return compile_one


def _note_of(compiled_forward: Callable) -> str:
    """What the compile log says of how the graphs were compiled."""
    notes = ["Inductor's C++ wrapper" if getattr(compiled_forward, "aotgraph_wrapper", None) == "cpp" else "",
             "regions inlined for the compiler" if getattr(compiled_forward, "aotgraph_regions_inlined", False) else ""]
    return "; ".join(note for note in notes if note)


def _placeholder_values(graph_module: fx.GraphModule) -> list:
    return [n.meta["val"] for n in graph_module.graph.find_nodes(op="placeholder")]


def _restrided(bw_inputs: list, parts: Partition, saved_strides: list) -> list:
    """Backward example inputs with each saved tensor given the stride the forward reported
    (with symbolic sizes, as expressions of their symbols: Inductor on the CPU lays a
    convolution's activations out channels-last whatever the sizes)."""
    if not saved_strides:
        return bw_inputs
    stride_of = {saved.name: stride for saved, stride in zip(parts.saved, saved_strides)}
    placeholders = parts.backward.graph.find_nodes(op="placeholder")
    restrided = []
    for node, value in zip(placeholders, bw_inputs):
        stride = stride_of.get(node.name)
        if isinstance(value, torch.Tensor) and stride is not None and size_keys(value.stride()) != size_keys(stride):
            if has_symbolic_sizes(value) or any(type(s) is not int for s in stride):
                with detect_fake_mode([value]):  # (as_strided would check the storage's size: a guard)
                    value = torch.empty_strided(value.shape, stride, dtype=value.dtype, device=value.device)
            else:
                with torch.no_grad():
                    value = value.as_strided(value.shape, stride, value.storage_offset())
        restrided.append(value)
    return restrided


def _strides_as_expressions():
    """Inductor reports the output strides of a graph with symbolic sizes as SymInts of the
    graph's symbols, not as their values at the hints (torch's ``fakify_first_call``)."""
    context = TracingContext.try_get()
    return nullcontext() if context is None else held(context, "fakify_first_call", True, outside=False)
