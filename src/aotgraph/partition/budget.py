"""Budgets: the least recompute whose saved bytes fit, or the fewest bytes whose recompute fits.

The knapsack "minimize recompute FLOPs subject to saved bytes <= budget" is solved by its
Lagrangian: for a recompute price ``lam`` (bytes per FLOP) a min cut of
``saved bytes + lam * recompute FLOPs`` is exact, and a cheaper price recomputes more and
saves less. We solve a fixed ladder of prices (``lam = 4**k``, plus "recompute nothing"),
and answer a budget with the plan of least FLOPs among those that fit (ties: fewer bytes).
Because the ladder does not depend on the budget, a smaller budget can only pick a plan with
fewer or equal saved bytes: saved bytes are monotone in the budget by construction.
Under a budget, matmuls, convolutions and attention are priced, not banned: a small budget
recomputes them too (random and side-effecting ops are never recomputed).

The dual, a recompute budget (FLOPs the backward may spend recomputing), picks the plan of
fewest bytes among those whose FLOPs fit, from the same candidates; a budget of 0 is the exact
min cut in which only free ops (views, reshapes, getitems) may be recomputed.
"""
from __future__ import annotations

import math
import numbers
from typing import Optional, Union

from ..errors import BadArgument

TIE_BREAK_LAM = 1.0 / 64  # bytes per FLOP: among cuts of equal bytes, recompute less
PRICE_LADDER: tuple = (*(2.0 ** k for k in range(-24, 25, 2)), TIE_BREAK_LAM, None)


SPLITS = tuple(k / 8 for k in range(1, 8))
GAP = 1.1  # neighbouring ladder plans further apart than this (bytes ratio) get split plans between them


def candidate_plans(network) -> list[tuple[int, int, set]]:
    """(saved bytes, recompute FLOPs, saved nodes) for each price of the ladder, plus split
    plans between neighbours far apart: a uniform price flips identical layers all at once
    (save every layer, or recompute every layer), so the first part of the graph (by node
    order) gets the cheaper price and the rest the dearer one."""
    plans, seen = [], set()

    def add(prices):
        saved = network.cut(prices)
        key = frozenset(saved)
        if key not in seen:
            seen.add(key)
            saved_list, recomputed = network.backward_closure(saved)
            flops = sum(network.flops[network.index[n]] for n in recomputed)
            plans.append((network.storage_bytes(saved_list), flops, saved))
        return next(p for p in plans if frozenset(p[2]) == key)

    ladder = [add(lam) for lam in PRICE_LADDER]
    count = len(network.nodes)
    for (cheap, plan_cheap), (dear, plan_dear) in zip(zip(PRICE_LADDER, ladder), zip(PRICE_LADDER[1:], ladder[1:])):
        if plan_dear[0] <= GAP * max(plan_cheap[0], 1):
            continue
        for split in SPLITS:
            boundary = int(split * count)
            add([cheap] * boundary + [dear] * (count - boundary))
    return plans


Budget = Union[int, float]


def checked_budget(value: Optional[Budget], name: str, whole: str, unit: str) -> Optional[Budget]:
    """`value` if it is a budget: None, a whole number of `unit` as an int (>= 0), or a
    fraction of `whole` as a float in [0, 1]. Anything else is a `BadArgument`: an int and a
    float never mean the same kind of amount (``2`` is 2 bytes, ``2.0`` is refused)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise BadArgument(f"{name}={value!r} is not a number", "partition",
                          f"pass {unit} as an int or a fraction of {whole} as a float in [0, 1]")
    if isinstance(value, numbers.Integral):
        if value < 0:
            raise BadArgument(f"{name}={value} is negative", "partition", f"pass {unit} as an int >= 0")
        return int(value)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise BadArgument(f"{name}={value!r} is not a fraction in [0, 1]", "partition",
                          f"pass a fraction of {whole} as a float in [0, 1], or {unit} as an int "
                          f"(e.g. {name}=2**30)")
    return float(value)


def check_memory_budget(value: Optional[Budget], name: str = "memory_budget") -> Optional[Budget]:
    return checked_budget(value, name, "the default partition's saved bytes", "bytes")


def check_recompute_budget(value: Optional[Budget], name: str = "recompute_budget") -> Optional[Budget]:
    return checked_budget(value, name, "the forward's FLOPs", "FLOPs")


def resolve_budget(network, memory_budget: Budget) -> int:
    """Bytes from a budget in bytes (an int) or a fraction (a float) of the default partition's."""
    memory_budget = check_memory_budget(memory_budget)
    if isinstance(memory_budget, float):
        return int(memory_budget * network.storage_bytes(network.default_saved()))
    return memory_budget


def saved_for_budget(network, memory_budget: float) -> tuple[set, int, str]:
    """(saved nodes, budget in bytes, note) for the cheapest plan that fits the budget."""
    budget = resolve_budget(network, memory_budget)
    plans = candidate_plans(network)
    fitting = [p for p in plans if p[0] <= budget]
    if not fitting:
        smallest = min(plans, key=lambda p: (p[0], p[1]))
        return smallest[2], budget, (f"budget {budget} B is below the smallest plan ({smallest[0]} B); "
                                     "saving that instead")
    best = min(fitting, key=lambda p: (p[1], p[0]))
    return best[2], budget, ""


def resolve_recompute_budget(network, recompute_budget: Budget) -> int:
    """FLOPs from a recompute budget in FLOPs (an int) or a fraction (a float) of the forward's."""
    recompute_budget = check_recompute_budget(recompute_budget)
    if isinstance(recompute_budget, float):
        return int(recompute_budget * network.forward_flops())
    return recompute_budget


def saved_for_recompute_budget(network, recompute_budget: float) -> tuple[set, int, str]:
    """(saved nodes, budget in FLOPs, note) for the plan of fewest saved bytes whose recompute
    FLOPs fit the budget. Recomputation the program asked for itself (checkpoint regions) counts
    too; a budget below it gets the plan that recomputes only that, with a note."""
    budget = resolve_recompute_budget(network, recompute_budget)
    free_only = network.cut(None)  # fewest bytes recomputing only free ops: exact, one cut
    floor = network.recompute_flops(free_only)
    if budget <= floor:
        note = "" if budget == floor else (f"recompute budget {budget} FLOPs is below what the program itself "
                                           f"recomputes ({floor} FLOPs); recomputing only that")
        return free_only, budget, note
    fitting = [p for p in candidate_plans(network) if p[1] <= budget]
    best = min(fitting, key=lambda p: (p[0], p[1]))
    return best[2], budget, ""
