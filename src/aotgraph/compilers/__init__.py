"""Stage 3: fx graph -> callable, in torch's boxed calling convention.

A compiler is ``compiler(graph_module, example_inputs) -> callable``. The embedded
default, ``"eager"``, runs the graph's generated Python code; any user callable works,
boxed (``_boxed_call = True``: takes one list) or not. Example inputs are fake tensors.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence, Union

import torch.fx as fx

from ..errors import BadArgument, CompilerError

__all__ = ["compile_graph", "eager", "nop", "make_boxed_func", "make_boxed_compiler", "resolve_compiler"]


def make_boxed_func(f: Callable) -> Callable:
    """Wrap ``f(*args)`` so it takes one list of arguments (torch's boxed convention)."""

    def boxed(args):
        return f(*args)

    boxed._boxed_call = True
    return boxed


def make_boxed_compiler(compiler: Callable) -> Callable:
    def boxed_compiler(graph_module: fx.GraphModule, example_inputs):
        return make_boxed_func(compiler(graph_module, example_inputs))

    return boxed_compiler


def nop(graph_module: fx.GraphModule, example_inputs) -> Callable:
    """The compiler that compiles nothing: the graph runs as its Python code."""
    return make_boxed_func(graph_module.forward)


def eager(graph_module: fx.GraphModule, example_inputs) -> Callable:
    """The embedded default compiler: the graph's own generated code, called without
    ``nn.Module.__call__`` overhead, in the boxed convention that clears its argument list
    so each input is freed after its last use."""
    from .boxed_code import boxed_graph_function

    return boxed_graph_function(graph_module)


def inductor(graph_module: fx.GraphModule, example_inputs) -> Callable:
    from .inductor import compile_with_inductor

    return compile_with_inductor(graph_module, example_inputs)


_NAMED = {"eager": eager, "nop": nop, "inductor": inductor}


def resolve_compiler(compiler: Union[str, Callable, None], default: Callable = eager) -> Callable:
    if compiler is None:
        return default
    if isinstance(compiler, str):
        if compiler not in _NAMED:
            raise BadArgument(f"unknown compiler {compiler!r}", "compile", f"use one of {sorted(_NAMED)} or a callable")
        return _NAMED[compiler]
    if not callable(compiler):
        raise BadArgument(f"compiler must be a name or a callable, got {type(compiler).__name__}", "compile",
                          f"use one of {sorted(_NAMED)} or a callable (graph_module, example_inputs) -> callable")
    return compiler


def compile_graph(compiler: Callable, graph_module: fx.GraphModule, example_inputs: Sequence[Any], role: str):
    """Run `compiler` on one graph and return a boxed callable (takes a list)."""
    compiled = compiler(graph_module, list(example_inputs))
    if not callable(compiled):
        name = getattr(compiler, "__name__", type(compiler).__name__)
        raise CompilerError(
            f"the {role} compiler {name} returned {type(compiled).__name__}, which is not callable",
            "compile",
            "return a callable, e.g. graph_module.forward or make_boxed_func(...)",
        )
    if getattr(compiled, "_boxed_call", False):
        return compiled
    return make_boxed_func(compiled)
