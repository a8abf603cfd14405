"""A cProfile written out for reading: functions by own time, then by cumulative time."""
from __future__ import annotations

import cProfile
import io
import pstats


def write_profile(profile: cProfile.Profile, path: str, own: int = 45, cumulative: int = 45) -> pstats.Stats:
    """Write `profile`'s top `own` functions by own time and top `cumulative` by cumulative
    time to `path`; return its stats (total calls and time)."""
    text = io.StringIO()
    stats = pstats.Stats(profile, stream=text)
    stats.sort_stats("tottime").print_stats(own)
    stats.sort_stats("cumulative").print_stats(cumulative)
    with open(path, "w") as f:
        f.write(text.getvalue())
    return stats
