"""The backward releases each saved tensor after its last use, not when the backward ends.

A probe op at the end of the backward graph counts the saved activations still alive
(by weak reference); every saved activation's last use is before the probe, so none may be.
"""
import weakref

import torch
import torch.fx as fx

from aotgraph import aot_function, min_cut_rematerialization_partition
from aotgraph.compilers import eager

_alive_at_end: list[int] = []
_saved_refs: list[weakref.ref] = []


def _probe():
    _alive_at_end.append(sum(ref() is not None for ref in _saved_refs))


def _forward_compiler(gm: fx.GraphModule, example_inputs):
    compiled = eager(gm, example_inputs)

    def run(args):
        kept_by_caller = {t.untyped_storage().data_ptr() for t in args}  # inputs, then the user's output
        outputs = compiled(args)
        kept_by_caller.add(outputs[0].untyped_storage().data_ptr())
        _saved_refs[:] = [weakref.ref(t) for t in outputs[1:]
                          if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in kept_by_caller]
        return outputs

    run._boxed_call = True
    return run


def _backward_compiler(gm: fx.GraphModule, example_inputs):
    output = gm.graph.find_nodes(op="output")[0]
    with gm.graph.inserting_before(output):
        gm.graph.call_function(_probe, ())
    gm.recompile()
    return eager(gm, example_inputs)


def test_saved_activations_are_freed_before_backward_ends():
    x = torch.randn(64, 64, requires_grad=True)
    w = torch.randn(64, 64, requires_grad=True)

    def f(x, w):
        h = x
        for _ in range(4):
            h = torch.tanh(h @ w)
        return h

    compiled = aot_function(f, _forward_compiler, _backward_compiler, partition_fn=min_cut_rematerialization_partition)
    _alive_at_end.clear()
    out = compiled(x.detach().clone().requires_grad_(), w)
    saved = len(_saved_refs)
    out.sum().backward()
    assert saved > 0 and _alive_at_end == [0], f"{_alive_at_end} of {saved} saved activations alive at the end"
