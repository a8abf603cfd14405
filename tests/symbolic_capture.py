"""What a compile with symbolic sizes captured: the code of its graphs and its size guards."""
from __future__ import annotations

import aotgraph


def codes_and_guards(model, inputs) -> tuple[list, set]:
    """(the code of each graph, the conjuncts of its size guards) of one first call through
    backward of ``aot_module(model, dynamic=True)``: two captures of one program compare equal
    when they recorded the same graphs and assumed the same about the sizes (in any order)."""
    codes = []

    def recording(graph_module, example_inputs):
        codes.append(graph_module.code)
        return graph_module

    compiled = aotgraph.aot_module(model, fw_compiler=recording, dynamic=True)
    compiled(*inputs).sum().backward()
    guards = {part for entry in compiled.aotgraph_entries.values() for guard in entry.guards.guards
              for part in getattr(guard, "text", "").split(" and ")}
    return codes, guards
