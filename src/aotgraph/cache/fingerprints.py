"""Stable fingerprints for disk-cache keys: the same text in every process for values that
compile to the same code, a different text for any change that could change it.

- Plain values (numbers, strings, dtypes, devices, enums, containers of them, frozen
  dataclasses and pytree specs) by type and value; tensors by layout and the hash of their
  bytes (a tensor constant baked into a graph).
- Functions by code identity: module and qualified name, their closures' and defaults'
  values; for functions outside torch and aotgraph (whose versions are in the key) also
  their bytecode, constants and the globals they read, recursively; of a global that is
  one of the user's Python modules (not the standard library's or an installed package's),
  the attributes the code names. ``functools.partial`` by function and bound arguments.
- Classes outside torch, aotgraph and installed packages by their own functions' code and
  plain class attributes, through the method resolution order.
- Modules (``nn.Module``) by class, plain attributes, submodules, and parameters and
  buffers by contents, except where they are graph inputs (a program graph's own, keyed by
  the call).
- Operators by name; a custom operator (``torch.library.custom_op``) also by its Python
  implementations (kernels, fake, autograd formula); one defined in Python by other means
  has none to key (`NotKeyable`).
- fx GraphModules node by node: op, target, arguments, and what ``get_attr`` and
  ``call_module`` reach (tensor constants by contents).

Anything else raises `NotKeyable`: the caller then does not use the disk cache (a wrong key
would be a wrong answer).
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import sys
import sysconfig
import types
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx
from torch._library.custom_ops import OPDEFS, CustomOpDef
from torch.utils._pytree import TreeSpec

__all__ = ["NotKeyable", "fingerprint", "environment_parts", "graph_fingerprint"]

_PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device, torch.layout,
          torch.memory_format, torch.Size, slice, range, type(Ellipsis))
_VERSIONED_PACKAGES = ("torch", "aotgraph", "functorch")
# Namespaces of the operators torch itself defines in Python (torch.library): its version keys them.
_TORCH_NAMESPACES = frozenset({
    "aten", "prims", "rngprims", "debugprims", "inductor", "_c10d_functional", "c10d_functional", "_dtensor", "fsdp",
    "symm_mem", "_native", "_inductor_test", "debug_mode_ops", "export", "flex_lib", "onnx", "onnx_symbolic",
    "quantized_decomposed", "streams", "coor", "mempool"})
# A custom_op's Python parts that decide what it computes.
_CUSTOM_OP_PARTS = ("_init_fn", "_backend_fns", "_abstract_fn", "_setup_context_fn", "_backward_fn",
                    "_torch_dispatch_fns", "_vmap_fn", "_autocast_dtype")


class NotKeyable(Exception):
    """A value with no sound fingerprint: its program is not cached on disk."""


def fingerprint(value: Any, _seen: frozenset = frozenset()) -> Any:
    """A nested tuple of plain values that stands for `value` (see the module docstring)."""
    if isinstance(value, _PLAIN):
        return (type(value).__name__, repr(value))
    if isinstance(value, enum.Enum):
        return ("enum", type(value).__qualname__, repr(value.value))
    if id(value) in _seen:
        return ("cycle",)
    seen = _seen | {id(value)}
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, *(fingerprint(v, seen) for v in value))
    if isinstance(value, dict):
        return ("dict", *sorted((repr(fingerprint(k, seen)), fingerprint(v, seen)) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        return ("set", *sorted(repr(fingerprint(v, seen)) for v in value))
    if isinstance(value, TreeSpec):
        return ("treespec", str(value))
    if isinstance(value, torch.Tensor):
        return _tensor_fingerprint(value)
    if isinstance(value, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        return _operator_fingerprint(value, seen)
    if isinstance(value, torch._ops.HigherOrderOperator):
        return ("op", str(value))
    if isinstance(value, CustomOpDef):
        return _custom_op_fingerprint(value, seen)
    if isinstance(value, fx.GraphModule):
        return graph_fingerprint(value, seen)
    if isinstance(value, torch.nn.Module):
        return _module_fingerprint(value, seen)
    if isinstance(value, functools.partial):
        return ("partial", fingerprint(value.func, seen), fingerprint(value.args, seen),
                fingerprint(value.keywords, seen))
    if isinstance(value, types.FunctionType):
        return _function_fingerprint(value, seen)
    if isinstance(value, types.MethodType):
        return ("method", fingerprint(value.__func__, seen), fingerprint(value.__self__, seen))
    if isinstance(value, type) and _is_users(value.__module__):
        return _class_fingerprint(value, seen)
    if isinstance(value, (types.BuiltinFunctionType, types.BuiltinMethodType, type)):
        return ("named", getattr(value, "__module__", None) or "", value.__qualname__)
    if isinstance(value, types.ModuleType):
        return ("module", value.__name__)  # a user's module: its attributes that code names (_globals_fingerprint)
    if dataclasses.is_dataclass(value) and getattr(type(value), "__dataclass_params__").frozen:
        return ("dataclass", type(value).__module__, type(value).__qualname__,
                *(fingerprint(getattr(value, f.name), seen) for f in dataclasses.fields(value)))
    if _is_torch_callable(value):
        return ("named", type(value).__module__, type(value).__qualname__, repr(value))
    raise NotKeyable(f"a {type(value).__module__}.{type(value).__qualname__} has no stable fingerprint")


def _is_torch_callable(value: Any) -> bool:
    """Callable objects of torch itself (``torch._C._VariableFunctions`` members and the like)."""
    return callable(value) and type(value).__module__.split(".")[0] == "torch" and not hasattr(value, "__dict__")


def _tensor_fingerprint(tensor: torch.Tensor) -> tuple:
    if type(tensor) not in (torch.Tensor, torch.nn.Parameter) or tensor.layout != torch.strided:
        raise NotKeyable(f"a tensor constant of type {type(tensor).__name__} (layout {tensor.layout})")
    if isinstance(tensor, torch._subclasses.FakeTensor) or tensor.is_meta:
        raise NotKeyable("a fake or meta tensor constant has no contents to key")
    data = tensor.detach().cpu().contiguous()
    contents = hashlib.sha256(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"").hexdigest()
    return ("tensor", tuple(tensor.shape), tensor.stride(), tensor.dtype, str(tensor.device), tensor.requires_grad,
            contents)


def _operator_fingerprint(op, seen: frozenset) -> tuple:
    """An operator by name; a Python-defined one also by its implementations (module docstring)."""
    packet = op if isinstance(op, torch._ops.OpOverloadPacket) else op.overloadpacket
    qualname = packet._qualified_op_name
    if qualname.split("::")[0] in _TORCH_NAMESPACES:
        return ("op", str(op))
    definition = OPDEFS.get(qualname)
    if definition is not None:
        return ("op", str(op), _custom_op_fingerprint(definition, seen))
    if qualname in torch.library._defs:
        raise NotKeyable(f"the operator {qualname} is defined in Python without torch.library.custom_op, so its "
                         "kernels cannot be keyed")
    return ("op", str(op))


def _custom_op_fingerprint(definition, seen: frozenset) -> tuple:
    """A ``torch.library.custom_op`` by its Python implementations (a user's; torch's own by name)."""
    if id(definition) in seen or definition._namespace in _TORCH_NAMESPACES:
        return ("custom op", definition._qualname)
    inner = seen | {id(definition)}
    return ("custom op", definition._qualname, *(fingerprint(getattr(definition, part, None), inner)
                                                 for part in _CUSTOM_OP_PARTS))


def _is_users(module_name: str | None) -> bool:
    """Whether the Python module named `module_name` is the user's own code: neither torch's nor
    aotgraph's (their versions are in every key), nor the standard library's or an installed
    package's (their code changes only with an installation)."""
    if not module_name or module_name.split(".")[0] in _VERSIONED_PACKAGES:
        return False
    module = sys.modules.get(module_name)
    if module is None:  # (a class made with another module's name: keyed by its code, to be safe)
        return True
    path = getattr(module, "__file__", None)
    if not path:  # a built-in module, or an interactive session's __main__
        return module_name == "__main__"
    return not path.startswith(_LIBRARY_PATHS)


_LIBRARY_PATHS = tuple({sysconfig.get_paths()[kind] for kind in ("stdlib", "platstdlib", "purelib", "platlib")})


def _class_fingerprint(klass: type, seen: frozenset) -> tuple:
    """A user's class by its own attributes through its MRO: methods by code, plain values by value."""
    parts = []
    for base in klass.__mro__:
        if not _is_users(base.__module__):
            parts.append(("base", base.__module__, base.__qualname__))
            continue
        members = []
        for name, member in vars(base).items():
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            elif isinstance(member, property):
                member = (member.fget, member.fset)
            elif name.startswith("__") and not isinstance(member, types.FunctionType):
                continue  # the class's bookkeeping (__module__, __dict__, __weakref__, __doc__)
            members.append((name, fingerprint(member, seen)))
        parts.append(("class", base.__module__, base.__qualname__, tuple(members)))
    return ("class", *parts)


def _function_fingerprint(fn: types.FunctionType, seen: frozenset) -> tuple:
    names = _global_names(fn.__code__)
    closure = tuple(_named_fingerprint(cell.cell_contents, names, seen) if _cell_filled(cell) else ("empty",)
                    for cell in fn.__closure__ or ())
    head = ("function", fn.__module__, fn.__qualname__, closure, fingerprint(fn.__defaults__, seen),
            fingerprint(fn.__kwdefaults__, seen))
    if (fn.__module__ or "").split(".")[0] in _VERSIONED_PACKAGES:
        return head
    return (*head, _code_fingerprint(fn.__code__), _globals_fingerprint(fn, seen))


def _cell_filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _code_fingerprint(code: types.CodeType) -> tuple:
    consts = tuple(_code_fingerprint(c) if isinstance(c, types.CodeType) else fingerprint(c)
                   for c in code.co_consts)
    return ("code", code.co_code.hex(), consts, code.co_names, code.co_varnames, code.co_freevars)


def _global_names(code: types.CodeType) -> set:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _globals_fingerprint(fn: types.FunctionType, seen: frozenset) -> tuple:
    """The values of the globals `fn`'s code may read (names it reads that are `fn`'s globals);
    of a user's module among them, the attributes the code names (``helpers.act``)."""
    namespace, names = fn.__globals__, _global_names(fn.__code__)
    return tuple((name, _named_fingerprint(namespace[name], names, seen)) for name in sorted(names)
                 if name in namespace)


def _named_fingerprint(value: Any, names: set, seen: frozenset) -> Any:
    """`fingerprint(value)`; a user's module with those of its attributes among `names`, in turn."""
    if not isinstance(value, types.ModuleType) or not _is_users(value.__name__):
        return fingerprint(value, seen)
    if id(value) in seen:
        return ("cycle",)
    inner = seen | {id(value)}
    return ("module", value.__name__, tuple((name, _named_fingerprint(getattr(value, name), names, inner))
                                            for name in sorted(names) if hasattr(value, name)))


# nn.Module's own bookkeeping: parameters, buffers and submodules are keyed apart (`_module_fingerprint`).
_MODULE_STATE = frozenset({"_parameters", "_buffers", "_modules", "_non_persistent_buffers_set", "training"})
# Hooks that run code around a call: a module with any is not keyed (state-dict hooks are harmless).
_CALL_HOOKS = frozenset({"_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"})


def _module_fingerprint(module: torch.nn.Module, seen: frozenset, state_is_input: bool = False) -> tuple:
    """`module` (module docstring); with `state_is_input`, its parameters and buffers (and its
    submodules') by name only: they are graph inputs, keyed by the call."""
    klass = type(module)
    parts = [("class", fingerprint(klass, seen)),  # a user's class with its methods' code
             ("training", module.training),
             ("state", tuple(module._parameters), tuple(module._buffers))]
    if not state_is_input:
        parts.append(("state values", *(fingerprint(value, seen) for value in (*module._parameters.values(),
                                                                               *module._buffers.values()))))
    for name, value in sorted(vars(module).items()):
        if name in _MODULE_STATE:
            continue
        if "hook" in name:
            if name in _CALL_HOOKS and value:
                raise NotKeyable(f"the module {klass.__qualname__} has {name}")
            continue
        parts.append((name, fingerprint(value, seen)))
    parts.extend((name, _module_fingerprint(child, seen, state_is_input) if child is not None else None)
                 for name, child in module._modules.items())
    return ("nn.Module", *parts)


def graph_fingerprint(graph_module: fx.GraphModule, _seen: frozenset = frozenset(),
                      state_is_input: bool = False) -> tuple:
    """`graph_module` node by node (see the module docstring). With `state_is_input` (a program
    graph whose parameters and buffers the call passes), their values are not in it: they are
    graph inputs, keyed by the call; else they are constants, keyed by contents (a captured
    graph's tensor constants)."""
    seen = _seen | {id(graph_module)}
    state = set()
    if state_is_input:
        state = {name for name, _ in graph_module.named_parameters(remove_duplicate=False)}
        state |= {name for name, _ in graph_module.named_buffers(remove_duplicate=False)}
    nodes = []
    for node in graph_module.graph.nodes:
        args = fx.node.map_arg((node.args, node.kwargs), lambda n: _NodeName(n.name))
        if node.op == "get_attr":
            target = ("state", node.target) if node.target in state else \
                fingerprint(_attribute(graph_module, node.target), seen)
        elif node.op == "call_module":
            target = _module_fingerprint(graph_module.get_submodule(node.target), seen, state_is_input)
        elif node.op in ("call_function", "call_method"):
            target = fingerprint(node.target, seen)
        else:
            target = node.target
        nodes.append((node.op, node.name, target, fingerprint(args, seen)))
    return ("graph", type(graph_module.graph._codegen).__qualname__, tuple(nodes))


class _NodeName(str):
    """A node among a node's arguments: fingerprinted by name."""


def _attribute(graph_module: fx.GraphModule, path: str) -> Any:
    value = graph_module
    for name in path.split("."):
        value = getattr(value, name)
    return value


@functools.lru_cache(maxsize=None)
def environment_parts() -> tuple:
    """What every key holds of the installation, as named key parts: torch (version, git
    revision, CUDA and HIP toolkits), Python, the platform, and aotgraph's own source (any
    edit changes every key)."""
    source = Path(__file__).resolve().parents[1]
    aotgraph_hash = hashlib.sha256()
    for path in sorted(source.rglob("*.py")):
        aotgraph_hash.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    facts = {"torch": (torch.__version__, torch.version.git_version), "CUDA": torch.version.cuda,
             "HIP": torch.version.hip, "Python": sys.version, "platform": sys.platform,
             "aotgraph source": aotgraph_hash.hexdigest()}
    return tuple((f"environment: {name}", fingerprint(value)) for name, value in facts.items())
