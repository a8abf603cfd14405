"""Test files import the shared helpers by module name (`parity`: differential checks of
aot_function/aot_module against eager; `eager_parity`: the same for mutation and aliasing
cases); ``pythonpath = ["tests"]`` in pyproject.toml and this conftest's directory both put
them on sys.path."""
