"""The shape of a module tree that an `aot_module` program was made from: which module each
child slot holds, how many children, parameters and buffers each module has (and which of
them were None), and its forward hooks. Python values the
program reads are guarded by `guards`; a child module replaced after the compile
(``model.head = nn.Linear(...)``, ``model[1] = nn.Tanh()``) or a forward hook added or removed
changes the program itself, its parameters included, so `AotModule` makes it again; so does a
parameter or buffer registered or filled after the compile (its inputs are the module's
parameters and buffers).

A check is a few C-level passes over the tree's dicts (``map`` of ``dict.get`` and ``len``), no
Python per module (``ModuleTree``)."""
from __future__ import annotations

import torch

from ..torch_private.hooks import hook_handles_made

__all__ = ["ModuleTree"]

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


class ModuleTree:
    """A snapshot of `root`'s tree; `unchanged()` checks it against the tree as it is now.

    Children are checked every call (identity per slot, count per module). Hooks: those present
    at the snapshot every call (their ids); an added one only when some hook was registered
    anywhere since the last check (torch numbers every hook handle it makes), then through the
    counts of every hook table."""

    __slots__ = ("parents", "names", "children", "labels", "tables", "counts", "hooked", "hook_ids",
                 "hook_tables", "hook_counts", "handles", "modules", "types", "empty_tables", "empty_names",
                 "empties")

    def __init__(self, root: torch.nn.Module):
        self.parents, self.names, self.children, self.labels = [], [], [], []
        self.tables, self.hook_tables, self.hooked = [], [], []
        self.modules, self.empty_tables, self.empty_names = [], [], []
        for name, module in root.named_modules(remove_duplicate=True):
            state = vars(module)
            self.modules.append(module)
            self.tables.append(state)  # an attribute added to the instance (its own ``forward``)
            for kind in ("_parameters", "_buffers"):  # one registered or appended (ParameterList) after the compile
                table = state[kind]
                self.tables.append(table)
                for slot, value in table.items():
                    if value is None:  # ``register_buffer(name, None)``: a program read it empty
                        self.empty_tables.append(table)
                        self.empty_names.append(slot)
            modules = state["_modules"]
            for child_name, child in modules.items():
                self.parents.append(modules)
                self.names.append(child_name)
                self.children.append(child)
                self.labels.append(f"{name}.{child_name}" if name else child_name)
            if modules:
                self.tables.append(modules)
            for hooks in _HOOK_DICTS:
                table = state.get(hooks)
                if table is not None:
                    self.hook_tables.append(table)
                    if table:
                        self.hooked.append(table)
        self.counts = list(map(len, self.tables))
        self.hook_counts = list(map(len, self.hook_tables))
        self.hook_ids = list(map(tuple, self.hooked))
        self.handles = hook_handles_made()
        self.types = list(map(type, self.modules))  # a class swapped (``module.__class__ = ...``)
        self.empties = [None] * len(self.empty_names)

    def unchanged(self) -> bool:
        if list(map(dict.get, self.parents, self.names)) != self.children \
                or list(map(len, self.tables)) != self.counts \
                or list(map(type, self.modules)) != self.types \
                or list(map(dict.get, self.empty_tables, self.empty_names)) != self.empties \
                or (self.hooked and list(map(tuple, self.hooked)) != self.hook_ids):
            return False
        handles = hook_handles_made()
        if handles != self.handles:
            if list(map(len, self.hook_tables)) != self.hook_counts:
                return False
            self.handles = handles
        return True

    def change(self) -> str:
        """What changed, for the log."""
        for parent, name, child, label in zip(self.parents, self.names, self.children, self.labels):
            if parent.get(name) is not child:
                return f"{label} is another module"
        for module, kind in zip(self.modules, self.types):
            if type(module) is not kind:
                return f"a {kind.__name__} became a {type(module).__name__}"
        for table, name in zip(self.empty_tables, self.empty_names):
            if table.get(name) is not None:
                return f"the parameter or buffer {name}, None at the compile, was set"
        return ("a child module, a parameter, a buffer, a hook or an instance's forward was added, removed or "
                "replaced")
