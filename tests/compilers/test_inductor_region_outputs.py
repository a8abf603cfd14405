"""Regions handed to Inductor (``invoke_subgraph``, compiled by it once per graph) whose outputs
are one of their inputs: Inductor plans a subgraph's outputs as buffers of their own, so a
later in-place reuse of such an output overwrote the input it is (Bloom: gradients up to 300x
off). aotgraph gives Inductor such regions with a clone in place of each aliased output (switch
``region_outputs_unaliased``)."""
from __future__ import annotations

import copy

import pytest
import torch

import aotgraph
from decoder_blocks import BloomLike

pytestmark = pytest.mark.usefixtures("fresh_dynamo")


def test_a_region_returning_its_incoming_gradient_trains_like_eager_under_inductor():
    torch.manual_seed(0)
    model = BloomLike()
    compiled = torch.compile(copy.deepcopy(model), backend=aotgraph.backend("inductor"))
    ids = torch.randint(0, 50, (2, 12))
    compiled(ids).backward()
    model(ids).backward()
    for ours, eager in zip(compiled.parameters(), model.parameters()):
        torch.testing.assert_close(ours.grad, eager.grad, rtol=1e-4, atol=1e-5 * eager.grad.abs().max().item())
