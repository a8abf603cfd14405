"""aotgraph: ahead-of-time autograd for PyTorch.

capture -> partition -> compile -> runtime; drop-in for functorch's compile API.
"""
from . import config  # noqa: F401  (aotgraph.config: settings and debug switches)
from .api import aot_export_joint, aot_function, aot_module, aot_module_simplified
from .backend import backend  # the function; the module stays importable as aotgraph.backend via sys.modules
from .explain import explain  # the function, as `backend`
from .artifacts import CompiledGraphs, InputInfo, JointGraph, OutputInfo, Partition, SavedValue, Signature, TensorMeta
from .compilers import make_boxed_compiler, make_boxed_func, nop
from .errors import (AotGraphError, BadArgument, CompilerError, DataDependentControlFlow, OpRefused, RecompileWarning,
                     UnsupportedOp)
from .partition import (Decision, default_partition, min_cut_rematerialization_partition, offload_large, partition_for,
                        save_matmuls, save_nothing, save_tagged)

__all__ = [
    "aot_function", "aot_module", "aot_module_simplified", "aot_export_joint", "backend", "explain",
    "nop", "make_boxed_func", "make_boxed_compiler", "default_partition", "min_cut_rematerialization_partition",
    "partition_for", "Decision", "save_matmuls", "save_nothing", "save_tagged", "offload_large",
    "JointGraph", "Partition", "CompiledGraphs", "Signature", "InputInfo", "OutputInfo", "TensorMeta", "SavedValue",
    "AotGraphError", "BadArgument", "CompilerError", "DataDependentControlFlow", "OpRefused", "UnsupportedOp",
    "RecompileWarning",
]
