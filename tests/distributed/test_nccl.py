"""The distributed training programs of this folder on the GPUs with NCCL, one rank per GPU
(world size 1 on a one-GPU machine): DDP with the decoder and the BatchNorm convnet, FSDP2 with
the decoder, tensor parallelism with DTensor parameters; 5 SGD steps, losses and final weights
against eager's on the same devices. Skipped without CUDA."""
import pytest
import torch

from ranks import run_ranks
from test_ddp import _ddp_worker
from test_fsdp2 import TRACED_HOOKS, _fsdp2_traced_hooks_worker, _fsdp2_worker
from test_tensor_parallel import _tensor_parallel_worker

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.skipif(not torch.distributed.is_nccl_available(), reason="needs NCCL"),
]
COMPILERS = ["eager", "inductor"]


def _on_gpus(worker, *args):
    return run_ranks(worker, *args, world_size=torch.cuda.device_count(), timeout_s=900, backend="nccl")


@pytest.mark.parametrize("compiler", COMPILERS)
@pytest.mark.parametrize("model_name", ["gpt", "convnet"])
def test_ddp_on_gpus(model_name, compiler):
    graphs = _on_gpus(_ddp_worker, model_name, compiler)
    assert len(set(graphs)) == 1 and graphs[0] > 1, f"the backend received {graphs} graphs"


@pytest.mark.parametrize("compiler", COMPILERS)
def test_fsdp2_on_gpus(compiler):
    for compiled_graphs, block_entries in _on_gpus(_fsdp2_worker, compiler):
        assert compiled_graphs >= 1 and block_entries == 2


@pytest.mark.parametrize("compiler", COMPILERS)
def test_tensor_parallel_on_gpus(compiler):
    for graphs, collectives, plain in _on_gpus(_tensor_parallel_worker, compiler):
        assert graphs == 1 and plain


@TRACED_HOOKS
@pytest.mark.parametrize("compiler", COMPILERS)
def test_fsdp2_traced_hooks_on_gpus(compiler):
    assert all(graphs >= 1 for graphs in _on_gpus(_fsdp2_traced_hooks_worker, compiler))
