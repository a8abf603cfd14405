"""CPU offload of saved values, as graph nodes: no runtime support needed.

For each offloaded saved value ``v`` the forward returns ``v_host`` (a host copy) in its
place, made right after ``v``'s last use in the forward, and the backward takes ``v_host``
and brings it back before ``v``'s first use.

- CUDA values: copies run on a side stream, overlapping compute. The forward's
  device-to-host copy lands in pinned memory (``v``'s memory is reused only after the copy:
  ``record_stream``). The backward prefetches each value when the previous offloaded value
  is first used, and the compute stream waits for it only right before its own first use,
  so at most two offloaded values are back on the device at a time. These nodes call the
  Python functions below: compilers that run the graph's code (eager, nop) handle them;
  Inductor cannot compile them and refuses them with a CompilerError (compile stage).
- Other devices: ``aten._to_copy`` there and back (plain copies, right before first use).
  Inductor compiles them in their decomposed form (``prims.device_put``; on the CPU itself
  a copy to the CPU decomposes to the value, so nothing is copied).
"""
from __future__ import annotations

import torch
import torch.fx as fx

aten = torch.ops.aten
_CPU = torch.device("cpu")
_side_streams: dict = {}


def host_name(name: str) -> str:
    return f"{name}_host"


def _side_stream(device: torch.device):
    stream = _side_streams.get(device)
    if stream is None:
        stream = _side_streams[device] = torch.cuda.Stream(device)
    return stream


def offload_to_host(value: torch.Tensor) -> torch.Tensor:
    """Start copying `value` to pinned host memory on the side stream; returns the host copy."""
    side = _side_stream(value.device)
    side.wait_stream(torch.cuda.current_stream(value.device))
    with torch.cuda.stream(side):
        host = torch.empty_strided(value.size(), value.stride(), dtype=value.dtype, device=_CPU, pin_memory=True)
        host.copy_(value, non_blocking=True)
    value.record_stream(side)
    return host


def prefetch_to_device(host: torch.Tensor, device: torch.device) -> tuple:
    """Start copying `host` back on the side stream (after its device-to-host copy, same
    stream); returns (device tensor, event) for `wait_prefetched`."""
    side = _side_stream(device)
    with torch.cuda.stream(side):
        value = torch.empty_strided(host.size(), host.stride(), dtype=host.dtype, device=device)
        value.copy_(host, non_blocking=True)
        done = torch.cuda.Event()
        done.record(side)
    return value, done


def wait_prefetched(pending: tuple) -> torch.Tensor:
    value, done = pending
    current = torch.cuda.current_stream(value.device)
    current.wait_event(done)
    value.record_stream(current)  # its memory returns to the side stream's pool only after our use
    return value


def offload_saved(forward: fx.GraphModule, backward: fx.GraphModule, names: list[str], num_fwd_outputs: int) -> None:
    """Rewrite `forward` and `backward` (freshly extracted, owned by the caller) so the saved
    values `names` travel through host memory. Saved values keep their order and names
    (``v`` becomes ``v_host``)."""
    wanted = set(names)
    output = forward.graph.find_nodes(op="output")[0]
    outputs = list(output.args[0])
    order = {node: i for i, node in enumerate(forward.graph.nodes)}
    for position in range(num_fwd_outputs, len(outputs)):
        value = outputs[position]
        if value.name not in wanted:
            continue
        device_value = value.meta["val"]
        # Copy right after the forward's last use, not at its end: the device copy is then
        # freed (once the transfer ends) while the forward still runs.
        last_use = max((u for u in value.users if u.op != "output"), key=order.__getitem__, default=value)
        with forward.graph.inserting_after(last_use):
            if device_value.device.type == "cuda":
                copy = forward.graph.create_node("call_function", offload_to_host, (value,), name=host_name(value.name))
            else:
                copy = forward.graph.create_node("call_function", aten._to_copy.default, (value,), {"device": _CPU},
                                                 name=host_name(value.name))
        if copy.name != host_name(value.name):
            raise AssertionError(f"offload: the name {host_name(value.name)} is taken in the forward graph")
        copy.meta["val"] = device_value.to(_CPU, copy=True)  # its own storage, even on the CPU
        outputs[position] = copy
    output.args = (tuple(outputs),)
    forward.recompile()
    _restore_in_backward(backward, wanted)


def _restore_in_backward(backward: fx.GraphModule, wanted: set) -> None:
    graph = backward.graph
    order = {node: i for i, node in enumerate(graph.nodes)}
    offloaded = sorted((p for p in graph.find_nodes(op="placeholder") if p.name in wanted),
                       key=lambda p: min(order[u] for u in p.users))
    previous_first_use = None
    for placeholder in offloaded:
        device_value = placeholder.meta["val"]
        first_use = min(placeholder.users, key=order.__getitem__)
        with graph.inserting_before(placeholder):
            host = graph.placeholder(host_name(placeholder.name))
        if host.name != host_name(placeholder.name):
            raise AssertionError(f"offload: the name {host_name(placeholder.name)} is taken in the backward graph")
        host.meta["val"] = device_value.to(_CPU, copy=True)  # its own storage, even on the CPU
        if device_value.device.type == "cuda":
            start = previous_first_use or next(n for n in graph.nodes if n.op != "placeholder")
            with graph.inserting_before(start):
                pending = graph.call_function(prefetch_to_device, (host, device_value.device))
            pending.meta["val"] = (device_value, None)  # the device copy exists from the prefetch on
            with graph.inserting_before(first_use):
                restored = graph.call_function(wait_prefetched, (pending,))
        else:
            with graph.inserting_before(first_use):
                restored = graph.call_function(aten._to_copy.default, (host,), {"device": device_value.device})
        restored.meta["val"] = device_value
        placeholder.replace_all_uses_with(restored)
        graph.erase_node(placeholder)
        previous_first_use = first_use
    backward.recompile()
