"""A compile worker's process (``python -m aotgraph.compilers.compile_worker``), started by
`compile_workers`: it warms up (torch, Inductor, its kernel-compiling pool, CUDA), says it is
ready, then answers jobs one at a time, in order, until its input closes.

A job is a graph with its example inputs (torch.fx's ``GraphPickler``), its role, our Inductor
options, the parent's Inductor settings, cache directories and aotgraph switches; the answer is
``("ok", (bytes, strides))``: what `torchinductor.stored_output_code` makes of the compiled graph
(None where it cannot be stored) and the output strides Inductor reported; or ``("error", text)``. Messages travel on the process's standard
input and a copy of its standard output; anything printed goes to standard error.
"""
from __future__ import annotations

import gc
import os
import pickle
import sys
import traceback


def _warm_up() -> None:
    import torch
    import torch._inductor.compile_fx  # noqa: F401 - Inductor's modules, imported once here

    from aotgraph.compilers import torchinductor

    if torch.cuda.is_available():
        torch.cuda.init()
        torch.cuda.get_device_properties(torch.cuda.current_device())
    torchinductor.wake_compile_workers(None)  # Inductor's kernel-compiling pool, where Triton is installed


def _compiled(message: dict):
    from torch._guards import TracingContext, tracing
    from torch._inductor import config
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx._graph_pickler import GraphPickler
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    from aotgraph import config as aot_config
    from aotgraph.compilers.torchinductor import compile_with_inductor, stored_output_code

    for name, value in message["environment"].items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    aot_config.disabled, aot_config.opted_in = message["switches"]
    fake_mode = FakeTensorMode(shape_env=ShapeEnv())
    graph_module, example_inputs = GraphPickler.loads(message["graph"], fake_mode)
    with config.patch(message["settings"]), tracing(TracingContext(fake_mode)):
        with TracingContext.report_output_strides() as reported:
            compiled = compile_with_inductor(graph_module, example_inputs, message["role"], message["options"])
    return stored_output_code(compiled), [None if s is None else tuple(int(x) for x in s) for s in reported or []]


def main() -> None:
    requests = sys.stdin.buffer
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # prints (Python's and the C++ compiler's) go to standard error
    sys.stdout = sys.stderr
    from aotgraph.compilers.compile_workers import _read, _write

    try:
        _warm_up()
    except Exception:
        traceback.print_exc()
    from aotgraph import config as aot_config

    if aot_config.enabled("gc_freeze"):
        # What warming up made (torch's and Inductor's modules) stays out of the collector's walks
        # for the worker's life; each compile's garbage is collected as usual (`pipeline.heap_frozen`).
        gc.freeze()
    _write(answers, pickle.dumps(("ready", os.getpid())))
    while True:
        request = _read(requests)
        if request is None:
            return
        try:
            answer = ("ok", _compiled(pickle.loads(request)))
        except BaseException as error:  # noqa: B036 - every failure is the parent's to handle
            answer = ("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()[-2000:]}")
        _write(answers, pickle.dumps(answer))


if __name__ == "__main__":
    main()
