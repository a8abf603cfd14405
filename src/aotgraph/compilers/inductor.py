"""TorchInductor as one compiler: ``compile_fx_inner`` on our forward/backward graphs."""
from __future__ import annotations

from typing import Callable


def compile_with_inductor(graph_module, example_inputs) -> Callable:
    from torch._inductor.compile_fx import compile_fx_inner

    compiled = compile_fx_inner(graph_module, example_inputs)
    return compiled
