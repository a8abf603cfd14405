"""Stage 3: user compilers get each graph once per input signature with the example inputs
it is owed; boxed and unboxed compilers, nop and the named compilers all give eager's answers."""
import pytest
import torch
from functorch.compile import make_boxed_func as torch_make_boxed_func, nop as torch_nop

import aotgraph
from aotgraph import aot_function, make_boxed_compiler, make_boxed_func, nop
from parity import assert_parity


def fn(x, w, b):
    return torch.nn.functional.gelu(x @ w + b).sum(dim=1), x.detach().amax()


def make_inputs(batch=3, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, generator=generator, dtype=dtype, requires_grad=True)
    w = torch.randn(4, 5, generator=generator, dtype=dtype, requires_grad=True)
    b = torch.randn(5, generator=generator, dtype=dtype, requires_grad=True)
    return x, w, b


class RecordingCompiler:
    """Records each (graph, example inputs) it is given and how often its result runs."""

    def __init__(self):
        self.graphs, self.example_inputs, self.runs = [], [], 0

    def __call__(self, graph_module, example_inputs):
        self.graphs.append(graph_module)
        self.example_inputs.append(list(example_inputs))

        def run(*args):
            self.runs += 1
            return graph_module.forward(*args)

        return run


def _assert_owed(graph_module, example_inputs):
    placeholders = list(graph_module.graph.find_nodes(op="placeholder"))
    assert len(placeholders) == len(example_inputs)
    for node, example in zip(placeholders, example_inputs):
        value = node.meta["val"]
        if isinstance(value, torch.Tensor):
            assert isinstance(example, torch.Tensor), node.name
            assert (tuple(example.shape), example.dtype, example.device) == (tuple(value.shape), value.dtype,
                                                                              value.device), node.name
    graph_module.graph.lint()


def test_called_once_per_graph_per_signature_with_the_inputs_it_is_owed():
    forward, backward = RecordingCompiler(), RecordingCompiler()
    compiled = aot_function(fn, fw_compiler=forward, bw_compiler=backward)
    signatures = [dict(batch=3), dict(batch=3, seed=1), dict(batch=6), dict(batch=3, dtype=torch.float64)]
    for step, signature in enumerate(signatures):
        inputs = make_inputs(**signature)
        out, _ = compiled(*inputs)
        out.sum().backward()
        assert forward.runs == step + 1 and backward.runs == step + 1
    distinct = 3
    assert len(forward.graphs) == len(backward.graphs) == len(compiled.aotgraph_entries) == distinct

    for graph_module, example_inputs in zip(forward.graphs, forward.example_inputs):
        _assert_owed(graph_module, example_inputs)
    for graph_module, example_inputs in zip(backward.graphs, backward.example_inputs):
        _assert_owed(graph_module, example_inputs)
        outputs = graph_module.graph.find_nodes(op="output")[0].args[0]
        assert len(outputs) == 3  # one grad per primal
    # The forward is owed the primals: the user's tensor inputs, in order.
    for example_inputs, signature in zip(forward.example_inputs, [signatures[0], signatures[2], signatures[3]]):
        expected = make_inputs(**signature)
        assert [(tuple(e.shape), e.dtype) for e in example_inputs] == [(tuple(t.shape), t.dtype) for t in expected]
    # The backward is owed the saved values, then one tangent per differentiable output.
    for entry, example_inputs in zip(compiled.aotgraph_entries.values(), backward.example_inputs):
        assert len(example_inputs) == len(entry.partition.saved) + 1


def test_inference_compiler_is_called_once_per_signature_and_nothing_else():
    forward, backward, inference = RecordingCompiler(), RecordingCompiler(), RecordingCompiler()
    compiled = aot_function(fn, fw_compiler=forward, bw_compiler=backward, inference_compiler=inference)
    with torch.no_grad():
        compiled(*make_inputs())
        compiled(*make_inputs(seed=1))
    assert len(inference.graphs) == 1 and inference.runs == 2
    assert forward.graphs == [] and backward.graphs == []
    _assert_owed(inference.graphs[0], inference.example_inputs[0])


def test_unboxed_user_compiler():
    assert_parity(fn, make_inputs(), fw_compiler=lambda gm, example_inputs: gm)


def test_make_boxed_compiler():
    seen = []

    def unboxed(graph_module, example_inputs):
        seen.append(graph_module)
        return graph_module.forward

    boxed = make_boxed_compiler(unboxed)
    assert getattr(boxed(torch.fx.symbolic_trace(lambda x: x + 1), []), "_boxed_call", False)
    seen.clear()
    assert_parity(fn, make_inputs(), fw_compiler=boxed)
    assert len(seen) == 2


@pytest.mark.parametrize("boxer", [make_boxed_func, torch_make_boxed_func], ids=["aotgraph", "functorch"])
def test_make_boxed_func(boxer):
    boxed = boxer(lambda a, b: a * b)
    assert boxed._boxed_call and boxed([2, 3]) == 6
    assert_parity(fn, make_inputs(), fw_compiler=lambda gm, example_inputs: boxer(gm.forward))


def test_compiler_returning_a_boxed_call_gets_one_list_it_may_clear():
    lists = []

    def boxed_compiler(graph_module, example_inputs):
        def run(args):
            assert isinstance(args, list)
            lists.append(len(args))
            values = list(args)
            args.clear()  # torch's boxed functions free their inputs early
            return graph_module.forward(*values)

        run._boxed_call = True
        return run

    parity = assert_parity(fn, make_inputs(), fw_compiler=boxed_compiler)
    (entry,) = parity.entries
    assert len(lists) == 2
    assert lists[0] == 3 and lists[1] == len(entry.partition.saved) + 1


@pytest.mark.parametrize("compiler", [nop, "nop", "eager", aotgraph.compilers.eager, torch_nop],
                         ids=["nop", "'nop'", "'eager'", "eager", "functorch-nop"])
def test_nop_and_eager(compiler):
    parity = assert_parity(fn, make_inputs(), fw_compiler=compiler)
    (entry,) = parity.entries
    assert entry.compiled.forward._boxed_call


def test_default_compiler_is_eager():
    parity = assert_parity(fn, make_inputs())
    (entry,) = parity.entries
    assert entry.compiled.backward is not None


def _tanh_as_sigmoid(graph_module, example_inputs):
    """A compiler that rewrites ops in place (as quantizers and pattern rewriters do)."""
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and node.target == torch.ops.aten.tanh.default:
            node.target = torch.ops.aten.sigmoid.default
    graph_module.recompile()
    return graph_module


@pytest.mark.parametrize("blocks", [2, 3, 4])
def test_a_user_compiler_gets_flat_graphs_of_repeated_layers(blocks):
    """Repeated layers that capture finds become regions for our compilers only: a user's
    rewrite of ops reaches every layer, as with functorch's flat graphs."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh()) for _ in range(blocks)])
    x = torch.randn(3, 8)
    expected = x
    for block in model:
        expected = torch.sigmoid(block[0](expected))
    with torch.no_grad():
        torch.testing.assert_close(aotgraph.aot_module(model, _tanh_as_sigmoid)(x), expected)
    out = aotgraph.aot_module(model, _tanh_as_sigmoid)(x.requires_grad_())  # training: forward and backward
    torch.testing.assert_close(out, expected)


def _exp_node_replaced(graph_module, example_inputs):
    """A compiler that adds a node (without metadata) and removes the one it replaces."""
    for node in list(graph_module.graph.nodes):
        if node.op == "call_function" and node.target == torch.ops.aten.exp.default:
            with graph_module.graph.inserting_after(node):
                new = graph_module.graph.call_function(torch.ops.aten.exp.default, node.args)
            node.replace_all_uses_with(new)
            graph_module.graph.erase_node(node)
    graph_module.recompile()
    return graph_module


def test_a_user_compiler_that_edits_its_graph_leaves_the_partition_as_it_was():
    x = torch.randn(3, requires_grad=True)
    compiled = aot_function(lambda t: t.sin().exp(), _exp_node_replaced)
    compiled(x).sum().backward()
    torch.testing.assert_close(x.grad, x.sin().exp() * x.cos())
    entry = next(iter(compiled.aotgraph_entries.values()))
    assert all("val" in n.meta for n in entry.partition.forward.graph.nodes if n.op == "call_function")


def test_torchscript_as_the_compiler():
    from functorch.compile import ts_compile

    def program(x, w):
        return torch.tanh(x @ w).sum()

    x, w = torch.randn(3, 3), torch.randn(3, 3, requires_grad=True)
    program(x, w).backward()
    expected, w.grad = w.grad, None
    aot_function(program, ts_compile)(x, w).backward()
    torch.testing.assert_close(w.grad, expected)
