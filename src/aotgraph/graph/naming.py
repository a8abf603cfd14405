"""The names of graph placeholders: the one place they are built and read.

A joint graph's placeholders are ``primals_1..P`` (the tensor inputs), then
``tangents_1..T`` (one per differentiable forward output), as functorch names them: a
partition function in functorch's calling convention tells them apart by these names, so
they are part of the contract with users' partitioners. Every other stage reads roles from
the artifacts (`JointGraph`, `Partition.convention`), which are built here once.
"""
from __future__ import annotations

import torch.fx as fx

__all__ = ["primal_name", "tangent_name", "is_primal", "is_tangent", "tangent_number"]

_PRIMAL, _TANGENT = "primals_", "tangents_"


def primal_name(index: int) -> str:
    """The placeholder name of primal `index` (0-based)."""
    return f"{_PRIMAL}{index + 1}"


def tangent_name(index: int) -> str:
    """The placeholder name of tangent `index` (0-based): the gradient of the `index`-th
    differentiable forward output."""
    return f"{_TANGENT}{index + 1}"


def is_tangent(node: fx.Node) -> bool:
    return node.op == "placeholder" and node.name.startswith(_TANGENT)


def is_primal(node: fx.Node) -> bool:
    """A placeholder that is not a tangent (in a backward graph: a saved value)."""
    return node.op == "placeholder" and not is_tangent(node)


def tangent_number(node: fx.Node) -> int:
    """0-based index of a tangent placeholder among the joint's tangents."""
    return int(node.name[len(_TANGENT):]) - 1
