"""Test files import the shared helpers by module name (`parity`: differential checks of
aot_function/aot_module against eager; `eager_parity`: the same for mutation and aliasing
cases); ``pythonpath = ["tests"]`` in pyproject.toml and this conftest's directory both put
them on sys.path."""

import pytest
import torch

from aotgraph import config


@pytest.fixture(autouse=True)
def _private_compile_cache(tmp_path, monkeypatch):
    """Each test gets an empty disk cache of its own (and its subprocesses, through the
    environment): no test writes to the user's cache or loads another test's entries."""
    directory = tmp_path / "aotgraph-cache"
    monkeypatch.setattr(config, "cache_dir", str(directory))
    monkeypatch.setenv("AOTGRAPH_CACHE_DIR", str(directory))


@pytest.fixture
def data_dependent_dynamo():
    """Dynamo's ``capture_scalar_outputs`` and ``capture_dynamic_output_shape_ops`` on (``.item()``,
    ``nonzero``, boolean masks traced as unbacked symbols), around a reset Dynamo."""
    torch._dynamo.reset()
    with torch._dynamo.config.patch(capture_scalar_outputs=True, capture_dynamic_output_shape_ops=True):
        yield
    torch._dynamo.reset()


@pytest.fixture
def fresh_dynamo():
    """The test starts and ends with Dynamo's caches empty (compiled graphs, recompile counts);
    test files of the torch.compile backend use it for every test (``pytestmark``)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()
