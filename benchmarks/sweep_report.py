"""The last lines every sweep benchmark prints: a title, the summary table, the per-case JSON.

`finish_sweep` returns the exit status: 1 when aotgraph has a silent mismatch (the failure that
matters most), else 0.
"""
from __future__ import annotations

import json


def finish_sweep(title: str, summary: str, results: dict, json_path: str = "") -> int:
    """Print `title` and `summary`; write each result's ``status`` and ``detail`` to `json_path`."""
    print()
    print(title)
    print()
    print(summary)
    if json_path:
        with open(json_path, "w") as handle:
            json.dump({n: {"status": r.status, "detail": r.detail} for n, r in results.items()}, handle, indent=1)
    return 1 if any(r.status.get("aotgraph") == "mismatch" for r in results.values()) else 0
