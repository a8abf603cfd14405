"""Nothing under src/ uses torch's AOTAutograd: not by import, not by attribute access,
not by importlib, and running the pipeline does not load it either."""
import ast
import pathlib
import sys

import pytest
import torch

from aotgraph import aot_function, aot_module, models

SRC = pathlib.Path(__file__).resolve().parents[1] / "src"
FORBIDDEN = (
    "torch._functorch.aot_autograd",
    "torch._functorch._aot_autograd",
    "torch._functorch.partitioners",
    "functorch.compile",
    "torch._dynamo.backends.common.aot_autograd",
)


def _is_forbidden(dotted: str) -> bool:
    return any(dotted == name or dotted.startswith(name + ".") for name in FORBIDDEN)


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    return ".".join([node.id, *reversed(parts)])


def forbidden_uses(source: str) -> list[str]:
    """Dotted names of torch's AOTAutograd that `source` imports or reaches."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Attribute):
            found.append(_dotted(node))
        elif isinstance(node, ast.Call) and _dotted(node.func) in ("importlib.import_module", "__import__",
                                                                   "import_module"):
            found += [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return sorted({name for name in found if _is_forbidden(name)})


@pytest.mark.parametrize("source", [
    "from torch._functorch.aot_autograd import aot_function",
    "import torch._functorch.partitioners as p",
    "from torch._functorch import aot_autograd",
    "from functorch import compile",
    "from torch._dynamo.backends.common import aot_autograd",
    "import torch\ntorch._functorch._aot_autograd.utils.f()",
    "import importlib\nimportlib.import_module('functorch.compile')",
])
def test_the_scan_finds_each_form(source):
    assert forbidden_uses(source)


def test_the_scan_ignores_docstrings_and_allowed_imports():
    assert forbidden_uses('"""drop-in for functorch.compile"""\nimport torch._functorch.config\nimport torch.fx') == []


def test_nothing_under_src_uses_aotautograd():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 10
    uses = {str(f.relative_to(SRC)): forbidden_uses(f.read_text()) for f in files}
    assert {f: u for f, u in uses.items() if u} == {}


AOTAUTOGRAD_FILES = ("torch/_functorch/aot_autograd.py", "torch/_functorch/_aot_autograd/",
                     "torch/_functorch/partitioners.py", "functorch/compile/", "torch/_dynamo/backends/common.py")


def _in_import(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def aotautograd_calls(run) -> list[str]:
    """Functions of torch's AOTAutograd files that `run()` calls (their import-time code aside)."""
    calls = []

    def record(frame, event, arg):
        if event != "call":
            return
        filename = frame.f_code.co_filename.replace("\\", "/")
        if any(part in filename for part in AOTAUTOGRAD_FILES) and not _in_import(frame):
            calls.append(f"{filename}:{frame.f_code.co_name}")

    previous = sys.getprofile()
    sys.setprofile(record)
    try:
        run()
    finally:
        sys.setprofile(previous)
    return calls


def test_running_the_pipeline_calls_no_aotautograd_function():
    """torch loads parts of AOTAutograd itself (FakeTensorMode imports torch._dynamo), so the
    check is on calls: no function of those files runs, outside their own import."""
    model, inputs = models.gpt(layers=1, dim=32, seq=8)

    def run():
        aot_module(model)(*inputs).backward()
        with torch.no_grad():
            aot_function(lambda x: x.relu())(torch.randn(3))

    assert aotautograd_calls(run) == []


def test_the_call_check_sees_torch_aotautograd():
    from functorch.compile import aot_function as torch_aot_function, nop

    x = torch.randn(3, requires_grad=True)
    assert aotautograd_calls(lambda: torch_aot_function(torch.sin, nop)(x).sum().backward())
