"""Track the program's draws from the global CPU RNG while it is traced on fake tensors, and
replay the program's own seeding.

Tracing draws no real numbers, so the recorder gives the RNG a *marker* state: a fresh one
after each recorded draw and after each seeding. Reading the state back at the next draw
says where the program is in its random stream:

- the latest marker (the head): a new draw, recorded as usual;
- an earlier marker: the program restored a state it saved (``torch.utils.checkpoint``
  recomputing a region with preserve_rng_state): eager would redraw exactly the draw made
  from that state, so the recomputation reuses that draw's values instead of drawing again;
- an earlier marker set before a seeding: the program saved the state, reseeded, and
  restored the saved state (``torch.random.fork_rng``, OpInfo's ``wrapper_set_seed``). The
  restore is recorded as ``aotgraph::set_rng_state`` of an ``aotgraph::get_rng_state`` node
  inserted where that marker began in the graph, so at run time the RNG gets back the state it
  had when the program saved it, as in eager, and draws from it are new draws of eager's values;
- anything else: the program set the state in a way the compiled function cannot replay
  (``torch.default_generator.manual_seed``, ``torch.seed``): refused.

``torch.manual_seed(c)`` and ``torch.set_rng_state(t)`` (``t`` not a saved marker) are
patched while the program is traced, on the capturing thread only (switch ``seed_patch``):
each is recorded as a node of ours (``aotgraph::manual_seed``, ``aotgraph::set_rng_state``)
that does the same at run time, and moves the head to a fresh marker, so draws after it are
recorded relative to the new seed. The nodes carry the ``nondeterministic_seeded`` tag, so
dead-code elimination, CSE and the partitioners treat them as random ops: kept, never merged,
in the forward, in program order. The compiled function then draws eager's values whatever
the caller's RNG state was, and leaves the RNG where eager leaves it.

The caller's real RNG state is put back when tracing ends (`restore`).
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional

import torch
from ..torch_private.dispatch import disable_current_modes
from ..torch_private.fake import FakeTensor, FakeTensorMode, detect_fake_mode

from .. import config
from ..errors import UnsupportedOp

_MARKER_SEED = 0x5EED_A07_6A9F  # an arbitrary seed a program is unlikely to choose
_ORIGINAL_MANUAL_SEED = torch.random.manual_seed
_ORIGINAL_SET_RNG_STATE = torch.random.set_rng_state
_ORIGINAL_GET_RNG_STATE = torch.random.get_rng_state
_STATE_BYTES = _ORIGINAL_GET_RNG_STATE().numel()
_SEEDED = (torch.Tag.nondeterministic_seeded,)

_LIBRARY = torch.library.Library("aotgraph", "FRAGMENT")
_LIBRARY.define("manual_seed(int seed) -> ()", tags=_SEEDED)
_LIBRARY.define("set_rng_state(Tensor state) -> ()", tags=_SEEDED)
_LIBRARY.define("get_rng_state() -> Tensor", tags=_SEEDED)
_LIBRARY.impl("manual_seed", lambda seed: _ORIGINAL_MANUAL_SEED(seed) and None, "CompositeExplicitAutograd")
_LIBRARY.impl("set_rng_state", lambda state: _ORIGINAL_SET_RNG_STATE(state), "CompositeExplicitAutograd")
_LIBRARY.impl("get_rng_state", lambda: _ORIGINAL_GET_RNG_STATE(), "CompositeExplicitAutograd")
torch.library.register_fake("aotgraph::manual_seed", lambda seed: None, lib=_LIBRARY)
torch.library.register_fake("aotgraph::set_rng_state", lambda state: None, lib=_LIBRARY)
torch.library.register_fake("aotgraph::get_rng_state", lambda: torch.empty(_STATE_BYTES, dtype=torch.uint8),
                            lib=_LIBRARY)
MANUAL_SEED = torch.ops.aotgraph.manual_seed.default
SET_RNG_STATE = torch.ops.aotgraph.set_rng_state.default
GET_RNG_STATE = torch.ops.aotgraph.get_rng_state.default
_UNKNOWN = object()  # where a marker began in the graph, when the recorder gave no node to say


class RandomDraws:
    """The draws recorded so far: ``draws[d] = (op, output nodes)``; `markers` every state the
    recorder gave the RNG. `record_seeding(op, args)` appends a seeding node to the graph."""

    def __init__(self, record_seeding: Callable[[Any, tuple], None]):
        with disable_current_modes():
            self._caller_state = torch.get_rng_state()
        self.markers: list[torch.Tensor] = []
        self.draws: list[tuple[Any, list]] = []
        self._draw_from: list[Optional[int]] = []  # per marker: the draw made from it
        self._marker_after: list[int] = []  # per draw: the marker set after it
        # per marker: the graph's last node when it was set (None: the graph's start; _UNKNOWN)
        self._began_after: list[Any] = []
        self._state_nodes: dict[int, Any] = {}  # per marker: its get_rng_state node, once needed
        self._graph = None  # the recorder's graph, known from the first draw or seeding node
        self._seedings = 0  # seedings recorded so far
        self._seedings_at: list[int] = []  # per marker: seedings recorded before it was set
        self._head = self._new_marker()
        self._record_seeding = record_seeding
        self._patched = config.enabled("seed_patch")
        if self._patched:
            _seeding_patches.enter(self)

    def _new_marker(self, began_after: Any = None) -> int:
        self._began_after.append(began_after)
        self._seedings_at.append(self._seedings)
        with disable_current_modes():
            torch.default_generator.manual_seed(_MARKER_SEED + len(self.markers))
            self.markers.append(torch.get_rng_state())
        self._draw_from.append(None)
        return len(self.markers) - 1

    def _set_marker(self, k: int) -> None:
        with disable_current_modes():
            _ORIGINAL_SET_RNG_STATE(self.markers[k])

    def _marker_of(self, state: torch.Tensor) -> Optional[int]:
        with disable_current_modes():
            return next((k for k in range(len(self.markers) - 1, -1, -1) if torch.equal(state, self.markers[k])), None)

    def position(self, what: str) -> int:
        """The draw the program would make now: an earlier draw's index (see the module
        docstring), or ``len(draws)`` for a new one."""
        with disable_current_modes():
            found = self._marker_of(torch.get_rng_state())
        if found is None:
            raise UnsupportedOp(
                f"{what} after the program set the global RNG state in a way aotgraph cannot replay "
                "(torch.default_generator.manual_seed, torch.seed, ...) while being traced",
                "capture",
                "use torch.manual_seed or torch.set_rng_state, seed outside the compiled function, "
                "or pass a torch.Generator to the random ops",
            )
        if found == self._head:
            return len(self.draws)
        replayed = self._draw_from[found]
        if replayed is None:
            raise UnsupportedOp(
                f"{what} from an RNG state the program saved before it reseeded the RNG and restored after",
                "capture", "restore the state before reseeding, or run that part eagerly")
        return replayed

    def program_returns(self) -> None:
        """The program returns. Where it restored an earlier state and drew nothing since (its
        last RNG state is not the head), eager leaves the RNG in that state: so does the compiled
        function, by a restore recorded here (read where that state began)."""
        self.position("the program returns")
        with disable_current_modes():
            found = self._marker_of(torch.get_rng_state())
        if (found is not None and found != self._head and self._graph is not None
                and self._began_after[found] is not _UNKNOWN):
            self.seeded(SET_RNG_STATE, (self._state_node(found),))

    def record(self, func, nodes: list) -> None:
        self._draw_from[self._head] = len(self.draws)
        self.draws.append((func, nodes))
        node = next((n for n in nodes if n is not None), None)
        if node is not None:
            self._graph = node.graph
        self._head = self._new_marker(_UNKNOWN if node is None else next(iter(reversed(node.graph.nodes))))
        self._marker_after.append(self._head)

    def replayed(self, position: int, func) -> list:
        """The nodes of draw `position`, which the program is drawing again with `func`."""
        recorded, nodes = self.draws[position]
        if recorded is not func:
            raise UnsupportedOp(
                f"a recomputation (e.g. torch.utils.checkpoint) draws {func} where the first run drew {recorded}",
                "capture", "make the checkpointed region draw the same random ops in the same order")
        self._set_marker(self._marker_after[position])
        return nodes

    def seeded(self, op, args: tuple) -> None:
        """The program seeded the RNG (`op` of ours on `args`): recorded, and draws from here on
        are new draws after it."""
        node = self._record_seeding(op, args)
        self._seedings += 1
        if node is not None:
            self._graph = node.graph
        self._head = self._new_marker(_UNKNOWN if node is None else node)

    def manual_seed(self, seed) -> torch.Generator:
        seed = int(seed)
        if not -2**63 <= seed < 2**63:
            raise UnsupportedOp(f"torch.manual_seed({seed}) inside the program: aotgraph replays 64-bit signed seeds",
                                "capture", f"seed with {seed - 2**64}, which eager takes as the same seed")
        self.seeded(MANUAL_SEED, (seed,))
        return torch.default_generator

    def set_rng_state(self, state: torch.Tensor) -> None:
        marker = None if isinstance(state, FakeTensor) else self._marker_of(state)
        if (marker is not None and marker != self._head and self._seedings_at[marker] != self._seedings
                and self._graph is not None and self._began_after[marker] is not _UNKNOWN):
            # saved before a reseeding: the run-time state of that moment, read where it began;
            # draws from it are new draws (eager draws the same values again from it)
            self.seeded(SET_RNG_STATE, (self._state_node(marker),))
        elif marker is not None:  # a state saved inside the program: restored as before
            self._set_marker(marker)
        else:
            self.seeded(SET_RNG_STATE, (state,))

    def _state_node(self, marker: int):
        """An ``aotgraph::get_rng_state`` node where `marker` began in the graph: at run time it
        reads the RNG state the program saved as `marker`. One per marker."""
        node = self._state_nodes.get(marker)
        if node is None:
            graph, began = self._graph, self._began_after[marker]
            if began is None:  # the graph's start: before its first op
                first = next((n for n in graph.nodes if n.op != "placeholder"), None)
                where = graph.inserting_before(first) if first is not None else graph.inserting_after(None)
            else:
                where = graph.inserting_after(began)
            with where:
                node = graph.call_function(GET_RNG_STATE, ())
            fake_mode = detect_fake_mode() or FakeTensorMode()
            with disable_current_modes(), fake_mode:
                node.meta["val"] = torch.empty(_STATE_BYTES, dtype=torch.uint8)
            self._state_nodes[marker] = node
        return node

    def restore(self) -> None:
        """Give the caller back the RNG state it had before tracing."""
        if self._patched:
            self._patched = False
            _seeding_patches.exit()
        with disable_current_modes():
            _ORIGINAL_SET_RNG_STATE(self._caller_state)


class _SeedingPatches:
    """``torch.manual_seed`` and ``torch.set_rng_state`` (and their ``torch.random`` names)
    patched while any capture runs; on a thread that is capturing they go to its `RandomDraws`,
    elsewhere to torch's own."""

    def __init__(self):
        self._lock = threading.Lock()
        self._captures = 0
        self._local = threading.local()

    def enter(self, draws: RandomDraws) -> None:
        stack = self._local.__dict__.setdefault("draws", [])
        stack.append(draws)
        with self._lock:
            self._captures += 1
            if self._captures == 1:
                for module in (torch, torch.random):
                    module.manual_seed, module.set_rng_state = self._manual_seed, self._set_rng_state

    def exit(self) -> None:
        self._local.draws.pop()
        with self._lock:
            self._captures -= 1
            if self._captures == 0:
                for module in (torch, torch.random):
                    module.manual_seed, module.set_rng_state = _ORIGINAL_MANUAL_SEED, _ORIGINAL_SET_RNG_STATE

    def _capturing(self) -> Optional[RandomDraws]:
        stack = getattr(self._local, "draws", None)
        return stack[-1] if stack else None

    def _manual_seed(self, seed):
        draws = self._capturing()
        return draws.manual_seed(seed) if draws is not None else _ORIGINAL_MANUAL_SEED(seed)

    def _set_rng_state(self, new_state):
        draws = self._capturing()
        return draws.set_rng_state(new_state) if draws is not None else _ORIGINAL_SET_RNG_STATE(new_state)


_seeding_patches = _SeedingPatches()
