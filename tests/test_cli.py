"""The command line: demo checks parity itself; explain reports on a user's factory; every
error is one line on stderr with exit status 2, and --debug adds the traceback."""
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
import torch

from aotgraph import aot_module, compilers
from aotgraph.__main__ import COMPILERS, input_names, main

PROGRAMS = """
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 8)
        self.bn = torch.nn.BatchNorm1d(8)

    def forward(self, x):
        return self.bn(self.lin(x)).tanh()

def make():
    torch.manual_seed(0)
    return Net(), (torch.randn(6, 4),)

calls = [0]

def scaled(x):
    calls[0] += 1  # a Python side effect: aotgraph runs it once, at capture
    return x * calls[0]

def make_scaled():
    return scaled, (torch.randn(3, requires_grad=True),)

def raising():
    raise ValueError("no weights here")

def wrong():
    return 3

def data_dependent():
    def f(x):
        return x * 2 if x.sum() > 0 else x
    return f, (torch.randn(3, requires_grad=True),)

def shape_error():
    return torch.nn.Linear(5, 2), (torch.randn(3, 4),)

def make_dropout():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    return model, (torch.randn(4, 8),)
"""


@pytest.fixture
def programs(tmp_path):
    path = tmp_path / "progs.py"
    path.write_text(PROGRAMS)
    return path


def run_cli(*args):
    """``python -m aotgraph ARGS`` in a fresh interpreter (module wiring, real stderr and exit status)."""
    src = pathlib.Path(__file__).resolve().parents[1] / "src"
    env = {k: v for k, v in os.environ.items() if k != "AOTGRAPH_LOG"}
    env["PYTHONPATH"] = os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "aotgraph", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)


def test_demo_exits_zero_and_reports(capsys):
    assert main(["demo", "--layers", "1", "--seq", "8"]) == 0
    out = capsys.readouterr().out
    assert "OK: aotgraph matches eager" in out
    assert "forward graph:" in out and "backward graph:" in out
    assert "saved values" in out and "capture" in out
    assert "ours / eager" in out  # the saved bytes are compared with eager autograd's


def test_explain_reports_on_a_module_factory(tmp_path, capsys):
    program = tmp_path / "prog.py"
    program.write_text(textwrap.dedent("""
        import torch
        def make():
            model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
            return model, (torch.randn(3, 4),)
    """))
    assert main(["explain", f"{program}:make"]) == 0
    out = capsys.readouterr().out
    assert "forward graph:" in out and "saved for backward" in out and "tanh" in out


def test_python_m_aotgraph_demo_exits_zero():
    # The command as the README gives it, in a fresh interpreter (module wiring, exit status).
    result = run_cli("demo", "--layers", "1", "--seq", "8")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "OK: aotgraph matches eager" in result.stdout


def test_demo_with_the_default_partition(capsys):
    assert main(["demo", "--layers", "1", "--seq", "8", "--partition", "default"]) == 0
    out = capsys.readouterr().out
    assert "OK: aotgraph matches eager" in out
    recomputed = next(line for line in out.splitlines() if line.startswith("recomputed in backward"))
    assert " 0 FLOPs" in recomputed  # the default partition recomputes only views


@pytest.mark.parametrize("args, cause", [
    (["demo", "--compiler", "bogus"], "invalid choice: 'bogus'"),
    (["demo", "--layers", "-1"], "--layers: expected a positive whole number, got '-1'"),
    (["explain", "no_such_file.py:make"], "no such file 'no_such_file.py'"),
    (["explain", "{programs}:raising"], "raising() in"),
    (["explain", "{programs}:data_dependent"], "DataDependentControlFlow"),
])
def test_errors_are_one_line_with_exit_status_2(programs, args, cause):
    result = run_cli(*[a.format(programs=programs) for a in args])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert cause in result.stderr and "error:" in result.stderr
    assert result.stdout == ""


def test_debug_adds_the_traceback(programs):
    result = run_cli("--debug", "explain", f"{programs}:raising")
    assert result.returncode == 2
    assert "Traceback" in result.stderr and 'raise ValueError("no weights here")' in result.stderr
    assert result.stderr.splitlines()[-1].startswith("python -m aotgraph explain: error: raising() in")


@pytest.mark.parametrize("args, cause", [
    (["demo", "--compiler", "bogus"], "choose from 'eager', 'inductor', 'nop'"),
    (["demo", "--seq", "0"], "--seq: expected a positive whole number, got '0'"),
    (["demo", "--batch", "two"], "--batch: expected a positive whole number, got 'two'"),
    (["demo", "--nope"], "unrecognized arguments: --nope"),
    (["frob"], "invalid choice: 'frob'"),
    (["explain", "{programs}"], "expected FILE.py:NAME"),
    (["explain", "{programs}:missing"], "defines no function 'missing'"),
    (["explain", "{programs}:wrong"], "wrong() returned int, not (callable, example_args)"),
    (["explain", "{programs}:shape_error"], "OpRefused: the program raised while it was captured"),
    (["explain", "{programs}:make", "--partition", "best"], "invalid choice: 'best'"),
])
def test_every_error_class_is_one_line(programs, capsys, args, cause):
    assert main([a.format(programs=programs) for a in args]) == 2
    captured = capsys.readouterr()
    assert len(captured.err.splitlines()) == 1 and cause in captured.err, captured.err
    assert "Traceback" not in captured.err and captured.out == ""


def test_an_error_in_the_file_itself_is_one_line(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_module_here\n")
    assert main(["explain", f"{broken}:make"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "ModuleNotFoundError" in err


@pytest.mark.parametrize("command", ["demo", "explain"])
def test_help_lists_the_choices(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--compiler {eager,inductor,nop}" in out and "--partition {default,mincut}" in out
    assert "--debug" in out


def test_the_compiler_choices_are_the_names_aotgraph_resolves():
    assert set(COMPILERS) == set(compilers._NAMED)


def test_explain_names_parameters_buffers_and_arguments(programs, capsys):
    assert main(["explain", f"{programs}:make", "--code"]) == 0
    out = capsys.readouterr().out
    assert "Net (nn.Module, 7 parameters and buffers)" in out and "compiler 'eager', partition 'mincut'" in out
    # training-mode batch norm updates its running statistics: mutated inputs, by name
    assert "mutated: bn.running_mean, bn.running_var, bn.num_batches_tracked" in out
    saved = out.split("== saved for backward")[1].split("== code")[0]
    rows = {line.split()[0]: line.split()[1:3] for line in saved.splitlines()[2:10]}
    assert rows["bn.weight"] == ["[8]", "float32"] and rows["x"] == ["[6,", "4]"]
    assert "primals_" not in saved
    code = out.split("== code")[1]
    assert "primals_1 = lin.weight" in code and "primals_5 = bn.running_mean" in code and "primals_8 = x" in code
    assert "forward graph:\ndef forward(self, primals_1" in code
    assert "backward graph:\ndef forward(self" in code and "tangents_1" in code


def test_explain_check_passes(programs, capsys):
    assert main(["explain", f"{programs}:make", "--check"]) == 0
    out = capsys.readouterr().out
    # outputs, 4 gradients, 3 buffers, the input and its (absent) gradient
    assert "compared with eager: 10 values" in out and "mismatched: 0" in out
    assert out.rstrip().endswith("OK: aotgraph matches eager")


def test_explain_check_of_a_program_with_dropout_draws_eagers_masks(programs, capsys):
    assert main(["explain", f"{programs}:make_dropout", "--check"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("OK: aotgraph matches eager")


def test_explain_check_fails_with_exit_status_1(programs, capsys):
    # eager runs the side effect again (x * 2); the compiled graph holds x * 1
    assert main(["explain", f"{programs}:make_scaled", "--check"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH outputs: Tensor-likes are not close!" in out
    assert "MISMATCH grad of input x:" in out
    assert out.rstrip().endswith("FAILED: aotgraph differs from eager")


def test_input_names_follow_aot_modules_flat_inputs():
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(5, 3)
            self.head = torch.nn.Linear(3, 5, bias=False)
            self.head.weight = self.embed.weight  # tied: passed under both names
            self.norm = torch.nn.BatchNorm1d(7)

        def forward(self, idx, extra):
            return self.head(self.embed(idx)).sum() + self.norm(extra[0]).sum() * extra[1]

    model = Tied()
    args = (torch.tensor([0, 3]), [torch.randn(2, 7), 2.0])
    compiled = aot_module(model)
    compiled(*args).backward()
    signature = next(iter(compiled.aotgraph_entries.values())).joint.signature
    names = input_names(model, args)
    assert list(names.values()) == ["embed.weight", "head.weight", "norm.weight", "norm.bias", "norm.running_mean",
                                    "norm.running_var", "norm.num_batches_tracked", "idx", "extra[0]", "extra[1]"]
    assert len(names) == len(signature.inputs)
    values = {**dict(model.named_parameters(remove_duplicate=False)), **dict(model.named_buffers()),
              "idx": args[0], "extra[0]": args[1][0]}
    for position, name in names.items():
        info = signature.inputs[position]
        if name in values:
            assert info.meta.shape == values[name].shape and info.meta.dtype == values[name].dtype, name
        else:
            assert not info.is_tensor and info.constant == 2.0


def test_explain_writes_html_and_json(programs, tmp_path, capsys):
    import json

    from aotgraph.report import Report

    page, data = tmp_path / "report.html", tmp_path / "report.json"
    assert main(["explain", f"{programs}:make", "--html", str(page), "--json", str(data),
                 "--budgets", "0.5"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {page}" in out and f"wrote {data}" in out
    report = Report.from_json(data.read_text())
    assert report.title == f"{programs}:make" and report.partition == "mincut"
    assert [c.label for c in report.memory][-1] == "memory budget 0.5 (predicted)"
    assert f'data-saved-bytes="{report.totals.saved_bytes}"' in page.read_text()
    assert json.loads(data.read_text())["totals"]["count"] == len(report.saved)


def test_bad_budgets_are_one_line(programs, capsys):
    assert main(["explain", f"{programs}:make", "--budgets", "2.0"]) == 2
    assert "expected budgets like 0.75,0.5" in capsys.readouterr().err
