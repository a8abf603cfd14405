"""`import aotgraph` stays light: Inductor, Dynamo and scipy are imported when first used.
(The time ratio against `import torch` is measured by benchmarks/import_time.py.)"""
import subprocess
import sys


def test_import_loads_no_compiler_stack():
    probe = ("import sys, aotgraph; "
             "print(sorted(m for m in ('torch._inductor', 'torch._dynamo', 'scipy') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout.strip()
    assert loaded == "[]"


def test_inductor_loads_when_first_compiling():
    """Not when an Inductor-compiled function is made (a load from the disk cache needs no
    decompositions), but when it first captures."""
    probe = ("import sys, torch, aotgraph; f = aotgraph.aot_function(lambda x: x * 2, 'inductor'); "
             "print('torch._inductor' in sys.modules); f.aotgraph_compile(torch.ones(2)); "
             "print('torch._inductor' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout.split() \
        == ["False", "True"]
