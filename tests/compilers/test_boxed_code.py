"""The eager compiler's generated code: each ATen op is called through a global bound to
the same OpOverload, the graph module's own code is unchanged, and results match eager."""
import torch
import torch.fx as fx

from aotgraph.compilers.boxed_code import _ops_as_globals, boxed_graph_function

aten = torch.ops.aten


def traced(fn, *args) -> fx.GraphModule:
    from torch.fx.experimental.proxy_tensor import make_fx

    return make_fx(fn)(*args)


def test_ops_become_globals_bound_to_the_same_overloads():
    gm = traced(lambda x, y: aten.mul.Tensor(aten.add.Tensor(x, y), aten.add.Tensor(y, 2)).sin(),
                torch.randn(3), torch.randn(3))
    boxed = boxed_graph_function(gm)
    code = boxed.func.__code__
    assert "torch" not in code.co_names
    assert {"_op_aten_add_Tensor", "_op_aten_mul_Tensor", "_op_aten_sin_default"} <= set(code.co_names)
    assert boxed.func.__globals__["_op_aten_add_Tensor"] is aten.add.Tensor
    x, y = torch.randn(3), torch.randn(3)
    args = [x, y]
    torch.testing.assert_close(boxed(args), ((x + y) * (y + 2)).sin())
    assert args == []  # boxed: the list is cleared
    assert "torch.ops.aten.add.Tensor" in gm.code  # the module keeps its own code


def test_a_name_already_taken_or_not_an_op_overload_is_left_as_is():
    namespace = {"_op_aten_add_Tensor": object()}
    src = ("x = torch.ops.aten.add.Tensor(a, b)\n"
           "y = torch.ops.aten.mul.Tensor(a, b)\n"
           "z = torch.ops.aten.no_such_op.default(a)\n"
           "w = my.torch.ops.aten.mul.Tensor\n")
    rewritten = _ops_as_globals(src, namespace)
    assert rewritten.splitlines() == [
        "x = torch.ops.aten.add.Tensor(a, b)",
        "y = _op_aten_mul_Tensor(a, b)",
        "z = torch.ops.aten.no_such_op.default(a)",
        "w = my.torch.ops.aten.mul.Tensor",
    ]
    assert namespace["_op_aten_mul_Tensor"] is aten.mul.Tensor
