"""Random straight-line programs over a table of differentiable ops, run eagerly and through
aotgraph (hypothesis, derandomized so CI is stable): outputs and every gradient must match."""
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from parity import assert_parity

# Each op maps same-shaped (rows, cols) tensors to one of that shape.
UNARY = {
    "sin": torch.sin, "exp_small": lambda a: (a * 0.1).exp(), "tanh": torch.tanh, "relu": F.relu,
    "sigmoid": torch.sigmoid, "neg": torch.neg, "abs": torch.abs, "gelu": F.gelu,
    "softmax_rows": lambda a: a.softmax(dim=1), "log_softmax_cols": lambda a: a.log_softmax(dim=0),
    "center_rows": lambda a: a - a.mean(dim=1, keepdim=True), "transpose_twice": lambda a: a.t().contiguous().t(),
    "cumsum": lambda a: a.cumsum(dim=1), "row_max": lambda a: a.amax(dim=1, keepdim=True).expand_as(a) + a,
    "halves_swapped": lambda a: torch.cat([a[:, a.shape[1] // 2:], a[:, : a.shape[1] // 2]], dim=1),
    "layer_norm": lambda a: F.layer_norm(a, a.shape[1:]), "square_matmul": lambda a: a @ a.t() @ a * 0.1,
    "flip_view": lambda a: a.flip(0).reshape(-1).view(a.shape),
}
BINARY = {
    "add": torch.add, "mul": torch.mul, "sub": torch.sub, "maximum": torch.maximum,
    "safe_div": lambda a, b: a / (b.abs() + 1), "where": lambda a, b: torch.where(a > b, a, b * 2),
    "lerp": lambda a, b: torch.lerp(a, b, 0.3),
}

steps = st.lists(
    st.one_of(
        st.tuples(st.just("unary"), st.sampled_from(sorted(UNARY)), st.integers(0, 7)),
        st.tuples(st.just("binary"), st.sampled_from(sorted(BINARY)), st.integers(0, 7), st.integers(0, 7)),
    ),
    min_size=1, max_size=8,
)


def program_from(plan, num_outputs):
    def program(*inputs):
        values = list(inputs)
        for step in plan:
            if step[0] == "unary":
                values.append(UNARY[step[1]](values[step[2] % len(values)]))
            else:
                values.append(BINARY[step[1]](values[step[2] % len(values)], values[step[3] % len(values)]))
        return tuple(values[-num_outputs:])

    return program


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(plan=steps, rows=st.integers(1, 4), cols=st.sampled_from([2, 3, 6]), num_inputs=st.integers(1, 3),
       num_outputs=st.integers(1, 2), frozen=st.integers(0, 3))
def test_random_program_matches_eager(plan, rows, cols, num_inputs, num_outputs, frozen):
    generator = torch.Generator().manual_seed(len(plan) * 31 + rows)
    inputs = tuple(torch.randn(rows, cols, generator=generator, dtype=torch.float64).requires_grad_(k != frozen)
                   for k in range(num_inputs))
    assert_parity(program_from(plan, num_outputs), inputs)


@settings(max_examples=8, deadline=None, derandomize=True, database=None)
@given(plan=steps, cols=st.sampled_from([3, 6]), num_inputs=st.integers(1, 3), num_outputs=st.integers(1, 2))
def test_random_program_through_inductor_with_symbolic_sizes(plan, cols, num_inputs, num_outputs):
    """The same programs through Inductor compiled once with symbolic sizes, called at two row
    counts: outputs and gradients equal to eager's at each."""
    import aotgraph

    program = program_from(plan, num_outputs)
    compiled = aotgraph.aot_function(program, "inductor", dynamic=True)
    for rows in (2, 5):
        generator = torch.Generator().manual_seed(len(plan) * 31 + rows)
        inputs = [torch.randn(rows, cols, generator=generator, dtype=torch.float64) for _ in range(num_inputs)]
        results = []
        for run in (program, compiled):
            leaves = [x.clone().requires_grad_() for x in inputs]
            outputs = run(*leaves)
            cotangents = [torch.ones_like(o) for o in outputs]
            grads = torch.autograd.grad(outputs, leaves, cotangents, allow_unused=True)
            results.append(([o.detach() for o in outputs], grads))
        (expected, expected_grads), (ours, our_grads) = results
        torch.testing.assert_close(ours, expected)
        for mine, theirs in zip(our_grads, expected_grads):
            if theirs is None:
                assert mine is None or not mine.any()
            else:
                torch.testing.assert_close(mine, theirs)
