"""Plans: random draws reach the backward unchanged, checkpoint regions stay recomputed,
budgets are monotone, offload travels through host memory, and every plan matches eager."""
import copy
import functools
import operator

import pytest
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint, create_selective_checkpoint_contexts, CheckpointPolicy

from aotgraph import aot_export_joint, aot_function, aot_module, min_cut_rematerialization_partition, models
from aotgraph.errors import BadArgument
from aotgraph.graph.ops import bytes_of
from aotgraph.partition import offload_early, offload_large, partition_for, save_nothing
from aotgraph.partition.budget import candidate_plans
from aotgraph.partition import mincut
from aotgraph.partition.mincut import JointNetwork, split_with_plan

aten = torch.ops.aten


@pytest.mark.parametrize("partition_fn", [min_cut_rematerialization_partition, partition_for(policy=save_nothing),
                                          partition_for(budget=0.0)])
def test_backward_sees_the_forwards_dropout_mask(partition_fn):
    x = torch.randn(64, 64, requires_grad=True)

    def f(x):
        return F.dropout(x.sin(), p=0.5, training=True).exp()

    out = aot_function(f, partition_fn=partition_fn)(x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    kept = out != 1.0  # exp(0) where dropped
    expected = torch.where(kept, out * 2.0 * x.cos(), torch.zeros_like(x))
    torch.testing.assert_close(grad, expected)
    assert kept.any() and (~kept).any()


def _plan(fn, *args, partition_fn=min_cut_rematerialization_partition):
    compiled = aot_function(fn, partition_fn=partition_fn)
    out = compiled(*args)
    out.sum().backward()
    entry = next(iter(compiled.aotgraph_entries.values()))
    return entry.partition.plan, entry.partition


def test_checkpoint_region_stays_recomputed():
    torch.manual_seed(0)
    w1, w2 = torch.randn(32, 32, requires_grad=True), torch.randn(32, 32, requires_grad=True)
    x = torch.randn(8, 32, requires_grad=True)

    def region(x, w1, w2):
        return torch.relu(x @ w1) @ w2

    def f(x, w1, w2):
        return checkpoint(region, x, w1, w2, use_reentrant=False).tanh()

    plan, partition = _plan(f, x, w1, w2)
    backward_mms = [n for n in partition.backward.graph.nodes if n.target is aten.mm.default]
    recomputed_mms = [n for n in backward_mms if n.name in plan.recomputed]
    assert len(recomputed_mms) == 1  # x @ w1 runs again to rebuild relu's output (the second mm is dead)
    assert not [v for v in partition.saved if v.producer.split(".")[0] in ("mm", "relu")], partition.saved
    expected = [t.grad.clone() for t in (x, w1, w2)]
    for t in (x, w1, w2):
        t.grad = None
    region(x, w1, w2).tanh().sum().backward()
    for got, t in zip(expected, (x, w1, w2)):
        torch.testing.assert_close(got, t.grad)


def test_selective_checkpoint_keeps_saved_matmuls():
    torch.manual_seed(0)
    w1, w2 = torch.randn(32, 32, requires_grad=True), torch.randn(32, 32, requires_grad=True)
    x = torch.randn(8, 32, requires_grad=True)

    def policy(ctx, op, *args, **kwargs):
        return CheckpointPolicy.MUST_SAVE if op is aten.mm.default else CheckpointPolicy.PREFER_RECOMPUTE

    def f(x, w1, w2):
        return checkpoint(lambda x: torch.relu(x @ w1).sin() @ w2, x, use_reentrant=False,
                          context_fn=lambda: create_selective_checkpoint_contexts(policy)).tanh()

    plan, partition = _plan(f, x, w1, w2)
    assert not [n for n in partition.backward.graph.nodes if n.target is aten.mm.default and n.name in plan.recomputed]
    expected = [t.grad.clone() for t in (x, w1, w2)]
    for t in (x, w1, w2):
        t.grad = None
    (torch.relu(x @ w1).sin() @ w2).tanh().sum().backward()
    for got, t in zip(expected, (x, w1, w2)):
        torch.testing.assert_close(got, t.grad)


def _gpt_network():
    model, (idx, targets) = models.gpt(layers=2)
    params = dict(model.named_parameters())
    joint = aot_export_joint(lambda p, i, t: torch.func.functional_call(model, p, (i, t)), (params, idx, targets))
    return JointNetwork(joint.graph_module, joint.num_fwd_outputs, None), joint


def test_budget_sweep_is_monotone_and_fits():
    network, joint = _gpt_network()
    default_bytes = network.storage_bytes(network.default_saved())
    plans = []
    for fraction in [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]:
        plans.append(split_with_plan(joint.graph_module, num_fwd_outputs=joint.num_fwd_outputs,
                                     memory_budget=fraction)[2])
    saved = [p.saved_bytes for p in plans]
    flops = [p.recompute_flops for p in plans]
    assert saved == sorted(saved, reverse=True), saved
    assert flops == sorted(flops), flops
    assert saved[0] <= default_bytes and saved[-1] < saved[0]
    for plan in plans:
        assert plan.saved_bytes <= plan.budget or plan.note


def _plan_of(joint, **options):
    return split_with_plan(joint.graph_module, num_fwd_outputs=joint.num_fwd_outputs, **options)[2]


def test_recompute_budget_sweep_is_monotone_and_fits():
    network, joint = _gpt_network()
    plans = [_plan_of(joint, recompute_budget=fraction) for fraction in [0.0, 1e-4, 1e-3, 3e-3, 1e-2, 0.1, 1.0]]
    saved = [p.saved_bytes for p in plans]
    flops = [p.recompute_flops for p in plans]
    assert saved == sorted(saved, reverse=True) and flops == sorted(flops), (saved, flops)
    assert all(p.recompute_flops <= p.recompute_budget for p in plans)
    assert plans[0].recompute_flops == 0 and saved[-1] < saved[0]
    assert plans[-1].recompute_budget == network.forward_flops()


def test_zero_recompute_budget_recomputes_only_free_ops_and_saves_no_more_than_torch():
    from torch._functorch.partitioners import min_cut_rematerialization_partition as torch_min_cut

    from aotgraph.graph.ops import flops_of
    from aotgraph.report.saved import saved_storage_bytes

    network, joint = _gpt_network()
    plan = _plan_of(joint, recompute_budget=0)
    recomputed = [n for n in joint.graph_module.graph.nodes if n.name in set(plan.recomputed)]
    assert recomputed and all(flops_of(n) == 0 for n in recomputed)
    default = _plan_of(joint)
    assert plan.saved_bytes >= default.saved_bytes and plan.recompute_flops < default.recompute_flops
    module = copy.deepcopy(joint.graph_module)
    inputs = [n.meta["val"] for n in module.graph.find_nodes(op="placeholder")]
    torch_forward, _ = torch_min_cut(module, inputs, num_fwd_outputs=joint.num_fwd_outputs)
    assert plan.saved_bytes <= saved_storage_bytes(torch_forward, joint.num_fwd_outputs)


def test_one_budget_at_a_time():
    _, joint = _gpt_network()
    with pytest.raises(BadArgument, match="memory_budget and recompute_budget"):
        _plan_of(joint, memory_budget=0.5, recompute_budget=0.0)


def test_recompute_budget_below_the_programs_own_recompute_gets_a_note():
    torch.manual_seed(0)
    w1, w2 = torch.randn(32, 32, requires_grad=True), torch.randn(32, 32, requires_grad=True)
    x = torch.randn(8, 32, requires_grad=True)

    def f(x, w1, w2):
        return checkpoint(lambda x: torch.relu(x @ w1) @ w2, x, use_reentrant=False).tanh()

    plan, _ = _plan(f, x, w1, w2, partition_fn=partition_for(recompute_budget=0))
    assert plan.recompute_flops > 0 and "below what the program itself recomputes" in plan.note
    expected = [t.grad.clone() for t in (x, w1, w2)]
    for t in (x, w1, w2):
        t.grad = None
    (torch.relu(x @ w1) @ w2).tanh().sum().backward()
    for got, t in zip(expected, (x, w1, w2)):
        torch.testing.assert_close(got, t.grad)


def test_candidate_plans_trade_bytes_for_flops():
    network, _ = _gpt_network()
    plans = sorted(candidate_plans(network), key=lambda p: p[0])
    assert len(plans) >= 2
    assert plans[0][1] > plans[-1][1]  # fewest bytes costs the most recompute


def test_offload_goes_through_host_copies():
    x = torch.randn(16, 16, requires_grad=True)
    w = torch.randn(16, 16, requires_grad=True)

    def f(x, w):
        return (x @ w).tanh() @ w

    plan, partition = _plan(f, x, w, partition_fn=partition_for(policy=offload_large(1)))
    assert plan.offloaded and plan.offloaded_bytes > 0
    outputs = list(partition.forward.graph.find_nodes(op="output")[0].args[0])
    host_copies = [o for o in outputs if o.target is aten._to_copy.default]
    assert {o.name for o in host_copies} == {f"{name}_host" for name in plan.offloaded}
    assert all(o.meta["val"].device.type == "cpu" for o in host_copies)
    expected = [t.grad.clone() for t in (x, w)]
    for t in (x, w):
        t.grad = None
    f(x, w).sum().backward()
    for got, t in zip(expected, (x, w)):
        torch.testing.assert_close(got, t.grad)


def test_plan_explains_every_saved_value():
    network, joint = _gpt_network()
    plan = split_with_plan(joint.graph_module, num_fwd_outputs=joint.num_fwd_outputs)[2]
    assert len(plan.reasons) == len(plan.saved)
    assert all(reason for _, reason in plan.reasons)
    assert plan.recompute_flops > 0 and plan.saved_bytes > 0


def _residual_stream(x, ws):
    """A residual stream over many layers: each layer adds a matmul's output to the running sum
    and reads the sum through a cheap op, so recomputing a late sum redoes every earlier add."""
    for w in ws:
        x = x + torch.tanh(x @ w) * 0.5
    return x.sum()


def _longest_recompute_chain(joint) -> int:
    from aotgraph.partition import mincut

    plan = split_with_plan(joint.graph_module, num_fwd_outputs=joint.num_fwd_outputs)[2]
    recomputed, depth = set(plan.recomputed), {}
    for node in joint.graph_module.graph.nodes:
        if node.name in recomputed:
            steps = 0 if node.target is operator.getitem or mincut.is_view(node) else 1
            depth[node.name] = steps + max((depth.get(a.name, 0) for a in node.all_input_nodes), default=0)
    return max(depth.values(), default=0)


def test_long_recompute_chains_are_cut(monkeypatch):
    """No recomputed value is more than MAX_RECOMPUTE_CHAIN cheap ops from a value the forward
    computed (without the cap this program recomputes a longer chain), and results match eager."""
    from aotgraph.partition import mincut

    x = torch.randn(8, 16, requires_grad=True)
    ws = [(torch.randn(16, 16) * 0.1).requires_grad_() for _ in range(12)]
    joint = aot_export_joint(lambda x, *ws: _residual_stream(x, ws), (x, *ws))
    cap = mincut.MAX_RECOMPUTE_CHAIN
    assert 0 < _longest_recompute_chain(joint) <= cap
    with monkeypatch.context() as uncapped:
        uncapped.setattr(mincut, "MAX_RECOMPUTE_CHAIN", 10**9)
        assert _longest_recompute_chain(joint) > cap

    compiled = aot_function(lambda x, *ws: _residual_stream(x, ws), partition_fn=min_cut_rematerialization_partition)
    expected = torch.autograd.grad(_residual_stream(x, ws), [x, *ws])
    torch.testing.assert_close(compiled(x, *ws), _residual_stream(x, ws))
    torch.testing.assert_close(torch.autograd.grad(compiled(x, *ws), [x, *ws]), expected)


def test_long_chain_inside_a_checkpoint_stays_the_programs_recompute():
    """The program's own recomputation (a checkpointed residual stream) is left to the backward
    however long its chain: the cap must not force those nodes into the forward."""
    x = torch.randn(8, 16, requires_grad=True)
    ws = [(torch.randn(16, 16) * 0.1).requires_grad_() for _ in range(12)]

    def fn(x, *ws):
        return checkpoint(_residual_stream, x, ws, use_reentrant=False)

    compiled = aot_function(fn, partition_fn=min_cut_rematerialization_partition)
    torch.testing.assert_close(torch.autograd.grad(compiled(x, *ws), [x, *ws]),
                               torch.autograd.grad(fn(x, *ws), [x, *ws]))


def test_offload_copies_each_value_right_after_its_last_forward_use():
    torch.manual_seed(0)
    model, inputs = models.gpt(layers=2)
    compiled = aot_module(model, partition_fn=partition_for(policy=offload_large(16 * 1024)))
    compiled(*inputs).backward()
    partition = next(iter(compiled.aotgraph_entries.values())).partition
    nodes = list(partition.forward.graph.nodes)
    copies = [n for n in nodes if n.target is aten._to_copy.default and n.name.endswith("_host")]
    assert len(copies) >= 2
    for copy in copies:
        value = copy.args[0]
        last_use = max((nodes.index(u) for u in value.users if u is not copy and u.op != "output"),
                       default=nodes.index(value))
        between = nodes[last_use + 1:nodes.index(copy)]
        assert nodes.index(copy) > last_use and all(n in copies for n in between), (copy, between)
    assert nodes.index(copies[0]) < len(nodes) - len(copies) - 1  # not all bunched before the output


def test_offload_early_picks_values_from_the_start_of_the_forward():
    torch.manual_seed(0)
    model, inputs = models.gpt(layers=4)
    entry = assert_matches_eager_module(model, inputs, partition_for(policy=offload_early(1024, before=0.5)))
    plan = entry.partition.plan
    joint_order = {n.name: i for i, n in enumerate(entry.partition.joint.graph_module.graph.nodes)}
    offloaded = sorted(joint_order[name] for name in plan.offloaded)
    kept = sorted(joint_order[name] for name in plan.saved if name not in set(plan.offloaded)
                  and not name.startswith("primals"))
    assert offloaded and max(offloaded) < max(kept)  # late values stay on the device


def assert_matches_eager_module(model, inputs, partition_fn):
    reference = copy.deepcopy(model)
    compiled = aot_module(model, partition_fn=partition_fn)
    compiled(*inputs).backward()
    reference(*inputs).backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=lambda m: f"grad of {name}: {m}")
    return next(iter(compiled.aotgraph_entries.values()))


def test_weight_casts_a_backward_matmul_reads_are_saved_not_recomputed():
    """Under autocast each weight is cast to bf16 in the forward; the backward's matmuls read
    the casts again. The default plan saves them (recomputing would add a kernel per weight)
    while it still recomputes cheap activations, and the results match eager."""
    torch.manual_seed(0)
    x = torch.randn(8, 16, requires_grad=True)
    w1, w2 = torch.randn(16, 16, requires_grad=True), torch.randn(16, 16, requires_grad=True)

    def f(x, w1, w2):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return F.linear(torch.relu(F.linear(x, w1)).sin(), w2).float()

    plan, partition = _plan(f, x, w1, w2)
    # (saved as they are, or as the transposed views of them that the matmuls read)
    saved_casts = [v for v in partition.saved if v.producer.split(".")[0] in ("convert_element_type", "_to_copy",
                                                                               "permute", "t", "transpose")
                   and v.meta.dtype == torch.bfloat16 and tuple(v.meta.shape) == (16, 16)]
    assert len(saved_casts) == 2, partition.saved
    backward_casts_of_weights = [n for n in partition.backward.graph.nodes if n.name in plan.recomputed
                                 and n.args and getattr(n.args[0], "name", "") in ("primals_2", "primals_3")]
    assert not backward_casts_of_weights
    assert plan.recomputed  # sin's input still recomputed from relu's saved output, or the like
    expected = torch.autograd.grad(f(x, w1, w2).sum(), [x, w1, w2])
    compiled = aot_function(f, partition_fn=min_cut_rematerialization_partition)
    torch.testing.assert_close(compiled(x, w1, w2), f(x, w1, w2))
    torch.testing.assert_close(torch.autograd.grad(compiled(x, w1, w2).sum(), [x, w1, w2]), expected)


@pytest.mark.parametrize("save_matmul_inputs", [False, True])
def test_values_a_backward_matmul_reads_are_saved_for_a_fusing_compiler(save_matmul_inputs):
    """sin(h) feeds the second matmul: its weight's gradient reads it. The lean plan saves h
    alone and recomputes sin(h) in the backward (a kernel of its own under Inductor); the plan
    for a fusing compiler saves sin(h) too. Both match eager."""
    torch.manual_seed(0)
    x = torch.randn(8, 16, requires_grad=True)
    w1, w2 = torch.randn(16, 16, requires_grad=True), torch.randn(16, 16, requires_grad=True)

    def f(x, w1, w2):
        return (x @ w1).sin() @ w2

    partition_fn = functools.partial(min_cut_rematerialization_partition, save_matmul_inputs=save_matmul_inputs)
    plan, partition = _plan(f, x, w1, w2, partition_fn=partition_fn)
    saved_producers = sorted(v.producer.split(".")[0] for v in partition.saved if v.producer != "input")
    assert saved_producers == (["mm", "sin"] if save_matmul_inputs else ["mm"]), partition.saved
    expected = torch.autograd.grad(f(x, w1, w2).sum(), [x, w1, w2])
    compiled = aot_function(f, partition_fn=partition_fn)
    torch.testing.assert_close(torch.autograd.grad(compiled(x, w1, w2).sum(), [x, w1, w2]), expected)


def test_inductor_pipeline_plans_for_fused_backward_kernels():
    """The pipeline tells the min cut when the compiler fuses kernels, as Inductor does (it then
    saves values backward matmuls read, like the plan above with save_matmul_inputs=True)."""
    torch.manual_seed(0)
    x = torch.randn(8, 16, requires_grad=True)
    w1, w2 = torch.randn(16, 16, requires_grad=True), torch.randn(16, 16, requires_grad=True)
    compiled = aot_function(lambda x, w1, w2: (x @ w1).sin() @ w2, "inductor",
                            partition_fn=min_cut_rematerialization_partition)
    compiled(x, w1, w2).sum().backward()
    entry = next(iter(compiled.aotgraph_entries.values()))
    assert sorted(v.producer.split(".")[0] for v in entry.partition.saved if v.producer != "input") == ["mm", "sin"]


@pytest.mark.parametrize("fusing", [False, True])
def test_a_padding_is_saved_for_a_fusing_compiler(fusing):
    """A causal LM's loss pads its labels (8x513 int64 for GPT-2) and reads them again in the
    backward. The lean plan recomputes the pad from the labels, an input; for a fusing compiler
    the plan saves it (or the contiguous slice of it that the backward reads): recomputed, it
    fused into the backward's log-softmax reduction as a masked load inside the loop (0.61 vs
    0.43 ms a step on the H200). Both match eager."""
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11, requires_grad=True)
    labels = torch.randint(0, 11, (2, 6))

    def f(logits, labels):
        shifted = F.pad(labels, (0, 1), value=-100)[..., 1:].contiguous()
        return F.cross_entropy(logits.flatten(0, 1), shifted.flatten(), ignore_index=-100)

    joint = aot_export_joint(f, (logits, labels))
    plan = split_with_plan(joint.graph_module, num_fwd_outputs=joint.num_fwd_outputs, fusing_compiler=fusing)[2]
    recomputed_pads = [name for name in plan.recomputed if name.startswith("constant_pad_nd")]
    assert bool(recomputed_pads) is not fusing, (plan.saved, plan.recomputed)
    if fusing:  # the pad or what the backward reads of it (its contiguous slice), not the labels
        assert "primals_2" not in plan.saved
        assert any(name.startswith(("constant_pad_nd", "clone")) for name in plan.saved)
    compiled = aot_function(f, partition_fn=min_cut_rematerialization_partition)
    expected = torch.autograd.grad(f(logits, labels), logits)
    torch.testing.assert_close(torch.autograd.grad(compiled(logits, labels), logits), expected)


@pytest.mark.parametrize("fusing", [False, True])
def test_a_reduction_is_computed_in_the_forward_only_for_a_fusing_compiler(fusing):
    """A norm's statistics (``var_mean`` over the last dimension: 1/16 of its input's bytes).
    The lean plan recomputes them in the backward from the input, which is free to keep; for a
    fusing compiler the plan saves them: recomputed, each is a reduction kernel of its own in
    the backward, reading the whole input again (ResNet-50's plan recomputed 32 batch norms'
    statistics). Through Inductor the pipeline's plan saves them too, and matches eager."""
    torch.manual_seed(0)
    x = torch.randn(8, 16, requires_grad=True)
    w = torch.randn(16, 16, requires_grad=True)

    def f(x, w):
        var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
        return (((x - mean) * torch.rsqrt(var + 1e-5)) @ w).tanh().sum()

    joint = aot_export_joint(f, (x, w))
    plan = split_with_plan(joint.graph_module, num_fwd_outputs=joint.num_fwd_outputs, fusing_compiler=fusing)[2]
    recomputed = [name for name in plan.recomputed if name.startswith("var_mean")]
    assert bool(recomputed) is not fusing, (plan.saved, plan.recomputed)
    if not fusing:
        return
    assert [r for n, r in plan.reasons if n.startswith("getitem")], plan.reasons  # the statistics are saved
    compiled = aot_function(f, "inductor", partition_fn=min_cut_rematerialization_partition)
    expected = torch.autograd.grad(f(x, w), [x, w])
    torch.testing.assert_close(torch.autograd.grad(compiled(x, w), [x, w]), expected)
    entry = next(iter(compiled.aotgraph_entries.values()))
    assert not [name for name in entry.partition.plan.recomputed if name.startswith("var_mean")]


def test_a_node_returning_a_dict_is_never_saved_whole():
    """A user Triton kernel's functional node returns a dict (argument name -> written copy):
    like a tuple, the min cut cannot save it (it took it for an 8-byte scalar, and Inductor
    cannot return it from a forward); its getitems, tensors, are saved instead. Without triton,
    tests/capture/test_triton_kernels.py does not run, so the rule is checked here."""
    node = torch.fx.Graph().placeholder("kernel_results")
    node.meta["val"] = {"y_ptr": torch.empty(4, 8)}
    assert bytes_of(node) is None


@pytest.mark.parametrize("finite_total", [None, 64], ids=["unscaled", "scaled"])
def test_a_matmul_input_is_saved_as_the_view_the_matmul_reads(finite_total, monkeypatch):
    """A value computed by the compiler's own kernels (a norm, a cast) that reaches a matmul
    only through a view is saved as that view, not as its base: Inductor writes the view's
    buffer for the matmul anyway, and a saved base would be written a second time. The
    gradients match eager's. "scaled": the cut's capacities scaled down as a large model's
    are (its bytes summed over the cut's budget), where a fraction of a byte would vanish."""
    if finite_total is not None:
        monkeypatch.setattr(mincut, "_FINITE_TOTAL", finite_total)
    torch.manual_seed(0)
    x = torch.randn(4, 6, 16, requires_grad=True)
    w = torch.randn(32, 16, requires_grad=True)

    def f(x, w):
        h = F.layer_norm(x, (16,)).sin()
        return (h.view(24, 16) @ w.t()).relu()

    # (Inductor's plan: a value a backward matmul reads is kept, not recomputed)
    plan, partition = _plan(f, x, w, partition_fn=functools.partial(min_cut_rematerialization_partition,
                                                                    save_matmul_inputs=True))
    saved = {v.producer.split(".")[0]: v for v in partition.saved}
    assert "view" in saved and tuple(saved["view"].meta.shape) == (24, 16), partition.saved
    assert "sin" not in saved, partition.saved
    reference_x, reference_w = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    f(reference_x, reference_w).sum().backward()
    torch.testing.assert_close(x.grad, reference_x.grad)
    torch.testing.assert_close(w.grad, reference_w.grad)


def test_checkpointed_attention_under_dynamo_is_recomputed_in_the_backward():
    """torch.compile's checkpoint runs without preserving the RNG state, so the backward's
    recomputation of attention (tagged random for its dropout, dropout_p 0 here) is a new op
    recorded in the backward: it is recomputed there, not run in the forward for an effect it
    does not have, with its tuple result neither saved nor recomputable (the min cut failed)."""
    import aotgraph

    def block(x, w):
        q = (x @ w).relu()
        return F.scaled_dot_product_attention(q, q, q)

    def f(x, w):
        return checkpoint(block, x, w, use_reentrant=False).sum(-1)

    torch._dynamo.reset()
    backend = aotgraph.backend(compiler="eager", partition="mincut")
    compiled = torch.compile(f, backend=backend)
    x, w = torch.randn(2, 3, 5, 8, requires_grad=True), torch.randn(8, 8, requires_grad=True)
    x2, w2 = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    compiled(x, w).sum().backward()
    f(x2, w2).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(w.grad, w2.grad)
    (entry,) = backend.entries
    attention = [n for n in entry.partition.forward.graph.nodes if "attention" in str(n.target)]
    assert len(attention) == 1, attention  # the forward's own, not the backward's recomputation too


def _mask_and_value(a, b):
    """The backward reads only ``b > 0``; the forward returns b's broadcast and b itself."""
    return b.unsqueeze(0).expand(2, 4), torch.where(b > 0, b, a).select(1, 3), b


def _caller_writes_input_then_backward(fn):
    """Gradients of `_mask_and_value`'s outputs after the caller zeroes b (returned, and an
    input) in place: eager's backward never reads b, so this works in eager."""
    torch.manual_seed(0)
    a0, b0 = torch.randn(3, 4, requires_grad=True), torch.randn(4, requires_grad=True)
    expand, picked, b = fn(a0 * 2, b0 * 2)
    with torch.no_grad():
        b.zero_()
    (expand.sum() + picked.sum()).backward()
    return a0.grad, b0.grad


@pytest.mark.parametrize("through", ["aot_function", "backend"])
def test_a_forward_output_is_not_priced_as_saved_and_an_input_is_saved_only_as_eager_would(through):
    """The min cut saves the 4-byte mask the backward reads, not the input it is computed from:
    a forward output is not a value the backward needs (it was priced as one), and an input that
    is not a parameter costs its bytes (`transient_inputs_priced`). A caller's in-place write into
    that input before the backward then works as in eager (a fuzzer class: seeds 576, 4806)."""
    import aotgraph

    if through == "backend":
        torch._dynamo.reset()
        backend = aotgraph.backend(compiler="eager")
        compiled = torch.compile(_mask_and_value, backend=backend, dynamic=False)
    else:
        compiled = aot_function(_mask_and_value, partition_fn=min_cut_rematerialization_partition)
    torch.testing.assert_close(_caller_writes_input_then_backward(compiled),
                               _caller_writes_input_then_backward(_mask_and_value))
    (entry,) = backend.entries if through == "backend" else compiled.aotgraph_entries.values()
    assert [s.meta.dtype for s in entry.partition.saved] == [torch.bool]


def test_forward_outputs_are_not_sinks_of_the_cut():
    """A large forward output and a small mask the backward reads share an ancestor: the cut
    saves the mask alone (pricing the output as a value to save chose the ancestor, which
    covers both and is four times the mask's bytes)."""
    def f(x):
        y = x * 3  # whose backward reads nothing
        return (y * 2).unsqueeze(0).expand(64, *x.shape), torch.where(y > 0, x, 0.0)

    x = torch.randn(16, requires_grad=True)
    joint = aot_export_joint(f, (x,))
    network = JointNetwork(joint.graph_module, joint.num_fwd_outputs, None, transient_inputs=frozenset({"primals_1"}))
    saved = network.cut(mincut.TIE_BREAK_LAM)
    assert [n.meta["val"].dtype for n in saved] == [torch.bool]
    out, picked = aot_function(f, partition_fn=min_cut_rematerialization_partition)(x)
    torch.testing.assert_close(torch.autograd.grad(picked.sum() + out.sum(), x),
                               torch.autograd.grad(sum(o.sum() for o in f(x)), x))
