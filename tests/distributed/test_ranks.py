"""The distributed tests' launcher fails fast with the failing rank's error, never hangs: a
rank that fails while compiling (its peer waits in DDP's all-reduce), a rank that dies, and
ranks past the deadline."""
import os
import time

import pytest
import torch
from torch.nn.parallel import DistributedDataParallel

import aotgraph
from ranks import RankFailed, run_ranks


class _TwoLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.second = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.second(self.first(x).relu())


def _compile_fails_on_rank_1(rank: int, world_size: int) -> None:
    def compiler(graph_module, example_inputs):
        if rank == 1:
            raise RuntimeError("rank 1 cannot compile this graph")
        return graph_module

    model = DistributedDataParallel(_TwoLayers())
    compiled = torch.compile(model, backend=aotgraph.backend(compiler=compiler), dynamic=False)
    compiled(torch.randn(2, 4)).sum().backward()  # rank 0 waits here for rank 1's gradients


def _dies_on_rank_0(rank: int, world_size: int) -> None:
    if rank == 0:
        os._exit(3)
    time.sleep(60)


def _sleeps(rank: int, world_size: int) -> None:
    time.sleep(60)


def test_a_rank_failing_in_compile_fails_the_run_with_its_error():
    start = time.monotonic()
    with pytest.raises(RankFailed, match=r"(?s)rank 1 failed:.*rank 1 cannot compile this graph"):
        run_ranks(_compile_fails_on_rank_1, timeout_s=120)
    assert time.monotonic() - start < 60, "waited for the deadline instead of the failing rank's report"


def test_a_rank_that_dies_fails_the_run():
    with pytest.raises(RankFailed, match="rank 0 exited with code 3 without reporting"):
        run_ranks(_dies_on_rank_0, timeout_s=50)


def test_ranks_past_the_deadline_fail_the_run():
    start = time.monotonic()
    with pytest.raises(RankFailed, match=r"ranks \[0, 1\] did not finish within 5 s"):
        run_ranks(_sleeps, timeout_s=5)
    assert time.monotonic() - start < 30
