"""flex_attention under capture: recorded whole (torch's HOP) with its backward
(``flex_attention_backward`` and the score_mod's joint graph, both built by aotgraph).

Each program runs compiled and eagerly and is compared: outputs, gradients (of the
projections and of a learnable bias that score_mod reads), several optimizer steps. torch's
public flex_attention refuses a backward on the CPU before calling its operator (its dense
implementation computes one); on the CPU the tests lift that refusal (`cpu_backward_allowed`)
for both the eager and the compiled run. Inductor lowers flex_attention on the CPU for
inference only: its training tests run on CUDA, and on the CPU a training step through
Inductor is refused by name.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import aotgraph
from aotgraph import aot_function
from aotgraph.errors import BadArgument
from backend_training import HopSeen, assert_training_parity

flex = pytest.importorskip("torch.nn.attention.flex_attention")
# the eager reference runs flex_attention unfused, and torch says so
pytestmark = [pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile"),
              pytest.mark.usefixtures("fresh_dynamo")]

# Inductor's CUDA kernels tile each block of the block mask (their BLOCK_M and BLOCK_N, up to
# 128, must divide BLOCK), and a query shorter than 128 takes its decoding kernel, whose
# BLOCK_M is the query length rounded up (64 here would need BLOCK >= 64): with SEQ 64 and
# BLOCK 16 every kernel choice is skipped (NoValidChoicesError, torch.compile's own path too).
SEQ, WINDOW, BLOCK = 256, 16, 128
CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="needs a CUDA device"))]
NO_CUDA_INDUCTOR = pytest.mark.skipif(
    not CUDA, reason="Inductor lowers flex_attention's backward only on CUDA (its CPU template is inference-only)")


@pytest.fixture
def cpu_backward_allowed(monkeypatch):
    """torch's API check that refuses flex_attention's backward on the CPU, off (eager and compiled alike)."""
    monkeypatch.setattr(flex, "_validate_device", lambda *tensors: None)


def causal(score, b, h, q_idx, kv_idx):
    return torch.where(q_idx >= kv_idx, score, -float("inf"))


def sliding_window(b, h, q_idx, kv_idx):
    return (q_idx >= kv_idx) & (q_idx - kv_idx <= WINDOW)


class FlexAttentionBlock(nn.Module):
    """Self-attention through flex_attention: a causal score_mod adding a learnable relative
    position bias (Dynamo hands it to the HOP as a score buffer that needs a gradient) and a
    sliding-window block mask."""

    def __init__(self, device: str, dim: int = 32, heads: int = 2):  # head dim 16: Inductor's least
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.rel_bias = nn.Parameter(0.1 * torch.randn(2 * SEQ - 1))
        self.block_mask = flex.create_block_mask(sliding_window, None, None, SEQ, SEQ, device=device,
                                                 BLOCK_SIZE=BLOCK)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)

        def score_mod(score, batch, head, q_idx, kv_idx):
            return causal(score + self.rel_bias[q_idx - kv_idx + SEQ - 1], batch, head, q_idx, kv_idx)

        y = flex.flex_attention(q, k, v, score_mod=score_mod, block_mask=self.block_mask)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


def hop_calls(graph_module, hop) -> int:
    return len(graph_module.graph.find_nodes(op="call_function", target=hop))


@pytest.mark.parametrize("compiler", ["eager", pytest.param("inductor", marks=[pytest.mark.slow, NO_CUDA_INDUCTOR])])
@pytest.mark.parametrize("device", DEVICES)
def test_training_step_with_score_mod_and_block_mask(compiler, device, cpu_backward_allowed):
    if compiler == "inductor" and device == "cpu":
        pytest.skip("Inductor lowers flex_attention's backward only on CUDA (see test_inductor_cpu_training_is_refused)")
    torch.manual_seed(0)
    model = FlexAttentionBlock(device).to(device)
    steps = [(torch.randn(2, SEQ, 32, device=device),) for _ in range(3)]
    seen = HopSeen(compiler)
    assert_training_parity(model, steps, seen.compile, lr=1e-4, scale=10.0 if device == "cuda" else 1.0)
    assert "flex_attention" in seen.hops
    (entry,) = seen.backend.entries
    assert hop_calls(entry.partition.forward, torch.ops.higher_order.flex_attention) == 1
    assert hop_calls(entry.partition.backward, torch.ops.higher_order.flex_attention_backward) == 1


@pytest.mark.slow
@NO_CUDA_INDUCTOR
def test_torch_compile_trains_the_same_block():
    """The baseline of the Inductor case above: torch.compile's own path (AOTAutograd and
    Inductor) trains the same block; where both fail, the block is at fault, not aotgraph."""
    torch.manual_seed(0)
    steps = [(torch.randn(2, SEQ, 32, device="cuda"),) for _ in range(3)]
    assert_training_parity(FlexAttentionBlock("cuda").cuda(), steps, lambda m: torch.compile(m, dynamic=False),
                           lr=1e-4, scale=10.0)


def node_arguments(graph_module, hop) -> list:
    """The arguments and result of each `hop` node, as a compiler reads them: a tensor's shape,
    strides, storage offset and dtype (``meta['val']``), a subgraph's placeholder shapes and dtypes,
    any other value as it is."""
    def read(value):
        if isinstance(value, (tuple, list)):
            return type(value)(read(v) for v in value)
        if isinstance(value, dict):
            return {key: read(v) for key, v in value.items()}
        if isinstance(value, torch.fx.Node) and value.op == "get_attr":
            subgraph = getattr(graph_module, value.target)
            placeholders = subgraph.graph.find_nodes(op="placeholder")
            return [(tuple(p.meta["val"].shape), p.meta["val"].dtype) for p in placeholders]
        if isinstance(value, torch.fx.Node):
            value = value.meta["val"]
        if isinstance(value, torch.Tensor):
            return tuple(value.shape), value.stride(), value.storage_offset(), value.dtype
        return value

    return [read((node.args, node.kwargs, node.meta["val"]))
            for node in graph_module.graph.find_nodes(op="call_function", target=hop)]


def test_flex_nodes_read_what_torch_aot_autograd_hands_inductor(cpu_backward_allowed):
    """The forward and backward flex nodes that Inductor lowers, as aotgraph builds them and as
    torch's AOTAutograd does for the same Dynamo graph: the same layouts of query, key, value,
    out, logsumexp (float32) and grad_out, block-mask tensors, scale, kernel_options and
    subgraph signatures."""
    from torch._dynamo.backends.common import aot_autograd

    def graphs_of(make_backend) -> dict:
        compiled_graphs = []  # the forward, then the backward

        def compile_graph(graph_module, example_inputs):
            compiled_graphs.append(graph_module)

            def run(args):
                return graph_module(*args)
            run._boxed_call = True  # takes one list, as both callers prefer
            return run

        torch._dynamo.reset()
        torch.manual_seed(0)
        compiled = torch.compile(FlexAttentionBlock("cpu"), backend=make_backend(compile_graph), dynamic=False)
        compiled(torch.randn(2, SEQ, 32)).sum().backward()
        forward, backward = compiled_graphs
        return {"forward": node_arguments(forward, torch.ops.higher_order.flex_attention),
                "backward": node_arguments(backward, torch.ops.higher_order.flex_attention_backward)}

    ours = graphs_of(lambda compile_graph: aotgraph.backend(compiler=compile_graph))
    torchs = graphs_of(lambda compile_graph: aot_autograd(fw_compiler=compile_graph, bw_compiler=compile_graph))
    assert len(ours["forward"]) == len(ours["backward"]) == 1
    assert ours == torchs


class MarkedFlexBlock(FlexAttentionBlock):
    @torch.compiler.nested_compile_region
    def forward(self, x):
        return x + super().forward(x)


class FlexDecoder(nn.Module):
    def __init__(self, layers: int = 3):
        super().__init__()
        self.blocks = nn.ModuleList(MarkedFlexBlock("cpu") for _ in range(layers))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def test_flex_attention_inside_nested_compile_regions(cpu_backward_allowed):
    """Blocks marked with nested_compile_region: each region graph holds the flex_attention
    node (and its backward graph the backward node); float64, so three blocks deep the
    comparison is of the computation, not of rounding."""
    torch.manual_seed(0)
    steps = [(torch.randn(2, SEQ, 32, dtype=torch.float64),) for _ in range(3)]
    seen = HopSeen("eager")
    assert_training_parity(FlexDecoder().double(), steps, seen.compile, lr=1e-4)
    (entry,) = seen.backend.entries
    regions = [n for n in entry.partition.forward.graph.nodes if n.target is torch.ops.higher_order.invoke_subgraph]
    assert regions, "no block was called as a region"
    region = getattr(entry.partition.forward, regions[0].args[0].target)
    assert hop_calls(region, torch.ops.higher_order.flex_attention) == 1


def dense_attention(q, k, v, bias=None):
    """What the block computes, written out: scaled scores, the bias, the causal sliding-window mask, softmax."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    i, j = torch.arange(SEQ).view(-1, 1), torch.arange(SEQ).view(1, -1)
    if bias is not None:
        scores = scores + bias[i - j + SEQ - 1]
    keep = (i >= j) & (i - j <= WINDOW)
    return scores.masked_fill(~keep, -float("inf")).softmax(-1) @ v


def test_aot_function_calling_flex_attention(cpu_backward_allowed):
    """Without Dynamo, the public flex_attention (which outside torch.compile wraps its operator
    in a nested torch.compile) is captured through its operator; compared with eager and with
    attention written out."""
    torch.manual_seed(0)
    bias = 0.1 * torch.randn(2 * SEQ - 1)  # a constant closed over: no gradient asked
    block_mask = flex.create_block_mask(sliding_window, None, None, SEQ, SEQ, device="cpu", BLOCK_SIZE=BLOCK)

    def attend(q, k, v):
        def score_mod(score, b, h, q_idx, kv_idx):
            return causal(score + bias[q_idx - kv_idx + SEQ - 1], b, h, q_idx, kv_idx)
        return flex.flex_attention(q, k, v, score_mod=score_mod, block_mask=block_mask)

    q, k, v = (torch.randn(2, 2, SEQ, 8, requires_grad=True) for _ in range(3))
    compiled = aot_function(attend, fw_compiler="eager")
    out, expected = compiled(q, k, v), attend(q, k, v)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out, dense_attention(q, k, v, bias))
    tangent = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), tangent)
    torch.testing.assert_close(grads, torch.autograd.grad(expected, (q, k, v), tangent))
    torch.testing.assert_close(grads, torch.autograd.grad(dense_attention(q, k, v, bias), (q, k, v), tangent))
    forward = next(iter(compiled.aotgraph_entries.values())).partition.forward
    assert hop_calls(forward, torch.ops.higher_order.flex_attention) == 1


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_gradient_through_the_logsumexp(dynamic, cpu_backward_allowed):
    """A program reading flex_attention's logsumexp: its gradient enters the backward node too."""
    block_mask = flex.create_block_mask(sliding_window, None, None, SEQ, SEQ, device="cpu", BLOCK_SIZE=BLOCK)

    def attend(q, k, v):
        out, aux = flex.flex_attention(q, k, v, score_mod=causal, block_mask=block_mask,
                                       return_aux=flex.AuxRequest(lse=True))
        return out.sum() + aux.lse.sin().sum()

    q, k, v = (torch.randn(2, 2, SEQ, 8, requires_grad=True) for _ in range(3))
    compiled = torch.compile(attend, backend=aotgraph.backend(compiler="eager"), dynamic=dynamic, fullgraph=True)
    out, expected = compiled(q, k, v), attend(q, k, v)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(torch.autograd.grad(out, (q, k, v)), torch.autograd.grad(expected, (q, k, v)))


def test_closed_over_tensor_that_requires_grad_is_refused(cpu_backward_allowed):
    """Outside Dynamo a tensor that score_mod closes over stays a constant of its graph: one
    that requires grad would lose its gradient, so it is refused by name."""
    bias = torch.randn(2 * SEQ - 1, requires_grad=True)

    def attend(q, k, v):
        return flex.flex_attention(q, k, v, score_mod=lambda score, b, h, i, j: score + bias[i - j + SEQ - 1])

    q, k, v = (torch.randn(1, 2, SEQ, 8, requires_grad=True) for _ in range(3))
    with pytest.raises(BadArgument, match="flex_attention's score_mod or mask_mod reads a tensor .* requires grad"):
        aot_function(attend, fw_compiler="eager")(q, k, v)


@pytest.mark.slow
@pytest.mark.skipif(tuple(int(p) for p in torch.__version__.split(".")[:2]) < (2, 13),
                    reason="torch 2.11's CPU flex lowering refuses q, k, v that are views of one buffer "
                           "(Inductor's limitation, torch.compile's too)")
def test_inductor_cpu_inference_matches_eager():
    """Inductor's CPU template computes flex_attention's forward (inference)."""
    torch.manual_seed(0)
    model = FlexAttentionBlock("cpu").eval()
    x = torch.randn(2, SEQ, 32)
    seen = HopSeen("inductor")
    compiled = seen.compile(model)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    assert "flex_attention" in seen.hops


@pytest.mark.slow
def test_inductor_cpu_training_is_refused(cpu_backward_allowed):
    torch.manual_seed(0)
    compiled = torch.compile(FlexAttentionBlock("cpu"), backend=aotgraph.backend(compiler="inductor"), dynamic=False)
    with pytest.raises(Exception, match="UnsupportedOp: higher-order operator flex_attention: Inductor lowers "
                                        "flex_attention on the CPU for inference only.*compile stage"):
        compiled(torch.randn(2, SEQ, 32)).sum().backward()


def test_flex_attention_without_a_score_mod():
    """The default score_mod returns its score, an operand of the subgraph."""
    from torch.nn.attention.flex_attention import flex_attention

    def attend(q, k, v):
        return flex_attention(q, k, v)

    q, k, v = (torch.randn(1, 2, 128, 8) for _ in range(3))
    torch.testing.assert_close(aotgraph.aot_function(attend)(q, k, v), attend(q, k, v))
    torch._dynamo.reset()
    compiled = torch.compile(attend, backend=aotgraph.backend(compiler="eager"))
    torch.testing.assert_close(compiled(q, k, v), attend(q, k, v))
