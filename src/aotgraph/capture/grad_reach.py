"""Which outputs' autograd histories reach each input: eager's answer to "does this input get a
gradient (possibly zeros) when only these outputs get one".

In eager, an input whose history some output given a gradient reaches gets a gradient tensor,
zeros where every path multiplies by zero (``y = x.clone(); y.zero_()``). The captured backward
graph is a poorer witness: a decomposition may fold such a path into a constant (Inductor's
``zeros_like(grad) -> full(0)``), after which the gradient no longer reads that output's tangent,
and the runtime, which gives None to a gradient none of whose tangents arrived, would give None
(fuzzer seed 6815). The runtime takes the union of both.
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["reaching_tangent_masks"]


def reaching_tangent_masks(diff_outs: Sequence[torch.Tensor], primal_fakes: Sequence[torch.Tensor]) -> tuple[int, ...]:
    """Per primal, a bit mask of the tangents (bit k: `diff_outs[k]`, tangent k of the joint graph)
    whose output's autograd graph reaches the primal (its grad_fn, or a leaf's AccumulateGrad);
    0 for a primal that needs no gradient, and for a tensor's repeats after its first primal
    (which alone gets its gradient). One walk over the autograd graph (each node once), masks
    propagated from the outputs down in topological order."""
    seen: set = set()
    wanted = []
    for fake in primal_fakes:
        wanted.append(fake.requires_grad and id(fake) not in seen)
        seen.add(id(fake))
    if not any(wanted):
        return (0,) * len(primal_fakes)
    mask: dict = {}  # autograd node -> tangent bits
    leaf_bits: dict[int, int] = {}  # id(leaf) -> tangent bits reaching its AccumulateGrad
    for k, out in enumerate(diff_outs):
        if out.grad_fn is not None:
            mask[out.grad_fn] = mask.get(out.grad_fn, 0) | (1 << k)
        elif out.requires_grad:  # a leaf returned as itself
            leaf_bits[id(out)] = leaf_bits.get(id(out), 0) | (1 << k)
    for node in _topological(list(mask)):
        bits = mask.get(node, 0)
        leaf = getattr(node, "variable", None)  # set on AccumulateGrad nodes only
        if leaf is not None:
            leaf_bits[id(leaf)] = leaf_bits.get(id(leaf), 0) | bits
        for child, _ in node.next_functions:
            if child is not None:
                mask[child] = mask.get(child, 0) | bits
    # (not torch.autograd.graph.get_gradient_edge: for a leaf it runs view_as, a fake op, ~1 ms each)
    return tuple((leaf_bits.get(id(f), 0) if f.grad_fn is None else mask.get(f.grad_fn, 0)) if w else 0
                 for f, w in zip(primal_fakes, wanted))


def _topological(roots: list) -> list:
    """The autograd nodes reachable from `roots`, each before the nodes it passes gradients to."""
    order, done, on_path = [], set(), set()
    for root in roots:
        if root in done:
            continue
        stack = [(root, iter(root.next_functions))]
        on_path.add(root)
        while stack:
            node, children = stack[-1]
            for child, _ in children:
                if child is not None and child not in done and child not in on_path:
                    on_path.add(child)
                    stack.append((child, iter(child.next_functions)))
                    break
            else:
                stack.pop()
                on_path.discard(node)
                done.add(node)
                order.append(node)
    order.reverse()
    return order
