"""The disk store on its own: atomic checksummed entries, corruption found and removed,
private directories only, counters shared by processes, and the CLI's cache info / clear."""
import os
import stat
import subprocess
import sys

import pytest

from aotgraph.cache.disk import CacheCorruptionWarning, CacheDirError, DiskCache


@pytest.fixture
def store(tmp_path):
    return DiskCache(tmp_path / "store")


def _entry_file(store, key):
    return store.directory / "entries" / key[:2] / key


def test_write_then_read_counts_hits_and_misses(store):
    assert store.read("ab" * 32) is None
    store.write("ab" * 32, b"payload")
    assert store.read("ab" * 32) == b"payload"
    stats = store.stats()
    assert (stats.entries, stats.hits, stats.misses) == (1, 1, 1)
    assert stats.bytes == _entry_file(store, "ab" * 32).stat().st_size
    assert not [p for p in _entry_file(store, "ab" * 32).parent.iterdir() if p.name.startswith(".tmp-")]


def test_rewrite_replaces_the_entry_whole(store):
    store.write("cd" * 32, b"first")
    store.write("cd" * 32, b"second, longer")
    assert store.read("cd" * 32) == b"second, longer"


@pytest.mark.parametrize("damage", ["truncate", "flip", "replace", "empty"])
def test_damaged_entry_warns_is_removed_and_misses(store, damage):
    key, other = "ef" * 32, "01" * 32
    store.write(key, b"x" * 1000)
    store.write(other, b"y" * 1000)
    path = _entry_file(store, key)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[:len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    elif damage == "replace":  # another key's valid entry put in its place
        path.write_bytes(_entry_file(store, other).read_bytes())
    else:
        path.write_bytes(b"")
    with pytest.warns(CacheCorruptionWarning, match="removed"):
        assert store.read(key) is None
    assert not path.exists()
    assert store.read(other) == b"y" * 1000


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_directory_writable_by_others_is_refused(tmp_path, mode):
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(mode)
    with pytest.raises(CacheDirError, match="writable by group or others.*chmod go-w"):
        DiskCache(directory).read("ab" * 32)
    store = DiskCache(tmp_path / "fine")
    store.write("ab" * 32, b"ok")
    (store.directory / "entries").chmod(0o777)
    with pytest.raises(CacheDirError, match="writable by group or others"):
        DiskCache(store.directory).read("ab" * 32)


def test_new_directories_are_private(store):
    store.write("ab" * 32, b"ok")
    for path in (store.directory, store.directory / "entries", store.directory / "entries" / "ab"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def test_cli_info_and_clear(store):
    store.write("ab" * 32, b"ok")
    store.read("ab" * 32)
    store.read("cd" * 32)
    env = dict(os.environ, AOTGRAPH_CACHE_DIR=str(store.directory), PYTHONPATH=os.pathsep.join(sys.path))
    info = subprocess.run([sys.executable, "-m", "aotgraph", "cache", "info"], env=env, capture_output=True,
                          text=True, check=True).stdout
    assert "entries    1" in info and "hits       1" in info and "misses     1" in info
    cleared = subprocess.run([sys.executable, "-m", "aotgraph", "cache", "clear"], env=env, capture_output=True,
                             text=True, check=True).stdout
    assert "removed 1 entries" in cleared
    stats = store.stats()
    assert (stats.entries, stats.hits, stats.misses) == (0, 0, 0)


def test_cli_info_of_a_cache_directory_that_is_a_file(tmp_path):
    """``cache info`` with AOTGRAPH_CACHE_DIR naming a file: one line naming the error and the
    fix, exit status 2 (a raw NotADirectoryError before), as ``cache clear`` says."""
    path = tmp_path / "afile"
    path.write_text("")
    env = dict(os.environ, AOTGRAPH_CACHE_DIR=str(path), PYTHONPATH=os.pathsep.join(sys.path))
    for action in ("info", "clear"):
        done = subprocess.run([sys.executable, "-m", "aotgraph", "cache", action], env=env, capture_output=True,
                              text=True)
        assert done.returncode == 2 and "CacheDirError" in done.stderr and "Traceback" not in done.stderr, action
