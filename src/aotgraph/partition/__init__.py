"""Stage 2: JointGraph -> Partition.

A partition function has functorch's calling convention
``fn(joint_module, joint_inputs, *, num_fwd_outputs) -> (forward, backward)``, so ours and
users' plug in alike; `partition` turns its result into a `Partition` artifact.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.fx as fx

from ..artifacts import JointGraph, Partition, SavedValue, TensorMeta
from .budget import partition_for
from .default import default_partition
from .mincut import MUTATED_INPUTS_KEY, PartitionPlan, min_cut_rematerialization_partition
from .policies import Decision, NodeInfo, offload_early, offload_large, save_matmuls, save_nothing, save_tagged

__all__ = [
    "partition", "default_partition", "min_cut_rematerialization_partition", "partition_for", "PartitionPlan",
    "Decision", "NodeInfo", "save_matmuls", "save_nothing", "save_tagged", "offload_large",
    "offload_early",
]


def partition(joint: JointGraph, partition_fn: Callable = default_partition) -> Partition:
    """Split `joint` with `partition_fn`; an inference joint is its own forward."""
    if joint.is_inference:
        return Partition(joint.graph_module, None, (), 0, joint)
    example_inputs = [n.meta["val"] for n in joint.graph_module.graph.find_nodes(op="placeholder")]
    # The runtime writes mutated inputs back after the forward: a partitioner must not save them.
    joint.graph_module.meta[MUTATED_INPUTS_KEY] = tuple(f"primals_{p + 1}" for p in joint.signature.mutated_primals)
    forward, backward = partition_fn(joint.graph_module, example_inputs, num_fwd_outputs=joint.num_fwd_outputs)
    saved_nodes = list(forward.graph.find_nodes(op="output")[0].args[0])[joint.num_fwd_outputs:]
    plan = forward.meta.get("aotgraph_plan")
    reasons = dict(plan.reasons) if plan else {}
    saved = tuple(_describe(n, reasons.get(n.name, "read by backward")) for n in saved_nodes)
    num_saved_tensors = sum(isinstance(n.meta.get("val"), torch.Tensor) for n in saved_nodes)
    if plan is not None:
        recomputed = plan.recomputed
    else:
        forward_names = {n.name for n in forward.graph.nodes}
        recomputed = tuple(
            n.name for n in backward.graph.nodes
            if n.op == "call_function" and n.name in forward_names
        )
    return Partition(forward, backward, saved, num_saved_tensors, joint, recomputed)


def _describe(node: fx.Node, reason: str) -> SavedValue:
    value = node.meta.get("val")
    meta = TensorMeta.of(value) if isinstance(value, torch.Tensor) else None
    producer = "input" if node.op == "placeholder" else str(getattr(node.target, "__name__", node.target))
    return SavedValue(node.name, meta, producer, reason)
