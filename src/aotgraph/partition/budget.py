"""Memory budgets: the least recompute whose saved bytes fit.

The knapsack "minimize recompute FLOPs subject to saved bytes <= budget" is solved by its
Lagrangian: for a recompute price ``lam`` (bytes per FLOP) a min cut of
``saved bytes + lam * recompute FLOPs`` is exact, and a cheaper price recomputes more and
saves less. We solve a fixed ladder of prices (``lam = 2**k``, plus "recompute nothing"),
and answer a budget with the plan of least FLOPs among those that fit (ties: fewer bytes).
Because the ladder does not depend on the budget, a smaller budget can only pick a plan with
fewer or equal saved bytes: saved bytes are monotone in the budget by construction.
"""
from __future__ import annotations

from functools import partial
from typing import Optional

from .mincut import TIE_BREAK_LAM, JointNetwork, min_cut_rematerialization_partition
from .policies import Policy

PRICE_LADDER: tuple = (TIE_BREAK_LAM, *(2.0 ** k for k in range(-5, 25)), None)


def candidate_plans(network: JointNetwork) -> list[tuple[int, int, set]]:
    """(saved bytes, recompute FLOPs, saved nodes) for each price of the ladder."""
    plans, seen = [], set()
    for lam in PRICE_LADDER:
        saved = network.cut(lam)
        key = frozenset(saved)
        if key in seen:
            continue
        seen.add(key)
        saved_list, recomputed = network.backward_closure(saved)
        flops = sum(network.flops[network.index[n]] for n in recomputed)
        plans.append((network.storage_bytes(saved_list), flops, saved))
    return plans


def resolve_budget(network: JointNetwork, memory_budget: float) -> int:
    """Bytes from a budget in bytes (> 1) or a fraction (<= 1) of the default partition's."""
    if memory_budget <= 1.0:
        return int(memory_budget * network.storage_bytes(network.default_saved()))
    return int(memory_budget)


def saved_for_budget(network: JointNetwork, memory_budget: float) -> tuple[set, int, str]:
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


def partition_for(budget: Optional[float] = None, policy: Optional[Policy] = None):
    """A partition function (functorch calling convention) with a memory budget and/or a
    policy bound, for ``aot_function(..., partition_fn=partition_for(budget=0.5))``."""
    fn = partial(min_cut_rematerialization_partition, memory_budget=budget, policy=policy)
    fn.__name__ = f"partition_for(budget={budget}, policy={getattr(policy, '__name__', policy)})"
    return fn
