"""pytest puts this directory on sys.path, so test files import shared helpers by module name."""
import pytest
import torch


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test starts and ends with Dynamo's caches empty (compiled graphs, recompile counts)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()
