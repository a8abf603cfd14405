"""Settings read at run time; each can also be set from the environment when aotgraph is imported.

- `recompile_limit` (``AOTGRAPH_RECOMPILE_LIMIT``, default 8, as Dynamo's): a compiled
  function that compiles more entries than this warns once (`RecompileWarning`), naming what
  changed. It keeps compiling: the limit is a warning, not a stop.
"""
from __future__ import annotations

import os

recompile_limit: int = int(os.environ.get("AOTGRAPH_RECOMPILE_LIMIT", "8"))
