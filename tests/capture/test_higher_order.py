"""Higher-order operators under capture: nested_compile_region (invoke_subgraph), cond, scan,
associative_scan, map, while_loop, and a clear refusal of the others. Each program is run through
``torch.compile(backend=aotgraph...)`` (Dynamo hands the HOPs to the backend) and compared with
eager over several optimizer steps; a check also asserts that Dynamo's graph really held the HOP."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import aotgraph
from aotgraph import aot_function, config
from aotgraph.errors import UnsupportedOp
from aotgraph.torch_private.dispatch import HigherOrderOperator
from backend_training import HopSeen, assert_training_parity
from decoder_blocks import Block, Decoder

COMPILERS = ["eager", pytest.param("inductor", marks=pytest.mark.slow)]


pytestmark = pytest.mark.usefixtures("fresh_dynamo")


# ---- nested_compile_region: a GPT-style decoder whose blocks are marked --------------------
class MarkedBlock(Block):
    """The shared decoder block, its forward marked with nested_compile_region."""

    forward = torch.compiler.nested_compile_region(Block.forward)


class MarkedDecoder(Decoder):
    def __init__(self, vocab=64, dim=32, heads=4, layers=3):
        super().__init__([MarkedBlock(dim, heads) for _ in range(layers)], vocab, dim)


def region_calls(graph_module) -> int:
    return sum(node.target is torch.ops.higher_order.invoke_subgraph for node in graph_module.graph.nodes)


@pytest.mark.parametrize("compiler", COMPILERS)
@pytest.mark.parametrize("reuse", [True, False], ids=["reused", "inline"])
def test_decoder_with_nested_compile_regions(compiler, reuse, monkeypatch):
    if not reuse:
        monkeypatch.setattr(config, "disabled", config.disabled | {"region_reuse"})
    torch.manual_seed(0)
    steps = [(torch.randint(0, 64, (2, 8)), torch.randint(0, 64, (2, 8))) for _ in range(3)]
    seen = HopSeen(compiler)
    assert_training_parity(MarkedDecoder(layers=3), steps, seen.compile)
    assert "invoke_subgraph" in seen.hops
    (entry,) = seen.backend.entries
    # reused: one region call per block in the forward and in the backward, one graph per region
    assert region_calls(entry.partition.forward) == (3 if reuse else 0)
    assert region_calls(entry.partition.backward) == (3 if reuse else 0)
    modules = {type(m).__name__ for m in entry.partition.forward.children()}
    assert len(list(entry.partition.forward.children())) == (1 if reuse else 0), modules


# ---- cond ------------------------------------------------------------------------------------
class Branchy(nn.Module):
    """cond on a Python-constant predicate (Dynamo specializes it) and on a tensor."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)

    def forward(self, x):
        h = self.lin(x)
        return torch.cond(h.sum() > 0, lambda y: (y.sin() * 2).sum(0), lambda y: (y.cos() + y).sum(0), (h,))


def _trained_taking_one_branch(model_class, compiler, sign: float) -> HopSeen:
    """`model_class` (its ``lin`` feeds the predicate ``sum() > 0``) trained against eager with
    inputs that take the true branch (`sign` 1) or the false one (-1) at every step."""
    torch.manual_seed(0)
    model = model_class()
    with torch.no_grad():
        model.lin.weight.abs_().mul_(sign)
        model.lin.bias.zero_()
    steps = [(torch.rand(4, 6) + 0.1,) for _ in range(3)]
    seen = HopSeen(compiler)
    assert_training_parity(model, steps, seen.compile, lr=0.01)
    assert "cond" in seen.hops
    return seen


@pytest.mark.parametrize("compiler", COMPILERS)
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["true", "false"])
def test_cond_on_a_tensor_takes_each_branch(compiler, sign):
    seen = _trained_taking_one_branch(Branchy, compiler, sign)
    (entry,) = seen.backend.entries
    for graph_module in (entry.partition.forward, entry.partition.backward):
        assert any(n.target is torch.ops.higher_order.cond for n in graph_module.graph.nodes)


class LinearInBranches(nn.Module):
    """cond whose branches call a Linear on a parameter: the weight's gradient in a branch's
    backward is a transpose of a product (a view of a value the subgraph computed)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)

    def forward(self, x):
        return torch.cond(x.sum() > 0, lambda t: self.lin(t).relu(), lambda t: self.lin(-t).sigmoid(), (x,))


class ResidualBranches(nn.Module):
    """cond whose true branch's backward returns its output's gradient as the operand's (``a + b``,
    a residual): a subgraph of ours returning an operand."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)

    def forward(self, x):
        h = self.lin(x)
        return torch.cond(h.sum() > 0, lambda a, b: a + b, lambda a, b: a * b, (h, x))


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["true", "false"])
def test_cond_whose_branch_passes_a_gradient_through(sign):
    _trained_taking_one_branch(ResidualBranches, "eager", sign)


@pytest.mark.parametrize("compiler", COMPILERS)
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_cond_with_a_linear_in_its_branches(compiler, dynamic):
    """Each branch taken, with changing batch sizes: under ``dynamic=True`` Dynamo passes the
    symbolic batch size along as an operand of the cond, besides the tensors."""
    torch.manual_seed(0)
    steps = [(torch.rand(b, 6) * sign,) for b, sign in ((4, 1.0), (5, -1.0), (3, 1.0))]
    seen = HopSeen(compiler)
    assert_training_parity(LinearInBranches(), steps, lambda m: seen.compile(m, dynamic=dynamic), lr=0.01)
    assert "cond" in seen.hops


def test_cond_on_a_constant_runs_the_taken_branch():
    def f(x, flag: bool):
        return torch.cond(flag, lambda y: y.sin(), lambda y: y.cos(), (x,))

    x = torch.randn(5, requires_grad=True)
    for flag in (True, False):
        out = aot_function(f, fw_compiler="eager")(x, flag)
        expected = f(x, flag)
        torch.testing.assert_close(out, expected)
        (grad,) = torch.autograd.grad(out.sum(), x)
        torch.testing.assert_close(grad, torch.autograd.grad(expected.sum(), x)[0])


# ---- scan / associative_scan -----------------------------------------------------------------
class Scanned(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, xs):
        from torch._higher_order_ops.scan import scan

        def step(carry, x):
            carry = torch.tanh(self.lin(x) + carry)
            return carry, carry * 2

        if torch.compiler.is_compiling():
            final, ys = scan(step, torch.zeros(xs.shape[1], 4), xs)
        else:  # the reference is the loop itself: torch 2.11's eager scan returns wrong weight gradients here
            final, per_step = torch.zeros(xs.shape[1], 4), []
            for x in xs:
                final, y = step(final, x)
                per_step.append(y)
            ys = torch.stack(per_step)
        return final.sum() + (ys * ys.flip(0)).sum()


@pytest.mark.parametrize("compiler", COMPILERS)
def test_scan(compiler):
    torch.manual_seed(0)
    steps = [(torch.randn(5, 3, 4),) for _ in range(3)]
    seen = HopSeen(compiler)
    assert_training_parity(Scanned(), steps, seen.compile, lr=0.01)
    assert "scan" in seen.hops


class Mapped(nn.Module):
    """torch's map HOP over the rows of its input (the body reads the module's weights)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, xs, scale):
        from torch._higher_order_ops.map import map as map_over_dim0

        rows = map_over_dim0(lambda x, s: torch.tanh(self.lin(x)) * s, xs, scale)
        return (rows * rows.flip(0)).sum()


@pytest.mark.parametrize("compiler", COMPILERS)
def test_map(compiler):
    torch.manual_seed(0)
    steps = [(torch.randn(5, 3, 4), torch.rand(4)) for _ in range(3)]
    seen = HopSeen(compiler)
    assert_training_parity(Mapped(), steps, seen.compile, lr=0.01)
    assert "map_impl" in seen.hops


def test_map_called_directly():
    """The operator itself (torch's map() outside Dynamo wraps it in a nested torch.compile)."""
    def f(xs, w):
        (out,) = torch.ops.higher_order.map_impl(lambda x, w: ((x @ w).sin(),), [xs], [w])
        return out

    xs, w = torch.randn(4, 3, requires_grad=True), torch.randn(3, 2, requires_grad=True)
    out, expected = aot_function(f, fw_compiler="eager")(xs, w), f(xs, w)
    torch.testing.assert_close(out, expected)
    tangent = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, (xs, w), tangent),
                               torch.autograd.grad(expected, (xs, w), tangent))


def test_map_writing_into_an_argument_called_directly():
    """A body that adds each slice into a buffer it is passed: torch 2.14 names the written
    arguments (``mutated_arg_indices``); the writes happen step after step, as in eager."""
    import inspect
    from torch._higher_order_ops.map import map_impl
    names = inspect.signature(map_impl.__call__).parameters
    written = {"mutated_arg_indices": "0"} if "mutated_arg_indices" in names else {}

    def f(xs, buffer):
        (out,) = torch.ops.higher_order.map_impl(lambda x, b: (b.add_(x).sin(),), [xs], [buffer], **written)
        return out

    xs = torch.randn(4, 3)
    buffer, expected_buffer = torch.zeros(3), torch.zeros(3)
    out, expected = aot_function(f, fw_compiler="eager")(xs, buffer), f(xs, expected_buffer)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(buffer, expected_buffer)


def test_associative_scan_called_directly():
    """Dynamo on the CPU traces associative_scan's generic mode inline (its HOP needs a GPU
    there): the operator itself is called here, as a program may, and compared with
    ``torch.cumprod`` (eager's own associative_scan backward fails on this program)."""
    from torch._higher_order_ops.associative_scan import associative_scan_op

    def f(xs):
        (out,) = associative_scan_op(lambda a, b: a * b, (xs.sin() + 1,), ())
        return out

    xs = torch.randn(6, 3, requires_grad=True)
    out, expected = aot_function(f, fw_compiler="eager")(xs), torch.cumprod(xs.sin() + 1, 0)
    torch.testing.assert_close(out, expected)
    tangent = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, xs, tangent), torch.autograd.grad(expected, xs, tangent))


# ---- what is refused -------------------------------------------------------------------------
class _UnknownHop(HigherOrderOperator):
    def __init__(self):
        super().__init__("aotgraph_test_unknown_hop")

    def __call__(self, fn, x):
        return super().__call__(fn, x)


_unknown_hop = _UnknownHop()


@_unknown_hop.py_impl(torch._C.DispatchKey.CompositeExplicitAutograd)
def _unknown_hop_dense(fn, x):
    return fn(x)


@pytest.mark.parametrize("requires_grad", [False, True])
def test_unknown_hop_is_refused_by_name(requires_grad):
    x = torch.randn(3, requires_grad=requires_grad)
    with pytest.raises(UnsupportedOp, match="aotgraph_test_unknown_hop.*capture stage"):
        aot_function(lambda x: _unknown_hop(torch.sin, x), fw_compiler="eager")(x)


def _with_rng_state(x):
    noise = torch.ops.higher_order.run_with_rng_state(torch.get_rng_state(), torch.ops.aten.rand.default, [3])
    return (x * noise).sum()


def _out_dtype(x):
    small = torch.arange(-4, 5, dtype=torch.int8).view(3, 3)
    return torch.ops.higher_order.out_dtype(torch.ops.aten.mm.default, torch.int32, small, small).sum() + x.sum()


@pytest.mark.parametrize("program, hop", [(_with_rng_state, "run_with_rng_state"), (_out_dtype, "out_dtype")],
                         ids=["run_with_rng_state", "out_dtype"])
@pytest.mark.parametrize("requires_grad", [False, True])
def test_torch_hops_without_a_rule_are_refused_by_name(program, hop, requires_grad):
    """torch's own HOPs that aotgraph has no rule for: an UnsupportedOp naming the HOP and the
    stage, not torch's NotImplementedError from a mode it does not know."""
    x = torch.randn(3, 3, requires_grad=requires_grad)
    with pytest.raises(UnsupportedOp, match=f"higher-order operator {hop}: .*capture stage"):
        aot_function(program, fw_compiler="eager")(x)


# ---- while_loop (inference) --------------------------------------------------------------------
class Halving(nn.Module):
    def forward(self, x, limit):
        from torch._higher_order_ops.while_loop import while_loop

        def keep_going(step, y):
            return step < limit

        def body(step, y):
            return step + 1, y * 0.5 + 1

        return while_loop(keep_going, body, (torch.zeros((), dtype=torch.int64), x))


@pytest.mark.parametrize("compiler", COMPILERS)
def test_while_loop_inference(compiler):
    seen = HopSeen(compiler)
    compiled = seen.compile(Halving())
    x = torch.randn(3, 4)
    with torch.no_grad():
        for limit in (3, 5):  # one graph, a different trip count each call
            steps, y = compiled(x, torch.tensor(limit))
            expected = x
            for _ in range(limit):
                expected = expected * 0.5 + 1
            assert steps.item() == limit
            torch.testing.assert_close(y, expected)
    assert "while_loop" in seen.hops


def test_while_loop_with_gradients_is_refused():
    from torch._higher_order_ops.while_loop import while_loop_op

    def f(x):
        return while_loop_op(lambda i, y: i < 3, lambda i, y: (i + 1, y * 2), (torch.zeros((), dtype=torch.int64), x),
                             ())

    with pytest.raises(UnsupportedOp, match="while_loop: gradients through a while_loop"):
        aot_function(f, fw_compiler="eager")(torch.randn(3, requires_grad=True))


# ---- a custom op that mutates an input ---------------------------------------------------------
@torch.library.custom_op("aotgraph_test::accumulate_into", mutates_args=("total",))
def accumulate_into(total: torch.Tensor, value: torch.Tensor) -> None:
    total.add_(value.sum(0))


@accumulate_into.register_fake
def _accumulate_into_fake(total, value):
    return None


class Accumulating(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.register_buffer("total", torch.zeros(4))

    def forward(self, x):
        h = torch.tanh(self.lin(x))
        accumulate_into(self.total, h.detach())
        return (h * self.total).sum()


@pytest.mark.parametrize("compiler", COMPILERS)
def test_custom_op_that_mutates_a_buffer(compiler):
    torch.manual_seed(0)
    steps = [(torch.randn(3, 4),) for _ in range(3)]
    compiled = assert_training_parity(
        Accumulating(), steps, lambda m: torch.compile(m, backend=aotgraph.backend(compiler=compiler), dynamic=False),
        lr=0.01)
    assert compiled.total.abs().sum() > 0


def test_region_in_a_program_that_mutates_its_input():
    """A mutating program is functionalized with the region nodes in it (they are functional)."""
    block = torch.fx.symbolic_trace(lambda x, w: (torch.tanh(x @ w),))

    def program(state, x, w, call=lambda *args: torch.ops.higher_order.invoke_subgraph(block, "block", *args)):
        for _ in range(2):
            (x,) = call(x, w)
        state.add_(x.detach().sum(0))
        return (x * state).sum()

    x, w = torch.randn(3, 4, requires_grad=True), torch.randn(4, 4, requires_grad=True)
    state, expected_state = torch.zeros(4), torch.zeros(4)
    compiled = aot_function(program, fw_compiler="eager")
    # eager's invoke_subgraph has no backward outside torch.compile: the reference calls the block itself
    out, expected = compiled(state, x, w), program(expected_state, x, w, block)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(state, expected_state)
    torch.testing.assert_close(torch.autograd.grad(out, (x, w)), torch.autograd.grad(expected, (x, w)))
    forward = next(iter(compiled.aotgraph_entries.values())).partition.forward
    assert sum(n.target is torch.ops.higher_order.invoke_subgraph for n in forward.graph.nodes) == 2


# ---- tag_activation_checkpoint: Dynamo's checkpoint, random draws recomputed ---------------
def _checkpointed_dropout(selective: bool):
    from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

    def policy(ctx, op, *args, **kwargs):  # keep the matmul, recompute the rest
        return CheckpointPolicy.MUST_SAVE if op is torch.ops.aten.mm.default else CheckpointPolicy.PREFER_RECOMPUTE

    options = dict(context_fn=lambda: create_selective_checkpoint_contexts(policy)) if selective else {}

    def program(q, w):
        block = lambda a, b: F.dropout((a @ b).relu(), 0.3, training=True) * 2  # noqa: E731
        return checkpoint(block, q, w, use_reentrant=False, **options).sum()

    return program


@pytest.mark.parametrize("selective", [False, True], ids=["checkpoint", "selective"])
def test_a_checkpointed_dropout_under_torch_compile_recomputes_the_forwards_mask(selective):
    """Dynamo turns checkpoint into ``tag_activation_checkpoint``, whose recompute in the
    backward must draw the forward's dropout mask: gradients equal eager's under one seed."""
    program = _checkpointed_dropout(selective)
    q, w = torch.randn(8, 16, requires_grad=True), torch.randn(16, 16, requires_grad=True)
    compiled = torch.compile(program, backend=aotgraph.backend("eager"))
    for seed in (1, 2):
        torch.manual_seed(seed)
        got = compiled(q, w)
        got_grads = torch.autograd.grad(got, (q, w))
        torch.manual_seed(seed)
        expected = program(q, w)
        expected_grads = torch.autograd.grad(expected, (q, w))
        torch.testing.assert_close(got, expected)
        for g, e in zip(got_grads, expected_grads):
            torch.testing.assert_close(g, e)


class ReentrantCheckpointed(nn.Module):
    """Blocks under the reentrant checkpoint (older gradient-checkpointing code); `inputs_need_grad`
    False: the classic pitfall where no argument requires a gradient, so eager's checkpointed
    blocks give their parameters none."""

    def __init__(self, inputs_need_grad: bool):
        super().__init__()
        self.stem = nn.Linear(6, 6) if inputs_need_grad else nn.Identity()
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(6, 6), nn.GELU(), nn.Dropout(0.3)) for _ in range(2)])
        self.head = nn.Linear(6, 1)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=True)
        return self.head(x)


@pytest.mark.parametrize("inputs_need_grad", [True, False])
@pytest.mark.parametrize("compiler", COMPILERS)
def test_the_reentrant_checkpoint_through_aot_module(compiler, inputs_need_grad):
    """Its backward calls ``torch.autograd.backward``, which a capture's ``autograd.grad``
    refused: it runs as the non-reentrant checkpoint, with eager's gradients (and none for the
    blocks' parameters where eager gives none)."""
    import copy

    torch.manual_seed(0)
    eager = ReentrantCheckpointed(inputs_need_grad)
    ours = copy.deepcopy(eager)
    compiled = aotgraph.aot_module(ours, compiler)
    for step in range(2):
        x = torch.randn(4, 6)
        losses = []
        for module in (eager, compiled):
            torch.manual_seed(step)
            loss = module(x).square().sum()
            loss.backward()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[1], losses[0])
        for (name, a), b in zip(eager.named_parameters(), ours.parameters()):
            assert (a.grad is None) == (b.grad is None), name
            if a.grad is not None:
                torch.testing.assert_close(b.grad, a.grad, msg=name)
            a.grad = b.grad = None


class CheckpointedBlocks(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8), nn.ReLU()) for _ in range(2)])

    def forward(self, x):
        for block in self.blocks:
            x = x + torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
        return x


@pytest.mark.parametrize("compiler", COMPILERS)
def test_a_checkpointed_block_recomputes_with_the_parameters_of_the_call(compiler):
    """The backward recomputes a checkpointed block, which reads the module's parameters again:
    while capture recorded it, they were the real parameters (the swap for the forward's fakes
    had ended), so the graph held their values as constants and, through Inductor, gave the
    gradients of the first call's weights after an optimizer step. Eager's gradients at every step."""
    import copy

    torch.manual_seed(0)
    eager = CheckpointedBlocks()
    ours = copy.deepcopy(eager)
    compiled = aotgraph.aot_module(ours, compiler)
    for step in range(3):
        with torch.no_grad():  # an optimizer step: the parameters change in place
            for a, b in zip(eager.parameters(), ours.parameters()):
                a.add_(0.1 * step)
                b.add_(0.1 * step)
        x = torch.randn(4, 8)
        eager(x).pow(2).sum().backward()
        compiled(x).pow(2).sum().backward()
        for (name, a), b in zip(eager.named_parameters(), ours.parameters()):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-4, msg=f"step {step}: {name}")
            a.grad = b.grad = None
    (entry,) = compiled.aotgraph_entries.values()
    assert not any(n.op == "get_attr" and "constant" in n.name for n in entry.partition.backward.graph.nodes)


_PUBLIC_APIS_CALL_THE_OPERATOR = pytest.mark.skipif(
    not hasattr(__import__("torch._higher_order_ops.utils", fromlist=["_"]), "_hop_compile_and_call"),
    reason="torch 2.11's torch.cond/while_loop/scan compile inline (no _hop_compile_and_call to call the operator "
           "directly): still refused there")


def _public_cond(x, y):
    return torch.cond(x.sum() > 0, lambda a, b: a.sin() + b, lambda a, b: a * b, (x, y))


def _public_scan(x, y):
    from torch._higher_order_ops.scan import scan

    return scan(lambda carry, t: (carry * t + 1, carry.sin()), y, x)[1]


@_PUBLIC_APIS_CALL_THE_OPERATOR
@pytest.mark.parametrize("program", [_public_cond, _public_scan], ids=["cond", "scan"])
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["positive", "negative"])
def test_public_hop_apis_inside_aot_function(program, sign):
    """torch.cond and scan outside Dynamo run their operator in a nested torch.compile; under
    aot_function the capture meets the operator itself (Dynamo traced the capture before)."""
    torch.manual_seed(0)
    x, y = (torch.rand(4, 4) * sign).requires_grad_(), torch.randn(4, requires_grad=True)
    out = aot_function(program)(x, y)
    expected = program(x, y)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(torch.autograd.grad(out.sum(), (x, y)), torch.autograd.grad(expected.sum(), (x, y)))


@_PUBLIC_APIS_CALL_THE_OPERATOR
def test_public_while_loop_inside_aot_function():
    from torch._higher_order_ops.while_loop import while_loop

    def program(x):
        return while_loop(lambda i, a: i < 3, lambda i, a: (i + 1, a.sin()), (torch.tensor(0), x))[1]

    x = torch.randn(4)
    torch.testing.assert_close(aot_function(program)(x), program(x))


@_PUBLIC_APIS_CALL_THE_OPERATOR
def test_public_map_inside_aot_function_returns_the_bodys_structure():
    from torch._higher_order_ops.map import map as hop_map

    def program(x, w):
        return hop_map(lambda xi, w: (xi @ w).relu(), x, w)

    x, w = torch.randn(3, 2, 4), torch.randn(4, 4, requires_grad=True)
    out = aot_function(program)(x, w)
    torch.testing.assert_close(out, program(x, w))


@_PUBLIC_APIS_CALL_THE_OPERATOR
def test_public_scan_with_a_tuple_carry_inside_aot_function():
    from torch._higher_order_ops.scan import scan

    def program(x, w):
        def step(carry, xi):
            h, c = carry
            h2 = torch.sigmoid(h @ w + xi)
            return (h2, c + h2), h2.sum(-1)

        (h, c), ys = scan(step, (torch.zeros(2, 4), torch.zeros(2, 4)), x)
        return h + c, ys

    x, w = torch.randn(5, 2, 4), torch.randn(4, 4, requires_grad=True)
    out, expected = aot_function(program)(x, w), program(x, w)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(torch.autograd.grad(out[0].sum() + out[1].sum(), w),
                               torch.autograd.grad(expected[0].sum() + expected[1].sum(), w))
