"""What training scripts change in a module between compiled calls, seen as eager sees it:
a buffer registered as None and filled by the forward, a parameter appended after the
compile, tensors kept in list and dict attributes, a module kept out of the tree in a list
(a distillation teacher), plain tensor attributes written in place or replaced every step
(under Inductor too), and tensors an argument object holds."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.utils.prune as prune

import aotgraph


def _train_both(model, steps, compile_model=aotgraph.aot_module, between=None, after_compile=None):
    """Losses of an eager copy and a compiled copy trained alike (SGD), `between(model, step)`
    applied to both after each step, `after_compile(model)` to both before the first (to the
    compiled one after `compile_model`). `model`: a module, or a function making one (for a
    module deepcopy refuses)."""
    losses = []
    for compiled in (False, True):
        torch.manual_seed(0)
        module = copy.deepcopy(model) if isinstance(model, nn.Module) else model()
        run = compile_model(module) if compiled else module
        if after_compile is not None:
            after_compile(module)
        optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
        these = []
        for step, (x, y) in enumerate(steps):
            optimizer.zero_grad()
            loss = F.mse_loss(run(x), y)
            loss.backward()
            optimizer.step()
            these.append(loss.detach())
            if between is not None:
                between(module, step)
        losses.append(torch.stack(these))
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)


def _steps(n=4, width=4):
    torch.manual_seed(1)
    return [(torch.randn(6, width), torch.randn(6, width)) for _ in range(n)]


class Anchored(nn.Module):
    """L2-SP: a snapshot of the weights taken by the first forward, in a buffer registered as None."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.register_buffer("anchor", None)

    def forward(self, x):
        if self.anchor is None:
            self.register_buffer("anchor", self.lin.weight.detach().clone())
        return self.lin(x) + (self.lin.weight - self.anchor).pow(2).sum()


def test_a_buffer_registered_as_none_and_filled_by_the_forward():
    _train_both(Anchored(), _steps())


class Growing(nn.Module):
    def __init__(self):
        super().__init__()
        self.ws = nn.ParameterList([nn.Parameter(torch.randn(4, 4) * 0.3)])

    def forward(self, x):
        for w in self.ws:
            x = torch.tanh(x @ w)
        return x


def test_a_parameter_appended_after_the_compile_trains():
    def grow(module, step):
        if step == 1:
            torch.manual_seed(5)
            module.ws.append(nn.Parameter(torch.randn(4, 4) * 0.3))

    _train_both(Growing(), _steps(), between=grow)


class Containers(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.cache = {"scale": torch.tensor(1.0)}
        self.consts = [torch.zeros(4)]

    def forward(self, x):
        return self.lin(x) * self.cache["scale"] + self.consts[0]


def test_tensors_replaced_in_list_and_dict_attributes():
    def replace(module, step):
        module.cache["scale"] = torch.tensor(float(step + 2))
        module.consts[0] = torch.full((4,), float(step))

    _train_both(Containers(), _steps(), between=replace)


class Student(nn.Module):
    def __init__(self, teacher):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self._teacher = [teacher]  # kept out of the tree (and the state dict)

    def forward(self, x):
        return self.lin(x) + self._teacher[0](x)


def test_a_teacher_kept_in_a_list_is_seen_switching_mode_and_weights():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).requires_grad_(False)

    def change_teacher(module, step):
        teacher_now = module._teacher[0]
        if step == 0:
            teacher_now.eval()
        if step == 1:
            state = {k: torch.randn_like(v) for k, v in teacher_now.state_dict().items()}
            teacher_now.load_state_dict(state, assign=True)

    _train_both(Student(teacher), _steps(), between=change_teacher)


class Masked(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.mask = torch.ones(8)  # a plain attribute

    def forward(self, x):
        return self.lin(x) * self.mask


@pytest.mark.parametrize("compiler", ["eager", "inductor"])
def test_a_plain_tensor_attribute_written_in_place_or_replaced(compiler):
    def change(module, step):
        if step % 2:
            module.mask[: step + 1] = 0.0  # in place
        else:
            module.mask = torch.rand(8)  # a new tensor each step, as a fresh dropout mask would be

    def compile_model(module):
        compile_model.compiled = aotgraph.aot_module(module, fw_compiler=compiler)
        return compile_model.compiled

    _train_both(Masked(), _steps(6, 8), compile_model, between=change)
    assert len(compile_model.compiled.aotgraph_entries) == 1  # a replaced tensor is an input: no compile again


def test_a_tensor_an_argument_object_holds_is_read_live_by_inductor():
    class Box:
        def __init__(self):
            self.w = torch.ones(4)

    box = Box()
    compiled = aotgraph.aot_function(lambda x, box: x + box.w, fw_compiler="inductor")
    x = torch.zeros(4)
    torch.testing.assert_close(compiled(x, box), x + 1)
    box.w.fill_(7.0)
    torch.testing.assert_close(compiled(x, box), x + 7)


class Trunk(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.head = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


def test_heads_swapped_per_task_compile_once_each():
    """Multitask heads swapped in per batch: each tree's program is kept, not made again every swap."""
    torch.manual_seed(0)
    heads = [nn.Linear(4, 4) for _ in range(3)]

    def swap(module, step):
        module.head = module.heads[(step + 1) % 3]

    model = Trunk()
    model.heads = heads  # (a plain list: not part of the tree)
    model.head = heads[0]

    def compile_model(module):
        compile_model.compiled = aotgraph.aot_module(module)
        return compile_model.compiled

    _train_both(model, _steps(9), compile_model, between=swap)
    assert len(compile_model.compiled.aotgraph_entries) == 1  # the current tree's
    assert len(compile_model.compiled._earlier_trees) == 2  # the two others', kept


class LastOfList(nn.Module):
    """A forward that reads the last tensor of a list attribute and appends a new one (a cache)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.cache = [torch.zeros(4)]

    def forward(self, x):
        y = self.lin(x) + self.cache[-1]
        self.cache.append(y.detach()[0])
        return y


def test_a_list_the_forward_reads_and_appends_to_is_read_as_it_is_each_call():
    _train_both(LastOfList(), _steps())


class KeepsLogits(nn.Module):
    """Keeps its last output, grad and all, in a plain attribute it never reads (for a logging hook)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.last = torch.zeros(6, 4)

    def forward(self, x):
        self.last = self.lin(x)
        return self.last


def _pruned(model):
    prune.l1_unstructured(model[0], "weight", amount=0.3)
    return model


@pytest.mark.parametrize("compiler", ["eager", aotgraph.nop])
@pytest.mark.parametrize("make", ["kept_output", "pruned", "pruned_after", "old_weight_norm"])
def test_a_tensor_attribute_the_forward_assigns_before_reading_links_no_earlier_call(make, compiler):
    """``prune`` and the old ``weight_norm`` set ``module.weight`` (a tensor requiring grad) in a
    forward pre-hook: an input of the program, as every tensor attribute is, that holds the
    previous call's output and that the program never reads. Linked to the Function, the next
    backward reached the previous call's freed graph."""
    model = {"kept_output": lambda: KeepsLogits(),
             "pruned": lambda: _pruned(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 4))),
             "pruned_after": lambda: nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 4)),
             "old_weight_norm": lambda: nn.Sequential(torch.nn.utils.weight_norm(nn.Linear(4, 8)), nn.Tanh(),
                                                      nn.Linear(8, 4))}[make]
    _train_both(model, _steps(), compile_model=lambda module: aotgraph.aot_module(module, compiler),
                after_compile=_pruned if make == "pruned_after" else None)
