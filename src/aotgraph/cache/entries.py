"""The per-function store of compiled entries: one per cache key and set of guarded values.

A key (see `keys`) can hold several entries, one for each combination of the Python values
its program read (see `guards`): `lookup` returns the first whose guards hold. `entries`
maps each to its entry for reports and tests: the first entry of a key under the key itself,
later ones under ``(key, k)``.
"""
from __future__ import annotations

from typing import Any, Sequence

from .recompiles import CallFacts, describe_change

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
        of the same key, or what differs from the latest compiled call
        (``"argument 0: shape (4,) -> (5,)"``)."""
        for entry in reversed(self._variants_of.get(key, ())):
            failed = entry.guards.failed(flat_args)
            if failed is not None:
                return failed.describe_change(flat_args)
        if self.latest is None or self.latest.call_facts is None:
            return "first call"
        return describe_change(self.latest.call_facts, facts, input_names)

    def __len__(self) -> int:
        return len(self.entries)


