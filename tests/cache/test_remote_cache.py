"""The Redis tier against a real ``redis-server`` on loopback (skipped where the binary or the
``redis`` client is absent): read-through into an empty local cache, write-behind, the same
checks on damaged values, the soundness fuzz and four processes sharing the server."""
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
import torch

import aotgraph
from aotgraph import config
from aotgraph.cache.disk import CacheCorruptionWarning, DiskCache
from aotgraph.cache.remote import tier_for

redis = pytest.importorskip("redis")
pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    port = _free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", str(tmp_path_factory.mktemp("redis"))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        server.kill()
        pytest.fail("redis-server did not start")
    yield url
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def remote(redis_url, monkeypatch):
    redis.Redis.from_url(redis_url).flushdb()
    monkeypatch.setattr(config, "remote_cache", redis_url)
    return tier_for(redis_url)


def _program():
    torch.manual_seed(0)
    w = torch.randn(6, 3, requires_grad=True)
    x = torch.randn(4, 6)
    return (lambda x, w: (x @ w).tanh().sum()), (x, w)


def _compile_and_check(program, args):
    compiled = aotgraph.aot_function(program, cache=True)
    got = torch.autograd.grad(compiled(*args), args[1])
    torch.testing.assert_close(got, torch.autograd.grad(program(*args), args[1]))
    entry = list(compiled.aotgraph_entries.values())[0]
    return [r.detail for r in entry.log.records if r.stage == "cache load"][-1], entry.disk_key


def test_an_empty_local_cache_reads_through(remote, tmp_path, monkeypatch):
    program, args = _program()
    assert _compile_and_check(program, args)[0] == "miss"
    remote.flush()
    monkeypatch.setattr(config, "cache_dir", str(tmp_path / "another-machine"))
    load, key = _compile_and_check(program, args)
    assert load == "hit"
    assert (tmp_path / "another-machine" / "entries" / key[:2] / key).exists()  # kept locally too


def test_a_damaged_remote_value_warns_is_deleted_and_compiles_again(remote, tmp_path, monkeypatch, redis_url):
    program, args = _program()
    _, key = _compile_and_check(program, args)
    remote.flush()
    client = redis.Redis.from_url(redis_url)
    value = client.get("aotgraph:" + key)
    client.set("aotgraph:" + key, value[:len(value) // 2])
    monkeypatch.setattr(config, "cache_dir", str(tmp_path / "another-machine"))
    with pytest.warns(CacheCorruptionWarning, match="remote entry"):
        assert _compile_and_check(program, args)[0] == "miss"
    remote.flush()
    assert client.get("aotgraph:" + key) == value  # written again, whole


def test_soundness_fuzz_slice_through_the_remote_tier(remote, tmp_path, monkeypatch):
    import test_cache_soundness as fuzz

    variants = fuzz._variants(20, seed=3)
    keys = {}
    for round_index in range(2):
        # Each round on an empty local cache: the second round's hits all come from Redis.
        monkeypatch.setattr(config, "cache_dir", str(tmp_path / f"machine-{round_index}"))
        for variant in variants:
            forward = fuzz._compiled(variant)
            got, expected = fuzz._results(forward, variant), fuzz._results(fuzz.PROGRAMS[variant[0]], variant)
            for a, b in zip(got[0] + got[1], expected[0] + expected[1]):
                torch.testing.assert_close(a, b, **fuzz._tolerance(variant))
            (entry,) = forward.aotgraph_entries.values()
            if entry.takes_shared_bases:  # traced every time (see test_cache_soundness)
                continue
            if round_index == 1:
                assert [r.detail for r in entry.log.records if r.stage == "cache load"] == ["hit"], variant
            assert keys.setdefault(variant, entry.disk_key) == entry.disk_key
        remote.flush()
    assert len(set(keys.values())) == len(keys)


@pytest.mark.slow
def test_four_processes_share_the_server(remote, tmp_path, redis_url):
    from test_cache_processes import WORKER

    def start(local):
        env = dict(os.environ, AOTGRAPH_CACHE_DIR=str(local), AOTGRAPH_REMOTE_CACHE=redis_url,
                   PYTHONPATH=os.pathsep.join(sys.path))
        return subprocess.Popen([sys.executable, "-c", WORKER], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    workers = [start(tmp_path / f"machine-{i}") for i in range(4)]
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-3000:]
    out, err = start(tmp_path / "machine-new").communicate(timeout=600)
    assert out.split() == ["hit", "hit"], err[-3000:]
    assert DiskCache(tmp_path / "machine-new").stats().entries == 2
