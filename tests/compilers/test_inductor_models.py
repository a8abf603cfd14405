"""compiler="inductor" on whole models that torch.compile compiles: training parity with eager
through ``torch.compile(model, backend=aotgraph.backend(compiler="inductor"))``. Models are
tiny: Inductor's CPU compile is slow."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import aotgraph
from aotgraph import aot_function
from aotgraph.capture.recorder import schema_args
from backend_training import assert_close, assert_training_parity

aten = torch.ops.aten
# Inductor fuses and reorders float arithmetic; eager's float32 tolerances scaled by this.
SCALE = 10.0


pytestmark = pytest.mark.usefixtures("fresh_dynamo")


class TiedDecoderLM(nn.Module):
    """A decoder LM: embeddings tied to the output head, a padding token, pre-norm decoder
    layers attending to the sequence itself as memory, RMSNorm, and a label-smoothed cross
    entropy that ignores the padding token."""

    def __init__(self, vocab: int = 32, dim: int = 16, heads: int = 2, layers: int = 1, pad: int = 0):
        super().__init__()
        self.pad = pad
        self.embed = nn.Embedding(vocab, dim, padding_idx=pad)
        self.layers = nn.ModuleList(
            nn.TransformerDecoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
            for _ in range(layers))
        self.norm = nn.RMSNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens, targets):
        x = self.embed(tokens)
        mask = nn.Transformer.generate_square_subsequent_mask(tokens.shape[1])
        for layer in self.layers:
            x = layer(x, x, tgt_mask=mask, tgt_is_causal=True)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=self.pad, label_smoothing=0.1)


def padded_tokens(vocab: int, batch: int, seq: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(1, vocab, (batch, seq))
    targets = torch.randint(1, vocab, (batch, seq))
    tokens[0, -2:] = pad
    targets[0, -2:] = pad
    return tokens, targets


def test_tied_decoder_lm_trains_like_eager():
    """Failed at lowering before recorded nodes took the schema's form (`schema_args`):
    RMSNorm's ``add_(eps)`` functionalized to ``add.Scalar(x, eps, 1)``."""
    torch.manual_seed(0)
    model = TiedDecoderLM()
    steps = [padded_tokens(32, 2, 8, model.pad) for _ in range(2)]
    backend = aotgraph.backend(compiler="inductor")
    assert_training_parity(model, steps, lambda m: torch.compile(m, backend=backend, dynamic=False), scale=SCALE)
    assert backend.entries
    assert all(type(e.compiled.backward).__module__.startswith("torch._inductor") for e in backend.entries)


def test_functional_twin_of_inplace_scalar_add():
    """The smallest program of the class: an in-place op whose functional twin has a positional
    default (``add_.Scalar`` -> ``add.Scalar(self, other, alpha=1)``)."""

    def f(x):
        y = x * 2
        torch.ops.aten.add_.Scalar(y, 1e-6)
        return y.rsqrt()

    x = (torch.rand(4, 8) + 0.5).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    compiled = aot_function(f, "inductor")
    out, expected = compiled(x), f(x_ref)
    assert_close(out, expected, "output", SCALE)
    out.sum().backward()
    expected.sum().backward()
    assert_close(x.grad, x_ref.grad, "x.grad", SCALE)
    entry = next(iter(compiled.aotgraph_entries.values()))
    adds = entry.joint.graph_module.graph.find_nodes(op="call_function", target=torch.ops.aten.add.Scalar)
    assert [tuple(n.args[1:]) for n in adds] == [(1e-6,)]


def test_inplace_op_whose_twin_inductor_decomposes():
    """``lerp_`` is not in Inductor's decomposition table, ``lerp`` is, and Inductor lowers
    neither: the in-place op is captured as its twin run through the table, then copied in
    (``torch.quantile`` calls ``lerp_``)."""

    def f(x, y, w):
        z = x * 2
        z.lerp_(y, w)
        return z.sin()

    tensors = [torch.randn(4, 6, requires_grad=True) for _ in range(3)]
    references = [t.detach().clone().requires_grad_() for t in tensors]
    compiled = aot_function(f, "inductor")
    out, expected = compiled(*tensors), f(*references)
    assert_close(out, expected, "output", SCALE)
    out.sum().backward()
    expected.sum().backward()
    for k, (t, r) in enumerate(zip(tensors, references)):
        assert_close(t.grad, r.grad, f"grad {k}", SCALE)
    entry = next(iter(compiled.aotgraph_entries.values()))
    targets = {n.target for n in entry.joint.graph_module.graph.nodes if n.op == "call_function"}
    assert not targets & {aten.lerp.Tensor, aten.lerp_.Tensor}


def test_inplace_normal_draws_like_eager():
    """``normal_`` has no ``normal`` overload of its arguments; its twin is ``normal_functional``.
    With ``fallback_random`` set, Inductor's table leaves random ops alone, so capture meets it."""
    from torch._inductor import config

    def f(x):
        x.normal_(1.0, 0.5)
        return x * 2

    x, x_ref = torch.zeros(5, 7), torch.zeros(5, 7)
    with config.patch(fallback_random=True):
        compiled = aot_function(f, "inductor")
        torch.manual_seed(3)
        out = compiled(x)
    state = torch.get_rng_state()
    torch.manual_seed(3)
    assert_close(out, f(x_ref), "output", SCALE)
    assert_close(x, x_ref, "mutated input", SCALE)
    assert torch.equal(state, torch.get_rng_state()), "RNG state after the call differs from eager"


class _DispatchedArgs(TorchDispatchMode):
    """Records the arguments the dispatcher hands to a dispatch mode (what make_fx records)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen = (args, kwargs or {})
        return func(*args, **(kwargs or {}))


X, Y = torch.randn(3, 4), torch.randn(3, 4)
SCHEMA_FORM_CASES = [
    (aten.add.Scalar, (X, 2.0, 1), {}),  # the failing form: a default spelled out
    (aten.add.Scalar, (X, 2.0, 3), {}),
    (aten.add.Scalar, (X, 2.0, 1.0), {}),  # a float 1.0 is not the int default
    (aten.add.Tensor, (X, Y), {"alpha": 1}),
    (aten.add.Tensor, (X, Y), {"alpha": 2}),
    (aten.sum.dim_IntList, (X, (0,), False), {"dtype": None}),
    (aten.sum.dim_IntList, (X,), {"dim": [1], "keepdim": True}),  # positional arguments by name
    (aten.leaky_relu.default, (X, 0.01), {}),
    (aten.hardtanh.default, (X, -1, 2), {}),  # a default before a given argument stays
    (aten.elu.default, (X, 1.0, 1, 1), {}),
    (aten.clamp.default, (X, 0.5, None), {}),
    (aten.mean.dim, (X, []), {}),  # dim has no default
    (aten.max_pool2d_with_indices.default, (X[None], [2, 2], [2, 2], 0, 1, False), {}),  # an int for int[2]
    (aten.max_pool2d_with_indices.default, (X[None], [2, 2], [2, 2], 1, [1, 1]), {}),
    (aten.div.Tensor_mode, (X, Y), {"rounding_mode": None}),  # a keyword without a default
    (aten.var.correction, (X,), {"correction": 1, "keepdim": False}),
    (aten.new_zeros.default, (X, [2]), {"dtype": None, "pin_memory": False}),
]


@pytest.mark.parametrize("op, args, kwargs", SCHEMA_FORM_CASES, ids=lambda v: str(v) if callable(v) else "")
def test_schema_args_match_the_dispatchers_form(op, args, kwargs):
    with _DispatchedArgs() as mode:
        op(*args, **kwargs)
    assert schema_args(op, args, kwargs) == mode.seen
