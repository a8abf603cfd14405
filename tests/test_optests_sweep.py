"""A bounded slice of benchmarks/optests_sweep.py: torch's own per-op checker
(``torch.testing._internal.optests.aot_autograd.aot_autograd_check``) with its compile entry
points swapped for aotgraph's, next to the same checker on torch's AOTAutograd. For each op of
the slice (every `EVERY`-th float32 OpInfo of op_db): where torch passes, aotgraph passes or
refuses with an AotGraphError (or the op is in `KNOWN_FAILURES`, with the reason); and aotgraph
never returns different values without an error. The whole op database is marked slow:
``pytest -m slow tests/test_optests_sweep.py``."""
import importlib.util
import pathlib
import sys

import pytest

_SWEEP = pathlib.Path(__file__).parents[1] / "benchmarks" / "optests_sweep.py"
_spec = importlib.util.spec_from_file_location("optests_sweep", _SWEEP)
sweep = sys.modules.setdefault("optests_sweep", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(sweep)

OPS = {sweep.op_name(op): op for op in sweep.select_ops()}
EVERY = 4
SLICE = list(OPS)[::EVERY]

# Ops torch's AOTAutograd passes and aotgraph fails with an error that is not an AotGraphError,
# each with the cause (benchmarks/RESULTS.md, "optests sweep", has the figures). A new op failing
# fails the test; an op here that starts passing is fine.
KNOWN_FAILURES: dict[str, str] = {}


def check(name: str, num_samples: int) -> None:
    op = OPS[name]
    status, detail = sweep.run_op(op, "aotgraph", num_samples)
    assert status != "mismatch", f"silent mismatch: {detail}"
    if status in ("passed", "refused"):
        return
    torch_status, torch_detail = sweep.run_op(op, "torch", num_samples)
    if torch_status != "passed":
        return  # the checker fails the op on torch's AOTAutograd too
    if name in KNOWN_FAILURES:
        pytest.xfail(KNOWN_FAILURES[name])
    pytest.fail(f"torch passes, aotgraph {status}: {detail}")


@pytest.mark.parametrize("name", SLICE)
def test_op_slice(name):
    check(name, num_samples=2)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in OPS if n not in SLICE])
def test_every_other_op(name):
    check(name, num_samples=3)
