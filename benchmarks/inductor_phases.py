"""Where Inductor's compile time goes, ours vs torch.compile's, on the same model: a ResNet-50
(Bottleneck blocks 3/4/6/3, batch norm, channels-last; written here, no torchvision needed) on
the CPU, first forward and backward through ``torch.compile(model)`` and through
``torch.compile(model, backend=aotgraph.backend(compiler="inductor"))``, each system in a fresh
process with an Inductor cache directory of its own (cold) and aotgraph's disk cache off.

Per system: the first step (wall seconds), Dynamo's timers of Inductor's phases
(``torch._dynamo.utils.compilation_time_metrics``: ``compile_fx_inner``, its fake-tensor
propagation, post-grad passes, lowering, scheduling and code generation), and the nodes of each
graph Inductor lowered (forward, backward). Ratios ours / torch. The graphs Inductor gets from the
two systems differ in what the partition saves and what the backward recomputes: more backward
nodes cost every phase (session 21: a plan recomputing 32 batch norms' statistics in the backward).
Last, the step's system seconds and minor page faults: Python code calling across a chunk boundary of
CPython's frame stack maps a chunk per call (see ``aotgraph.stack_room``), which shows there. Whether a
compile crosses one depends on how deep it runs, so torch.compile runs twice: as called here
(``torch``) and beneath the same room as our stages (``torch_room``, its best case).

    PYTHONPATH=src python benchmarks/inductor_phases.py [--repeats 2] [--size 64] [--batch 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

PHASES = ("compile_fx_inner", "additional_fake_tensor_prop", "_recursive_post_grad_passes", "GraphLowering.run",
          "Scheduler.__init__", "Scheduler.codegen", "GraphLowering.codegen", "async_compile.wait")


def resnet50():
    import torch.nn as nn
    import torch.nn.functional as F

    class Bottleneck(nn.Module):
        def __init__(self, cin: int, mid: int, stride: int):
            super().__init__()
            cout = mid * 4
            self.c1, self.b1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
            self.c2, self.b2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid)
            self.c3, self.b3 = nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)
            self.down = None if stride == 1 and cin == cout else nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = F.relu(self.b1(self.c1(x)))
            y = F.relu(self.b2(self.c2(y)))
            y = self.b3(self.c3(y))
            return F.relu(y + (x if self.down is None else self.down(x)))

    class ResNet50(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                      nn.MaxPool2d(3, 2, 1))
            blocks, cin = [], 64
            for stage, (count, mid) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
                for k in range(count):
                    blocks.append(Bottleneck(cin, mid, 2 if k == 0 and stage > 0 else 1))
                    cin = mid * 4
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(cin, 1000)

        def forward(self, x, labels):
            return F.cross_entropy(self.fc(self.blocks(self.stem(x)).mean((2, 3))), labels)

    return ResNet50()


def child(system: str, batch: int, size: int) -> None:
    import torch
    import torch._inductor.graph as inductor_graph

    torch.set_num_threads(2)
    nodes: list[int] = []
    lowering_run = inductor_graph.GraphLowering.run

    def counted_run(self, *args, **kwargs):
        nodes.append(len(self.module.graph.nodes))
        return lowering_run(self, *args, **kwargs)

    inductor_graph.GraphLowering.run = counted_run
    torch.manual_seed(0)
    model = resnet50().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,))
    if system in ("torch", "torch_room"):
        compiled = torch.compile(model)
    else:
        import aotgraph

        aotgraph.config.disk_cache = "0"
        compiled = torch.compile(model, backend=aotgraph.backend(compiler="inductor"))
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    if system == "torch_room":  # torch's compile beneath the room aotgraph's stages get: no chunk crossing
        from aotgraph.stack_room import call_with_stack_room

        call_with_stack_room(lambda: compiled(x, labels).backward())
    else:
        compiled(x, labels).backward()
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    # System time and page faults: a loop calling across a frame-stack chunk boundary (aotgraph.stack_room)
    # maps a chunk per call; tens of thousands of faults in a phase are its mark.
    kernel = {"system_seconds": after.ru_stime - usage.ru_stime, "minor_faults": after.ru_minflt - usage.ru_minflt}
    from torch._dynamo.utils import compilation_time_metrics

    phases = {name: sum(compilation_time_metrics.get(name, [0.0])) for name in PHASES}
    print(json.dumps({"first_step": seconds, "nodes": nodes, **phases, **kernel}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2, help="fresh processes per system, alternating")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.batch, args.size)
        return
    runs: dict[str, list[dict]] = {"torch": [], "torch_room": [], "ours": []}
    for _ in range(args.repeats):
        for system in runs:
            env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=tempfile.mkdtemp(prefix="inductor_phases_"),
                       TORCHINDUCTOR_FX_GRAPH_CACHE="0", TORCHINDUCTOR_AUTOGRAD_CACHE="0")
            out = subprocess.run([sys.executable, __file__, "--child", system, "--batch", str(args.batch),
                                  "--size", str(args.size)], env=env, capture_output=True, text=True, check=True)
            runs[system].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"ResNet-50 (batch {args.batch}, {args.size}x{args.size}, channels-last), CPU, Inductor; "
          f"medians of {args.repeats} fresh processes per system, seconds")
    print(f"{'':30} {'torch':>10} {'torch_room':>10} {'ours':>10} {'ours/torch':>10} {'ours/torch_room':>15}")
    for name in ("first_step", *PHASES, "system_seconds", "minor_faults"):
        torch_s, room_s, ours_s = (statistics.median(r[name] for r in runs[system]) for system in runs)
        ratios = [ours_s / base if base else float("nan") for base in (torch_s, room_s)]
        print(f"{name:30} {torch_s:10.2f} {room_s:10.2f} {ours_s:10.2f} {ratios[0]:10.3f} {ratios[1]:15.3f}")
    for system in runs:
        print(f"graph nodes ({system}, forward/backward):", runs[system][0]["nodes"])


if __name__ == "__main__":
    main()
