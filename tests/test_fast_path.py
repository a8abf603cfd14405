"""The per-call fast path (a call of only tensors reuses the previous call's entry after
torch's C++ tensor check, without building the cache key) against eager: it is taken when
nothing changed, and every change that needs another graph or other runtime work misses it
and reaches the entry that the cache key selects."""
import pytest
import torch

import aotgraph
from aotgraph import api


@pytest.fixture
def keys_built(monkeypatch):
    """How many calls built the cache key (missed the fast path)."""
    count = [0]
    build_key = api.plain_args_key

    def counting(*args):
        count[0] += 1
        return build_key(*args)

    monkeypatch.setattr(api, "plain_args_key", counting)
    return count


def call_both(fn, compiled, *args):
    """Outputs of eager and compiled on separate copies of `args`, and both sets of grads."""
    eager_args = [a.detach().clone().requires_grad_(a.requires_grad) for a in args]
    expected, actual = fn(*eager_args), compiled(*args)
    torch.testing.assert_close(actual, expected)
    if actual.requires_grad:
        actual.sum().backward()
        expected.sum().backward()
        for a, e in zip(args, eager_args):
            torch.testing.assert_close(a.grad, e.grad)
            a.grad = e.grad = None
    return actual, expected


def test_a_repeated_call_skips_the_key_and_matches_eager(keys_built):
    fn = lambda x, y: x * y + x.sin()  # noqa: E731
    compiled = aotgraph.aot_function(fn)
    x, y = torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)
    for _ in range(3):
        call_both(fn, compiled, x, y)
    assert keys_built[0] == 1
    assert len(compiled.aotgraph_entries) == 1


@pytest.mark.parametrize("change", ["stride", "storage offset", "shape", "dtype", "requires_grad",
                                    "passed twice", "parameter"])
def test_a_changed_input_misses_the_fast_path_and_matches_eager(change, keys_built):
    def fn(x, y):
        return x.reshape(-1) * y.reshape(-1) + x.reshape(-1)[:2].sum()

    compiled = aotgraph.aot_function(fn)
    base = torch.randn(20)
    first = (base[:16].view(4, 4), torch.randn(4, 4))
    changed = {
        "stride": (torch.randn(4, 4).t(), torch.randn(4, 4)),  # reshape copies: another graph
        "storage offset": (base[4:].view(4, 4), torch.randn(4, 4)),
        "shape": (torch.randn(2, 8), torch.randn(2, 8)),
        "dtype": (torch.randn(4, 4, dtype=torch.float64), torch.randn(4, 4, dtype=torch.float64)),
        "requires_grad": (torch.randn(4, 4, requires_grad=True), torch.randn(4, 4)),
        "passed twice": (first[1], first[1]),
        "parameter": (torch.nn.Parameter(torch.randn(4, 4)), torch.randn(4, 4)),
    }[change]
    call_both(fn, compiled, *first)
    call_both(fn, compiled, *changed)
    call_both(fn, compiled, *first)
    assert keys_built[0] == 3


def test_an_output_aliasing_an_input_at_another_storage_offset():
    """The runtime rebuilds an aliasing output with the offset seen while tracing: a view
    at another offset must not reuse that entry through the fast path."""
    fn = lambda x: x[1:]  # noqa: E731
    compiled = aotgraph.aot_function(fn)
    base = torch.arange(8.0)
    for view in (base[0:4], base[0:4], base[2:6], base[2:6], base[0:4]):
        out = compiled(view)
        assert out.storage_offset() == fn(view).storage_offset()
        torch.testing.assert_close(out, fn(view))
    assert len(compiled.aotgraph_entries) == 2


def test_grad_mode_and_autocast_changes_miss_the_fast_path():
    compiled = aotgraph.aot_function(lambda x, w: x @ w)
    x, w = torch.randn(4, 4, requires_grad=True), torch.randn(4, 4)

    def entries():
        return [entry.joint.is_inference for entry in compiled.aotgraph_entries.values()]

    assert compiled(x, w).requires_grad and entries() == [False]
    with torch.no_grad():
        assert not compiled(x, w).requires_grad
        assert not compiled(x, w).requires_grad
    assert entries() == [False, True]  # under no_grad: the inference graph
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert compiled(x, w).dtype == torch.bfloat16
    assert compiled(x, w).dtype == torch.float32
    with torch.inference_mode():
        out = compiled(x, w)
    assert not out.requires_grad and out.is_inference()
    assert compiled(x, w).requires_grad
    assert entries() == [False, True, False]


def test_mutating_entries_keep_checking_for_shared_memory(keys_built):
    def fn(x, y):
        x.add_(1)
        return y * 2

    compiled = aotgraph.aot_function(fn)
    a, b = torch.zeros(4), torch.zeros(4)
    compiled(a, b)
    compiled(a, b)
    torch.testing.assert_close(a, torch.full((4,), 2.0))
    for _ in range(2):  # y sees x's write, as in eager
        base, expected_base = torch.zeros(4), torch.zeros(4)
        torch.testing.assert_close(compiled(base, base[:]), fn(expected_base, expected_base[:]))
        torch.testing.assert_close(base, expected_base)
    # The repeat of (a, b) takes the fast path (distinct storages); both calls with inputs
    # sharing memory fail its storage check and take the key path.
    assert keys_built[0] == 3


def test_aot_module_train_and_eval_select_their_own_graph_and_fast_path(keys_built):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5), torch.nn.BatchNorm1d(4))
    reference = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5), torch.nn.BatchNorm1d(4))
    reference.load_state_dict(model.state_dict())
    compiled = aotgraph.aot_module(model)
    x = torch.randn(8, 4)
    for mode in ("eval", "eval", "train", "train", "eval"):
        getattr(model, mode)(), getattr(reference, mode)()
        if mode == "eval":
            torch.testing.assert_close(compiled(x), reference(x))
        else:
            torch.manual_seed(1)
            out = compiled(x)
            torch.manual_seed(1)
            torch.testing.assert_close(out, reference(x))
        torch.testing.assert_close(model[2].running_mean, reference[2].running_mean)
    assert len(compiled.aotgraph_entries) == 2
    # Each set of training flags has its own fast path, train mode's too (it updates BatchNorm's
    # buffers, an input mutation: its fast path also checks that no inputs share memory).
    assert keys_built[0] == 2


def test_gradient_that_reads_no_input_behaves_as_eager_under_create_graph():
    """Nothing saved for backward: the gradient is a constant, as in eager, and a second
    backward fails as eager's does (it does not require grad) rather than being refused."""
    fn = lambda t: (t * 3).sum()  # noqa: E731
    results = []
    for run in (fn, aotgraph.aot_function(fn)):
        x = torch.randn(3, requires_grad=True)
        (grad,) = torch.autograd.grad(run(x), x, create_graph=True)
        results.append(grad)
        with pytest.raises(RuntimeError, match="does not require grad"):
            grad.sum().backward()
    torch.testing.assert_close(results[1], results[0])


def test_alternating_signatures_each_reach_their_own_entry(keys_built):
    fn = lambda x: x.reshape(-1).cumsum(0)  # noqa: E731
    compiled = aotgraph.aot_function(fn)
    small, large, transposed = torch.randn(2, 2), torch.randn(3, 3), torch.randn(2, 2).t()
    calls = [small, large, small, transposed, small, small, large, large]
    for x in calls:
        torch.testing.assert_close(compiled(x), fn(x))
    assert len(compiled.aotgraph_entries) == 3
    assert keys_built[0] == 6  # every switch builds the key; repeats do not


def test_calls_under_autocast_take_the_fast_path_only_with_the_same_autocast_state(keys_built):
    """Training steps run under autocast: repeats there reuse the last entry without a key,
    and a different autocast dtype, or leaving autocast, misses."""
    compiled = aotgraph.aot_function(lambda x, w: x @ w)
    x, w = torch.randn(4, 4, requires_grad=True), torch.randn(4, 4)
    for dtype in (torch.bfloat16, torch.bfloat16, torch.float16, torch.float16):
        with torch.autocast("cpu", dtype=dtype):
            assert compiled(x, w).dtype == dtype
    assert compiled(x, w).dtype == torch.float32
    assert len(compiled.aotgraph_entries) == 3
    assert keys_built[0] == 3  # one key per autocast state: the repeats took the fast path


def test_a_mutating_entry_on_the_fast_path_still_writes_every_call(keys_built):
    """Repeated training steps of a module that updates buffers take the fast path and update
    the buffers exactly as eager does, every call."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    reference = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    reference.load_state_dict(model.state_dict())
    compiled = aotgraph.aot_module(model)
    for step in range(4):
        x = torch.randn(8, 4)
        compiled(x).sum().backward()
        reference(x).sum().backward()
        for ours, theirs in zip(model.buffers(), reference.buffers()):
            torch.testing.assert_close(ours, theirs)
    assert keys_built[0] == 1


def test_mutating_entry_detects_shared_memory_at_the_remembered_offsets(keys_built):
    """The fast path's storage check works from data pointers and the remembered offsets: an
    input that is a view at the same offset into another input's storage still takes the
    key path, and the result matches eager's."""
    def fn(x, y):
        x.add_(1)
        return y * 2

    compiled = aotgraph.aot_function(fn)
    a, own = torch.zeros(8), torch.zeros(8)
    compiled(a, own[4:])  # remembered: offsets (0, 4), distinct storages
    compiled(a, own[4:])
    assert keys_built[0] == 1
    base, expected_base = torch.zeros(8), torch.zeros(8)
    torch.testing.assert_close(compiled(base, base[4:]), fn(expected_base, expected_base[4:]))
    torch.testing.assert_close(base, expected_base)
    assert keys_built[0] == 2
