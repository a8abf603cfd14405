"""Graph metadata for compilers (issue 16, item 9): every node of the joint, forward and backward
graphs carries ``val`` and, for tensors, ``tensor_meta``; ops carry the user's ``stack_trace``
and a ``seq_nr`` that links backward nodes to their forward op; under torch.compile, Dynamo's
``nn_module_stack`` and ``source_fn_stack``. Results stay those of eager."""
from __future__ import annotations

import torch
from torch import nn

import aotgraph
from aotgraph import aot_export_joint, aot_function
from parity import assert_module_parity, assert_parity

aten = torch.ops.aten


class Recording:
    """A compiler that keeps every graph module it is given and runs it as it is."""

    def __init__(self):
        self.graphs: list[torch.fx.GraphModule] = []

    def __call__(self, graph_module, example_inputs):
        self.graphs.append(graph_module)
        return graph_module.forward


def sin_program(x, w):
    y = torch.sin(x)  # the line the sin nodes name
    return (y * w).sum(dim=0)


def in_place_program(x, w):
    y = x * 2
    y.add_(w)  # the line the functionalized add nodes name
    return torch.sin(y)


def _args():
    torch.manual_seed(0)
    return torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)


def _line_of(fn, text: str) -> int:
    import inspect
    lines, first = inspect.getsourcelines(fn)
    return first + next(k for k, line in enumerate(lines) if text in line)


def _graphs(fn):
    recording = Recording()
    compiled = aot_function(fn, fw_compiler=recording, bw_compiler=recording)
    compiled(*_args())[0].sum().backward()
    joint = aot_export_joint(fn, _args()).graph_module
    forward, backward = recording.graphs
    return joint, forward, backward


def _ops(graph_module, op):
    return [n for n in graph_module.graph.nodes if n.op == "call_function" and n.target == op]


def _assert_values_and_tensor_meta(graph_module):
    for node in graph_module.graph.nodes:
        if node.op == "output":
            continue
        assert "val" in node.meta, node.format_node()
        val = node.meta["val"]
        if isinstance(val, torch.Tensor):
            meta = node.meta["tensor_meta"]
            assert (meta.shape, meta.dtype, meta.stride, meta.requires_grad) == (
                val.shape, val.dtype, val.stride(), val.requires_grad), node.format_node()


def test_every_node_has_val_and_tensor_meta():
    for fn in (sin_program, in_place_program):
        for graph_module in _graphs(fn):
            _assert_values_and_tensor_meta(graph_module)


def test_forward_ops_name_the_users_line():
    expected = f'line {_line_of(sin_program, "torch.sin(x)")}, in sin_program'
    for graph_module in _graphs(sin_program)[:2]:  # joint, forward
        (sin,) = _ops(graph_module, aten.sin.default)
        assert __file__ in sin.meta["stack_trace"] and expected in sin.meta["stack_trace"]
        assert "y = torch.sin(x)" in sin.meta["stack_trace"]
        for node in graph_module.graph.nodes:
            if node.op == "call_function":
                assert "aotgraph" not in node.meta["stack_trace"].replace(__file__, "")


def test_functionalized_ops_keep_the_line_of_the_op_they_replace():
    joint = _graphs(in_place_program)[0]
    expected = f'line {_line_of(in_place_program, "y.add_(w)")}, in in_place_program'
    (add,) = [n for n in _ops(joint, aten.add.Tensor) if "tangent" not in str(n.args)]
    assert expected in add.meta["stack_trace"]


def test_backward_nodes_share_the_seq_nr_of_their_forward_op():
    joint, forward, backward = _graphs(sin_program)
    (sin,) = _ops(joint, aten.sin.default)
    (cos,) = _ops(joint, aten.cos.default)
    assert isinstance(sin.meta["seq_nr"], int) and cos.meta["seq_nr"] == sin.meta["seq_nr"]
    mul_by_w = next(n for n in _ops(joint, aten.mul.Tensor) if sin in n.args)  # the forward's
    assert mul_by_w.meta["seq_nr"] != sin.meta["seq_nr"]
    assert any(n.meta.get("seq_nr") == mul_by_w.meta["seq_nr"] for n in _ops(joint, aten.mul.Tensor)
               if n is not mul_by_w)  # mul's own backward
    (sin,) = _ops(forward, aten.sin.default)
    (cos,) = _ops(backward, aten.cos.default)
    assert cos.meta["seq_nr"] == sin.meta["seq_nr"]
    (cos_times_grad,) = [n for n in _ops(backward, aten.mul.Tensor) if cos in n.args]
    assert cos_times_grad.meta["seq_nr"] == sin.meta["seq_nr"]
    assert cos_times_grad.meta["stack_trace"] == sin.meta["stack_trace"]  # the forward op's line


def test_results_are_unchanged():
    assert_parity(sin_program, _args())
    assert_parity(in_place_program, _args())


class LinearRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 5)

    def forward(self, x):
        return torch.relu(self.linear(x))


def test_dynamo_graphs_give_module_and_source_stacks():
    torch._dynamo.reset()
    recording = Recording()
    torch.manual_seed(0)
    model = LinearRelu()
    compiled = torch.compile(model, backend=aotgraph.backend(compiler=recording), dynamic=False)
    x = torch.randn(4, 3)
    out = compiled(x)
    out.sum().backward()
    torch.testing.assert_close(out, model(x))
    forward, backward = recording.graphs
    _assert_values_and_tensor_meta(forward)
    _assert_values_and_tensor_meta(backward)
    (addmm,) = _ops(forward, aten.addmm.default)
    module_stack = addmm.meta["nn_module_stack"]
    assert any(path.endswith("linear") and kind is nn.Linear for path, kind in module_stack.values())
    assert addmm.meta["source_fn_stack"][-1][1] is nn.Linear
    assert "self.linear(x)" in addmm.meta["stack_trace"]
    (relu,) = _ops(forward, aten.relu.default)
    assert relu.meta["source_fn_stack"][-1][1] is torch.relu
    assert "torch.relu" in relu.meta["stack_trace"]
    assert any(n.meta.get("seq_nr") == relu.meta["seq_nr"] for n in backward.graph.nodes)


def test_dynamo_parity():
    torch._dynamo.reset()
    torch.manual_seed(0)
    assert_module_parity(LinearRelu(), (torch.randn(4, 3),))


def test_symbolic_tensor_meta_is_torchs_extraction():
    """With symbolic sizes the contiguous layouts' ``tensor_meta`` is made without torch's
    contiguity questions: it must equal what torch's extraction gives, for contiguous,
    transposed, channels-last and sliced values alike."""
    from aotgraph.torch_private.fx import tensor_metadata

    def program(x, w):
        y = torch.relu(x @ w)  # contiguous (s0, 5)
        t = y.t()  # transposed: not contiguous
        image = x.reshape(x.shape[0], 1, 3, 1).contiguous(memory_format=torch.channels_last)
        return t.sin().sum() + image.cos().sum() + y[:, 1:4].exp().sum()

    recording = Recording()
    compiled = aot_function(program, fw_compiler=recording, bw_compiler=recording, dynamic=True)
    torch.manual_seed(0)
    x, w = torch.randn(6, 3, requires_grad=True), torch.randn(3, 5, requires_grad=True)
    out = compiled(x, w)
    out.backward()
    torch.testing.assert_close(out, program(x, w))
    formats = set()
    for graph_module in recording.graphs:
        for node in graph_module.graph.nodes:
            val = node.meta.get("val")
            if isinstance(val, torch.Tensor):
                assert node.meta["tensor_meta"] == tensor_metadata(val), node.format_node()
                formats.add(node.meta["tensor_meta"].memory_format)
    assert any(isinstance(s, torch.SymInt) for g in recording.graphs for n in g.graph.nodes
               if isinstance(n.meta.get("val"), torch.Tensor) for s in n.meta["val"].shape)
    assert {torch.contiguous_format, None} <= formats
