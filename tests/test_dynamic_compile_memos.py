"""The memos of a capture with symbolic sizes (switches ``symbolic_fake_memo``,
``size_arithmetic_memo``, ``strided_builds``, ``symbolic_layout_rules``, and ``direct_fakes`` for the inputs whose
sizes stay concrete): turned off, the same graphs and the same size guards come out;
on, a repeated op on symbolic fakes is answered from the memo with the fake mode's layout,
a repeated evaluation of a condition with its first answer (never one given while guards were
suppressed: its guard is recorded when asked again), and SymNode's arithmetic is back to torch's own once the capture ends."""
from __future__ import annotations

import pytest
import torch
from torch.fx.experimental.sym_node import SymNode

import aotgraph
from aotgraph import config, models
from aotgraph.capture.fake_outputs import FakeOutputs
from aotgraph.compilers import eager
from aotgraph.torch_private.symbolic import memoized_size_arithmetic, new_symbolic_fake_mode, symbolic_fake

aten = torch.ops.aten
MEMOS = ("symbolic_fake_memo", "size_arithmetic_memo", "direct_fakes", "strided_builds", "symbolic_layout_rules",
         "direct_guards", "unused_relations_unbuilt")


def _compile_and_run(model, inputs):
    """(forward and backward code, size guard texts, loss, grads) of one dynamic compile."""
    codes = []

    def recording(graph_module, example_inputs):
        codes.append(graph_module.code)
        return eager(graph_module, example_inputs)

    torch.manual_seed(0)
    compiled = aotgraph.aot_module(model, fw_compiler=recording, dynamic=True)
    loss = compiled(*inputs)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    entries = list(compiled.aotgraph_entries.values())
    assert len(entries) == 1
    guards = sorted(getattr(g, "text", "") for g in entries[0].guards.guards)
    return codes, guards, loss.detach(), grads


@pytest.mark.parametrize("name", ["gpt", "mlp"])
@pytest.mark.parametrize("switch", MEMOS + ("both",))
def test_memos_off_give_the_same_graphs_and_guards(name, switch, monkeypatch):
    torch.manual_seed(0)
    if name == "gpt":
        model, _ = models.gpt(seq=16, dim=32, heads=2, layers=3)
        inputs = (torch.randint(0, 256, (3, 7)), torch.randint(0, 256, (3, 7)))
    else:
        model, _ = models.mlp()
        inputs = (torch.randn(5, 32),)
        model = torch.nn.Sequential(model, _Sum())
    on = _compile_and_run(model, inputs)
    monkeypatch.setattr(config, "disabled", config.disabled | (set(MEMOS) if switch == "both" else {switch}))
    off = _compile_and_run(model, inputs)
    assert on[0] == off[0]  # forward and backward code
    assert on[1] == off[1]  # size guards
    assert any(on[1]) or name == "mlp"
    torch.testing.assert_close(on[2], off[2])
    torch.testing.assert_close(on[3], off[3])


@pytest.mark.parametrize("switch", ["direct_guards", "unused_relations_unbuilt"])
@pytest.mark.parametrize("name", ["unet", "resnet"])
def test_direct_guards_give_the_same_graphs_and_guards(name, switch, monkeypatch):
    """Pooled sizes, skip connections, strided convolutions: their guards taken without the
    shape environment's static evaluation (and its range refinement), and with new symbols'
    and simplification's unused relations unbuilt, are the ones it takes with them, ranges
    included."""
    from symbolic_capture import codes_and_guards

    torch.manual_seed(0)
    model, inputs = getattr(models, name)()
    on = codes_and_guards(model, inputs)
    monkeypatch.setattr(config, "disabled", config.disabled | {switch})
    off = codes_and_guards(model, inputs)
    assert on == off
    assert any("//" in guard for guard in on[1])


def test_a_guard_implied_by_earlier_ones_admits_the_same_sizes(monkeypatch):
    """Where the shape environment's static evaluation would find a condition implied by the
    guards before it, the direct guard is one more: the sizes admitted stay the same."""
    def f(x):
        if x.shape[0] % 4 == 0:
            x = x * 2
        if (x.shape[0] // 2) * 2 == x.shape[0]:  # implied by the first
            x = x + 1
        return x.sum()

    guards = {}
    for switch_on in (True, False):
        monkeypatch.setattr(config, "disabled", config.disabled - {"direct_guards"} if switch_on
                            else config.disabled | {"direct_guards"})
        compiled = aotgraph.aot_function(f, dynamic=True)
        compiled(torch.randn(8, 3))
        guards[switch_on] = next(iter(compiled.aotgraph_entries.values())).guards
    for rows in range(0, 40):
        x = torch.randn(rows, 3)
        assert guards[True].holds([x]) == guards[False].holds([x]), rows


class _Sum(torch.nn.Module):
    def forward(self, x):
        return x.sum()


def test_repeated_op_on_symbolic_fakes_is_answered_from_the_memo(monkeypatch):
    # (the rules would answer the first occurrences without a dispatch too; the view's guard
    # Eq(s2, 8) replaces x's last size, after which x's layout, computed again, keys the repeat apart)
    monkeypatch.setattr(config, "disabled", config.disabled | {"symbolic_layout_rules", "layouts_after_replacements"})
    mode = new_symbolic_fake_mode()
    x = symbolic_fake(mode, torch.randn(6, 4, 8), "x")
    w = mode.from_tensor(torch.randn(8, 8), static_shapes=True)
    outputs = FakeOutputs(mode)
    dispatched = []

    def dispatch(func, args, kwargs):
        dispatched.append(func)
        with mode:
            return func(*args, **kwargs)

    b, t = x.shape[0], x.shape[1]
    flat = outputs.run(aten.view.default, (x, [b * t, 8]), {}, dispatch)
    first = outputs.run(aten.mm.default, (flat, w), {}, dispatch)
    again_flat = outputs.run(aten.view.default, (x, [b * t, 8]), {}, dispatch)
    again = outputs.run(aten.mm.default, (again_flat, w), {}, dispatch)
    assert dispatched == [aten.view.default, aten.mm.default]  # the repeats came from the memo
    assert again is not first and again_flat is not flat
    for a, b_ in ((flat, again_flat), (first, again)):
        assert [str(s) for s in a.shape] == [str(s) for s in b_.shape]
        assert [str(s) for s in a.stride()] == [str(s) for s in b_.stride()]
    assert str(again.shape[0]) == str(b * t)
    assert again_flat.untyped_storage()._cdata == x.untyped_storage()._cdata  # still a view of x
    assert again.untyped_storage()._cdata != first.untyped_storage()._cdata  # a fresh tensor


def test_size_arithmetic_memo_shares_results_and_restores_symnode():
    before = {name: SymNode.__dict__[name] for name in ("mul", "eq", "wrap_int", "maybe_as_int", "guard_bool")}
    mode = new_symbolic_fake_mode()
    x = symbolic_fake(mode, torch.randn(6, 4), "x")
    s0, s1 = x.shape
    with memoized_size_arithmetic():
        product = s0 * s1
        assert (s0 * s1).node is product.node
        assert str(product) == str(s0 * s1)
        with memoized_size_arithmetic():  # reentrant
            assert (s0 * s1).node is product.node
        assert bool(product == s0 * s1)
    assert {name: SymNode.__dict__[name] for name in before} == before
    assert (s0 * s1).node is not product.node


def test_an_evaluation_under_suppressed_guards_is_not_kept():
    mode = new_symbolic_fake_mode()
    shape_env = mode.shape_env
    x = symbolic_fake(mode, torch.randn(6, 4), "x")
    s0, s1 = x.shape
    with memoized_size_arithmetic():
        taller = s1 < 5
        with shape_env.suppress_guards():
            assert bool(taller)  # SymNode.guard_bool: nothing recorded, so nothing kept
        assert not shape_env.guards
        assert bool(taller) and len(shape_env.guards) == 1
        assert bool(s1 < 5) and len(shape_env.guards) == 1  # the same node: now from the memo


def test_dynamic_inputs_of_concrete_size_get_direct_fakes(monkeypatch):
    from torch._subclasses.fake_tensor import FakeTensorMode

    converted = []
    from_tensor = FakeTensorMode.from_tensor

    def counting(self, tensor, *args, **kwargs):
        converted.append(tuple(tensor.shape))
        return from_tensor(self, tensor, *args, **kwargs)

    monkeypatch.setattr(FakeTensorMode, "from_tensor", counting)
    torch.manual_seed(0)
    model, _ = models.mlp()
    compiled = aotgraph.aot_module(torch.nn.Sequential(model, _Sum()), dynamic=True)
    x = torch.randn(5, 32)
    torch.testing.assert_close(compiled(x), model(x).sum())
    assert converted == [(5, 32)]  # the parameters' fakes were built directly


@pytest.mark.parametrize("direct", [True, False])
def test_a_size_guarded_equal_to_a_constant_is_replaced_as_torch_does(direct, monkeypatch):
    """``Eq(s, 32)`` guarded (a feature size meeting a weight): the symbol's range is that
    constant and the symbol is replaced by it, with the shortcut (`CaptureShapeEnv`) as with
    torch's own range refinement; the guard is recorded either way."""
    from torch.fx.experimental.symbolic_shapes import ShapeEnv
    from torch._subclasses.fake_tensor import FakeTensorMode

    refined = []
    refine_ranges = ShapeEnv._refine_ranges
    monkeypatch.setattr(ShapeEnv, "_refine_ranges", lambda self, expr: refined.append(self) or refine_ranges(self, expr))
    states = []
    for mode in (new_symbolic_fake_mode(), FakeTensorMode(shape_env=ShapeEnv(duck_shape=False))):
        x = symbolic_fake(mode, torch.randn(6, 32), "x")
        symbol = x.shape[1].node._expr
        with memoized_size_arithmetic(direct_guards=direct):
            assert x.shape[1] == 32
            assert x.shape[0] != 32
        env = mode.shape_env
        states.append((env.var_to_range[symbol], env.replacements.get(symbol), len(env.guards),
                       x.shape[1] * 2 == 64, str(env.simplify(x.shape[1].node.expr))))
    assert states[0] == states[1]
    assert states[0][1] == 32 and states[0][4] == "32"
    assert ([type(env).__name__ for env in refined] == ["ShapeEnv"]) if direct else (len(refined) == 2)
