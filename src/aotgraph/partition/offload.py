"""CPU offload of saved values, as graph ops: no runtime support needed.

For each offloaded saved value ``v`` the forward returns ``v_host = _to_copy(v, device=cpu)``
in its place and the backward takes ``v_host`` and copies it back to ``v``'s device right
before its first use (not at the start: that would bring every offloaded value back at once). On CUDA both copies are ``non_blocking``: the device-to-host copy lands in
pinned memory (``_to_copy`` pins when copying a CUDA tensor to CPU without blocking), and
both run in stream order, so the device memory of ``v`` is released as soon as the forward
drops it. On CPU the copies are plain copies.
"""
from __future__ import annotations

import torch
import torch.fx as fx

aten = torch.ops.aten
_CPU = torch.device("cpu")


def host_name(name: str) -> str:
    return f"{name}_host"


def offload_saved(forward: fx.GraphModule, backward: fx.GraphModule, names: list[str], num_fwd_outputs: int) -> None:
    """Rewrite `forward` and `backward` (freshly extracted, owned by the caller) so the saved
    values `names` travel through host memory. Saved values keep their order."""
    wanted = set(names)
    output = forward.graph.find_nodes(op="output")[0]
    outputs = list(output.args[0])
    for position in range(num_fwd_outputs, len(outputs)):
        value = outputs[position]
        if value.name not in wanted:
            continue
        device_value = value.meta["val"]
        non_blocking = device_value.device.type == "cuda"
        with forward.graph.inserting_before(output):
            copy = forward.graph.create_node("call_function", aten._to_copy.default, (value,),
                                             {"device": _CPU, "non_blocking": non_blocking}, name=host_name(value.name))
        copy.meta["val"] = device_value.to(_CPU)
        if copy.name != host_name(value.name):
            raise AssertionError(f"offload: the name {host_name(value.name)} is taken in the forward graph")
        outputs[position] = copy
    output.args = (tuple(outputs),)
    forward.recompile()

    order = {node: i for i, node in enumerate(backward.graph.nodes)}
    for placeholder in list(backward.graph.find_nodes(op="placeholder")):
        if placeholder.name not in wanted:
            continue
        device_value = placeholder.meta["val"]
        with backward.graph.inserting_before(placeholder):
            host = backward.graph.placeholder(host_name(placeholder.name))
        if host.name != host_name(placeholder.name):
            raise AssertionError(f"offload: the name {host_name(placeholder.name)} is taken in the backward graph")
        host.meta["val"] = device_value.to(_CPU)
        first_use = min(placeholder.users, key=order.__getitem__)
        with backward.graph.inserting_before(first_use):
            restored = backward.graph.call_function(
                aten._to_copy.default, (host,),
                {"device": device_value.device, "non_blocking": device_value.device.type == "cuda"})
        restored.meta["val"] = device_value
        placeholder.replace_all_uses_with(restored)
        backward.graph.erase_node(placeholder)
    backward.recompile()
