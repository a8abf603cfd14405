"""The seams between stages, checked on the source: imports between aotgraph's top-level
modules and packages form a DAG (function-level imports included); nothing outside
`compilers/` names Inductor; graph meta carries only what compilers read; placeholder names
are built and read in `graph/naming.py` alone."""
import ast
from pathlib import Path

import aotgraph

SOURCE = Path(aotgraph.__file__).parent
# Keys of node.meta that compilers and tools read; stage data travels in artifacts instead.
COMPILER_META_KEYS = {"val", "tensor_meta", "stack_trace", "seq_nr", "original_aten", "nn_module_stack",
                      "source_fn_stack", "user_visible_output_idxs", "original_output_strides",
                      "unbacked_bindings",  # Inductor: where each unbacked symbol is defined
                      "example_value"}  # Dynamo: its fake of each placeholder of the graph it hands a backend


def _modules():
    for path in sorted(SOURCE.rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def _unit(path: Path) -> str:
    """The top-level module or package a file belongs to ("api", "capture", ...)."""
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return "__init__" if parts == ("__init__",) else parts[0]


def _imported_units(path: Path, tree: ast.AST) -> set:
    package = path.relative_to(SOURCE).parent.parts
    units = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - node.level + 1]
            target = (*base, *(node.module.split(".") if node.module else ()))
            if target:
                units.add(target[0])
            else:  # ``from . import config``: the names are the units
                units.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aotgraph."):
            units.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            units.update(a.name.split(".")[1] for a in node.names if a.name.startswith("aotgraph."))
    return units


def test_top_level_imports_form_a_dag():
    edges: dict[str, set] = {}
    for path, tree in _modules():
        unit = _unit(path)
        if unit in ("__init__", "__main__"):
            continue  # the package's front door and the command line import everything
        edges.setdefault(unit, set()).update(u for u in _imported_units(path, tree) if u != unit)
    state: dict[str, int] = {}

    def visit(unit, trail):
        if state.get(unit) == 1:
            raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(unit):] + [unit]))
        if state.get(unit) == 2:
            return
        state[unit] = 1
        for nxt in sorted(edges.get(unit, ())):
            visit(nxt, trail + [unit])
        state[unit] = 2

    for unit in sorted(edges):
        visit(unit, [])
    assert "graph" in edges and not edges["graph"] - {"config", "torch_private"}, "graph/ is the floor: it imports no stage"


def _identifiers(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            yield node.id
        elif isinstance(node, ast.Attribute):
            if not (isinstance(node.value, ast.Attribute) and node.value.attr == "ops"):  # torch.ops.inductor: ops
                yield node.attr
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            yield from (a.name for a in node.names)
            if isinstance(node, ast.ImportFrom) and node.module:
                yield node.module


def test_no_inductor_specific_name_outside_compilers():
    offenders = [(path.name, name) for path, tree in _modules() if _unit(path) != "compilers"
                 for name in _identifiers(tree) if "inductor" in name.lower()]
    assert offenders == []


def test_graph_meta_carries_only_what_compilers_read():
    keys = set()
    # (torch_private reads torch's own metadata, Dynamo's, where torch keeps it: no seam of ours)
    for _, tree in ((path, tree) for path, tree in _modules() if _unit(path) != "torch_private"):
        for node in ast.walk(tree):
            if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "meta"
                    and isinstance(node.slice, ast.Constant)):
                keys.add(node.slice.value)
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("get", "setdefault")
                    and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "meta"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                keys.add(node.args[0].value)
    assert keys <= COMPILER_META_KEYS, keys - COMPILER_META_KEYS


def _docstrings(tree) -> set:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def test_placeholder_names_are_built_and_read_in_one_module():
    places = []
    for path, tree in _modules():
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                    and ("primals_" in node.value or "tangents_" in node.value or node.value == "tangents")):
                places.append(str(path.relative_to(SOURCE)))
    assert set(places) <= {"graph/naming.py"}, sorted(set(places))
