"""The per-function store of compiled entries: one per cache key and set of guarded values.

A key (see `keys`) can hold several entries, one for each combination of the Python values
its program read (see `guards`): `lookup` returns the first whose guards hold. `entries`
maps each to its entry for reports and tests: the first entry of a key under the key itself,
later ones under ``(key, k)``.
"""
from __future__ import annotations

from typing import Any, Sequence

from .recompiles import CallFacts, describe_change, facts_apart

__all__ = ["EntryStore"]


class EntryStore:
    def __init__(self):
        self.entries: dict[Any, Any] = {}
        self._variants_of: dict[Any, list] = {}
        self.latest = None  # the entry compiled last

    def lookup(self, key, flat_args: Sequence[Any]):
        for entry in self._variants_of.get(key, ()):
            if not entry.guards or entry.guards.holds(flat_args):
                return entry
        return None

    def add(self, key, entry) -> None:
        variants = self._variants_of.setdefault(key, [])
        self.entries[key if not variants else (key, len(variants))] = entry
        variants.append(entry)
        self.latest = entry

    def reason_to_compile(self, key, facts: CallFacts, flat_args: Sequence[Any],
                          input_names: Sequence[str] = ()) -> str:
        """Why a call that found no entry compiles: "first call", a failed guard of an entry
        of the same key, or what differs from the compiled call nearest to it (fewest facts
        apart, the latest of those: ``"argument 0: shape (4,) -> (5,)"``; the latest alone
        named a grad mode change where an input's requires_grad was the cause)."""
        for entry in reversed(self._variants_of.get(key, ())):
            failed = entry.guards.failed(flat_args)
            if failed is not None:
                return failed.describe_change(flat_args)
        known = [entry.call_facts for entry in self.entries.values() if entry.call_facts is not None]
        if self.latest is None or not known:
            return "first call"
        nearest = min(reversed(known), key=lambda before: facts_apart(before, facts))
        return describe_change(nearest, facts, input_names)

    def __len__(self) -> int:
        return len(self.entries)


