"""Inductor's CPU vector-ISA probe remembered across processes (compilers/vec_isa_memo.py):
a fresh process answers it from the memo with the list a real probe gave, without probing;
a damaged memo or the switch off probes again."""
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
from aotgraph.compilers.vec_isa_memo import _memo_path_and_isas, recall_vec_isa_probe, remember_vec_isa_probe
if sys.argv[1] == "probe":
    valid = cpu_vec_isa.valid_vec_isa_list()
    remember_vec_isa_probe()
    recalled = False
else:
    probes, check_build = [], cpu_vec_isa.VecISA.check_build
    def counted(self, code):  # the base probe of each ISA (not its sub-feature checks) is what the memo answers
        if code == cpu_vec_isa.VecISA._avx_code:
            probes.append(str(self))
        return check_build(self, code)
    cpu_vec_isa.VecISA.check_build = counted
    recalled = recall_vec_isa_probe()
    valid = cpu_vec_isa.valid_vec_isa_list()
    recalled = recalled and not probes
print(json.dumps({"valid": [str(isa) for isa in valid], "recalled": recalled, "announced": _memo_path_and_isas()[1]}))
"""


def _run(mode, cache_dir, **env):
    done = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache_dir), **env))
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_fresh_process_answers_the_probe_from_the_memo(tmp_path):
    probed = _run("probe", tmp_path)
    (memo,) = (tmp_path / "aotgraph_vec_isa").iterdir()
    assert json.loads(memo.read_text()) == {"valid": probed["valid"]}
    recalled = _run("recall", tmp_path)
    # A CPU on which an announced ISA fails its probe keeps probing (the memo cannot say so to Inductor).
    all_passed = probed["valid"] == probed["announced"]
    assert recalled["recalled"] is all_passed
    assert recalled["valid"] == probed["valid"]
    assert _run("recall", tmp_path, AOTGRAPH_DISABLE="vec_isa_memo")["recalled"] is False
    memo.write_text("{damaged")
    assert _run("recall", tmp_path)["recalled"] is False
