"""A program that seeds the global RNG itself (``torch.manual_seed(c)``, ``torch.set_rng_state``,
as PyTorch's OpInfo samples of random ops do): the compiled function replays the seeding at
run time, so its draws equal eager's whatever the caller's RNG state was, gradients equal
eager's, and the global RNG state after the call equals eager's."""
import pytest
import torch
import torch.nn.functional as F

from aotgraph import UnsupportedOp, aot_function, min_cut_rematerialization_partition
from eager_parity import Case, assert_parity, leaf


def _seeded(draw):
    def program(x):
        torch.manual_seed(123)
        return draw(x)
    return program


_DRAWS = {
    "dropout": lambda x: F.dropout(x, 0.5, training=True),
    "bernoulli": lambda x: x * torch.bernoulli(torch.full_like(x, 0.4)),
    "bernoulli_of_input": lambda x: torch.bernoulli(x.detach().sigmoid()) * x,
    "rrelu": lambda x: F.rrelu(x, training=True),
    "normal": lambda x: torch.normal(x, 0.5),
    "normal_sized": lambda x: x + torch.normal(0.0, 1.0, (3, 4)),
    "randn": lambda x: x * torch.randn(3, 4),
    "rand_like": lambda x: x * torch.rand_like(x),
    "randint": lambda x: x * torch.randint(0, 10, (3, 4)),
    "multinomial": lambda x: x * torch.multinomial(x.detach().softmax(1), 4, replacement=True),
    "uniform_": lambda x: x * torch.empty(3, 4).uniform_(-1, 2),
}


def _check(program, requires_grad=True, compiler=None, calls=(1, 2), **options):
    """Each seed in `calls` gives the caller another RNG state before the call."""
    compiled = aot_function(program, compiler, **options)
    for seed in calls:
        assert_parity(program, lambda: Case((leaf(3, 4, requires_grad=requires_grad),)), seed=seed,
                      compiled=compiled, atol=0, rtol=0)


@pytest.mark.parametrize("requires_grad", [True, False], ids=["grad", "no_grad"])
@pytest.mark.parametrize("name", list(_DRAWS))
def test_seeded_draw_matches_eager_whatever_the_callers_state(name, requires_grad):
    _check(_seeded(_DRAWS[name]), requires_grad)


def test_seeding_twice_and_after_a_draw():
    def program(x):
        before = x * torch.rand_like(x)  # from the caller's state
        torch.manual_seed(7)
        first = F.dropout(x, 0.3) + torch.randn(3, 4)
        torch.manual_seed(7)
        again = F.dropout(x, 0.3) + torch.randn(3, 4)  # eager draws the same values again
        return before, first, again, x * torch.rand(4)

    _check(program, calls=(1, 2, 3, 1))


def test_seeding_survives_a_recomputing_partitioner():
    """The min cut recomputes cheap ops in the backward; the seeding stays in the forward, before its draws."""
    def program(x):
        h = x.sin() * torch.rand_like(x)
        torch.manual_seed(4)
        return (F.dropout(h.exp(), 0.5) * torch.randn(3, 4)).cos()

    _check(program, partition_fn=min_cut_rematerialization_partition)


def test_set_rng_state_to_a_state_from_outside():
    saved = torch.Generator().manual_seed(99).get_state()

    def program(x):
        a = x * torch.rand_like(x)
        torch.set_rng_state(saved)
        return a, F.dropout(x, 0.5), torch.random.manual_seed(5) is torch.default_generator

    _check(program)


def test_seeding_inside_a_checkpointed_region():
    from torch.utils.checkpoint import checkpoint

    def block(x):
        return F.dropout(x.sin(), 0.5) * torch.rand_like(x)

    def program(x):
        torch.manual_seed(11)
        return checkpoint(block, x, use_reentrant=False).cos()

    _check(program)


def test_reseeding_inside_a_checkpointed_region():
    """The recomputation restores a state saved before the region's reseeding: replayed at run time."""
    from torch.utils.checkpoint import checkpoint

    def block(x):
        a = F.dropout(x.sin(), 0.5)
        torch.manual_seed(5)
        return a * torch.rand_like(x)

    def program(x):
        return checkpoint(block, x * torch.rand_like(x), use_reentrant=False).cos(), torch.rand(2)

    _check(program)


@pytest.mark.parametrize("name", ["bernoulli", "randn", "rand_like"])
def test_seeded_draw_matches_eager_with_inductor(name):
    _check(_seeded(_DRAWS[name]), compiler="inductor")


def test_seeding_twice_with_inductor():
    def program(x):
        before = x * torch.rand_like(x)
        torch.manual_seed(7)
        first = x * torch.randn(3, 4)
        torch.manual_seed(8)
        return before, first, x * torch.bernoulli(torch.full_like(x, 0.5))

    _check(program, compiler="inductor")


@pytest.mark.parametrize("seeding", [
    lambda: torch.default_generator.manual_seed(3),
    lambda: torch.seed(),
], ids=["default_generator", "nondeterministic_seed"])
def test_seeding_aotgraph_cannot_replay_is_refused(seeding):
    def program(x):
        seeding()
        return x * torch.rand_like(x)

    with pytest.raises(UnsupportedOp, match="cannot replay"):
        aot_function(program)(torch.ones(3))


def _save_seed_restore(draw):
    """OpInfo's ``wrapper_set_seed``: save the state, reseed, draw, restore the saved state."""
    def program(x):
        state = torch.get_rng_state()
        torch.manual_seed(42)
        y = draw(x)
        torch.set_rng_state(state)
        return y * 2
    return program


_RESTORED_DRAWS = ["dropout", "bernoulli", "normal", "randn"]


@pytest.mark.parametrize("name", _RESTORED_DRAWS)
def test_restoring_a_state_saved_before_reseeding(name):
    """After the call the RNG has the caller's state of the call (not capture's), as in eager."""
    _check(_save_seed_restore(_DRAWS[name]), calls=(1, 2, 3, 1))


def test_restoring_a_state_saved_before_reseeding_between_draws():
    def program(x):
        before = x + torch.rand_like(x)  # the saved state is the one after this draw
        state = torch.get_rng_state()
        torch.manual_seed(42)
        seeded = F.dropout(x, 0.5) * torch.randn(3, 4)
        torch.set_rng_state(state)
        after = x * torch.rand_like(x)  # drawn from the restored state: eager's next values
        return before, seeded, after, torch.get_rng_state() is not None

    _check(program, calls=(1, 2, 3, 1))


def test_restoring_twice_and_restoring_the_callers_first_state():
    def program(x):
        first = torch.get_rng_state()  # the caller's state: the graph's start
        torch.manual_seed(5)
        a = x * torch.rand_like(x)
        torch.set_rng_state(first)
        b = x * torch.rand_like(x)
        torch.manual_seed(6)
        c = x * torch.randn(3, 4)
        torch.set_rng_state(first)
        return a, b, c, x * torch.rand_like(x)  # b's values again

    _check(program, calls=(1, 2))


@pytest.mark.parametrize("draw_after", [False, True], ids=["restore_last", "draw_after_restore"])
def test_restoring_a_state_drawn_from_before_reseeding(draw_after):
    """A draw between the save and the reseed: the restore still puts that state back at run
    time (the RNG state after the call, and the values drawn again after it, are eager's)."""
    def program(x):
        state = torch.get_rng_state()
        a = x * torch.rand_like(x)
        torch.manual_seed(3)
        b = x * torch.rand_like(x)
        torch.set_rng_state(state)
        if not draw_after:
            return a, b
        return a, b, x * torch.rand_like(x), x * torch.randn(3, 4)

    _check(program, calls=(1, 2, 1))


def test_fork_rng_around_a_reseeded_draw():
    def program(x):
        with torch.random.fork_rng():
            torch.manual_seed(3)
            x = x * torch.rand_like(x)
        return x, F.dropout(x, 0.5)

    _check(program, calls=(1, 2, 1))


def test_restoring_without_a_draw_after_the_restore_with_min_cut():
    _check(_save_seed_restore(_DRAWS["dropout"]), partition_fn=min_cut_rematerialization_partition)


def test_restoring_a_state_saved_before_reseeding_with_inductor():
    def program(x):
        before = x + torch.rand_like(x)
        state = torch.get_rng_state()
        torch.manual_seed(42)
        seeded = x * torch.bernoulli(torch.full_like(x, 0.5))
        torch.set_rng_state(state)
        return before, seeded, x * torch.randn(3, 4)

    _check(program, compiler="inductor")


def test_restoring_the_head_after_an_unreplayable_seeding():
    """Nothing drawn between save and restore: the state is the one saved, as in eager."""
    def program(x):
        state = torch.get_rng_state()
        torch.default_generator.manual_seed(3)
        torch.set_rng_state(state)
        return x * torch.rand_like(x)

    _check(program)


def test_restoring_a_state_after_a_draw_leaves_eagers_state():
    """Save, draw, restore, return: eager's RNG is back where it was saved; so is the compiled one's."""
    def program(x):
        state = torch.get_rng_state()
        y = x * torch.rand_like(x)
        torch.set_rng_state(state)
        return y

    _check(program)
    _check(program, requires_grad=False)
