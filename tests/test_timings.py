"""The per-stage compile log: every stage recorded once, logged on the ``aotgraph`` logger."""
import logging

import torch

import aotgraph


def test_log_records_every_stage_once_through_first_backward(caplog):
    compiled = aotgraph.aot_function(lambda x: (x * 2).sin())
    x = torch.randn(3, requires_grad=True)
    with caplog.at_level(logging.INFO, logger="aotgraph"):
        for _ in range(2):
            compiled(x).sum().backward()
    (entry,) = compiled.aotgraph_entries.values()
    stages = [r.stage for r in entry.log.records]
    assert stages == ["capture", "partition", "compile", "first run", "first backward"]
    assert all(r.seconds >= 0 for r in entry.log.records)
    logged = [m for m in caplog.messages if m.startswith("aotgraph ")]
    assert [m.split(":")[0] for m in logged] == ["aotgraph compiling <lambda>"] + [f"aotgraph {s}" for s in stages]
    torch.testing.assert_close(x.grad, 2 * 2 * torch.cos(2 * x.detach()))


def test_inference_log_has_no_backward_stage():
    compiled = aotgraph.aot_function(lambda x: x + 1)
    compiled(torch.randn(3))
    (entry,) = compiled.aotgraph_entries.values()
    assert [r.stage for r in entry.log.records] == ["capture", "partition", "compile", "first run"]
