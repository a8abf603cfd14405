"""A stored Inductor wrapper binds its extern kernels by public names (compilers/extern_kernel_bindings.py):
the one import line becomes one line of bindings that give the very objects Inductor's namespace
holds; anything not bound exactly keeps Inductor's source; a name that does not resolve at load
falls back to Inductor's namespace. The warm start it serves (no import of Inductor's lowering):
tests/cache/test_warm_builds.py; its switch: tests/test_debug.py."""
import torch

from aotgraph.compilers import extern_kernel_bindings
from aotgraph.compilers.extern_kernel_bindings import IMPORT_LINE

HEADER = "import torch\nfrom torch import empty_strided\n" + IMPORT_LINE + "\naten = torch.ops.aten\n"


def _module_of(source: str) -> dict:
    namespace = {}
    exec(compile(source, "<wrapper>", "exec"), namespace)
    return namespace


def test_the_import_becomes_one_line_binding_the_same_kernels():
    from torch._inductor.select_algorithm import extern_kernels

    body = ("def call(a, b, c):\n    extern_kernels.mm(a, b, out=c)\n    extern_kernels.addmm(c, a, b, out=c)\n"
            "    return extern_kernels.bmm_dtype, extern_kernels._linear_pointwise.binary\n")
    source = HEADER + body
    bound = extern_kernel_bindings.bound_extern_kernels(source)
    assert bound is not None and IMPORT_LINE not in bound
    assert bound.count("\n") == source.count("\n") and bound.endswith(body)
    kernels = _module_of(bound)["extern_kernels"]
    for name in ("mm", "addmm", "bmm_dtype", "_linear_pointwise"):
        assert getattr(kernels, name) is getattr(extern_kernels, name)
    assert not hasattr(kernels, "convolution")  # only the names the module calls
    a, b = torch.randn(3, 4), torch.randn(4, 3)
    c = torch.empty(3, 3)
    _module_of(bound)["call"](a, b, c)
    torch.testing.assert_close(c, a @ b + a @ b)


def test_inductors_own_helpers_or_no_import_keep_inductors_source():
    assert extern_kernel_bindings.bound_extern_kernels(HEADER + "x = extern_kernels.bias_addmm\n") is None
    assert extern_kernel_bindings.bound_extern_kernels(HEADER + "x = extern_kernels.no_such_kernel\n") is None
    assert extern_kernel_bindings.bound_extern_kernels(HEADER + "x = getattr(extern_kernels, 'mm')\n") is None
    assert extern_kernel_bindings.bound_extern_kernels("import torch\nx = 1\n") is None


def test_a_name_unresolved_at_load_falls_back_to_inductors_namespace():
    from torch._inductor.select_algorithm import extern_kernels

    assert extern_kernel_bindings.extern_kernels_named({"mm": "torch.mm"}).mm is torch.mm
    assert extern_kernel_bindings.extern_kernels_named(
        {"mm": "torch.mm", "gone": "torch.ops.aotgraph_no_such_namespace.op"}) is extern_kernels


def test_the_light_module_has_a_name_of_its_own():
    key = extern_kernel_bindings.light_cache_key("source")
    assert key != extern_kernel_bindings.light_cache_key("source 2") and len(key) == 52 and key[0] == "a"


def test_the_align_helper_is_imported_from_where_it_is_defined():
    from torch._inductor.utils import _align

    source = HEADER + extern_kernel_bindings.ALIGN_LINE + "\nx = extern_kernels.mm\ny = align(100)\n"
    light = extern_kernel_bindings.light_source(source)
    assert light is not None and extern_kernel_bindings.ALIGN_LINE not in light and IMPORT_LINE not in light
    assert light.count("\n") == source.count("\n")
    module = _module_of(light)
    assert module["align"] is _align and module["y"] == 128 and module["x"] is torch.mm
    alone = extern_kernel_bindings.light_source("import torch\n" + extern_kernel_bindings.ALIGN_LINE + "\n")
    assert alone is not None and _module_of(alone)["align"] is _align  # without extern kernels too
