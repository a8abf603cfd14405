"""The command line: demo checks parity itself; explain reports on a user's factory."""
import os
import pathlib
import subprocess
import sys
import textwrap

from aotgraph.__main__ import main


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
    src = pathlib.Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "aotgraph", "demo", "--layers", "1", "--seq", "8"],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "OK: aotgraph matches eager" in result.stdout


def test_demo_with_the_default_partition(capsys):
    assert main(["demo", "--layers", "1", "--seq", "8", "--partition", "default"]) == 0
    out = capsys.readouterr().out
    assert "OK: aotgraph matches eager" in out
    recomputed = next(line for line in out.splitlines() if line.startswith("recomputed in backward"))
    assert " 0 FLOPs" in recomputed  # the default partition recomputes only views
