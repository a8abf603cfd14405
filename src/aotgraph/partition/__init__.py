"""Stage 2: JointGraph -> Partition.

A partition function has functorch's calling convention
``fn(joint_module, joint_inputs, *, num_fwd_outputs) -> (forward, backward)``, so ours and
users' plug in alike; `partition` turns its result into a `Partition` artifact. Ours also
take what the pipeline knows (which inputs the runtime overwrites, whether the compiler
fuses kernels) as explicit arguments and return their plan: see `split_with_plan`.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

import torch
import torch.fx as fx

from ..artifacts import CallingConvention, JointGraph, Partition, PartitionPlan, SavedValue, TensorMeta
from ..errors import BadArgument
from ..graph.naming import is_tangent, primal_name, tangent_number
from .budget import Budget, check_memory_budget, check_recompute_budget
from .default import default_partition
from .mincut import min_cut_rematerialization_partition, split_with_plan
from .policies import Decision, NodeInfo, Policy, offload_early, offload_large, save_matmuls, save_nothing, save_tagged
from .symbols import save_sizes_not_tensors, save_unbound_symbols

__all__ = [
    "partition", "default_partition", "min_cut_rematerialization_partition", "split_with_plan", "partition_for",
    "PartitionPlan", "Decision", "NodeInfo", "save_matmuls", "save_nothing", "save_tagged", "offload_large",
    "offload_early", "plans_whole_program"]


def partition(joint: JointGraph, partition_fn: Callable = default_partition, *,
              fusing_compiler: bool = False, outputs_kept: bool = False,
              kept_primals: Optional[frozenset] = None) -> Partition:
    """Split `joint` with `partition_fn`; an inference joint is its own forward.
    `fusing_compiler`: the graphs go to a compiler that fuses kernels (`CompilerTraits`).
    `outputs_kept`: the caller keeps the forward's outputs until the backward (a region's
    caller), so the min cut saves them for free (`split_with_plan`). `kept_primals`: the
    primal indices whose tensors the caller keeps across calls (parameters, Dynamo's static
    inputs); the min cut prices saving the others at their bytes (switch
    ``transient_inputs_priced``). None: every primal is kept (a region's, which its caller's
    graph holds)."""
    num_fwd_outputs = joint.num_fwd_outputs
    if joint.is_inference:
        return Partition(joint.graph_module, None, (), 0, joint, convention=CallingConvention(num_fwd_outputs, ()))
    split, options = _aotgraph_split(partition_fn)
    plan: Optional[PartitionPlan] = None
    if split is not None:
        # The runtime writes mutated inputs back after the forward: the partitioner must not save them.
        mutated = frozenset(primal_name(p) for p in joint.signature.mutated_primals)
        forward, backward, plan = split(joint.graph_module, num_fwd_outputs=num_fwd_outputs, mutated_inputs=mutated,
                                        transient_inputs=_transient_inputs(joint, kept_primals),
                                        fusing_compiler=fusing_compiler, outputs_kept=outputs_kept, **options)
    else:
        example_inputs = [n.meta["val"] for n in joint.graph_module.graph.find_nodes(op="placeholder")]
        split_graphs = partition_fn(joint.graph_module, example_inputs, num_fwd_outputs=num_fwd_outputs)
        if not (isinstance(split_graphs, (tuple, list)) and len(split_graphs) == 2
                and all(isinstance(g, torch.fx.GraphModule) for g in split_graphs)):
            name = getattr(partition_fn, "__name__", type(partition_fn).__name__)
            raise BadArgument(f"partition_fn {name} returned {type(split_graphs).__name__}, not a (forward, "
                              "backward) pair of GraphModules", "partition",
                              "return (fw_module, bw_module), as functorch's default_partition does")
        forward, backward = split_graphs
    save_sizes_not_tensors(forward, backward, num_fwd_outputs)
    save_unbound_symbols(forward, backward)
    saved_nodes = list(forward.graph.find_nodes(op="output")[0].args[0])[num_fwd_outputs:]
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
    return Partition(forward, backward, saved, num_saved_tensors, joint, recomputed, plan,
                     _convention(num_fwd_outputs, saved_nodes, backward),
                     (("fusing_compiler", fusing_compiler), ("outputs_kept", outputs_kept),
                      ("kept_primals", kept_primals)))


def _transient_inputs(joint: JointGraph, kept_primals: Optional[frozenset]) -> frozenset:
    """Names of the tensor primals outside `kept_primals` (see `partition`)."""
    from .. import config

    if kept_primals is None or not config.enabled("transient_inputs_priced"):
        return frozenset()
    return frozenset(primal_name(p) for p in range(joint.num_primals) if p not in kept_primals)


def _aotgraph_split(partition_fn: Callable) -> tuple[Optional[Callable], dict]:
    """(our split function behind `partition_fn`, its bound keyword options), seeing through
    ``functools.partial``; (None, {}) for other partition functions."""
    options: dict = {}
    while isinstance(partition_fn, functools.partial):
        if partition_fn.args:
            return None, {}
        options = {**partition_fn.keywords, **options}
        partition_fn = partition_fn.func
    split = getattr(partition_fn, "aotgraph_split", None)
    if split is None:
        return None, {}
    # functorch's calling-convention keywords, bound with partial (``compiler="inductor"``):
    # accepted by the partition function, meaningless to our split.
    return split, {k: v for k, v in options.items() if k not in _FUNCTORCH_ONLY_OPTIONS}


_FUNCTORCH_ONLY_OPTIONS = ("compiler", "static_lifetime_input_indices", "static_lifetime_input_nodes")


def _convention(num_fwd_outputs: int, saved_nodes: list, backward: fx.GraphModule) -> CallingConvention:
    saved_names = tuple(n.name for n in saved_nodes)
    backward_saved, backward_tangents = [], []
    for node in backward.graph.find_nodes(op="placeholder"):
        if is_tangent(node):
            backward_tangents.append(tangent_number(node))
        elif backward_tangents:
            raise BadArgument(f"the partition's backward takes {node.name} after a tangent", "partition",
                              "a partition function must place saved values before tangents")
        else:
            backward_saved.append(node.name)
    return CallingConvention(num_fwd_outputs, saved_names, tuple(backward_saved), tuple(backward_tangents))


def _describe(node: fx.Node, reason: str) -> SavedValue:
    value = node.meta.get("val")
    meta = TensorMeta.of(value) if isinstance(value, torch.Tensor) else None
    producer = "input" if node.op == "placeholder" else str(getattr(node.target, "__name__", node.target))
    return SavedValue(node.name, meta, producer, reason)


def plans_whole_program(partition_fn: Callable) -> bool:
    """Whether `partition_fn` is a `partition_for` with a budget or a policy: a plan for the
    program as a whole, which regions found without a marker would split (an absolute budget
    would bound each region apart), so capture records repeated layers flat for it."""
    keywords = getattr(partition_fn, "keywords", None) or {}
    return any(keywords.get(k) is not None for k in ("memory_budget", "policy", "recompute_budget"))


def partition_for(budget: Optional[Budget] = None, policy: Optional[Policy] = None,
                  recompute_budget: Optional[Budget] = None):
    """A partition function (functorch calling convention) with a memory budget, a recompute
    budget and/or a policy bound, for ``aot_function(..., partition_fn=partition_for(budget=0.5))``.

    `budget`: saved bytes as an int, or a fraction of the default partition's as a float in
    [0, 1]; `recompute_budget`: FLOPs as an int, or a fraction of the forward's as a float in
    [0, 1]. Checked here: a bad value fails now, not at the first compile."""
    check_memory_budget(budget, "budget")
    check_recompute_budget(recompute_budget)
    if policy is not None and not callable(policy):
        raise BadArgument(f"policy={policy!r} is not callable", "partition",
                          "pass a function (NodeInfo) -> Decision, e.g. aotgraph.save_matmuls")
    if budget is not None and recompute_budget is not None:
        raise BadArgument("partition_for got both budget and recompute_budget", "partition",
                          "pass one: budget bounds saved bytes, recompute_budget bounds recompute FLOPs")
    fn = functools.partial(min_cut_rematerialization_partition, memory_budget=budget, policy=policy,
                 recompute_budget=recompute_budget)
    fn.__name__ = (f"partition_for(budget={budget}, recompute_budget={recompute_budget}, "
                   f"policy={getattr(policy, '__name__', policy)})")
    return fn
