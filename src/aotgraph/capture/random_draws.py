"""Track the program's draws from the global CPU RNG while it is traced on fake tensors.

Tracing draws no real numbers, so the recorder gives the RNG a *marker* state after each
recorded draw (marker k: k draws so far). Reading the state back at the next draw says
where the program is in its random stream:

- the latest marker: a new draw, recorded as usual;
- an earlier marker k: the program restored a state it saved (``torch.utils.checkpoint``
  recomputing a region with preserve_rng_state): eager would redraw exactly draw k, so
  the recomputation reuses draw k's values instead of drawing again;
- anything else: the program set the state itself (``torch.manual_seed``), which the
  compiled function could not replay: refused.

The caller's real RNG state is put back when tracing ends (`restore`).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from ..torch_private.dispatch import disable_current_modes

from ..errors import UnsupportedOp

_MARKER_SEED = 0x5EED_A07_6A9F  # an arbitrary seed a program is unlikely to choose


class RandomDraws:
    """The draws recorded so far: ``draws[k] = (op, output nodes)``, `markers[k]` the RNG
    state before draw k."""

    def __init__(self):
        with disable_current_modes():
            self._caller_state = torch.get_rng_state()
        self.markers: list[torch.Tensor] = []
        self.draws: list[tuple[Any, list]] = []
        self._set_marker(0)

    def _set_marker(self, k: int) -> None:
        with disable_current_modes():
            if k == len(self.markers):
                torch.default_generator.manual_seed(_MARKER_SEED + k)
                self.markers.append(torch.get_rng_state())
            else:
                torch.set_rng_state(self.markers[k])

    def position(self, what: str) -> int:
        """How many draws precede the current RNG state (see the module docstring)."""
        with disable_current_modes():
            state = torch.get_rng_state()
            found: Optional[int] = next((k for k in range(len(self.markers) - 1, -1, -1)
                                         if torch.equal(state, self.markers[k])), None)
        if found is None:
            raise UnsupportedOp(
                f"{what} after the program set the global RNG state (torch.manual_seed, set_rng_state, ...) "
                "while being traced; the compiled function would not replay that",
                "capture",
                "seed outside the compiled function, or pass a torch.Generator to the random ops",
            )
        return found

    def record(self, func, nodes: list) -> None:
        self.draws.append((func, nodes))
        self._set_marker(len(self.draws))

    def replayed(self, position: int, func) -> list:
        """The nodes of draw `position`, which the program is drawing again with `func`."""
        recorded, nodes = self.draws[position]
        if recorded is not func:
            raise UnsupportedOp(
                f"a recomputation (e.g. torch.utils.checkpoint) draws {func} where the first run drew {recorded}",
                "capture", "make the checkpointed region draw the same random ops in the same order")
        self._set_marker(position + 1)
        return nodes

    def restore(self) -> None:
        """Give the caller back the RNG state it had before tracing."""
        with disable_current_modes():
            torch.set_rng_state(self._caller_state)
