"""The memory simulation of a partition: hand-computed toy graphs, and on models the peaks it
predicts equal the peaks of live storages measured while the compiled graphs really run."""
import pytest
import torch

from aotgraph import aot_function, aot_module, config, default_partition, min_cut_rematerialization_partition, models
from aotgraph.partition import offload_large, partition_for
from aotgraph.report.memory import LiveStorageCounter
from aotgraph.report.saved import saved_report

B = 1024 * 4  # one float32 vector of 1024


def _partition(fn, *args, partition_fn=default_partition):
    compiled = aot_function(fn, partition_fn=partition_fn)
    out = compiled(*args)
    out.backward(torch.ones_like(out))
    return next(iter(compiled.aotgraph_entries.values())).partition


def test_hand_computed_default_partition():
    x = torch.randn(1024, requires_grad=True)
    memory = _partition(lambda x: x.sin().cos(), x).memory
    # forward: sin (B), cos (2B). Saved: sin. Carried into the backward: the output cos and its tangent.
    assert [s.live_bytes for s in memory.steps if s.graph == "forward"] == [B, 2 * B]
    assert (memory.forward_peak, memory.saved_bytes, memory.carried_bytes) == (2 * B, B, 2 * B)
    # backward from 3B: sin(sin) 4B (frees sin) -> neg 4B -> mul by tangent 4B -> cos(x) 4B -> grad 5B
    assert [s.live_bytes for s in memory.steps if s.graph == "backward"] == [4 * B, 4 * B, 4 * B, 4 * B, 5 * B]
    assert (memory.backward_peak, memory.gradient_bytes, memory.peak) == (5 * B, B, 5 * B)


def test_hand_computed_recompute_saves_nothing():
    x = torch.randn(1024, requires_grad=True)
    memory = _partition(lambda x: x.sin().cos(), x, partition_fn=min_cut_rematerialization_partition).memory
    # forward frees sin after cos; the backward recomputes sin from the input x.
    assert memory.saved_bytes == 0 and memory.forward_peak == 2 * B
    assert [s.live_bytes for s in memory.steps if s.graph == "backward"][0] == 3 * B  # output, tangent, sin again


def test_views_share_their_base_storage():
    x = torch.randn(32, 32, requires_grad=True)

    def f(x):
        return (x * 2).t().unsqueeze(0).sin()

    memory = _partition(f, x).memory
    forward = [s.live_bytes for s in memory.steps if s.graph == "forward"]
    assert forward == [B, B, B, 2 * B]  # mul and sin allocate; t and unsqueeze do not


MODELS = {
    "gpt": lambda: models.gpt(layers=2),
    "mlp": lambda: models.mlp(),
    "transformer": lambda: models.transformer_stack(),
    "resnet": lambda: models.resnet(blocks=3, width=8, batch=2, size=16),
}
PLANS = {
    "default": default_partition,
    "mincut": min_cut_rematerialization_partition,
    "budget_0.3": partition_for(budget=0.3),
    "recompute_0": partition_for(recompute_budget=0),
    "offload_all": partition_for(policy=offload_large(0)),
}


class WithLoss(torch.nn.Module):
    """The model and a scalar loss in one program: the backward's tangent is the engine's own."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        out = self.model(*inputs)
        return out if out.dim() == 0 else out.float().square().mean()


@pytest.mark.parametrize("plan", sorted(PLANS))
@pytest.mark.parametrize("model", sorted(MODELS))
def test_predicted_peaks_equal_measured_live_storages(model, plan, monkeypatch):
    # Predictions do not look inside region calls: the gpt's blocks would be found as regions.
    monkeypatch.setattr(config, "disabled", config.disabled | {"auto_regions"})
    torch.manual_seed(0)
    module, inputs = MODELS[model]()
    module = WithLoss(module).train()
    compiled = aot_module(module, partition_fn=PLANS[plan])
    compiled(*inputs).backward()  # compile
    partition = next(iter(compiled.aotgraph_entries.values())).partition
    module.zero_grad(set_to_none=True)
    mode = LiveStorageCounter([*module.parameters(), *module.buffers(), *inputs])
    with mode:
        mode.phase = "forward"
        loss = compiled(*inputs)
        mode.phase = "backward"
        loss.backward()
    memory = partition.memory
    assert memory.forward_peak == mode.peaks["forward"]
    # The autograd engine hands the runtime's backward zeros as the "gradients" of the new
    # values of mutated buffers (batch-norm statistics): outside the graphs, so not predicted.
    materialized = sum(b.numel() * b.element_size() for b in module.buffers())
    assert memory.backward_peak <= mode.peaks["backward"] <= memory.backward_peak + materialized
    assert memory.forward_peak > 0 and memory.backward_peak > memory.gradient_bytes
    assert memory.gradient_bytes == sum(p.numel() * p.element_size() for p in module.parameters())


def test_saved_part_equals_the_plans_saved_bytes():
    torch.manual_seed(0)
    module, inputs = models.gpt(layers=2)
    for partition_fn in (min_cut_rematerialization_partition, partition_for(budget=0.5), partition_for(recompute_budget=0)):
        compiled = aot_module(module, partition_fn=partition_fn)
        compiled(*inputs).backward()
        entry = next(iter(compiled.aotgraph_entries.values()))
        plan = entry.partition.plan
        assert entry.partition.memory.saved_bytes == plan.device_saved_bytes == saved_report(entry).saved_bytes


def test_cuda_offload_moves_saved_bytes_off_the_device_in_the_prediction():
    """The CUDA offload rewrite on fake CUDA tensors (no GPU needed): the device copy is freed
    after its last forward use, and comes back from the prefetch on."""
    from torch._subclasses import FakeTensorMode

    from aotgraph.graph.memory import simulate_memory
    from aotgraph.partition.offload import offload_saved, prefetch_to_device

    aten = torch.ops.aten
    with FakeTensorMode():
        x = torch.empty(1024, device="cuda")

    def node(graph, target, args, val):
        created = graph.call_function(target, args)
        created.meta["val"] = val
        return created

    forward = torch.fx.Graph()  # x -> a = sin(x) -> b = cos(a); returns b, saves a
    xs = forward.placeholder("primals_1")
    xs.meta["val"] = x
    a = node(forward, aten.sin.default, (xs,), x.sin())
    a.name = "a"
    b = node(forward, aten.cos.default, (a,), x.cos())
    forward.output((b, a))
    backward = torch.fx.Graph()  # grad = tangent * a
    a_saved = backward.placeholder("a")
    a_saved.meta["val"] = a.meta["val"]
    tangent = backward.placeholder("tangents_1")
    tangent.meta["val"] = x.sin()
    backward.output((node(backward, aten.mul.Tensor, (tangent, a_saved), x.sin()),))
    forward, backward = torch.fx.GraphModule({}, forward), torch.fx.GraphModule({}, backward)

    before = simulate_memory(forward, backward, 1)
    offload_saved(forward, backward, ["a"], 1)
    after = simulate_memory(forward, backward, 1)
    assert (before.saved_bytes, after.saved_bytes) == (B, 0)
    assert before.forward_peak == after.forward_peak == 2 * B  # a is freed only after b reads it
    # backward: tangent and output b (carried) + a back from the prefetch, + the gradient
    prefetch = next(n for n in backward.graph.nodes if n.target is prefetch_to_device)
    steps = [s for s in after.steps if s.graph == "backward"]
    assert steps[0].node == prefetch.name and steps[0].live_bytes == 3 * B
    assert after.backward_peak == before.backward_peak == 4 * B
