"""Graphs that start on a quick compile and move to a slower, faster-running one built in the background.

Inductor's C++ wrapper launches a CUDA graph's kernels with less host time per step than its
Python wrapper, but building it costs most of a cold first step (benchmarks/RESULTS.md). Here
a graph is first compiled with the Python wrapper, the program runs on that at once, and after its first full run one
worker thread builds the C++ versions; each graph moves over when its build is ready.

A forward and its backward move together (one `_Pair` per graph id), at a forward call with
no backward outstanding, so a backward always runs the same build as the forward whose
saved values it reads. A failed build leaves the graph on the Python wrapper, with a
warning. Inductor's config is process-wide, so its compiles (ours in the foreground and
the worker's) take turns on `compile_lock`; a compile the program waits on takes it through
`foreground_compile`, and the worker starts no build while one waits or runs: a recompile for a
new input shape does not queue behind every build of the graphs it follows. A build under way
lets go of the lock while its C++ compiler runs (`lock_released_on_worker`, switch
``cpp_build_releases_lock``), most of its time, so a recompile waits at most for the rest of it;
the compiler then sees the build's Inductor settings patched in, and must set back the process's
own values of what the build patches. Switch: ``cpp_wrapper_in_background``.

A build made in a compile worker's process (`compile_workers`: this process only loads it)
runs on a thread of its own, beside the other such builds.

A queued build starts only once its graph is hot (switch ``builds_when_hot``): no compile
for `QUIET_S` seconds, and the pair called `HOT_CALLS` times since the last compile, the last
call within `QUIET_S`. While a program is still compiling (its first steps, a recompile for a new
input shape, Dynamo tracing the next graph) a build would take the interpreter and the compile
lock from those compiles; a graph the program has stopped calling (a shape it saw once before its
dimension became dynamic) is not built at all. `wait_for_background_builds` builds every queued
graph, hot or not.

While a build runs here, Dynamo's compiled functions stay callable though Inductor's pattern
matcher sets FX's process-wide "symbolic tracing" flag (switch ``builds_trace_unseen``). A
process that exits drops its queued builds and waits for the one under way: a thread still
inside Inductor when the interpreter finalizes aborts the process.

For the disk cache, a graph stands for the Python-wrapper build until its whole pair is
built, then for the C++ one (``aotgraph_output_code``); `aotgraph_when_built` tells the
cache when to store the entry again, so that a warm start loads the C++ builds.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import sys
import threading
import time
from typing import Callable, Optional

from .. import config as aot_config
from ..stack_room import call_with_stack_room
from ..torch_private.dynamo import dynamo_setting_for_every_thread
from .build_rng import rng_untouched

__all__ = ["compile_lock", "foreground_compile", "lock_released_on_worker", "upgradable", "wait_for_background_builds",
           "when_all_built"]

logger = logging.getLogger("aotgraph")

compile_lock = threading.RLock()
_pending: list = []  # queued graphs (`_Upgradable`s), oldest first
_building = 0  # graphs queued and not yet built: those in _pending and the one under way
_worker: Optional[threading.Thread] = None
_pairs: dict = {}  # graph id -> _Pair, until both of its builds are queued
_state_lock = threading.Lock()
_foreground = threading.Condition()
_foreground_compiles = 0  # compiles the program waits on, waiting for or holding compile_lock
_last_compile_end = 0.0  # time.monotonic() when the last of them ended
_compile_epoch = 0  # how many of them have ended
_draining = 0  # callers of wait_for_background_builds: build every queued graph now
_exiting = False  # the interpreter is shutting down: no build starts (`_stop_at_exit`)
_exit_registered = False
EXIT_WAIT_S = 300.0  # the longest an exiting process waits for the build under way
HOT_CALLS = 8
QUIET_S = 5.0  # a program still warming up (new shapes, graph breaks) compiles again within seconds
BUILD_SWITCH_INTERVAL_S = 0.0002
_WORKER_NAME = "aotgraph-cpp-builds"


@contextlib.contextmanager
def foreground_compile():
    """Hold `compile_lock` for a compile the program waits on, ahead of queued background
    builds (on the build worker itself: just the lock)."""
    global _foreground_compiles
    if threading.current_thread().name == _WORKER_NAME:
        with compile_lock:
            yield
        return
    with _foreground:
        _foreground_compiles += 1
    try:
        with compile_lock:
            yield
    finally:
        global _last_compile_end, _compile_epoch
        with _foreground:
            _foreground_compiles -= 1
            _last_compile_end, _compile_epoch = time.monotonic(), _compile_epoch + 1
            _foreground.notify_all()


@contextlib.contextmanager
def lock_released_on_worker():
    """On the build worker, let go of `compile_lock` (all its holds) for the block, a wait that
    touches no shared compile state (a C++ compiler's process), and take it back after; on any
    other thread, or with the switch ``cpp_build_releases_lock`` off, nothing."""
    release = getattr(compile_lock, "_release_save", None)
    if (threading.current_thread().name != _WORKER_NAME or release is None
            or not aot_config.enabled("cpp_build_releases_lock")):
        yield
        return
    held = release()
    try:
        yield
    finally:
        compile_lock._acquire_restore(held)


class _Pair:
    """The builds of one forward and its backward (or of one inference graph)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.outstanding_backwards = 0
        self.members: list[_Upgradable] = []
        self.switched = False
        self.queued = False
        self.when_built: list[Callable[[], None]] = []
        self.epoch, self.calls, self.last_call = -1, 0, 0.0  # calls since compile epoch `epoch`

    def called(self) -> None:
        if self.epoch != _compile_epoch:
            self.epoch, self.calls = _compile_epoch, 0
        self.calls += 1
        self.last_call = time.monotonic()

    def hot(self, now: float) -> bool:
        """Called often since the last compile, which ended `QUIET_S` ago, and lately."""
        return (self.epoch == _compile_epoch and self.calls >= HOT_CALLS and now - _last_compile_end >= QUIET_S
                and now - self.last_call <= QUIET_S)

    def all_built(self) -> bool:
        return all(m.built is not None for m in self.members)

    def switch_if_ready(self) -> None:
        if not self.switched and self.outstanding_backwards == 0 and self.all_built():
            for member in self.members:
                member.current = member.built
            self.switched = True


class _Upgradable:
    """A boxed callable running `current`: the Python-wrapper build, then the C++ one."""

    _boxed_call = True

    def __init__(self, python: Callable, kind: str, pair: _Pair):
        self.current, self.built, self.kind, self.pair = python, None, kind, pair
        self.elsewhere = False  # built in another process (see `upgradable`)
        self.aotgraph_wrapper = "python, C++ building"
        self.aotgraph_output_code = python  # what the disk cache stores: the build a warm start runs

    def aotgraph_when_built(self, callback: Callable[[], None]) -> None:
        """Call `callback()` once every build of this graph's pair is ready (at once if they
        are; on the build worker's thread otherwise; never if one fails)."""
        with self.pair.lock:
            if not self.pair.all_built():
                self.pair.when_built.append(callback)
                return
        callback()

    def __call__(self, args):
        pair = self.pair
        if pair.switched:
            return self.current(args)
        if self.kind != "backward":
            pair.called()
        with pair.lock:
            if self.kind != "backward":
                pair.switch_if_ready()
            if not pair.switched:
                pair.outstanding_backwards += {"forward": 1, "backward": -1}.get(self.kind, 0)
                pair.outstanding_backwards = max(pair.outstanding_backwards, 0)
        out = self.current(args)
        if self.kind != "forward" and not pair.queued:
            _queue_builds(pair)
        return out


def upgradable(python: Callable, build: Callable[[], Callable], role, elsewhere: bool = False) -> Callable:
    """`python` (a boxed callable) now; `build()`'s result from the first call after the
    worker has built it and the rest of its pair. `role`: the graph's kind and graph id.
    `elsewhere`: `build` compiles in another process (`compile_workers`) and only loads the
    result here: such builds run side by side, each on a thread of its own, and leave the
    interpreter's switch interval alone.
    The pair's builds are queued when its backward (or inference graph) has first run: by
    then a training step's other graphs have been compiled in the foreground, which a
    build holding `compile_lock` would have kept waiting. A graph whose role is `alone` (see
    `GraphRole`) is a pair by itself, as an inference graph is, whatever its kind."""
    kind = "inference" if getattr(role, "alone", False) else role.kind
    with _state_lock:
        pair = _pairs.setdefault(role.graph_id, _Pair())
        member = _Upgradable(python, kind, pair)
        pair.members.append(member)
        member.build, member.elsewhere = build, elsewhere
        if kind != "forward":
            del _pairs[role.graph_id]
    return member


def when_all_built(graphs, callback: Callable[[], None]) -> bool:
    """Call `callback()` once the background builds of each of `graphs` that has some
    (``aotgraph_when_built``) are ready, and answer True; False, without calling it, where
    none of them has any. Never called if a build fails (see `aotgraph_when_built`)."""
    registers = [graph.aotgraph_when_built for graph in graphs if hasattr(graph, "aotgraph_when_built")]
    if not registers:
        return False
    left, lock = [len(registers)], threading.Lock()

    def one_ready() -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            callback()

    for register in registers:
        register(one_ready)
    return True


def _queue_builds(pair: _Pair) -> None:
    with _state_lock:
        if pair.queued:
            return
        pair.queued = True
    global _building
    with _foreground:
        _pending.extend(pair.members)
        _building += len(pair.members)
        _foreground.notify_all()
    _start_worker()


def _next_build() -> Optional["_Upgradable"]:
    """The first queued graph that may be built now: none while a compile waits or runs; then
    a hot one (`_Pair.hot`), any while `wait_for_background_builds` waits; None once the
    process exits."""
    with _foreground:
        while True:
            if _exiting:
                return None
            if _foreground_compiles == 0:
                now, hot_only = time.monotonic(), aot_config.enabled("builds_when_hot")
                for k, member in enumerate(_pending):
                    if _draining or not hot_only or member.pair.hot(now):
                        return _pending.pop(k)
            _foreground.wait(timeout=0.2)


@contextlib.contextmanager
def _interpreter_shared():
    """While a build runs: the interpreter's switch interval `BUILD_SWITCH_INTERVAL_S`
    (switch ``builds_share_interpreter``). A build is mostly Python (Inductor's whole compile
    again); the program's thread lets go of the interpreter around each torch op or kernel
    launch, and with Python's default interval (5 ms) it then waits up to that long to take it
    back from the build: beside a busy thread, a loop of small CPU ops ran 160-300x slower at
    5 ms, 10-17x at 0.2 ms (benchmarks/gil_contention.py; GPT-2's steps during the builds, one
    run each: 0.85x those without, benchmarks/RESULTS.md)."""
    if not aot_config.enabled("builds_share_interpreter"):
        yield
        return
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, BUILD_SWITCH_INTERVAL_S))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _traces_unseen_by_program():
    """While a build runs here: Dynamo's compiled functions run as compiled though FX's flag
    "symbolic tracing under way" is set (switch ``builds_trace_unseen``). The flag is one for the
    whole process, and Inductor's pattern matcher sets it while it traces a replacement (make_fx):
    a call of a torch.compile'd function on the program's thread at that moment raised "Detected
    that you are using FX to symbolically trace a dynamo-optimized function" (a compiled optimizer
    step on the GPU, called every millisecond while the builds ran). Dynamo's
    ``force_compile_during_fx_trace`` skips that check, for every thread until the build ends."""
    import torch._dynamo.config as dynamo_config

    if not aot_config.enabled("builds_trace_unseen") or not hasattr(dynamo_config, "force_compile_during_fx_trace"):
        return contextlib.nullcontext()
    return dynamo_setting_for_every_thread("force_compile_during_fx_trace", True)


def _build_into(member: _Upgradable) -> None:
    try:
        with compile_lock, rng_untouched(), contextlib.nullcontext() if member.elsewhere else _interpreter_shared(), \
                contextlib.nullcontext() if member.elsewhere else _traces_unseen_by_program():
            built = member.build()
    except Exception as error:  # the Python-wrapper build keeps running
        if getattr(error, "aotgraph_quiet", False):  # dropped as the process exits
            return
        logger.warning("aotgraph: the background C++-wrapper build of a %s graph failed (%s: %s); it stays on "
                       "Inductor's Python wrapper", member.kind, type(error).__name__, str(error)[:200])
        return
    finally:
        member.build = None
    with member.pair.lock:
        member.built = built
        member.aotgraph_wrapper = "python, C++ ready"
        callbacks = []
        if member.pair.all_built():
            for each in member.pair.members:
                each.aotgraph_wrapper = "cpp"
                each.aotgraph_output_code = each.built
            callbacks, member.pair.when_built = member.pair.when_built, []
    for callback in callbacks:
        try:
            callback()
        except Exception as error:  # a failed store leaves the cache as it was
            logger.warning("aotgraph: storing the C++-wrapper build of a %s graph failed (%s: %s)", member.kind,
                           type(error).__name__, str(error)[:200])


def _start_worker() -> None:
    global _worker, _exit_registered
    with _state_lock:
        if _worker is None or not _worker.is_alive():
            _worker = threading.Thread(target=_work, name=_WORKER_NAME, daemon=True)
            _worker.start()
        if not _exit_registered:
            _exit_registered = True
            # Before atexit's handlers (Inductor's pools) and before daemon threads stop where they stand.
            register = getattr(threading, "_register_atexit", None)
            try:
                register(_stop_at_exit) if register is not None else atexit.register(_stop_at_exit)
            except RuntimeError:  # already shutting down
                atexit.register(_stop_at_exit)


def _stop_at_exit() -> None:
    """As the interpreter exits: queued builds are dropped and the build under way, if any, is
    waited for (at most `EXIT_WAIT_S`). A daemon thread still inside Inductor when the
    interpreter finalizes aborts the process ("terminate called without an active exception",
    exit status 134: a compiled optimizer step's script on an H100 that ended while a build ran)."""
    global _exiting, _building
    with _foreground:
        _exiting = True
        _building -= len(_pending)
        _pending.clear()
        _foreground.notify_all()
    worker = _worker
    if worker is not None and worker.is_alive() and worker is not threading.current_thread():
        logger.info("aotgraph: waiting for a background C++-wrapper build to finish before the process exits")
        worker.join(timeout=EXIT_WAIT_S)


def _work() -> None:
    while True:
        member = _next_build()
        if member is None:
            return
        if member.elsewhere:  # built in another process: this thread goes on to the next
            threading.Thread(target=_built_and_counted, args=(member,), name=_WORKER_NAME, daemon=True).start()
        else:
            _built_and_counted(member)


def _built_and_counted(member: _Upgradable) -> None:
    global _building
    try:
        call_with_stack_room(_build_into, member)
    finally:
        with _foreground:
            _building -= 1
            _foreground.notify_all()


def wait_for_background_builds() -> None:
    """Block until every queued background build has finished, hot or not (benchmarks, tests)."""
    global _draining
    with _foreground:
        _draining += 1
        _foreground.notify_all()
        try:
            _foreground.wait_for(lambda: _building == 0)
        finally:
            _draining -= 1
