"""Settings and debug switches, read from the environment when aotgraph is imported and
changeable at run time (tests set them with ``monkeypatch.setattr(config, ...)``).

- `recompile_limit` (``AOTGRAPH_RECOMPILE_LIMIT``, default 8, as Dynamo's): a compiled
  function that compiles more entries than this warns once (`RecompileWarning`), naming what
  changed. It keeps compiling: the limit is a warning, not a stop.
- `debug_level` (``AOTGRAPH_DEBUG``, default 0; ``AOTGRAPH_LOG=1`` means 1): what the
  ``aotgraph`` logger prints to stderr, as tinygrad's ``DEBUG=n``. 1: each compile (function
  and why) and each stage with its time. 2: also each artifact in short (graph sizes, saved
  values, the calling convention). 3: also the code of the joint, forward and backward graphs.
- `progress` (``AOTGRAPH_PROGRESS``, default on; ``0`` turns it off): a progress bar on stderr
  for a compile that takes more than two seconds (capture, partition, compile), drawn only
  when stderr is a terminal (``aotgraph/progress.py``).
- `disabled` (``AOTGRAPH_DISABLE=name,name``): memos, fast paths and patches of torch to turn
  off, one by one, to bisect a failure after a torch upgrade. Results never depend on them
  (``runtime_asserts`` off only stops raising for calls that break torch's assumptions);
  the names are `SWITCHES`' keys.
- `opted_in` (``AOTGRAPH_ENABLE=name,name``): switches that are off unless named here, the ones
  in `OFF_BY_DEFAULT`, which trade a slower step or more memory for compile time.
- `disk_cache` (``AOTGRAPH_CACHE``, default ``"1"``): the compile cache on disk (`cache.disk`).
  ``"0"``: off everywhere. ``"1"``: on where the program arrives as a graph (the
  ``torch.compile`` backend, `aot_module_simplified`), opt-in elsewhere (``cache=True``).
  ``"all"``: on for `aot_function` and `aot_module` too.
- `remote_cache` (``AOTGRAPH_REMOTE_CACHE=redis://host:port/db``): a Redis server as a
  shared tier of the disk cache (`cache.remote`); None: none.
- `cache_dir` (``AOTGRAPH_CACHE_DIR``): where the disk cache lives; None: the user's cache
  directory (``platformdirs``, else ``$XDG_CACHE_HOME`` or ``~/.cache``) + ``/aotgraph``.
"""
from __future__ import annotations

import os
from typing import Optional

__all__ = ["recompile_limit", "debug_level", "progress", "disabled", "opted_in", "enabled", "SWITCHES", "OFF_BY_DEFAULT",
           "disk_cache", "cache_dir", "remote_cache"]

SWITCHES = {
    "fast_path": "a call of tensors matching the previous call skips building its cache key (cache/fast_path.py)",
    "fake_memo": "capture answers a repeated op on same-layout fakes from a memo (capture/fake_outputs.py)",
    "symbolic_fake_memo": "capture's memos (fake outputs, tensor metadata) also key symbolic sizes by their "
                          "expressions (capture/fake_outputs.py, capture/node_meta.py)",
    "strided_builds": "the fake memo builds a repeated op's outputs with symbolic sizes by as_strided (a view: on "
                      "the argument's storage; new: on a fresh storage of the first answer's size), without "
                      "recomputing and checking the storage size (capture/fake_outputs.py)",
    "size_arithmetic_memo": "capture answers a repeated operation on symbolic sizes (SymNode add, mul, eq, ...) "
                            "with its earlier result (torch_private/symbolic.py)",
    "meta_kernel_answers": "capture answers memo misses of some ops with their meta kernels (capture/fake_outputs.py)",
    "fake_misses_without_python_dispatcher": "capture asks the fake mode about a fake-memo miss with static sizes "
                                             "with the Python dispatcher off, as it runs kernels: C++ meta kernels, "
                                             "not Python references op by op (capture/fake_outputs.py)",
    "layouts_after_replacements": "capture forgets the layouts it remembers once the shape environment replaces "
                                  "a symbol, so that they are computed again with the replacement "
                                  "(capture/fake_outputs.py)",
    "symbolic_layout_rules": "capture computes the output layouts of common ops on tensors of symbolic sizes "
                             "(pointwise, matmuls, views, convolutions, layer, group and batch norm, losses) "
                             "from their arguments' sizes instead "
                             "of the fake mode's meta functions (capture/symbolic_layout_rules.py)",
    "direct_guards": "with aot_function/aot_module(dynamic=True), a condition on backed sizes with floor divisions "
                     "by constants (pooled, strided sizes), or of one size against an integer, that the ranges "
                     "leave open is guarded on its value "
                     "without the shape environment's static evaluation first, and a size guarded equal to an "
                     "integer is replaced by it without torch's solver (torch_private/symbolic.py)",
    "unused_relations_unbuilt": "with aot_function/aot_module(dynamic=True), a new size symbol's relation `s > 1` "
                                "(built for translation validation only) is not evaluated, and simplifying a "
                                "size without divisibility facts builds no remainders to look up among them "
                                "(torch_private/symbolic.py)",
    "capture_is_compiling": "torch.compiler.is_compiling() is True while capture runs the program on fakes, as "
                            "under torch.compile (capture/__init__.py)",
    "own_size_guard_text": "aot_function/aot_module(dynamic=True) write their size guard from the shape "
                           "environment's records instead of its guard producer (cache/size_guard_code.py)",
    "symbolic_function_rules": "capture records F.group_norm and nearest F.interpolate on contiguous inputs of "
                               "symbolic sizes without their composites' size arithmetic: the native op, or the "
                               "decomposition's ops with its scale a constant (capture/function_rules.py)",
    "layout_rules": "capture computes the output layouts of group norm, batch norm, convolution and their backwards "
                    "on a memo miss instead of running their Python meta kernels or fake rules "
                    "(capture/layout_rules.py)",
    "direct_fakes": "capture (and dynamic=True, for inputs whose sizes stay concrete) builds fakes of plain leaf "
                    "inputs without FakeTensorMode.from_tensor (capture/inputs.py)",
    "in_place_on_fresh": "capture records an in-place op that a decomposition applies to a tensor it made itself "
                         "(C++'s 1 - t: empty_like, fill_, sub_) as its functional twin, so the graph needs no "
                         "functionalization (capture/recorder.py)",
    "cse": "capture merges common subexpressions of the joint graph (capture/cse.py)",
    "gc_pause": "Python's cyclic collector is paused while graphs are built (pipeline.py)",
    "gc_freeze": "the objects alive when a compile starts are frozen out of the cyclic collector's walks until it "
                 "ends (gc.freeze; pipeline.py)",
    "trace_heap_frozen": "with gc_freeze on, the heap is frozen for the whole of each of Dynamo's compiles (its trace "
                         "of a frame too), once a torch.compile backend of ours is built (off by default; pipeline.py)",
    "transient_inputs_priced": "the min cut prices saving an input that is not a parameter or one of Dynamo's static "
                               "inputs at its bytes, as torch's does, so that it saves what eager's autograd saves where that is no dearer "
                               "(a caller's later in-place write into the input then works as in eager; "
                               "partition/mincut.py)",
    "region_outputs_kept": "a region's min cut saves its outputs for free (its caller's graph holds them) rather than "
                           "recomputing them in the region's backward (pipeline.py, capture/regions.py)",
    "composite_kernels_kept": "capture records an op with a CompositeImplicitAutograd kernel whole where the device "
                              "has a kernel of its own (silu_backward), as eager runs it and make_fx records it "
                              "(capture/recorder.py)",
    "keys_without_joint_passes": "a capture made to key a disk-cache entry (aot_function/aot_module with cache=True) "
                                 "splits its regions without the compiler's joint passes; on a miss the program is "
                                 "captured again with them (pipeline.py)",
    "boxed_code": "the eager compiler runs its own generated code, not GraphModule.forward (compilers/boxed_code.py)",
    "inductor_reuse_patch": "Inductor's buffer reuse counts our graphs' outputs in its peak (compilers/torchinductor.py)",
    "seed_patch": "capture replays torch.manual_seed / set_rng_state called by the program (capture/random_draws.py)",
    "flex_attention_direct": "torch's public flex_attention, called in a captured program outside Dynamo, calls its "
                             "operator itself, not a nested torch.compile of it (torch_private/flex_attention.py)",
    "region_reuse": "capture records each nested_compile_region once and calls it per occurrence; off: inline "
                    "(capture/regions.py)",
    "auto_regions": "capture finds a module's repeated submodules and records each as a region, captured once and "
                    "called per call, as if marked (capture/repeated_layers.py); the backend does the same for the "
                    "repeated blocks of Dynamo's graph (capture/repeated_blocks.py)",
    "structure_memo": "the repeated-layer search computes each submodule's structure once, a parent's from its "
                      "children's; off: once per enclosing candidate (capture/repeated_layers.py)",
    "shared_subgraph_nodes": "capture reads each region's graph through one get_attr node per graph, shared by its "
                             "calls; off: one per call (capture/regions.py)",
    "shared_fake_memo": "a region's or subgraph's capture shares the fake-output memo of the capture around it "
                        "(capture/__init__.py)",
    "symbolic_regions": "regions take tensor operands with symbolic sizes too (aot_module(dynamic=True)'s repeated "
                        "layers), keyed by their size expressions; off: such a call is recorded inline "
                        "(capture/regions.py)",
    "region_buffer_writes": "a region may write its operands that need no gradient (a norm's running statistics in "
                            "training): it returns their new values and each call copies them in; off: such a "
                            "region is recorded inline (capture/regions.py, capture/repeated_layers.py, "
                            "capture/repeated_blocks.py)",
    "convolution_regions_inlined": "Inductor gets a graph whose regions hold convolutions with the regions inlined "
                                   "(flat); off: compiled around them, each region once (compilers/torchinductor.py)",
    "region_mode_exit": "a region's capture and partition run outside the enclosing capture's torch-function mode, "
                        "which would see each of their size reads (capture/regions.py)",
    "direct_region_calls": "the nop and eager compilers' graphs call each region's own code, not the invoke_subgraph "
                           "operator (compilers/boxed_code.py)",
    "direct_state_swap": "aot_module's program swaps the module's parameters and buffers for its inputs in the "
                         "dicts that hold them, not through torch.func.functional_call's attribute reads (api.py)",
    "regions_compiled_apart": "Inductor compiles each region graph once, on its own, and a graph calling regions runs "
                              "as Python code calling them; off: Inductor compiles the calling graph whole "
                              "(compilers/region_graphs.py)",
    "fused_between_regions": "with regions compiled apart, the calling graph's own ops between two region calls are "
                             "compiled as one graph each, and the calling graph runs as steps freeing each value at "
                             "its last read; off: its own ops run unfused, as Python code (compilers/region_steps.py)",
    "stretch_memo": "a stretch of a graph's own ops between region calls (fused_between_regions) made of the same ops "
                    "on inputs of the same layouts as an earlier stretch of that graph runs the earlier one's "
                    "compiled code (compilers/region_steps.py)",
    "cpp_wrapper_in_background": "a CUDA graph starts on Inductor's Python wrapper and moves to its C++ wrapper when "
                                 "a background build of it is ready (compilers/torchinductor.py)",
    "warm_upgrades": "a warm start whose entry was stored before its C++-wrapper builds were ready runs the stored "
                     "Python-wrapper graphs and builds the C++ ones in the background, then stores the entry "
                     "again (compilers/warm_upgrades.py)",
    "lowerings_imported_when_needed": "Inductor's decompositions that read its lowerings (max pooling's) import "
                                      "them when first called, not whenever the table is built "
                                      "(compilers/torchinductor.py)",
    "symbolic_int_inputs": "a SymInt input of a Dynamo graph is captured as the size of an empty tensor, kept "
                           "symbolic, instead of one compile per value (capture/symbolic_ints.py)",
    "symbolic_input_views": "an output that is a view of an input with symbolic sizes is rebuilt at the layout of "
                            "the graph's own output, one compile for every size, instead of one per size "
                            "(capture/symbols.py)",
    "symbol_inputs": "each symbol of a graph's input sizes that no SymInt input binds becomes one for Inductor, "
                     "so its FX graph cache guards on it; off: a guard Inductor adds on such a symbol is lost "
                     "(compilers/symbol_inputs.py)",
    "scatter_graphs_scalar": "Inductor compiles a CPU graph again without vectorized loops where its code adds at "
                             "computed positions (index_put with accumulate) inside a 2-D tile: its vector "
                             "add there counts the tile's position twice (compilers/tiled_adds.py)",
    "avg_pool_backward_aten": "Inductor gets average pooling backwards with ceil_mode and count_include_pad as a "
                              "call of ATen's kernel: its lowering divides by the whole kernel's size there "
                              "(compilers/avg_pool_backward.py)",
    "scatter_sources_apart": "Inductor gets the new values of a scatter that read the scattered tensor through a "
                             "copy of ours: written in place, its loop reads positions it already overwrote "
                             "(compilers/scatter_sources.py)",
    "as_strided_input_offsets": "before torch 2.13, Inductor gets an as_strided of an input that starts inside its "
                                "storage with the offset counted from the input's first element, as its code "
                                "addresses it (compilers/input_offsets.py)",
    "forward_outputs_kept_apart": "a forward output that Inductor's joint passes made the same tensor as another "
                                  "value (a clone removed as a no-op) gets a copy of its own again: a caller's "
                                  "write into it must not reach a value saved for the backward "
                                  "(compilers/torchinductor.py)",
    "versions_of_graph_writes": "inputs that the compiled forward writes itself (Inductor) have their version "
                                "counters bumped after it, as eager's in-place op bumps them: a tensor saved for a "
                                "backward and then written this way raises there as in eager, not a silent wrong "
                                "gradient (runtime/__init__.py)",
    "symbolic_aliasing_checked": "a graph Dynamo hands with symbolic sizes, compiled once for inputs apart, checks on "
                                 "each call that the inputs it writes share no memory with another input, and sends "
                                 "a call where they do to a compile for their common base (api.py)",
    "output_copies_kept": "Inductor gets a returned clone of a value that something else reads too as a copy of ours: "
                          "it drops clones as no-ops, and the returned tensor became memory inside another output "
                          "(torch.stack's) (compilers/output_copies.py)",
    "flat_arg_reductions": "Inductor gets argmax and argmin over a whole tensor as reductions of its flat view: "
                           "over a tensor computed from a transposed one it returns the index in memory order "
                           "(compilers/flat_arg_reductions.py)",
    "region_outputs_unaliased": "Inductor gets regions whose outputs that are inputs (or views of them, or returned "
                                "twice) are clones: it plans a subgraph's outputs as buffers of their own "
                                "(compilers/torchinductor.py)",
    "data_assignments": "`t.data = value` in a captured program swaps t's memory for value's as eager does (a "
                        "storage replacement outside grad mode, its version counter put back): the recorder saw no "
                        "op, and later reads of t read its old value (capture/data_assignment.py)",
    "builds_trace_unseen": "while a background C++-wrapper build runs, torch.compile'd functions called by the program "
                           "run as compiled though Inductor's pattern matcher has FX's process-wide flag \"symbolic "
                           "tracing under way\" set; they raised \"Detected that you are using FX to symbolically "
                           "trace a dynamo-optimized function\" (compilers/background_builds.py)",
    "builds_share_interpreter": "while a background C++-wrapper build runs, the interpreter switches threads every "
                                "0.2 ms, not 5: the program's thread, which lets go of it at each op, waits less to "
                                "take it back (compilers/background_builds.py)",
    "checkpoint_rng_replay": "Dynamo's tag_activation_checkpoint checkpoints with the RNG state preserved while "
                             "capturing, so a recompute draws the forward's numbers (torch_private/checkpoint.py)",
    "compiles_in_workers": "Inductor compiles a CUDA graph's forward in a worker process while the program's "
                           "process compiles its backward, and makes the background C++ builds there; a forward so "
                           "compiled keeps its saved values' traced strides (compilers/compile_workers.py). Off by "
                           "default: one GPU run of GPT-2 aborted at exit after its step, not checked since",
    "compiles_in_workers_on_cpu": "with compiles_in_workers on, CPU graphs too (off by default: for tests; a machine "
                                  "of few cores gains nothing) (compilers/compile_workers.py)",
    "warm_up_at_backend": "building a torch.compile backend starts its compiler's warm-up (Inductor's pool of "
                          "kernel-compiling processes, where Triton is installed) while Dynamo traces (backend.py)",
    "builds_when_hot": "a queued background C++-wrapper build starts only once its graph is hot: no compile for 5 "
                       "seconds, and called 8 times since, lately (compilers/background_builds.py)",
    "build_rng_untouched": "a background C++-wrapper build's Inductor compile neither saves and restores the "
                           "process's RNG states nor draws its autotuning inputs from them (compilers/build_rng.py)",
    "cpp_build_releases_lock": "a background C++-wrapper build lets go of the compile lock while its C++ compiler "
                               "runs, so a recompile the program waits on runs meanwhile "
                               "(compilers/background_builds.py)",
    "vec_isa_memo": "Inductor's probe of the CPU's vector ISAs is answered from a memo of an earlier process's "
                    "(compilers/vec_isa_memo.py)",
    "stored_cpp_builds": "an Inductor graph's disk cache entry carries the C++ libraries it loads (and the vector-ISA "
                         "memo), put back into Inductor's cache directory at a warm start (compilers/stored_builds.py)",
    "warm_load_torch_arguments_remembered": "a warm start computes torch's C++ include directories and libraries "
                                            "once, not once per library Inductor loads "
                                            "(compilers/stored_builds.py)",
    "warm_load_without_header_precompiles": "a graph loaded from the disk cache skips Inductor's header "
                                            "precompiling, run before it looks for a built library "
                                            "(compilers/stored_builds.py)",
    "bound_extern_kernels": "an Inductor graph's disk cache entry binds the extern kernels its wrapper calls "
                            "(torch.mm, ...) by their public names instead of importing Inductor's select_algorithm "
                            "(its lowering and kernel templates: 0.5 s of a warm start), and takes its _align helper from "
                            "torch._inductor.utils, not codegen.memory_planning (compilers/extern_kernel_bindings.py)",
    "runtime_asserts": "the compiled graphs check what torch assumed about values known only at run time "
                       "(torch._check on .item(), a meta function's n >= 0) and raise as eager does where it fails; "
                       "off: a call breaking an assumption is unchecked (capture/runtime_asserts.py)",
    "storage_resize_hook": "capture refuses UntypedStorage.resize_ by a hook on the class (capture/storage_changes.py)",
    "stack_room": "a compile (capture, partition, compile; a background build) runs above a frame that starts a "
                  "chunk of CPython's frame stack of its own, so its loops never call across a chunk boundary, "
                  "where CPython 3.11-3.13 maps and unmaps a chunk per call (stack_room.py)",
}

# Off unless ``AOTGRAPH_ENABLE`` names them. (``regions_compiled_apart`` was, until session 25:
# compiled apart, a deep model's compile is about that of one block at flat's peak memory, and
# the CPU step measured within 1 % of flat's at 12 layers on a quiet machine; on CUDA with the
# C++ wrapper Inductor compiled regions apart already; benchmarks/RESULTS.md, issue 23.)
# ``compiles_in_workers`` waits for a GPU run that shows its step is not slower (session 27: processes
# with it exit cleanly; one full ResNet-50 run with it stepped 7 % slower, one run each).
# ``trace_heap_frozen`` (session 30) saves a warm start's full collection during Dynamo's trace
# (gpt2_small on the CPU: 1.75 -> 1.66 s) but made a process that compiles thousands of small
# programs 40 % slower (tests/fuzz_semantics.py, 200 seeds: 15.6 s against 11.0 s): what was young
# when a compile began is older after it, and collected later.
OFF_BY_DEFAULT: frozenset = frozenset({"compiles_in_workers", "compiles_in_workers_on_cpu", "trace_heap_frozen"})


def _read_switches(variable: str, text: str) -> frozenset:
    names = frozenset(name.strip() for name in text.split(",") if name.strip())
    unknown = sorted(names - SWITCHES.keys())
    if unknown:
        raise ValueError(f"{variable} names unknown switches {unknown}; known: {sorted(SWITCHES)}")
    return names


def _read_disk_cache(text: str) -> str:
    if text not in ("0", "1", "all"):
        raise ValueError(f"AOTGRAPH_CACHE={text!r}: expected 0 (off), 1 (graphs) or all")
    return text


def _read_debug_level() -> int:
    level = os.environ.get("AOTGRAPH_DEBUG")
    if level is None:
        return 1 if os.environ.get("AOTGRAPH_LOG", "0") not in ("", "0") else 0
    return int(level)


recompile_limit: int = int(os.environ.get("AOTGRAPH_RECOMPILE_LIMIT", "8"))
debug_level: int = _read_debug_level()
progress: bool = os.environ.get("AOTGRAPH_PROGRESS", "1").strip() not in ("", "0")
disabled: frozenset = _read_switches("AOTGRAPH_DISABLE", os.environ.get("AOTGRAPH_DISABLE", ""))
opted_in: frozenset = _read_switches("AOTGRAPH_ENABLE", os.environ.get("AOTGRAPH_ENABLE", ""))
disk_cache: str = _read_disk_cache(os.environ.get("AOTGRAPH_CACHE", "1"))
cache_dir: Optional[str] = os.environ.get("AOTGRAPH_CACHE_DIR") or None
remote_cache: Optional[str] = os.environ.get("AOTGRAPH_REMOTE_CACHE") or None


def enabled(switch: str) -> bool:
    """Whether the memo, fast path or patch named `switch` (a key of `SWITCHES`) is on."""
    return switch not in disabled and (switch not in OFF_BY_DEFAULT or switch in opted_in)
