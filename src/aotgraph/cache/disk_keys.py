"""Keys of the disk cache: everything that can change what a call compiles to, hashed.

A key is built in up to three steps, each adding named parts to a `manifests.KeyParts` (the
key is their digest; an entry's manifest keeps them, so a miss can name the part that differs):
- `settings_key` (once per compiled function): the installation (`fingerprints.environment_parts`:
  torch, CUDA toolkit, Python, aotgraph's source), each compiler's `cache_identity` (its
  options), the partition function with its bound budget or policy (code identity), the
  decompositions, aotgraph's switches, and the program when it is a graph (node by node).
- `call_key` (per call signature): the arguments' structure, each tensor's type, shape,
  stride, storage offset, dtype, device, requires_grad, leaf-ness, conjugate/negative bits,
  whether it keeps its memory across calls (parameters, Dynamo's static inputs), which inputs
  share a storage (and its size); each other leaf's value; grad mode, autocast on every
  device (and its cache), the default dtype, deterministic algorithms, matmul precision.
- `captured_key` (programs that are not graphs, after capture): the joint graph itself, node
  by node, with its signature: the program's code is not keyed, what it did is.

Any part that cannot be fingerprinted soundly raises `NotKeyable` and the call compiles
without the disk cache.
"""
from __future__ import annotations

import functools
from typing import Any, Optional, Sequence

import torch

from .. import config
from ..artifacts import JointGraph
from ..compilers import traits_of
from .fingerprints import NotKeyable, environment_parts, fingerprint, graph_fingerprint
from .manifests import WHOLE_TEXT, KeyParts

__all__ = ["settings_key", "call_key", "captured_key", "NotKeyable"]

_AUTOCAST_DEVICES = ("cpu", "cuda", "xpu", "mps", "hpu", "mtia", "xla")


def settings_key(stages: dict, decompositions_given: Optional[dict], program: Any) -> KeyParts:
    """The key parts shared by every call of one compiled function. `stages`: compile_stages'
    keyword arguments; `decompositions_given`: the user's table (None: the compiler's own,
    which its identity covers); `program`: an fx GraphModule to key node by node, or None (the
    captured graph is keyed instead)."""
    compilers = []
    identities: dict[int, Any] = {}  # one compiler object serves all three roles: asked once
    for name in ("fw_compiler", "bw_compiler", "inference_compiler"):
        compiler = stages[name]
        identity = traits_of(compiler).cache_identity
        if identity is None:
            raise NotKeyable(f"the {name} {getattr(compiler, '__name__', compiler)!r} has no cache identity")
        if id(compiler) not in identities:
            identities[id(compiler)] = fingerprint(identity())
        compilers.append((name, identities[id(compiler)]))
    decompositions = None if decompositions_given is None else sorted(
        ((str(op), fingerprint(fn)) for op, fn in decompositions_given.items()), key=repr)
    partition = stages["partition_fn"]
    settings = KeyParts().extended([*environment_parts(), *compilers, ("partition", fingerprint(partition)),
                                    *_torch_partitioner_config(partition),
                                    ("decompositions", decompositions), ("switches", sorted(config.disabled))],
                                   preview_chars=WHOLE_TEXT)
    return settings if program is None else settings.extended(_graph_parts("program graph", program, True))


def _torch_partitioner_config(partition) -> list:
    """For torch's own partitioners (``min_cut_rematerialization_partition`` passed as
    partition_fn), the settings they read: ``torch._functorch.config``'s plain values."""
    while isinstance(partition, functools.partial):
        partition = partition.func
    if not (getattr(partition, "__module__", None) or "").startswith("torch."):
        return []
    from torch._functorch import config as functorch_config
    plain = (bool, int, float, str, type(None))
    return [("torch partitioner config", sorted((name, repr(value)) for name, value in
                                                functorch_config.get_config_copy().items()
                                                if isinstance(value, plain)))]


def call_key(settings: KeyParts, flat_args: Sequence[Any], in_spec) -> KeyParts:
    """The key parts of one call of a function whose settings are `settings`."""
    storages: dict[int, int] = {}
    inputs = []
    for position, value in enumerate(flat_args):
        if isinstance(value, torch.Tensor):
            if value.layout != torch.strided:
                raise NotKeyable(f"a tensor of layout {value.layout}")
            storage = value.untyped_storage()
            group = storages.setdefault(storage._cdata, len(storages))
            facts = (type(value).__qualname__, tuple(value.shape), value.stride(), value.storage_offset(),
                     value.dtype, value.device, value.requires_grad, value.grad_fn is None,
                     value.is_conj(), value.is_neg(), _keeps_memory(value), group, storage.nbytes())
        else:
            facts = value
        inputs.append((f"input {position}", fingerprint(facts)))
    return settings.extended([("arguments", str(in_spec)), *inputs, *_global_state()])


def captured_key(call: KeyParts, joint: JointGraph) -> KeyParts:
    """The key parts of a call whose program was captured as `joint` (see the module docstring)."""
    placeholders = [node.meta.get("val") for node in joint.graph_module.graph.find_nodes(op="placeholder")]
    return call.extended([*_graph_parts("captured graph", joint.graph_module),
                          ("signature", fingerprint(joint.signature)), ("inference", joint.is_inference),
                          ("placeholders", fingerprint(
                              [(tuple(v.shape), v.stride(), v.dtype, v.requires_grad)
                               if isinstance(v, torch.Tensor) else None for v in placeholders]))])


def _graph_parts(what: str, graph_module, state_is_input: bool = False) -> list:
    """`graph_fingerprint(graph_module)` as one part per node (named by the node) after its codegen."""
    _, codegen, nodes = graph_fingerprint(graph_module, state_is_input=state_is_input)
    return [(f"{what}: codegen", codegen), *((f"{what}: node {node[1]}", node) for node in nodes)]


def _keeps_memory(tensor: torch.Tensor) -> bool:
    return isinstance(tensor, torch.nn.Parameter) or getattr(tensor, "_dynamo_static_input_type", None) is not None


def _global_state() -> list:
    autocast = []
    for device in _AUTOCAST_DEVICES:
        try:
            if torch.is_autocast_enabled(device):
                autocast.append((device, torch.get_autocast_dtype(device)))
        except RuntimeError:  # a device type this build does not know
            continue
    state = {"grad mode": torch.is_grad_enabled(), "autocast": tuple(autocast),
             "autocast cache": torch.is_autocast_cache_enabled(), "default dtype": torch.get_default_dtype(),
             "deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
             "float32 matmul precision": torch.get_float32_matmul_precision(),
             "inference mode": torch.is_inference_mode_enabled()}
    return [(f"global state: {name}", fingerprint(value)) for name, value in state.items()]
