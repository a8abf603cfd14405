"""Inductor's CPU vector-ISA probe remembered across processes (compilers/vec_isa_memo.py):
a fresh process answers it from the memo with the list and sub-feature flags a real probe
gave, without one test build; a damaged memo or the switch off probes again."""
import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux" or platform.machine() != "x86_64",
                                reason="the memo applies to x86-64 Linux only")

_SCRIPT = """
import json, sys
from torch._inductor import cpu_vec_isa
from aotgraph.compilers.vec_isa_memo import _memo_path_and_isas, recall_vec_isa_probe, remembering_vec_isa_probe
builds, check_build = [], cpu_vec_isa.VecISA.check_build
def counted(self, code):  # every test build: base probes and sub-feature checks
    builds.append(str(self))
    return check_build(self, code)
cpu_vec_isa.VecISA.check_build = counted
if sys.argv[1] == "probe":
    with remembering_vec_isa_probe():
        valid = cpu_vec_isa.valid_vec_isa_list()
    recalled = False
else:
    recalled = recall_vec_isa_probe()
    valid = cpu_vec_isa.valid_vec_isa_list()
flags = [[str(isa), isa.build_arch_flags()] for isa in valid]
print(json.dumps({"valid": [str(isa) for isa in valid], "flags": flags, "recalled": recalled, "builds": len(builds),
                  "announced": _memo_path_and_isas()[1]}))
"""


def _run(mode, cache_dir, **env):
    done = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache_dir), **env))
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_fresh_process_answers_the_probe_from_the_memo(tmp_path):
    probed = _run("probe", tmp_path)
    assert probed["builds"] > 0
    (memo,) = (tmp_path / "aotgraph_vec_isa").iterdir()
    assert len(json.loads(memo.read_text())["checks"]) == probed["builds"]
    recalled = _run("recall", tmp_path)
    assert recalled["recalled"] is True and recalled["builds"] == 0
    assert recalled["valid"] == probed["valid"] and recalled["flags"] == probed["flags"]
    off = _run("recall", tmp_path, AOTGRAPH_DISABLE="vec_isa_memo")
    assert off["recalled"] is False and off["builds"] == probed["builds"] and off["flags"] == probed["flags"]
    memo.write_text("{damaged")
    damaged = _run("recall", tmp_path)
    assert damaged["recalled"] is False and damaged["flags"] == probed["flags"]
