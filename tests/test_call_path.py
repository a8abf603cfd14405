"""The per-call fast path (flat tensor arguments, no pytree) against eager: the cache key
still separates what must be separate, and aot_module still reads the module's state."""
import torch

import aotgraph


def test_new_shape_dtype_requires_grad_and_duplicates_each_compile_their_own_entry():
    compiled = aotgraph.aot_function(lambda x, y: x * y + x)
    calls = [
        (torch.randn(3), torch.randn(3)),
        (torch.randn(4), torch.randn(4)),
        (torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)),
        (torch.randn(4, requires_grad=True), torch.randn(4)),
        (torch.randn(4).t(), torch.randn(4)),
    ]
    same = torch.randn(4)
    calls.append((same, same))
    for x, y in calls:
        torch.testing.assert_close(compiled(x, y), x * y + x)
    assert len(compiled.aotgraph_entries) == 5  # the transposed 1-d tensor has the same layout


def test_list_and_tensor_arguments_and_tuple_outputs():
    def fn(xs, y):
        return xs[0] * y, xs[1] - y

    compiled = aotgraph.aot_function(fn)
    xs, y = [torch.randn(2), torch.randn(2)], torch.randn(2)
    out = compiled(xs, y)
    assert type(out) is tuple
    torch.testing.assert_close(out, fn(xs, y))


def test_aot_module_sees_a_reassigned_parameter_and_buffer():
    torch.manual_seed(0)
    model = torch.nn.BatchNorm1d(3)
    compiled = aotgraph.aot_module(model)
    x = torch.randn(4, 3)
    compiled(x)
    model.weight = torch.nn.Parameter(torch.full((3,), 2.0))
    model.running_mean = torch.ones(3)
    reference = torch.nn.BatchNorm1d(3)
    reference.load_state_dict(model.state_dict())
    torch.testing.assert_close(compiled(x), reference(x))
    torch.testing.assert_close(model.running_mean, reference.running_mean)
