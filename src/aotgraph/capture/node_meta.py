"""What compilers, profilers and Inductor's provenance tracking read about a node besides its
``val``, as torch's graphs carry it: ``tensor_meta``, ``stack_trace`` (the user's source
lines), ``seq_nr`` (a backward node's forward op), and from a Dynamo graph ``nn_module_stack``
and ``source_fn_stack``.

Forward ops: ``seq_nr`` is the sequence number autograd gave the op's grad_fn (made just
before the op reached the recorder below autograd); the stack trace is the user's frames
between the recorded op and the frame that called the program, or, inside a GraphModule's
generated code (Dynamo's graph), that GraphModule node's own meta. Backward ops: the
``seq_nr`` of the autograd node whose backward is running, and the stack trace of the
forward op with that number.
"""
from __future__ import annotations

import linecache
import math
import os
import sys
from types import CodeType, FrameType
from typing import Any, Optional

import torch
import torch.fx as fx

from .. import config
from ..graph.sizes import size_keys
from ..torch_private.fx import TensorMetadata, current_autograd_node, nodes_by_line, sequence_nr, tensor_metadata

__all__ = ["NodeMeta", "INHERITED", "add_tensor_meta", "innermost_line"]

# The keys a node made in place of another (functionalization) takes from it.
INHERITED = ("stack_trace", "seq_nr", "nn_module_stack", "source_fn_stack")
_FROM_DYNAMO = ("stack_trace", "nn_module_stack", "source_fn_stack")

_LIBRARY_DIRS = (os.path.dirname(torch.__file__), os.path.dirname(os.path.dirname(__file__)))
_USER, _LIBRARY, _GRAPH_MODULE = range(3)


class NodeMeta:
    """Per capture: the meta of each recorded op (`of_op`), memoized by code location so
    that an op costs one walk over its frames and a few dictionary lookups."""

    def __init__(self):
        self.outer_frame: Optional[FrameType] = None  # the frame that calls the program: the walk stops there
        self._kind_of_code: dict[CodeType, int] = {}
        self._meta_of_frames: dict[tuple, dict] = {}
        self._graph_module_lines: dict[CodeType, Optional[dict]] = {}
        self._meta_of_graph_node: dict[fx.Node, dict] = {}
        self._forward_meta: dict[int, dict] = {}  # seq_nr -> the meta of the first forward op with it

    def of_op(self) -> dict[str, Any]:
        """The meta of the op being recorded now (called from the dispatch hook)."""
        autograd_node = current_autograd_node()
        if autograd_node is not None:  # inside the backward of that node
            seq_nr = autograd_node._sequence_nr()
            forward = self._forward_meta.get(seq_nr)
            trace = forward.get("stack_trace") if forward else None
            return {"seq_nr": seq_nr, "stack_trace": trace} if trace else {"seq_nr": seq_nr}
        meta = self._program_meta(sys._getframe(2))
        seq_nr = sequence_nr() - 1
        if seq_nr >= 0:
            meta = {**meta, "seq_nr": seq_nr}
            self._forward_meta.setdefault(seq_nr, meta)
        return meta

    def _program_meta(self, frame: Optional[FrameType]) -> dict:
        stop, kinds = self.outer_frame, self._kind_of_code
        user_frames = []
        while frame is not None and frame is not stop:
            code = frame.f_code
            kind = kinds.get(code)
            if kind is None:
                kind = kinds[code] = _kind_of(code)
            if kind == _USER:
                user_frames.append((code, frame.f_lineno))
            elif kind == _GRAPH_MODULE:
                graph_meta = self._graph_module_meta(frame)
                if graph_meta is not None:
                    return graph_meta
            frame = frame.f_back
        key = tuple(user_frames)
        meta = self._meta_of_frames.get(key)
        if meta is None:
            meta = self._meta_of_frames[key] = {"stack_trace": _format_frames(reversed(key))} if key else {}
        return meta

    def user_line(self, frames) -> Optional[str]:
        """``file:line: code`` of the program's innermost frame among traceback `frames`
        (``FrameSummary``s, innermost last): a frame of the user's code, or a line of a
        GraphModule's generated code that ran ops while recording (Dynamo's graph), as its
        node's stack trace says; None where there is neither."""
        for frame in reversed(frames):
            if frame.filename.startswith("<eval_with_key>"):
                line = innermost_line(self._graph_node_trace(frame.filename, frame.lineno))
                if line is not None:
                    return line
            elif not frame.filename.startswith(_LIBRARY_DIRS):
                return f"{frame.filename}:{frame.lineno}: {(frame.line or '').strip()}"
        return None

    def _graph_node_trace(self, filename: str, lineno: int) -> Optional[str]:
        for code, lines in self._graph_module_lines.items():
            node = lines.get(lineno - code.co_firstlineno) if lines and code.co_filename == filename else None
            if node is not None:
                return node.meta.get("stack_trace")
        return None

    def _graph_module_meta(self, frame: FrameType) -> Optional[dict]:
        """The meta of the node of a GraphModule that `frame` (its generated forward) runs."""
        code = frame.f_code
        if code not in self._graph_module_lines:
            self._graph_module_lines[code] = nodes_by_line(frame.f_locals.get("self"), code)
        lines = self._graph_module_lines[code]
        node = lines.get(frame.f_lineno - code.co_firstlineno) if lines else None
        if node is None:
            return None
        meta = self._meta_of_graph_node.get(node)
        if meta is None:
            meta = self._meta_of_graph_node[node] = {k: node.meta[k] for k in _FROM_DYNAMO if k in node.meta}
        return meta


def _kind_of(code: CodeType) -> int:
    filename = code.co_filename
    if filename.startswith("<eval_with_key>"):
        return _GRAPH_MODULE
    return _LIBRARY if filename.startswith(_LIBRARY_DIRS) else _USER


def _format_frames(frames) -> str:
    """Frames, outermost first, as fx writes ``stack_trace`` (``traceback`` format, stripped)."""
    lines = []
    for code, lineno in frames:
        lines.append(f'  File "{code.co_filename}", line {lineno}, in {code.co_name}\n')
        source = linecache.getline(code.co_filename, lineno).strip()
        if source:
            lines.append(f"    {source}\n")
    return "".join(lines).strip()


def innermost_line(stack_trace: Optional[str]) -> Optional[str]:
    """``file:line: code`` of the innermost frame of a ``stack_trace`` (traceback format)."""
    lines = stack_trace.strip().splitlines() if stack_trace else []
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index].strip()
        if line.startswith('File "'):
            filename, _, rest = line[len('File "'):].partition('", line ')
            code = lines[index + 1].strip() if index + 1 < len(lines) else ""
            return f"{filename}:{rest.split(',')[0]}: {code}"
    return None


def add_tensor_meta(graph: fx.Graph) -> None:
    """``meta["tensor_meta"]`` on every node whose ``val`` is a tensor, from that value.
    Memoized by layout: torch's extraction asks a fake tensor three contiguity questions
    through its dispatch, most of this pass's time where each node paid them. Symbolic sizes
    are keyed by their expressions (switch ``symbolic_fake_memo``): nodes of equal expressions
    share the metadata of the first."""
    memo: dict[tuple, Any] = {}
    symbolic_keys = config.enabled("symbolic_fake_memo")
    for node in graph.nodes:
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor) or val.layout != torch.strided:
            continue
        if val.is_quantized:
            node.meta["tensor_meta"] = tensor_metadata(val)
            continue
        key = (val.shape, val.stride(), val.dtype, val.requires_grad)
        try:
            meta = memo.get(key)
        except TypeError:  # a symbolic size: not hashable
            if not symbolic_keys:
                node.meta["tensor_meta"] = tensor_metadata(val)
                continue
            key = (size_keys(val.shape), size_keys(val.stride()), val.dtype, val.requires_grad)
            meta = memo.get(key)
            if meta is None:
                hinted = _hinted_layout(val)
                if hinted is not None:
                    meta = memo[key] = TensorMetadata(val.shape, val.dtype, val.requires_grad, val.stride(),
                                                      _memory_format(*hinted), False, {})
        if meta is None:
            meta = memo[key] = tensor_metadata(val)
        node.meta["tensor_meta"] = meta


def _hinted_layout(val: torch.Tensor) -> Optional[tuple[list, list]]:
    """(sizes, strides) of `val` at its symbols' hints (the example inputs' sizes); None where a
    size or stride has no hint (an unbacked symbol).

    torch's extraction asks each contiguity question without a data-dependent error
    (``guard_or_false`` / ``guard_or_true``): a question sympy decides from the ranges has the
    answer it has at every valid value, the hints' among them, and one it cannot decide is
    answered at the hints (with a guard). Either way the answer is the hints' answer, which
    `_memory_format` computes on ints, without the 0.5 ms of sympy a question costs (and
    without that guard, which no compiler reads: the format is metadata)."""
    hints = []
    for values in (val.shape, val.stride()):
        ints = []
        for value in values:
            if type(value) is not int:
                if not value.node.has_hint():
                    return None
                value = int(value.node.hint)
            ints.append(value)
        hints.append(ints)
    return hints[0], hints[1]


def _memory_format(sizes: list, strides: list) -> Optional[torch.memory_format]:
    """The first of contiguous, channels-last (4-d) and channels-last-3d (5-d) that concrete
    `sizes` and `strides` are laid out in, as torch's ``is_contiguous_for_memory_format`` decides
    it (dimensions of size 1 skipped; fewer than two elements are contiguous); None if none."""
    if math.prod(sizes) < 2 or _nested(sizes, strides, range(len(sizes) - 1, -1, -1)):
        return torch.contiguous_format
    if len(sizes) == 4 and _nested(sizes, strides, (1, 3, 2, 0)):
        return torch.channels_last
    if len(sizes) == 5 and _nested(sizes, strides, (1, 4, 3, 2, 0)):
        return torch.channels_last_3d
    return None


def _nested(sizes: list, strides: list, innermost_first) -> bool:
    expected = 1
    for dim in innermost_first:
        if sizes[dim] == 1:
            continue
        if strides[dim] != expected:
            return False
        expected *= sizes[dim]
    return True
