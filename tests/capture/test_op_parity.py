"""One differentiable program per family of ATen ops (reductions, indexing, convolutions,
pooling, normalization, linear algebra, FFT, losses, RNG, multi-output ops), in float64:
outputs and every gradient must match eager."""
import pytest
import torch
import torch.nn.functional as F

from parity import assert_parity


def leaf(*shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=torch.float64).requires_grad_()


CASES = {
    "max_dim": (lambda a: a.max(dim=1), (leaf(3, 4),)),
    "topk": (lambda a: a.topk(2, dim=1), (leaf(3, 4),)),
    "sort": (lambda a: a.sort(dim=0), (leaf(3, 4),)),
    "unbind": (lambda a: a.unbind(0), (leaf(3, 4),)),
    "split": (lambda a: a.split([1, 3], dim=1), (leaf(3, 4),)),
    "chunk_sum": (lambda a: [c.sum() for c in a.chunk(2)], (leaf(4, 4),)),
    "gather": (lambda a, i: a.gather(1, i), (leaf(3, 4), torch.tensor([[0, 1], [2, 3], [1, 1]]))),
    "scatter_add": (lambda a, s, i: a.scatter_add(1, i, s),
        (leaf(3, 4), leaf(3, 2, seed=1), torch.tensor([[0, 1], [2, 3], [1, 1]]))),
    "index_put": (lambda a, v: a.index_put((torch.tensor([0, 2]),), v), (leaf(3, 4), leaf(2, 4, seed=1))),
    "adv_index": (lambda a: a[torch.tensor([0, 2, 2]), 1:], (leaf(3, 4),)),
    "conv1d": (lambda x, w: F.conv1d(x, w, padding=1), (leaf(2, 3, 8), leaf(4, 3, 3, seed=1))),
    "conv_transpose2d": (lambda x, w: F.conv_transpose2d(x, w, stride=2),
        (leaf(1, 2, 4, 4), leaf(2, 3, 3, 3, seed=1))),
    "max_pool": (lambda x: F.max_pool2d(x, 2), (leaf(1, 2, 4, 4),)),
    "avg_pool": (lambda x: F.avg_pool2d(x, 2), (leaf(1, 2, 4, 4),)),
    "group_norm": (lambda x, w, b: F.group_norm(x, 2, w, b), (leaf(2, 4, 3, 3), leaf(4, seed=1), leaf(4, seed=2))),
    "instance_norm": (lambda x: F.instance_norm(x), (leaf(2, 4, 3, 3),)),
    "interp": (lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"), (leaf(1, 2, 3, 3),)),
    "pad": (lambda x: F.pad(x, (1, 2), mode="reflect"), (leaf(1, 2, 5),)),
    "embedding_bag": (lambda w, i: F.embedding_bag(i, w, torch.tensor([0, 2])),
        (leaf(10, 3), torch.tensor([1, 2, 4, 5]))),
    "einsum": (lambda a, b: torch.einsum("ij,jk->ik", a, b), (leaf(3, 4), leaf(4, 2, seed=1))),
    "cdist": (lambda a, b: torch.cdist(a, b), (leaf(3, 4), leaf(2, 4, seed=1))),
    "norm": (lambda a: a.norm(dim=1), (leaf(3, 4),)),
    "var_mean": (lambda a: torch.var_mean(a, dim=0), (leaf(3, 4),)),
    "std": (lambda a: a.std(), (leaf(3, 4),)),
    "logsumexp": (lambda a: a.logsumexp(1), (leaf(3, 4),)),
    "prod": (lambda a: a.prod(1), (leaf(3, 4),)),
    "clamp": (lambda a: a.clamp(-0.5, 0.5), (leaf(3, 4),)),
    "masked_fill": (lambda a: a.masked_fill(a > 0, 0.0), (leaf(3, 4),)),
    "tril": (lambda a: a.tril(), (leaf(4, 4),)),
    "diag_embed": (lambda a: torch.diag_embed(a), (leaf(3, 4),)),
    "linalg_solve": (lambda a, b: torch.linalg.solve(a @ a.t() + torch.eye(3, dtype=a.dtype), b),
        (leaf(3, 3), leaf(3, 2, seed=1))),
    "cholesky": (lambda a: torch.linalg.cholesky(a @ a.t() + torch.eye(3, dtype=a.dtype)), (leaf(3, 3),)),
    "svd": (lambda a: torch.linalg.svdvals(a), (leaf(3, 3),)),
    "stft_like_unfold": (lambda a: a.unfold(1, 2, 1).sum(-1), (leaf(3, 5),)),
    "repeat": (lambda a: a.repeat(2, 1).expand(2, 6, 4).sum(0), (leaf(3, 4),)),
    "roll": (lambda a: a.roll(1, 0), (leaf(3, 4),)),
    "complex": (lambda a: torch.view_as_real(torch.fft.rfft(a)).sum(-1), (leaf(3, 8),)),
    "ctc_like_nll": (lambda a, t: F.nll_loss(a.log_softmax(1), t), (leaf(3, 4), torch.tensor([0, 3, 1]))),
    "mse": (lambda a, b: F.mse_loss(a, b), (leaf(3, 4), leaf(3, 4, seed=1))),
    "bce_logits": (lambda a, b: F.binary_cross_entropy_with_logits(a, b.detach().sigmoid()),
        (leaf(3, 4), leaf(3, 4, seed=1))),
    "lstm_cell": (lambda x, h, c, wi, wh: torch.lstm_cell(x, (h, c), wi, wh),
        (leaf(2, 3), leaf(2, 4, seed=1), leaf(2, 4, seed=2), leaf(16, 3, seed=3), leaf(16, 4, seed=4))),
    "rnn": (lambda x, w: torch.nn.functional.linear(x, w).tanh().cumsum(0), (leaf(5, 3), leaf(3, 3, seed=1))),
    "randn_like_det": (lambda a: a + torch.randn_like(a), (leaf(3, 4),)),
    "rand_dropout": (lambda a: F.dropout(a, 0.2), (leaf(3, 4),)),
    "new_zeros": (lambda a: a.new_zeros(3) + a.sum(1), (leaf(3, 4),)),
    "arange_mul": (lambda a: a * torch.arange(4, dtype=a.dtype), (leaf(3, 4),)),
    "to_float32": (lambda a: a.float().sum(), (leaf(3, 4),)),
    "where_scalar": (lambda a: torch.where(a > 0, a, 0.0), (leaf(3, 4),)),
    "detach_add": (lambda a: a.clone().detach() + a, (leaf(3, 4),)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_eager(name):
    fn, args = CASES[name]
    assert_parity(fn, args)
