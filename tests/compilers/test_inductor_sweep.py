"""A bounded slice of benchmarks/inductor_sweep.py: PyTorch's OpInfo samples and the standard
torch.nn layers through ``aotgraph.aot_function(fn, "inductor")``, compared with eager (outputs,
gradients, inputs after the call, RNG state). The slice is every `EVERY`-th float32 op of op_db
plus `FAST_LAYERS`, and with symbolic sizes (``aot_function(..., dynamic=True)``) another slice
and the ops the dynamic sweep found failing; the whole sweep (every op, every layer, two samples
each; every op with symbolic sizes) is marked slow: ``pytest -m slow
tests/compilers/test_inductor_sweep.py``."""
import importlib.util
import pathlib
import sys

import pytest

_SWEEP = pathlib.Path(__file__).parents[2] / "benchmarks" / "inductor_sweep.py"
_spec = importlib.util.spec_from_file_location("inductor_sweep", _SWEEP)
sweep = sys.modules.setdefault("inductor_sweep", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(sweep)

OPS = sweep.op_cases()
LAYERS = sweep.layer_cases()
EVERY = 79
FAST_OPS = list(OPS)[::EVERY]
# With symbolic sizes: another slice, and what `inductor_sweep.py --dynamic` found failing (an n-ary
# Min of sizes, a joint left out of order by Inductor's constant folding, a branch on a value).
FAST_DYNAMIC_OPS = list(OPS)[EVERY // 2::EVERY] + ["svd_lowrank", "nn.functional.softshrink",
                                                   "nn.functional.gaussian_nll_loss"]
# The decoder LM of issue 14's parts (RMSNorm failed to lower), and the commonest layers.
FAST_LAYERS = ["nn.RMSNorm", "nn.Embedding.padding_idx", "nn.CrossEntropyLoss.label_smoothing.ignore_index",
               "nn.LayerNorm", "nn.Conv2d", "nn.BatchNorm2d"]

# Failures that are not aotgraph's: torch.compile's inductor backend fails the same case the
# same way (benchmarks/RESULTS.md, "Inductor sweep", has the figures).
_UNINITIALIZED = "returns uninitialized memory: no defined value to compare (torch.compile's differs from eager too)"
SKIPS: dict[str, str] = {name: _UNINITIALIZED for name in
                         ("empty", "empty_like", "empty_permuted", "empty_strided", "new_empty", "new_empty_strided")}

# Documented limits: aotgraph refuses these (all samples, or some: narrow with a tensor start,
# index_fill and index_put with a bool mask) with an AotGraphError saying why, where
# torch.compile graph-breaks and runs them eagerly. Passing is fine; crashing or mismatching is not.
_DATA_DEPENDENT_SHAPE = "data-dependent output shape (UnsupportedOp)"
_READS_A_VALUE = "Python or a kernel reads a tensor's value (DataDependentControlFlow)"
_SPARSE = "sparse tensors (BadArgument / UnsupportedOp naming the layout)"
REFUSED: dict[str, str] = {
    **dict.fromkeys(("combinations", "masked_select", "unique", "unique_consecutive", "nonzero", "argwhere",
                     "nn.functional.ctc_loss", "linalg.lstsq", "linalg.lstsq.grad_oriented", "index_fill",
                     "index_put"), _DATA_DEPENDENT_SHAPE),
    **dict.fromkeys(("item", "allclose", "equal", "corrcoef", "cov", "tensor_split", "narrow",
                     "nn.functional.gaussian_nll_loss"), _READS_A_VALUE),
    **dict.fromkeys(("sparse.sampled_addmm", "sparse.mm.reduce", "to_sparse"), _SPARSE),
}


def check(name: str, cases: dict, num_samples: int) -> None:
    if name in SKIPS:
        pytest.skip(SKIPS[name])
    result = sweep.run_case(cases[name], ("aotgraph",), num_samples=num_samples)
    status, detail = result.status["aotgraph"], result.detail["aotgraph"]
    if status == "skipped":
        pytest.skip(detail)
    if name in REFUSED:
        assert status in ("passed", "refused"), f"expected a refusal ({REFUSED[name]}), got {status}: {detail}"
        return
    assert status == "passed", f"{status}: {detail}"


@pytest.mark.parametrize("name", FAST_OPS)
def test_op_slice(name):
    check(name, OPS, num_samples=1)


@pytest.mark.parametrize("name", FAST_DYNAMIC_OPS)
def test_op_slice_with_symbolic_sizes(name, monkeypatch):
    monkeypatch.setattr(sweep, "DYNAMIC", True)
    check(name, OPS, num_samples=1)


@pytest.mark.parametrize("name", FAST_LAYERS)
def test_layer(name):
    check(name, LAYERS, num_samples=1)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(OPS))
def test_every_op(name):
    check(name, OPS, num_samples=2)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in LAYERS if n not in FAST_LAYERS])
def test_every_other_layer(name):
    check(name, LAYERS, num_samples=1)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(OPS))
def test_every_op_with_symbolic_sizes(name, monkeypatch):
    monkeypatch.setattr(sweep, "DYNAMIC", True)
    check(name, OPS, num_samples=1)
