"""The C++ libraries carried in a cache entry (compilers/stored_builds.py): read relative to
Inductor's cache directory, written back only where absent and only inside it (its switch:
tests/test_debug.py). The warm start they serve: tests/cache/test_warm_builds.py."""
import pytest

from aotgraph import config
from aotgraph.compilers import stored_builds


@pytest.fixture
def inductor_dir(tmp_path, monkeypatch):
    directory = tmp_path / "inductor"
    directory.mkdir()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(directory))
    return directory


def test_files_go_back_where_absent_and_only_inside_inductors_directory(inductor_dir, tmp_path):
    library = inductor_dir / "ab" / "cabc.main.so"
    library.parent.mkdir()
    library.write_bytes(b"built")
    files = stored_builds.build_files([str(library)])
    assert ("ab/cabc.main.so", b"built") in files

    library.unlink()
    (inductor_dir / "cd").mkdir()
    (inductor_dir / "cd" / "kept.so").write_bytes(b"inductor's own")
    outside = tmp_path / "outside.so"
    stored_builds.put_back((*files, ("cd/kept.so", b"ours"), (str(outside), b"x"), ("../escaped.so", b"x")))
    assert library.read_bytes() == b"built"
    assert (inductor_dir / "cd" / "kept.so").read_bytes() == b"inductor's own"
    assert not outside.exists() and not (tmp_path / "escaped.so").exists()
    assert [p.name for p in library.parent.iterdir()] == ["cabc.main.so"]  # no temporary file left


def test_torch_arguments_are_remembered_only_while_a_stored_graph_loads(monkeypatch):
    from torch._inductor import cpp_builder

    original = cpp_builder._get_torch_related_args
    expected = original(include_pytorch=True, aot_mode=False)
    with stored_builds.torch_arguments_remembered():
        remembering = cpp_builder._get_torch_related_args
        monkeypatch.setattr(stored_builds, "_torch_arguments", {})
        first = remembering(include_pytorch=True, aot_mode=False)
        first[0].append("changed by a caller")
        second = remembering(include_pytorch=True, aot_mode=False)
        assert tuple(first[1:]) == tuple(second[1:]) == tuple(expected[1:])
        assert second[0] == list(expected[0])  # (a caller's change to its lists stays its own)
        assert len(stored_builds._torch_arguments) == 1
    monkeypatch.setattr(stored_builds, "_torch_arguments", {})
    cpp_builder._get_torch_related_args(include_pytorch=True, aot_mode=False)
    assert stored_builds._torch_arguments == {}  # outside a load: asked every time
