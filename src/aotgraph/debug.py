"""Debug output by level (`config.debug_level`, ``AOTGRAPH_DEBUG=n``), on the ``aotgraph`` logger.

Level 1: each compile and each stage with its time (`timings`). Level 2: also each artifact
in short as it is made. Level 3: also the generated code of its graphs. A handler on stderr is
added when the level is set from the environment and the logger has none.
"""
from __future__ import annotations

import logging

from . import config

__all__ = ["logger", "log_artifact"]

logger = logging.getLogger("aotgraph")
if config.debug_level > 0 and not logger.handlers:
    logger.addHandler(logging.StreamHandler())
    logger.setLevel(logging.INFO)


def log_artifact(kind: str, artifact) -> None:
    """Log `artifact` (a JointGraph or a Partition) at levels 2 and 3."""
    if config.debug_level < 2:
        return
    graphs = _graphs_of(artifact)
    sizes = ", ".join(f"{name} {len(graph.graph.nodes)} nodes" for name, graph in graphs)
    lines = [f"aotgraph {kind}: {sizes}"]
    signature = getattr(artifact, "signature", None)
    if signature is not None:
        lines.append(str(signature))
    saved = getattr(artifact, "saved", None)
    if saved:
        lines.append("saved for backward: " + ", ".join(
            f"{v.name} {tuple(v.meta.shape) if v.meta else 'symbol'} ({v.reason})" for v in saved))
    if config.debug_level >= 3:
        for name, graph in graphs:
            lines.append(f"--- {name} graph code ---\n{graph.print_readable(print_output=False)}")
    logger.info("\n".join(lines))


def _graphs_of(artifact) -> list:
    if hasattr(artifact, "graph_module"):
        return [("joint", artifact.graph_module)]
    graphs = [("forward", artifact.forward)]
    if artifact.backward is not None:
        graphs.append(("backward", artifact.backward))
    return graphs
