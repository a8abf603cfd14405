"""Processes sharing one disk cache: four processes compiling the same models into one empty
cache at once all succeed with eager's results and leave valid entries, which a later
process loads; two fresh processes compiling one model through torch.compile get the same
keys (nothing process-specific in a key)."""
import json
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


DYNAMO_WORKER = textwrap.dedent('''
    import json
    import torch
    import torch.nn.functional as F
    import aotgraph
    from aotgraph.models import gpt

    class LossWithABreak(torch.nn.Module):
        """GPT's loss in two Dynamo graphs (the model, then the loss after a graph break)."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, idx, targets):
            x = self.model.tok(idx) + self.model.pos(torch.arange(idx.shape[1]))
            for block in self.model.blocks:
                x = block(x)
            logits = self.model.head(self.model.ln_f(x))
            torch._dynamo.graph_break()
            return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))

    torch.manual_seed(0)
    model, (idx, targets) = gpt(batch=2, seq=8, dim=32, layers=1)
    backend = aotgraph.backend(compiler="eager")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = torch.compile(LossWithABreak(model), backend=backend, dynamic=False)(idx, targets)
    loss.backward()
    print(json.dumps([[e.disk_key, [r.detail for r in e.log.records if r.stage == "cache load"], e.disk_miss]
                      for e in backend.entries]))
''')


def test_fresh_processes_compiling_the_same_model_share_keys(tmp_path):
    """torch.compile of the same model under bf16 autocast, with a graph break, in two fresh
    processes (other hash seeds): the same keys, and the second loads every graph."""
    runs = []
    for seed in ("1", "2"):
        env = dict(os.environ, AOTGRAPH_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=os.pathsep.join(sys.path),
                   PYTHONHASHSEED=seed)
        done = subprocess.run([sys.executable, "-c", DYNAMO_WORKER], env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    cold, warm = runs
    assert len(cold) == 2 and [loads for _, loads, _ in cold] == [["miss"], ["miss"]]
    assert [key for key, _, _ in warm] == [key for key, _, _ in cold], [why for _, _, why in warm]
    assert [loads for _, loads, _ in warm] == [["hit"], ["hit"]]
