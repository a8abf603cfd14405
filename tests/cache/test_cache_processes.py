"""Processes sharing one disk cache: four processes compiling the same models into one empty
cache at once all succeed with eager's results and leave valid entries, which a later
process loads."""
import os
import subprocess
import sys
import textwrap

from aotgraph.cache.disk import DiskCache

WORKER = textwrap.dedent('''
    import sys
    import torch
    import torch.nn as nn
    import aotgraph

    torch.manual_seed(0)
    models = {
        "mlp": (nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 8)), torch.randn(4, 16)),
        "norm": (nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()), torch.randn(2, 3, 8, 8)),
    }
    loads = []
    for name, (model, x) in models.items():
        reference = model(x)
        reference.sum().backward()
        expected_grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        compiled = aotgraph.aot_module(model, cache=True)
        out = compiled(x)
        out.sum().backward()
        torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)
        for p, g in zip(model.parameters(), expected_grads):
            torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-5)
        entry = list(compiled.aotgraph_entries.values())[0]
        loads += [r.detail for r in entry.log.records if r.stage == "cache load"]
    print(" ".join(loads))
''')


def _start(directory):
    env = dict(os.environ, AOTGRAPH_CACHE_DIR=str(directory), PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.Popen([sys.executable, "-c", WORKER], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_four_processes_fill_one_empty_cache_at_once(tmp_path):
    directory = tmp_path / "shared-cache"
    workers = [_start(directory) for _ in range(4)]
    results = [worker.communicate(timeout=600) for worker in workers]
    for worker, (out, err) in zip(workers, results):
        assert worker.returncode == 0, err[-3000:]
    stats = DiskCache(directory).stats()
    assert stats.entries == 2 and stats.hits + stats.misses == 8
    out, err = _start(directory).communicate(timeout=600)
    assert out.split() == ["hit", "hit"], err[-3000:]
