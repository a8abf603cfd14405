"""Inductor compiles in worker processes, beside each other and beside the program.

Inductor's compile of a graph is Python work that holds the interpreter: in one process a
forward's compile, its backward's, and those of a graph's regions and of the stretches between
them run one after another. Here a compile is a job for a worker process
(``python -m aotgraph.compilers.compile_worker``, started with ``subprocess``: no re-import of
the program's main module), which compiles it beside this process:

- `start` launches the workers (`worker_count` of them: one by default) once per process; a
  torch.compile backend starts them when it is built, so that they import torch and Inductor
  and start their own kernel-compiling pools while Dynamo traces.
- A forward goes to a worker, waiting there for it if it is still starting or busy, and its
  backward compiles here meanwhile; an inference graph goes only to a worker idle now (else it
  compiles here, at once: this process waits for it anyway).
- `submitted` sends one graph (pickled with torch.fx's ``GraphPickler``: nodes, fake tensors,
  ops by name) with its role, our Inductor options, the process's Inductor settings and
  aotgraph's switches, and returns a `PendingCode` at once. The worker compiles it with the
  Python wrapper (`torchinductor.compile_with_inductor`) and sends back the bytes a disk cache
  entry would hold (`torchinductor.stored_output_code`), which this process loads when the
  graph is first called (or an attribute of its code is read), as a warm start loads an entry.
- A forward compiled so keeps the traced strides of every output, saved values included
  (Inductor would otherwise pick their layouts and report them to the backward's compile):
  its backward is compiled with the traced strides, at the same time, not after it.
- Where a graph cannot go (symbolic sizes, CUDA graphs, ops of another namespace than aten
  and prims, a graph the pickler refuses, no worker running) `submitted` answers None and
  the caller compiles it here. A job that fails in its worker, or a worker that dies, is
  compiled here when it is first needed, with a warning that says why.

At exit (`_stop`, ahead of atexit's handlers) the workers stop, this process's threads of
theirs are joined, and a background build whose worker stopped is dropped (`WorkersStopped`),
not compiled here on a thread the exiting interpreter would kill inside Inductor (what aborted
one GPT-2 run on an H100).

Switches (both off by default): ``compiles_in_workers`` (graphs on CUDA devices; off until a GPU
run confirms that a process using it exits cleanly); ``compiles_in_workers_on_cpu`` (CPU graphs
too, for tests; a 2-core machine gains nothing).
"""
from __future__ import annotations

import atexit
import functools
import itertools
import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from typing import Callable, Optional

import torch
import torch.fx as fx

from .. import config as aot_config
from ..graph.sizes import has_symbolic_sizes

__all__ = ["start", "shutdown", "stopping", "WorkersStopped", "wait_until_ready", "submitted", "built_in_worker",
           "PendingCode", "LayoutPromise", "worker_count", "outstanding", "after_outstanding", "IN_WORKER"]

logger = logging.getLogger("aotgraph")

IN_WORKER = os.environ.get("AOTGRAPH_IN_COMPILE_WORKER") == "1"
_SHIPPED_NAMESPACES = frozenset({"aten", "prims"})

# Jobs by priority: a compile the program waits on (FOREGROUND) before a background C++ build (BUILD).
FOREGROUND, BUILD = 0, 1
_jobs: "queue.PriorityQueue" = queue.PriorityQueue()
_job_numbers = itertools.count()
_workers: list = []
_state = threading.Condition()
_outstanding = 0  # jobs submitted and not yet answered
_busy = 0  # workers compiling a job
_started = False


def worker_count() -> int:
    """How many workers a process starts: ``AOTGRAPH_COMPILE_WORKERS`` where set, else one.

    One worker beside this process compiles a forward and its backward at once; each compile
    has all of the machine's cores for its kernels (Inductor's pool of compiling processes).
    On the H100 (16 cores), four workers of four kernel-compiling processes each made GPT-2's
    and ResNet-50's first steps slower than no worker: each compile waited on its kernels, and
    their start took the cores Dynamo's trace runs on (benchmarks/RESULTS.md)."""
    asked = os.environ.get("AOTGRAPH_COMPILE_WORKERS")
    return max(1, int(asked)) if asked else 1


def _wanted_on(devices: set) -> bool:
    if IN_WORKER or not aot_config.enabled("compiles_in_workers"):
        return False
    return bool(devices) or aot_config.enabled("compiles_in_workers_on_cpu")


def start(on_cuda: Optional[bool] = None) -> None:
    """Launch the workers now, once per process, where graphs would be sent to them: on a
    machine with a CUDA device (`on_cuda` None: ask torch), or on any with the CPU switch on."""
    global _started
    if _started or not _wanted_on({"cuda"} if (torch.cuda.is_available() if on_cuda is None else on_cuda) else set()):
        return
    with _state:
        if _started:
            return
        _started = True
        for index in range(worker_count()):
            _workers.append(_Worker(index))
    # Stop them while the interpreter is whole: before atexit's handlers (Inductor's pools) run
    # and before daemon threads die where they stand.
    register = getattr(threading, "_register_atexit", None)
    try:
        register(_stop) if register is not None else atexit.register(_stop)
    except RuntimeError:  # already shutting down
        atexit.register(_stop)


def wait_until_ready(timeout_s: float = 120.0) -> bool:
    """Start the workers (where wanted) and wait until each of them is ready or has stopped;
    whether one is ready."""
    start()
    deadline = time.monotonic() + timeout_s
    while not _workers or not all(worker.ready or not worker.alive for worker in _workers):
        if time.monotonic() > deadline or not _workers:
            return _ready()
        time.sleep(0.05)
    return _ready()


def _ready() -> bool:
    return any(worker.ready and worker.alive for worker in _workers)


def _alive() -> bool:
    return any(worker.alive for worker in _workers)


def _idle() -> bool:
    """Whether a ready worker has no job (no job waits for one either)."""
    with _state:
        return _busy + _jobs.qsize() < sum(worker.ready and worker.alive for worker in _workers)


def outstanding() -> int:
    """Jobs sent to the workers and not yet answered."""
    with _state:
        return _outstanding


def after_outstanding(callback: Callable[[], None]) -> None:
    """Call `callback()` on a thread of its own once every job submitted so far is answered
    (at once, here, where none is outstanding)."""
    with _state:
        if _outstanding == 0:
            waiting = None
        else:
            waiting = [job.future for job in list(_in_flight)]
    if waiting is None:
        callback()
        return

    def wait_then_call():
        for future in waiting:
            try:
                future.exception()
            except Exception:  # cancelled: nothing to wait for
                pass
        callback()

    thread = threading.Thread(target=wait_then_call, name="aotgraph-after-compiles", daemon=True)
    _waiters[:] = [waiter for waiter in _waiters if waiter.is_alive()] + [thread]
    thread.start()


_waiters: list = []  # threads of `after_outstanding`, joined at exit


_in_flight: set = set()


class _Job:
    def __init__(self, message: bytes, priority: int):
        self.message, self.priority, self.number = message, priority, next(_job_numbers)
        self.future: Future = Future()

    def __lt__(self, other: "_Job") -> bool:
        return (self.priority, self.number) < (other.priority, other.number)


def _queued(message: bytes, priority: int) -> _Job:
    global _outstanding
    job = _Job(message, priority)
    with _state:
        _outstanding += 1
        _in_flight.add(job)
    job.future.add_done_callback(lambda _: _answered(job))
    _jobs.put(job)
    return job


def submitted(graph_module: fx.GraphModule, example_inputs: list, role, options: dict, devices: set,
              compile_here: Callable[[object], tuple]) -> Optional["PendingCode"]:
    """A `PendingCode` for `graph_module` compiled by a worker with the Python wrapper, or None
    where it is compiled here instead (see the module docstring). `compile_here(role)` compiles it
    in this process for `role` (a forward's: with every output's traced strides kept) and returns
    ``(code, the output strides Inductor reported)``, where the worker fails."""
    if role.kind == "backward":  # compiled here, while its forward compiles in a worker
        return None
    if not _sendable(graph_module, example_inputs, options, devices, waiting=role.kind == "forward"):
        return None
    promise = LayoutPromise.of(graph_module, role)
    role = promise.role
    message = _message_or_none(graph_module, example_inputs, role, options, cpp_wrapper=False)
    if message is None:
        return None
    job = _queued(message, FOREGROUND)
    return PendingCode(job.future, role, lambda: compile_here(role), promise)


def built_in_worker(graph_module: fx.GraphModule, example_inputs: list, like: "PendingCode", options: dict,
                    devices: set) -> Optional[Callable]:
    """`graph_module` built with Inductor's C++ wrapper in a worker, for the role of `like` (its
    Python-wrapper build, compiled in a worker), and loaded here (blocking: a background build's
    thread calls it); None where it cannot go to a worker or the worker failed (with a warning):
    the caller builds it here."""
    if not _sendable(graph_module, example_inputs, options, devices):
        return None
    message = _message_or_none(graph_module, example_inputs, like.role, options, cpp_wrapper=True)
    if message is None:
        return None
    pending = PendingCode(_queued(message, BUILD).future, like.role, lambda: (None, []), like.promise)
    return pending.code()


class LayoutPromise:
    """What a forward compiled in a worker promises its backward: each saved value (an output
    that is neither the user's nor a returned view's base) in its traced layout. `role` is the
    role it is compiled for: a forward's with every output a user output, for which Inductor
    keeps the traced strides. Where Inductor reports other strides for a saved value anyway (a
    CPU convolution's activations, laid out channels-last by its kernel), `kept` copies that
    output into its traced layout at each call: the backward, compiled at the same time, was
    compiled for the traced layouts."""

    def __init__(self, role, shapes: list, strides: list, saved: frozenset):
        self.role, self.shapes, self.strides, self.saved = role, shapes, strides, saved

    @classmethod
    def of(cls, graph_module: fx.GraphModule, role) -> "LayoutPromise":
        outputs = _outputs_of(graph_module)
        values = [o.meta.get("val") if isinstance(o, fx.Node) else None for o in outputs]
        shapes = [tuple(v.shape) if isinstance(v, torch.Tensor) else None for v in values]
        strides = [tuple(v.stride()) if isinstance(v, torch.Tensor) else None for v in values]
        if role.kind != "forward":
            return cls(role, shapes, strides, frozenset())
        seen = {*range(role.num_user_outputs), *role.view_bases}
        saved = frozenset(k for k in range(len(outputs)) if k not in seen and shapes[k] is not None)
        return cls(replace(role, num_user_outputs=len(outputs), view_bases=()), shapes, strides, saved)

    def broken_at(self, reported: list) -> dict:
        """{output position: traced strides} of the saved values whose `reported` strides differ
        from the traced ones in a dimension of more than one element."""
        broken = {}
        for k in sorted(self.saved):
            if k >= len(reported) or reported[k] is None:
                continue
            shape, traced = self.shapes[k], self.strides[k]
            if any(size > 1 and int(a) != b for size, a, b in zip(shape, reported[k], traced)):
                broken[k] = traced
        return broken

    def kept(self, code: Callable, reported: list) -> Callable:
        broken = self.broken_at(reported)
        if not broken:
            return code
        logger.info("aotgraph: Inductor laid out %d saved values of a forward compiled in a worker otherwise than "
                    "traced; they are copied into the traced layout at each call", len(broken))

        def call(args):
            outputs = list(code(args))
            for k, strides in broken.items():
                value = outputs[k]
                copy = torch.empty_strided(value.shape, strides, dtype=value.dtype, device=value.device)
                outputs[k] = copy.copy_(value)
            return outputs

        call._boxed_call = True
        return call


def _sendable(graph_module: fx.GraphModule, example_inputs: list, options: dict, devices: set,
              waiting: bool = True) -> bool:
    """Whether the graph may go to a worker: `waiting`, to one that may still be starting or busy
    (a forward, whose backward compiles here meanwhile); else only to one that is idle now."""
    if not _wanted_on(devices):
        return False
    start()
    why = ("no worker is running" if not _alive() else "no worker is idle" if not waiting and not _idle()
           else "CUDA graphs" if _cuda_graphs(options)
           else "symbolic sizes" if any(has_symbolic_sizes(v) for v in example_inputs if isinstance(v, torch.Tensor))
           else _unshippable(graph_module))
    if why:
        logger.info("aotgraph: a graph is compiled in this process, not in a compile worker: %s", why)
    return not why


def _message_or_none(graph_module, example_inputs, role, options: dict, cpp_wrapper: bool) -> Optional[bytes]:
    try:
        return _message(graph_module, example_inputs, role, dict(options, cpp_wrapper=cpp_wrapper))
    except Exception as error:  # a value the pickler refuses
        logger.info("aotgraph: the %s graph is compiled in this process: it could not be sent to a compile "
                    "worker (%s: %s)", role.kind, type(error).__name__, error)
        return None


def _take_worker() -> None:
    global _busy
    with _state:
        _busy += 1


def _release_worker() -> None:
    global _busy
    with _state:
        _busy -= 1


def _answered(job: _Job) -> None:
    global _outstanding
    with _state:
        _outstanding -= 1
        _in_flight.discard(job)
        _state.notify_all()


def _cuda_graphs(options: dict) -> bool:
    from .torchinductor import cuda_graphs_asked

    return cuda_graphs_asked(options)


def _outputs_of(graph_module: fx.GraphModule) -> tuple:
    outputs = graph_module.graph.find_nodes(op="output")[0].args[0]
    return tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)


def _unshippable(graph_module: fx.GraphModule) -> str:
    """Why a worker could not rebuild the graph ("" where it can): every op must be one a worker
    knows by name (aten, prims, Python functions), and every output must carry the fake tensor or
    number Inductor reads (``meta["val"]``)."""
    if any(isinstance(o, fx.Node) and "val" not in o.meta for o in _outputs_of(graph_module)):
        return "an output without a fake value"
    for node in graph_module.graph.nodes:
        if node.op == "call_module":
            return f"it calls a module ({node.target})"
        if node.op != "call_function":
            continue
        target = node.target
        if isinstance(target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
            if target.namespace not in _SHIPPED_NAMESPACES:
                return f"the op {target} of namespace {target.namespace}"
        elif isinstance(target, torch._ops.HigherOrderOperator):
            return f"the higher-order op {target.name()}"
    return ""


def _message(graph_module: fx.GraphModule, example_inputs: list, role, options: dict) -> bytes:
    from torch._inductor.runtime.cache_dir_utils import cache_dir
    from torch.fx._graph_pickler import Options

    from .torchinductor import process_inductor_settings

    graph = _layout_pickler().dumps((graph_module, list(example_inputs)), Options(ops_filter=None))
    environment = {"TORCHINDUCTOR_CACHE_DIR": cache_dir(), "TRITON_CACHE_DIR": os.environ.get("TRITON_CACHE_DIR")}
    return pickle.dumps(dict(graph=graph, role=role, options=options, settings=process_inductor_settings(),
                             environment=environment, switches=(aot_config.disabled, aot_config.opted_in)))


@functools.cache
def _layout_pickler() -> type:
    """torch.fx's GraphPickler, with a fake tensor that views another sent as its layout alone (a
    fresh fake of its size, strides and offset): GraphPickler describes a view with its base,
    whose description keeps the fake mode, which does not pickle; Inductor reads layouts only."""
    from torch._subclasses.fake_tensor import FakeTensor
    from torch.fx._graph_pickler import GraphPickler

    class LayoutPickler(GraphPickler):
        def reducer_override(self, obj):
            if isinstance(obj, FakeTensor) and obj._is_view():
                return _fake_of_layout, (tuple(obj.shape), tuple(obj.stride()), obj.storage_offset(), obj.dtype,
                                         str(obj.device), obj.requires_grad, self._unpickle_state)
            return super().reducer_override(obj)

    return LayoutPickler


def _fake_of_layout(shape, stride, offset, dtype, device, requires_grad, unpickle_state):
    """A fake tensor of this layout in the unpickling fake mode (see `_layout_pickler`)."""
    with unpickle_state.fake_mode:
        extent = offset + sum((size - 1) * step for size, step in zip(shape, stride)) + 1 if all(shape) else offset
        base = torch.empty(max(extent, 0), dtype=dtype, device=device)
        value = base.as_strided(shape, stride, offset)
    return value.requires_grad_(requires_grad) if requires_grad and value.is_floating_point() else value


class PendingCode:
    """A graph's boxed code while a worker compiles it: the first call (or read of an attribute
    of the code) waits for the worker's answer and loads it; a failed job is compiled here.
    `role`: the role it was compiled for (a forward's: every output a user output)."""

    _boxed_call = True
    aotgraph_wrapper = None  # the Python wrapper

    def __init__(self, future: Future, role, compile_here: Callable[[], tuple], promise: LayoutPromise):
        self._future, self.role, self._compile_here, self.promise = future, role, compile_here, promise
        self._code: Optional[Callable] = None
        self._lock = threading.Lock()

    def code(self) -> Callable:
        """The loaded code (waiting for the worker's answer the first time)."""
        code = self._code
        if code is not None:
            return code
        with self._lock:
            if self._code is None:
                self._code = self._loaded()
            return self._code

    def _loaded(self) -> Callable:
        from .torchinductor import restored_output_code

        try:
            answer = self._future.result()
        except Exception as error:
            answer = ("error", f"{type(error).__name__}: {error}")
        if answer[0] == "ok" and answer[1][0] is not None:
            stored, reported = answer[1]
            try:
                return self.promise.kept(restored_output_code(stored, self.role.kind), reported)
            except Exception as error:
                answer = ("error", f"its code could not be loaded here ({type(error).__name__}: {error})")
        if answer[0] == "stopping":  # the process exits: nothing to compile for
            return None
        why = answer[1] if answer[0] == "error" else "its code cannot be carried between processes"
        logger.warning("aotgraph: a compile worker did not compile the %s graph (%s); compiling it in this "
                       "process", self.role.kind, str(why).splitlines()[0][:300] if why else "")
        code, reported = self._compile_here()
        return None if code is None else self.promise.kept(code, reported)

    def stored_bytes(self) -> Optional[bytes]:
        """What the worker sent (`torchinductor.stored_output_code`'s bytes), waiting for it; None
        where the job failed, or where its saved values are copied into their traced layout at
        each call (`LayoutPromise.kept`: the stored code alone would not keep the promise)."""
        try:
            answer = self._future.result()
        except Exception:
            return None
        if answer[0] != "ok" or self.promise.broken_at(answer[1][1]):
            return None
        return answer[1][0]

    def __call__(self, args):
        return self.code()(args)

    def __getattr__(self, name: str):
        # The loaded code carries none of our own attributes (those of a graph compiled here, or
        # built in the background): asking for one does not wait for the worker.
        if name.startswith(("_", "aotgraph_")):
            raise AttributeError(name)
        return getattr(self.code(), name)


class _Worker:
    """One worker process and the thread here that feeds it jobs and reads its answers."""

    def __init__(self, index: int):
        self.ready, self.alive = False, True
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, AOTGRAPH_IN_COMPILE_WORKER="1",
                   PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
        self.process = subprocess.Popen([sys.executable, "-m", "aotgraph.compilers.compile_worker"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.thread = threading.Thread(target=self._serve, name=f"aotgraph-compile-worker-{index}", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        job = None
        try:
            hello = _read(self.process.stdout)
            hello = pickle.loads(hello) if hello is not None else None
            if not isinstance(hello, tuple) or hello[0] != "ready":
                raise EOFError(f"the worker did not start ({hello!r})")
            self.ready = True
            while True:
                job = _jobs.get()
                if job.message is None:
                    return
                _take_worker()
                try:
                    _write(self.process.stdin, job.message)
                    answer = _read(self.process.stdout)
                finally:
                    _release_worker()
                if answer is None:
                    raise EOFError("the worker exited")
                job.future.set_result(pickle.loads(answer))
                job = None
        except Exception as error:
            self.alive = False
            if not _stopping:
                logger.warning("aotgraph: a compile worker stopped (%s: %s); its graphs compile in this process",
                               type(error).__name__, error)
            if job is not None and not job.future.done():
                job.future.set_result(("stopping",) if _stopping else
                                      ("error", f"the worker stopped ({type(error).__name__}: {error})"))
            if not any(worker.alive for worker in _workers):
                _fail_queued()

    def stop(self) -> None:
        try:
            self.process.stdin.close()
        except OSError:
            pass


def _fail_queued() -> None:
    while True:
        try:
            job = _jobs.get_nowait()
        except queue.Empty:
            return
        if job.message is not None and not job.future.done():
            job.future.set_result(("stopping",) if _stopping else ("error", "no compile worker is running"))


_stopping = False  # the process is exiting: jobs still queued are dropped, and nothing warns


class WorkersStopped(RuntimeError):
    """A background build whose worker stopped as the process exits: it is dropped, not made
    here (an Inductor compile on a thread that the exiting interpreter kills aborts the process)."""

    aotgraph_quiet = True


def stopping() -> bool:
    """Whether the process is exiting and its workers are stopped."""
    return _stopping


def shutdown() -> None:
    """Stop the workers and forget them, as at exit; a later `start` launches new ones (tests)."""
    global _started, _stopping
    _stop()
    while True:  # the serving threads' stop marks left over
        try:
            _jobs.get_nowait()
        except queue.Empty:
            break
    with _state:
        _workers.clear()
        _started, _stopping = False, False


def _stop() -> None:
    """Stop the workers and let this process's threads of theirs end (a daemon thread still in
    torch's code when the interpreter exits aborts the process)."""
    global _stopping
    _stopping = True
    for worker in _workers:
        worker.stop()
    for worker in _workers:
        try:
            worker.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            worker.process.kill()
    for _ in _workers:
        _jobs.put(_Job(None, -1))  # each serving thread takes one and returns
    for thread in [*(worker.thread for worker in _workers), *_waiters]:
        if thread is not threading.current_thread():
            thread.join(timeout=10)


_LENGTH = struct.Struct("<Q")


def _write(stream, data: bytes) -> None:
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read(stream) -> Optional[bytes]:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    data = stream.read(_LENGTH.unpack(head)[0])
    return data
