"""Training steps on the GPU: eager vs torch.compile(backend="inductor") vs
torch.compile(backend=aotgraph.backend(compiler="inductor")), in one process.

Models: GPT-2 small (transformers GPT2LMHeadModel(GPT2Config()), random weights, dropout 0,
batch 8, sequence 512), ResNet-50 and ConvNeXt-T (torchvision, channels_last, batch 64,
224x224; ConvNeXt: depthwise 7x7 convolutions, LayerNorm over channels, GELU MLPs); SGD,
bf16 autocast. Per model and configuration: median step time (CUDA events, after warm-up),
peak memory over the timed steps, first-step time (compile included) and the AOT share of
compile time: for torch, the Dynamo compile_times() phases of metadata collection, joint
tracing and partitioning; for aotgraph, our CompileLog's capture + partition stages.
Inductor's on-disk caches are off and each configuration gets its own cache directory, so
every compiled configuration compiles from cold.

Warm starts (`--configs aotgraph_warm inductor_warm`): per model and system, two fresh
processes share one set of cache directories (aotgraph's ``AOTGRAPH_CACHE_DIR``, Inductor's
``TORCHINDUCTOR_CACHE_DIR`` with torch's FX graph cache and AOTAutograd cache on); the first
compiles cold, runs its first step and waits for aotgraph's background C++ builds (which
store the C++ graphs), the second times its first step from the caches, as a user who
restarts a run does. Reported: both first steps and warm/cold, ours and torch.compile's.
`aotmodule_warm` does the same with ``aotgraph.aot_module(model, "inductor", cache=True)``
(no Dynamo: the captured graph is the key, so it captures in the warm process too).

Run (repo root, after `pip install -e . --no-deps`):  python benchmarks/gpu_train.py
Warm starts of one model:   python benchmarks/gpu_train.py --models gpt2_small --configs inductor_warm aotgraph_warm
CPU smoke test with tiny models:                      python benchmarks/gpu_train.py --smoke
Writes $OUT/gpu_train.log (everything) and $OUT/gpu_train.json (default OUT=./out);
prints the table last.
"""
from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch._inductor.utils

import aotgraph

START = time.perf_counter()
CONFIGS = ("eager", "inductor", "aotgraph")
# aotgraph with another partition, for comparisons; aotgraph_lean: the min cut also recomputes
# values a backward matmul reads (save_matmul_inputs=False: less memory, more kernels).
# aotgraph_stock_reuse: Inductor judges buffer reuse by its own peak estimate (without our graphs' outputs).
# *_combo: compiled with Inductor's combo kernels (independent kernels launched as one).
# aotgraph_pywrapper: Inductor's Python wrapper (torch.compile's default), not aotgraph's C++ one on CUDA;
# inductor_cpp: torch.compile with Inductor's C++ wrapper.
# *_ro: mode="reduce-overhead" (CUDA graphs), torch.compile's and aotgraph's.
# inductor_room: torch.compile, every step run beneath `aotgraph.stack_room`'s frame (as our compile stages
# are): its compile then never calls across a chunk of CPython's frame stack, whatever the caller's depth.
# aotgraph_convapart: a convnet's repeated blocks compiled apart, each once, not inlined for Inductor
# (AOTGRAPH_DISABLE=convolution_regions_inlined; like aotgraph_stock_reuse it sets the process's
# switch: run it last, or alone).
EXTRA_CONFIGS = ("aotgraph_default", "aotgraph_mincut", "aotgraph_lean", "aotgraph_stock_reuse", "aotgraph_combo",
                 "inductor_combo", "aotgraph_pywrapper", "inductor_cpp", "inductor_ro", "aotgraph_ro", "inductor_room",
                 "aotmodule", "aotgraph_convapart")
# Warm starts, measured in fresh processes (see the module docstring), not in the timed rounds.
WARM_CONFIGS = ("aotgraph_warm", "inductor_warm", "aotmodule_warm")
# Inductor settings of the configurations that change them.
INDUCTOR_OPTIONS = {"combo": {"combo_kernels": True}, "cpp": {"cpp_wrapper": True},
                    "pywrapper": {"cpp_wrapper": False}}
# Dynamo compile_times() phases that make up torch's AOTAutograd work (names of torch 2.11-2.14).
TORCH_AOT_PHASES = ("aot_collect_metadata", "aot_trace_joint_graph", "min_cut_rematerialization_partition",
                    "default_partition")
TORCH_JOINT_PASSES = "_recursive_joint_graph_passes"  # Inductor's joint-graph passes, run inside torch's partitioner
OUR_AOT_STAGES = ("capture", "partition")


class Log:
    def __init__(self, path: str):
        self.file = open(path, "w")

    def __call__(self, *parts):
        line = " ".join(str(p) for p in parts)
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()


class LossOfLM(nn.Module):
    """GPT-2 returning only its LM loss, so logits are not a graph output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, ids):
        return self.model(input_ids=ids, labels=ids).loss


class LossOfClassifier(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images, labels):
        return F.cross_entropy(self.model(images), labels)


def gpt2(device: torch.device, smoke: bool, one_graph: bool = False):
    """(GPT-2 small's LM loss, its inputs, a description). transformers' GPT2LMHeadModel has no
    ``loss_type``: each call logs a warning (once) that Dynamo cannot trace, a graph break before the
    loss whose first trace of the model is thrown away. `one_graph`: name the loss (its default,
    ``ForCausalLM``), so that Dynamo traces the model and its loss as one graph."""
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        if not smoke:
            raise
        from aotgraph.models import gpt

        model, (ids, targets) = gpt(batch=2, seq=32)
        return model.to(device), (ids.to(device), targets.to(device)), "aotgraph.models.gpt (transformers missing)"
    sizes = dict(n_layer=2, n_embd=64, n_head=2, vocab_size=512, n_positions=64) if smoke else {}
    config = GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **sizes)
    batch, seq = (2, 32) if smoke else (8, 512)
    network = GPT2LMHeadModel(config)
    if one_graph:
        network.loss_type = "ForCausalLM"
    model = LossOfLM(network).to(device)
    ids = torch.randint(0, config.vocab_size, (batch, seq), device=device)
    return model, (ids,), (f"GPT2LMHeadModel({'tiny' if smoke else 'GPT2Config()'}) batch {batch} seq {seq}"
                         + (", loss_type named (one graph)" if one_graph else ""))


def classifier_step(network, batch: int, size: int, classes: int, device: torch.device) -> tuple:
    """(the loss of `network` on channels-last images, its inputs): random images and labels."""
    model = LossOfClassifier(network).to(device, memory_format=torch.channels_last)
    images = torch.randn(batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
    labels = torch.randint(0, classes, (batch,), device=device)
    return model, (images, labels)


def resnet50(device: torch.device, smoke: bool):
    try:
        import torchvision
    except ImportError:
        if not smoke:
            raise
        from aotgraph.models import resnet

        model, _ = resnet(blocks=2, width=8)
        network, batch, size, classes, what = model, 4, 32, 10, "aotgraph.models.resnet (torchvision missing)"
    else:
        batch, size = (4, 32) if smoke else (64, 224)
        network, classes = torchvision.models.resnet50(), 1000
        what = f"torchvision resnet50 channels_last batch {batch} {size}x{size}"
    return classifier_step(network, batch, size, classes, device) + (what,)


class ConvNeXtStyleBlock(torch.nn.Module):
    """The smoke run's stand-in for a ConvNeXt block (torchvision missing): depthwise 7x7
    convolution, LayerNorm over channels, GELU MLP, residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.depthwise = torch.nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.norm = torch.nn.LayerNorm(channels)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(channels, 4 * channels), torch.nn.GELU(),
                                       torch.nn.Linear(4 * channels, channels))

    def forward(self, x):
        y = self.norm(self.depthwise(x).permute(0, 2, 3, 1))
        return x + self.mlp(y).permute(0, 3, 1, 2)


def convnext(device: torch.device, smoke: bool):
    try:
        import torchvision
    except ImportError:
        if not smoke:
            raise
        network = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 4, stride=4), ConvNeXtStyleBlock(16),
                                      ConvNeXtStyleBlock(16), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                      torch.nn.Linear(16, 10))
        batch, size, classes, what = 4, 32, 10, "a ConvNeXt-style stand-in (torchvision missing)"
    else:
        batch, size = (4, 32) if smoke else (64, 224)
        network, classes = torchvision.models.convnext_tiny(), 1000
        what = f"torchvision convnext_tiny channels_last batch {batch} {size}x{size}"
    return classifier_step(network, batch, size, classes, device) + (what,)


MODELS = {"gpt2_small": gpt2, "resnet50": resnet50, "convnext_tiny": convnext}


def default_partition_name() -> str:
    """torch.compile's Inductor backend partitions by min cut; ours too once aotgraph has one."""
    import aotgraph.partition

    return "mincut" if hasattr(aotgraph.partition, "min_cut_rematerialization_partition") else "default"


def compile_model(model: nn.Module, config: str, partition: str):
    """(callable model, aotgraph backend or None)."""
    if config == "eager":
        return model, None
    if config in ("inductor", "inductor_room"):
        return torch.compile(model, backend="inductor", dynamic=False), None
    if config == "inductor_ro":
        return torch.compile(model, backend="inductor", dynamic=False, mode="reduce-overhead"), None
    if config.startswith("inductor_"):  # its own backend object: Dynamo does not reuse "inductor"'s graphs
        options = INDUCTOR_OPTIONS[config.split("_", 1)[1]]
        return torch.compile(model, backend="inductor", dynamic=False, options=options), None
    if config == "aotmodule":  # the functorch.compile drop-in, no Dynamo, on the disk cache
        partition_fn = aotgraph.min_cut_rematerialization_partition if partition == "mincut" else aotgraph.default_partition
        return aotgraph.aot_module(model, "inductor", partition_fn=partition_fn, cache=True), None
    if config in ("aotgraph_default", "aotgraph_mincut"):
        partition = config.split("_", 1)[1]
    if config == "aotgraph_stock_reuse":  # Inductor's own buffer-reuse judgement
        aotgraph.config.disabled = aotgraph.config.disabled | {"inductor_reuse_patch"}
    if config == "aotgraph_convapart":
        aotgraph.config.disabled = aotgraph.config.disabled | {"convolution_regions_inlined"}
    if config == "aotgraph_lean":
        partition = functools.partial(aotgraph.min_cut_rematerialization_partition, save_matmul_inputs=False)
    options = INDUCTOR_OPTIONS.get(config.split("_", 1)[1]) if "_" in config else None
    mode = "reduce-overhead" if config == "aotgraph_ro" else None
    backend = aotgraph.backend(compiler="inductor", partition=partition, options=options, mode=mode)
    return torch.compile(model, backend=backend, dynamic=False), backend


class Timer:
    """Milliseconds of one step: CUDA events on the GPU, wall clock on the CPU; ``host_ms``
    keeps the wall time the host took to issue each step (before waiting for the GPU)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def time(self, fn, host_ms: list) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            begin = time.perf_counter()
            fn()
            host_ms.append((time.perf_counter() - begin) * 1e3)
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        begin = time.perf_counter()
        fn()
        host_ms.append((time.perf_counter() - begin) * 1e3)
        return host_ms[-1]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def fresh_compile_state(cache_root: str, name: str) -> None:
    """Cold Inductor caches for the next configuration; the compiled code of earlier ones stays
    (they are timed later, interleaved), and Dynamo keeps each backend's entries apart."""
    torch._dynamo.utils.compilation_time_metrics.clear()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(cache_root, name)
    os.environ["TRITON_CACHE_DIR"] = os.path.join(cache_root, name, "triton")
    clear_in_memory_caches = getattr(torch._inductor.utils, "clear_caches", None)
    if clear_in_memory_caches is not None:
        clear_in_memory_caches()
    torch._inductor.config.fx_graph_cache = False
    if hasattr(torch._functorch.config, "enable_autograd_cache"):
        torch._functorch.config.enable_autograd_cache = False
    aotgraph.config.cache_dir = os.path.join(cache_root, name, "aotgraph")  # our disk cache, empty


def torch_compile_phases() -> dict[str, float]:
    return {name: sum(times) for name, times in torch._dynamo.utils.compilation_time_metrics.items()}


class Prepared:
    """One compiled configuration, first step and warm-up done, ready for interleaved timing."""

    def __init__(self, model_name, config, step, static_bytes, result, keep):
        self.model_name, self.config, self.step = model_name, config, step
        self.static_bytes, self.result, self.keep = static_bytes, result, keep
        self.step_ms: list[float] = []
        self.host_ms: list[float] = []


def prepare_config(model_name: str, config: str, args, device: torch.device, log: Log, cache_root: str) -> Prepared:
    """Compile `config` from cold (own Inductor cache directory), time its first step, warm up."""
    fresh_compile_state(cache_root, f"{model_name}_{config}")
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    reserved_before = torch.cuda.memory_reserved() if device.type == "cuda" else 0
    before = torch.cuda.memory_allocated() if device.type == "cuda" else 0
    step, losses, keep, what = training_step(model_name, config, args, device)
    backend = keep[1]
    static_bytes = (torch.cuda.memory_allocated() if device.type == "cuda" else 0) - before
    profile_to = os.path.join(os.environ.get("OUT", "./out"), f"profile_{model_name}_{config}.txt")
    if config == "inductor_room":  # torch.compile's compile beneath the frame-stack room our stages get
        from aotgraph.stack_room import call_with_stack_room

        step = functools.partial(call_with_stack_room, step)
    first_step_s, cpp_ready_s = first_step(step, device, wait=not args.first_step_only,
                                           profile_to=profile_to if args.profile else None)
    for _ in range(0 if args.first_step_only else args.warmup):
        step()
    synchronize(device)
    result = dict(model=model_name, config=config, what=what, first_step_s=first_step_s, losses=losses,
                  cpp_ready_s=cpp_ready_s)
    if device.type == "cuda" and not args.first_step_only:
        # Memory reserved from the driver for this configuration, CUDA graph pools included:
        # the peak over two steps, above what was reserved before it was built. Comparable
        # between configurations only one process each: cudagraph trees share a process's pool.
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(2):
            step()
        synchronize(device)
        result["peak_reserved_gib"] = (torch.cuda.max_memory_reserved() - reserved_before) / 2**30
    phases = torch_compile_phases()
    result["dynamo_compile_times"] = phases
    if config.startswith("inductor"):
        result["aot_s"] = sum(phases.get(name, 0.0) for name in TORCH_AOT_PHASES)
        result["aot_detail"] = {name: phases[name] for name in (*TORCH_AOT_PHASES, TORCH_JOINT_PASSES) if name in phases}
        result["backend_compile_s"] = phases.get("OutputGraph.call_user_compiler")
    elif config.startswith("aotgraph"):
        entries = backend.entries
        result["aot_s"] = sum(entry.log.seconds(stage) for entry in entries for stage in OUR_AOT_STAGES)
        result["aot_detail"] = {stage: sum(entry.log.seconds(stage) for entry in entries)
                                for stage in ("capture", "joint passes", "partition", "compile")}
        result["backend_compile_s"] = phases.get("OutputGraph.call_user_compiler")
        named = config.split("_", 1)[1] if config in ("aotgraph_default", "aotgraph_mincut", "aotgraph_lean") else None
        result["partition"] = named or args.partition or "mincut"
        result["graphs"] = len(entries)
        result["saved_bytes"] = sum(entry.partition.saved_bytes for entry in entries)
        for k, entry in enumerate(entries):
            log(f"  aotgraph entry {k}: {len(entry.joint.graph_module.graph.nodes)} joint nodes, "
                f"{entry.partition.saved_bytes / 2**20:.1f} MiB saved\n" + entry.log.format())
    log(f"  first step {first_step_s:.1f} s; dynamo compile_times:", json.dumps({k: round(v, 4) for k, v in phases.items()}))
    return Prepared(model_name, config, step, static_bytes, result, keep=keep)


def training_step(model_name: str, config: str, args, device: torch.device):
    """(step, losses, objects to keep alive (compiled model and backend first), what):
    `step()` runs one SGD step of `config` under bf16 autocast, appending its loss to `losses`."""
    torch.manual_seed(0)
    model, inputs, what = MODELS[model_name](device, args.smoke)
    synchronize(device)
    compiled, backend = compile_model(model, config, args.partition)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    step, losses = sgd_step(compiled, inputs, optimizer, device)
    return step, losses, (compiled, backend, model, optimizer, inputs), what


def sgd_step(run, inputs: tuple, optimizer, device: torch.device):
    """(step, losses): `step()` runs one SGD step of ``run(*inputs)`` under bf16 autocast and
    appends its loss to `losses`."""
    losses = []

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = run(*inputs)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach().clone())  # a CUDA graph's next replay overwrites its outputs

    return step, losses


def first_step(step, device: torch.device, wait: bool = True,
               profile_to: Optional[str] = None) -> tuple[float, float]:
    """Seconds of the first step (compiles included), and until aotgraph's background C++
    builds are ready: the steps run on Inductor's Python wrapper meanwhile; waiting makes the
    timed steps run what a long run runs, and stores the C++ builds in the disk cache.
    `wait` False: no waiting (the second figure is then the first's). `profile_to`: a path
    for the first step's cProfile (`write_profile`)."""
    from aotgraph.compilers.background_builds import wait_for_background_builds

    synchronize(device)
    profiler = cProfile.Profile() if profile_to else None
    begin = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    step()
    synchronize(device)
    first_step_s = time.perf_counter() - begin
    if profiler is not None:
        profiler.disable()
        write_profile(profiler, profile_to)
    if wait:
        wait_for_background_builds()
    return first_step_s, time.perf_counter() - begin


def write_profile(profiler: "cProfile.Profile", path: str) -> None:
    """The first step's profile (this thread only) as text: the top functions by cumulative
    and by own time; the raw statistics beside it (``<path>.prof``, for pstats' callers and callees)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    profiler.dump_stats(path + ".prof")
    with open(path, "w") as f:
        stats = pstats.Stats(profiler, stream=f)
        stats.sort_stats("cumulative").print_stats(150)
        stats.sort_stats("tottime").print_stats(60)



FIRST_STEP_CHILD = "--first-step-child"


def first_step_child(model_name: str, system: str, args) -> None:
    """One fresh process of a warm-start pair: the first step of `system` ("aotgraph", "aotmodule" or
    "inductor") on the caches the environment names, as JSON on stdout's last line."""
    from aotgraph.cache.disk import DiskCache

    device = torch.device("cpu" if args.smoke else "cuda")
    before = DiskCache().stats()  # the counters are the directory's, shared with the cold process
    step, losses, keep, what = training_step(model_name, system, args, device)
    first_step_s, cpp_ready_s = first_step(step, device)
    result = dict(first_step_s=first_step_s, cpp_ready_s=cpp_ready_s, loss=float(losses[0]), what=what)
    backend = keep[1]
    if system.startswith("aot"):
        stats = DiskCache().stats()
        result.update(disk_hits=stats.hits - before.hits, disk_misses=stats.misses - before.misses,
                      disk_entries=stats.entries)
    if backend is not None:
        result.update(graphs=len(backend.entries), wrappers=sorted(
                          {str(getattr(graph, "aotgraph_wrapper", "python")) for entry in backend.entries
                           for graph in (entry.compiled.forward, entry.compiled.backward) if graph is not None}),
                      loads=[[r.detail for r in entry.log.records if r.stage == "cache load"]
                             for entry in backend.entries],
                      misses=[entry.disk_miss for entry in backend.entries if entry.disk_miss],
                      entry_logs=[entry.log.format() for entry in backend.entries])
    result["dynamo_compile_times"] = {k: round(v, 3) for k, v in torch_compile_phases().items()}
    print(json.dumps(result), flush=True)


def warm_start(model_name: str, config: str, args, log: Log, cache_root: str) -> dict:
    """A cold and then a warm fresh process of `config`'s system sharing one set of cache
    directories (see the module docstring); the result row of both first steps."""
    system = config.removesuffix("_warm")
    root = os.path.join(cache_root, f"{model_name}_{config}")
    env = dict(os.environ, AOTGRAPH_CACHE_DIR=os.path.join(root, "aotgraph"),
               TORCHINDUCTOR_CACHE_DIR=os.path.join(root, "inductor"),
               TRITON_CACHE_DIR=os.path.join(root, "inductor", "triton"),
               TORCHINDUCTOR_FX_GRAPH_CACHE="1", TORCHINDUCTOR_AUTOGRAD_CACHE="1", AOTGRAPH_PROGRESS="0",
               PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(aotgraph.__file__)),
                                           os.environ.get("PYTHONPATH", "")]))  # this process's aotgraph
    command = [sys.executable, os.path.abspath(__file__), FIRST_STEP_CHILD, model_name, system,
               "--partition", args.partition] + (["--smoke"] if args.smoke else [])
    runs = {}
    for phase in ("cold", "warm"):
        left = max(60.0, args.budget_s + 90.0 - (time.perf_counter() - START))
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=left)
        if done.returncode != 0:
            log(done.stdout[-3000:], done.stderr[-3000:])
            raise RuntimeError(f"the {phase} process exited with {done.returncode}")
        runs[phase] = json.loads(done.stdout.strip().splitlines()[-1])
        log(f"  {phase}: {json.dumps(runs[phase])}")
    cold, warm = runs["cold"], runs["warm"]
    return dict(model=model_name, config=config, what=cold["what"], cold_first_step_s=cold["first_step_s"],
                warm_first_step_s=warm["first_step_s"], warm_over_cold=warm["first_step_s"] / cold["first_step_s"],
                cold=cold, warm=warm)


def format_warm_table(rows: list[dict]) -> str:
    lines = [f"{'model':<11} {'config':<14} {'cold first s':>12} {'warm first s':>12} {'warm/cold':>9} "
             f"{'warm vs torch warm':>18}  aotgraph warm process (disk hits, misses, graphs, wrappers)"]
    torch_warm = {r["model"]: r["warm_first_step_s"] for r in rows if r["config"] == "inductor_warm" and "error" not in r}
    for r in rows:
        if "error" in r:
            lines.append(f"{r['model']:<11} {r['config']:<14} {r['error']}")
            continue
        versus = (f"{r['warm_first_step_s'] / torch_warm[r['model']]:.3f}x"
                  if r["config"] != "inductor_warm" and r["model"] in torch_warm else "-")
        warm = r["warm"]
        detail = (f"{warm['disk_hits']} hits, {warm['disk_misses']} misses" if "disk_hits" in warm else "")
        if "graphs" in warm:
            detail += f" of {warm['graphs']} graphs, {warm['wrappers']}"
        lines.append(f"{r['model']:<11} {r['config']:<14} {r['cold_first_step_s']:12.1f} {r['warm_first_step_s']:12.2f} "
                     f"{r['warm_over_cold']:9.3f} {versus:>18}  {detail}")
    return "\n".join(lines)


def measure(prepared: list[Prepared], args, device: torch.device, log: Log) -> list[dict]:
    """Step times in interleaved rounds (each round times every configuration in turn, so a
    slow phase of the host hits all of them alike), then each one's peak memory over two more
    steps: max allocated above what was allocated before them, plus its own model and inputs."""
    timer = Timer(device)
    for _ in range(args.rounds):
        for p in prepared:
            p.step_ms += [timer.time(p.step, p.host_ms) for _ in range(args.steps)]
    results = []
    for p in prepared:
        peak_gib = None
        if device.type == "cuda":
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            for _ in range(2):
                p.step()
            torch.cuda.synchronize()
            peak_gib = (torch.cuda.max_memory_allocated() - base + p.static_bytes) / 2**30
            p.result.update(kernels_per_step(p.step))
        result = dict(p.result, median_step_ms=statistics.median(p.step_ms), step_ms=p.step_ms,
                      p10_step_ms=statistics.quantiles(p.step_ms, n=10)[0] if len(p.step_ms) > 1 else p.step_ms[0],
                      median_host_ms=statistics.median(p.host_ms), peak_gib=peak_gib,
                      losses=[float(l) for l in p.result["losses"]])
        log(json.dumps({k: v for k, v in result.items() if k not in ("dynamo_compile_times", "step_ms", "losses")},
                       default=str))
        results.append(result)
    return results


def kernels_per_step(step, steps: int = 2) -> dict:
    """GPU kernels launched and their total GPU time per step (torch.profiler)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    gpu_us = sum(getattr(e, "device_time_total", 0) or getattr(e, "cuda_time_total", 0) for e in kernels)
    return dict(kernels_per_step=len(kernels) / steps, gpu_ms_per_step=gpu_us / steps / 1e3)


def _baseline_config(config: str) -> str:
    """The torch.compile configuration an aotgraph configuration is compared with."""
    return "inductor_ro" if config == "aotgraph_ro" else "inductor"


def format_table(results: list[dict]) -> str:
    header = (f"{'model':<11} {'config':<16} {'step ms':>8} {'host ms':>8} {'GPU ms':>7} {'kernels':>7} {'peak GiB':>9} "
              f"{'rsrvd GiB':>9} {'first s':>8} {'AOT s':>7} "
              f"{'loss[0]':>9}  vs torch.compile (step, peak, reserved, first step, AOT)")
    lines = [header, "-" * len(header)]
    torch_of = {(r["model"], r["config"]): r for r in results if r["config"].startswith("inductor") and "error" not in r}

    def ratio(a, b):
        return a / b if a and b else float("nan")

    for r in results:
        if "error" in r:
            lines.append(f"{r['model']:<11} {r['config']:<16} {r['error']}")
            continue
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
        reserved = f"{r['peak_reserved_gib']:.2f}" if r.get("peak_reserved_gib") is not None else "-"
        aot = f"{r['aot_s']:.2f}" if "aot_s" in r else "-"
        ratios = ""
        base = torch_of.get((r["model"], _baseline_config(r["config"])))
        if base is not None and r["config"].startswith("aotgraph"):
            ratios = (f"  {r['median_step_ms'] / base['median_step_ms']:.3f}x, {ratio(r['peak_gib'], base['peak_gib']):.3f}x, "
                      f"{ratio(r.get('peak_reserved_gib'), base.get('peak_reserved_gib')):.3f}x, "
                      f"{ratio(r['first_step_s'], base['first_step_s']):.3f}x, {ratio(r.get('aot_s'), base.get('aot_s')):.3f}x")
        gpu = f"{r['gpu_ms_per_step']:7.2f} {r['kernels_per_step']:7.0f}" if "gpu_ms_per_step" in r else f"{'-':>7} {'-':>7}"
        lines.append(f"{r['model']:<11} {r['config']:<16} {r['median_step_ms']:8.2f} {r['median_host_ms']:8.2f} {gpu} {peak:>9} "
                     f"{reserved:>9} {r['first_step_s']:8.1f} {aot:>7} {r['losses'][0]:9.4f}{ratios}")
    lines.append("step time, ours / torch.compile, robust to the host's slow phases: 10th percentile of steps; "
                 "median of the per-round ratios")
    for r in results:
        base = torch_of.get((r["model"], _baseline_config(r["config"])))
        if base is None or "error" in r or not r["config"].startswith("aotgraph") or "step_ms" not in r:
            continue
        per_round = _per_round_ratios(r["step_ms"], base["step_ms"], r.get("steps_per_round", 1))
        lines.append(f"  {r['model']:<11} {r['config']:<16} p10 {r['p10_step_ms'] / base['p10_step_ms']:.3f}x, "
                     f"per-round {statistics.median(per_round):.3f}x (range {min(per_round):.2f}-{max(per_round):.2f})")
    return "\n".join(lines)


def _per_round_ratios(ours: list, theirs: list, steps: int) -> list:
    """Ratio of the two configurations' median step in each interleaved round."""
    return [statistics.median(ours[i:i + steps]) / statistics.median(theirs[i:i + steps])
            for i in range(0, min(len(ours), len(theirs)), steps)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU, to test this script")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS),
                        choices=list(CONFIGS + EXTRA_CONFIGS + WARM_CONFIGS))
    parser.add_argument("--warmup", type=int, default=None, help="steps after the first, before timing")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per configuration and round")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds")
    parser.add_argument("--partition", choices=("default", "mincut"), default=None,
                        help="aotgraph's partition (default: mincut when aotgraph has it)")
    parser.add_argument("--first-step-only", action="store_true",
                        help="only the first step (compile phases of the foreground alone): no waiting for "
                             "aotgraph's C++ builds, no warm-up or timed steps")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the first step (main thread); top functions to $OUT/profile_<model>_<config>.txt")
    parser.add_argument("--budget-s", type=float, default=450.0, help="start no configuration after this many seconds")
    child = sys.argv[1:3] if len(sys.argv) > 3 and sys.argv[1] == FIRST_STEP_CHILD else None
    args = parser.parse_args(sys.argv[4:] if child else None)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 5)
    args.steps = args.steps if args.steps is not None else (3 if args.smoke else 5)
    args.rounds = args.rounds if args.rounds is not None else (2 if args.smoke else 6)
    args.partition = args.partition or default_partition_name()
    if child:
        first_step_child(sys.argv[2], sys.argv[3], args)
        return 0
    device = torch.device("cpu" if args.smoke else "cuda")

    out_dir = os.environ.get("OUT", "./out")
    os.makedirs(out_dir, exist_ok=True)
    log = Log(os.path.join(out_dir, "gpu_train.log"))
    cache_root = tempfile.mkdtemp(prefix="aotgraph_gpu_train_")
    card = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    versions = {"torch": torch.__version__, "card": card}
    for package in ("transformers", "torchvision"):
        try:
            versions[package] = __import__(package).__version__
        except ImportError:
            versions[package] = None
    log("gpu_train:", json.dumps(versions), f"warmup {args.warmup} steps, timed {args.steps} steps, "
        f"in {args.rounds} interleaved rounds, aotgraph partition {args.partition}")

    results, warm_rows = [], []
    for model_name in args.models:
        prepared = []
        for config in args.configs:
            if time.perf_counter() - START > args.budget_s:
                results.append(dict(model=model_name, config=config, error=f"skipped: past --budget-s {args.budget_s:.0f}"))
                log(f"== {model_name} {config}: skipped (time budget)")
                continue
            log(f"== {model_name} {config}  (t={time.perf_counter() - START:.0f} s)")
            try:
                if config in WARM_CONFIGS:
                    warm_rows.append(warm_start(model_name, config, args, log, cache_root))
                else:
                    prepared.append(prepare_config(model_name, config, args, device, log, cache_root))
            except Exception as error:
                log(traceback.format_exc())
                message = f"{type(error).__name__}: {error}".splitlines()[0][:160]
                (warm_rows if config in WARM_CONFIGS else results).append(
                    dict(model=model_name, config=config, error=f"FAILED {message}"))
        if prepared and args.first_step_only:
            results += [dict(p.result, median_step_ms=float("nan"), median_host_ms=float("nan"), peak_gib=None,
                             losses=[float(l) for l in p.result["losses"]]) for p in prepared]
        elif prepared:
            log(f"== {model_name}: {args.rounds} interleaved rounds of {args.steps} steps  "
                f"(t={time.perf_counter() - START:.0f} s)")
            results += [dict(r, steps_per_round=args.steps) for r in measure(prepared, args, device, log)]
        del prepared
        torch._dynamo.reset()  # drop this model's compiled graphs before the next model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()

    with open(os.path.join(out_dir, "gpu_train.json"), "w") as f:
        json.dump(dict(versions=versions, results=results, warm_starts=warm_rows), f, indent=1, default=str)
    log(f"\ntotal {time.perf_counter() - START:.0f} s; {json.dumps(versions)}")
    if results:
        log(format_table(results))
    if warm_rows:
        log(format_warm_table(warm_rows))
    return 0 if all("error" not in r for r in results + warm_rows) else 1


if __name__ == "__main__":
    sys.exit(main())
