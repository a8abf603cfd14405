"""Test files import the shared helpers by module name (`parity`: differential checks of
aot_function/aot_module against eager; `eager_parity`: the same for mutation and aliasing
cases); ``pythonpath = ["tests"]`` in pyproject.toml and this conftest's directory both put
them on sys.path."""

import pytest

from aotgraph import config


@pytest.fixture(autouse=True)
def _private_compile_cache(tmp_path, monkeypatch):
    """Each test gets an empty disk cache of its own (and its subprocesses, through the
    environment): no test writes to the user's cache or loads another test's entries."""
    directory = tmp_path / "aotgraph-cache"
    monkeypatch.setattr(config, "cache_dir", str(directory))
    monkeypatch.setenv("AOTGRAPH_CACHE_DIR", str(directory))
