"""`import aotgraph` stays light: Inductor, Dynamo and scipy are imported when first used.
(The time ratio against `import torch` is measured by benchmarks/import_time.py.)"""
import subprocess
import sys


def test_import_loads_no_compiler_stack():
    probe = ("import sys, aotgraph; "
             "print(sorted(m for m in ('torch._inductor', 'torch._dynamo', 'scipy') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout.strip()
    assert loaded == "[]"


def test_inductor_loads_when_asked_for():
    probe = "import sys, aotgraph; aotgraph.aot_function(lambda x: x, 'inductor'); print('torch._inductor' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout.strip() \
        == "True"
