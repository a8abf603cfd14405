"""Version counters move as eager's: a call that writes an input (or moves its counter with no
write to replay) leaves it reading as modified, so a tensor an earlier backward saved refuses the
stale value there as eager does; one that writes nothing leaves it alone.

Each program runs eagerly and compiled on equal inputs after an earlier product saved the
input for its backward; the compiled call's counter must move where eager's did, and that
backward must raise where eager's raised (and run where it ran)."""
import pytest
import torch

import aotgraph

COMPILERS = ["eager", "inductor"]


def _copy_of_itself(x, y):
    x.copy_(x)
    return y * 2


def _transpose_of_a_vector(x, y):
    x.t_()  # a 1-D tensor keeps its layout; the counter moves
    return y * 2


def _written(x, y):
    x.mul_(2)
    return y * 2


def _read_only(x, y):
    return (x * y).sum()


def _written_through_a_view(x, y):
    x[1:].add_(1)
    return y + 1


PROGRAMS = [_copy_of_itself, _transpose_of_a_vector, _written, _read_only, _written_through_a_view]


def _outcome(fn, make_x):
    """(whether the call moved x's counter, the earlier backward's error or None, x after)."""
    w, x, y = torch.randn(4, requires_grad=True), make_x(), torch.randn(4)
    product = (w * x).sum()
    version = x._version
    fn(x, y)
    moved = x._version != version
    try:
        product.backward()
        error = None
    except RuntimeError as e:
        error = "modified by an inplace operation" in str(e)
    return moved, error, x.detach().clone()


@pytest.mark.parametrize("compiler", COMPILERS)
@pytest.mark.parametrize("program", PROGRAMS, ids=lambda f: f.__name__)
def test_the_counter_moves_as_eagers(program, compiler):
    torch.manual_seed(0)
    make_x = lambda: torch.arange(4.0)  # noqa: E731
    expected = _outcome(program, make_x)
    moved, error, x = _outcome(aotgraph.aot_function(program, compiler), make_x)
    assert (moved, error) == expected[:2]
    torch.testing.assert_close(x, expected[2])


@pytest.mark.parametrize("compiler", COMPILERS)
def test_inputs_sharing_memory_move_as_eagers(compiler):
    """Two inputs over one memory (a tensor and its detached twin, passed as one base): the one
    written, and its twin, which shares its counter, read as modified afterwards."""
    def program(a, b, c):
        b.clamp_(0.0, 1.0)
        return a * 1, c.sum()

    def outcome(fn):
        w, b = torch.randn(4, requires_grad=True), torch.linspace(-1, 2, 4, dtype=torch.float64)
        c = b.detach()
        saved = (w * c).sum()
        fn(torch.randn(4, requires_grad=True), b, c)
        try:
            saved.backward()
            return b.clone(), None
        except RuntimeError as e:
            return b.clone(), "modified by an inplace operation" in str(e)

    expected = outcome(program)
    assert expected[1] is True
    got = outcome(aotgraph.aot_function(program, compiler))
    assert got[1] == expected[1]
    torch.testing.assert_close(got[0], expected[0])


@pytest.mark.parametrize("moves", [_copy_of_itself, _transpose_of_a_vector], ids=lambda f: f.__name__)
def test_an_input_saved_after_its_counter_moved_keeps_the_backward_running(moves):
    """The counter moves before x is read: eager's product saves x at its new version and its
    backward runs; the compiled one saves a copy, which the runtime's later move leaves alone."""
    def program(x, w):
        moves(x, w)
        return (x * w).sum()

    x, w = torch.randn(4), torch.randn(4, requires_grad=True)
    aotgraph.aot_function(program, "eager")(x, w).backward()
    torch.testing.assert_close(w.grad, x)


VIEWS_SAVED = {  # each saves a view of x (3-D) for w's gradient
    "matmul": lambda x, w: (x @ w).sum(),
    "linear": lambda x, w: torch.nn.functional.linear(x, w.t()).sum(),
    "einsum": lambda x, w: torch.einsum("bij,jk->bik", x, w).sum(),
}


def _reinterpreting(graph_module, example_inputs):
    """A compiler whose forward hands out its views of inputs as new tensors over the same
    memory, without the input's version counter (as Inductor's ``reinterpret_tensor``)."""
    def run(*args):
        outputs = graph_module(*args)
        return tuple(_reinterpreted(o) if isinstance(o, torch.Tensor) and o._is_view() else o for o in outputs)

    return run


def _reinterpreted(view):
    return torch.empty(0, dtype=view.dtype).set_(view.untyped_storage(), view.storage_offset(), view.shape,
                                                 view.stride())


@pytest.mark.parametrize("program", VIEWS_SAVED)
@pytest.mark.parametrize("compiler", [_reinterpreting, "inductor", "eager"])
def test_a_write_into_an_input_whose_view_was_saved_raises_as_eagers(compiler, program):
    """The caller writes an input between the forward and the backward; eager saved a view of it
    for the backward and raises there. A compiled forward whose saved views miss the input's
    version counter (Inductor's) must raise too, not run on the new values."""
    for compiled in (False, True):
        x, w = torch.randn(2, 3, 4), torch.randn(4, 4, requires_grad=True)
        fn = aotgraph.aot_function(VIEWS_SAVED[program], compiler) if compiled else VIEWS_SAVED[program]
        out = fn(x, w)
        x.add_(1.0)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            out.backward()


@pytest.mark.parametrize("compiler", [_reinterpreting, "inductor"])
def test_a_module_whose_weight_changes_before_the_backward_raises_as_eagers(compiler):
    linear = torch.nn.Linear(4, 4)
    out = aotgraph.aot_module(linear, compiler)(torch.randn(3, 4, requires_grad=True)).sum()
    with torch.no_grad():
        linear.weight.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()
    # Unchanged, the same program runs its backward (the check reads versions only).
    out = aotgraph.aot_module(linear, compiler)(torch.randn(3, 4, requires_grad=True)).sum()
    out.backward()
