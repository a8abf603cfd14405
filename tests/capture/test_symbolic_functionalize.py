"""Functionalization under symbolic shapes: a write through a view of an intermediate (or a
broadcasting in-place op) rebuilds the written tensor at its full size, and that size must be a
graph node read from a tensor, never a SymInt spelled into the graph (which names no symbol)."""
import pytest
import torch

from aotgraph import aot_function
from eager_parity import Case, assert_parity, leaf


def write_through_squeeze(a):
    b = a.clone().squeeze(-1)
    b.add_(1.0)
    return a + b


def write_through_unsqueeze(a):
    b = (a * 2).unsqueeze(0)
    b.mul_(3)
    return b.sum(0) + a


def broadcasting_copy_into_intermediate(a):
    b = a * 2
    b.copy_(a[0])  # (n, 4) <- (4,): the new value is expanded to b's size
    return b * a


@pytest.mark.parametrize("fn, shape", [(write_through_squeeze, (3, 1)), (write_through_unsqueeze, (3, 4)),
                                       (broadcasting_copy_into_intermediate, (3, 4))])
def test_dynamic_write_back_sizes(fn, shape):
    for rows in (shape[0], shape[0] + 2):  # the second size reuses the symbolic graphs
        size = (rows, *shape[1:])
        assert_parity(fn, lambda: Case((leaf(*size),)), compiled=compiled_dynamic(fn))


_compiled = {}


def compiled_dynamic(fn):
    if fn not in _compiled:
        _compiled[fn] = aot_function(fn, dynamic=True)
    return _compiled[fn]
