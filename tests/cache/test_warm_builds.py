"""A warm start compiles no C++ (compilers/stored_builds.py): a model compiled by Inductor on
the CPU (its C++ wrapper, or its Python wrapper with C++ kernels) in one process is loaded by
a second process from the disk cache with zero C++ compiler runs, both in a fresh Inductor cache
directory (the entry carries the libraries and the vector-ISA memo) and in the cold process's
one (no header precompile before finding the library), and matches eager. Neither imports
Inductor's lowering (compilers/extern_kernel_bindings.py), its code generation or its debug module
(`torchinductor._called`)."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

WORKER = textwrap.dedent('''
    import json, sys
    import torch
    import torch.nn as nn
    from torch._inductor import cpp_builder
    import aotgraph
    from aotgraph.compilers import compiler_with_options

    compiler_runs = []
    run_compile_cmd = cpp_builder._run_compile_cmd

    def counted(cmd_line, cwd):
        compiler_runs.append(cmd_line[:200])
        return run_compile_cmd(cmd_line, cwd)

    cpp_builder._run_compile_cmd = counted
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    x = torch.randn(2, 3, 6, 6)
    expected = model(x)
    expected.sum().backward()
    expected_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiler = compiler_with_options("inductor", {"cpp_wrapper": sys.argv[1] == "cpp"})
    compiled = aotgraph.aot_module(model, compiler, cache=True)
    out = compiled(x)
    out.sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    for p, g in zip(model.parameters(), expected_grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-5)
    (entry,) = compiled.aotgraph_entries.values()
    print(json.dumps({"loads": [r.detail for r in entry.log.records if r.stage == "cache load"],
                      "compiler_runs": compiler_runs,
                      "lowering_imported": "torch._inductor.select_algorithm" in sys.modules,
                      "heavy_imported": [m for m in ("torch._inductor.debug", "torch._inductor.codegen.memory_planning")
                                         if m in sys.modules]}))
''')


def _has_cpp_compiler() -> bool:
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        return shutil.which(get_cpp_compiler()) is not None
    except Exception:  # no compiler Inductor accepts
        return False


def _run(wrapper: str, inductor_dir, aotgraph_dir) -> dict:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(inductor_dir), AOTGRAPH_CACHE_DIR=str(aotgraph_dir),
               PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", WORKER, wrapper], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not _has_cpp_compiler(), reason="Inductor finds no C++ compiler")
@pytest.mark.parametrize("wrapper", ["cpp", "python"])
def test_a_warm_start_runs_no_cpp_compiler(tmp_path, wrapper):
    cold = _run(wrapper, tmp_path / "inductor-cold", tmp_path / "aotgraph")
    assert cold["loads"] == ["miss"] and cold["compiler_runs"]
    fresh = _run(wrapper, tmp_path / "inductor-fresh", tmp_path / "aotgraph")
    assert fresh["loads"] == ["hit"] and fresh["compiler_runs"] == []
    shared = _run(wrapper, tmp_path / "inductor-cold", tmp_path / "aotgraph")
    assert shared["loads"] == ["hit"] and shared["compiler_runs"] == []
    assert cold["lowering_imported"] and not fresh["lowering_imported"] and not shared["lowering_imported"]
    assert cold["heavy_imported"] and fresh["heavy_imported"] == shared["heavy_imported"] == []
