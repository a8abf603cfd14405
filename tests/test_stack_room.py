"""A compile runs above a frame that starts a chunk of CPython's frame stack of its own
(`aotgraph.stack_room`): a loop that calls across a chunk boundary (a chunk mapped and unmapped
per call) at some depth does not beneath it, and a compile's stages run there."""
import sys

import pytest
import torch

import aotgraph
from aotgraph import pipeline, stack_room
from aotgraph.stack_room import call_with_stack_room

from frame_chunks import at_depth, crossing_depth

chunked = pytest.mark.skipif(not stack_room._CHUNKED_STACK or sys.platform != "linux",
                             reason="CPython 3.11+ on Linux (a chunked frame stack; page faults from getrusage)")


# (That no loop beneath the room crosses a boundary, and that one does with the switch off:
# tests/test_debug.py::test_stack_room_switch.)


@chunked
def test_a_nested_call_adds_no_second_large_frame():
    # A second large frame would use up the room of the first: beneath both, a crossing again.
    if crossing_depth() is None:
        pytest.skip("this Python keeps a spare chunk (CPython gh-142183 fixed): no boundary crossing to avoid")

    def nested(depth, fn):
        return call_with_stack_room(call_with_stack_room, at_depth, depth, fn)

    assert crossing_depth(nested) is None


def test_a_compile_runs_its_stages_in_the_room(monkeypatch):
    calls = []
    original = pipeline.call_with_stack_room
    monkeypatch.setattr(pipeline, "call_with_stack_room",
                        lambda fn, *args, **kwargs: calls.append(fn.__name__) or original(fn, *args, **kwargs))
    compiled = aotgraph.aot_function(lambda x: x.sin() * 2)
    x = torch.randn(4, requires_grad=True)
    compiled(x).sum().backward()
    torch.testing.assert_close(x.grad, x.detach().cos() * 2)
    assert calls == ["_run_stages"]
