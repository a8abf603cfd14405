"""Min-cut rematerialization: save the fewest bytes that let the backward run.

Each forward-computable joint node ``v`` becomes two flow vertices ``v_in -> v_out`` joined
by an edge whose capacity is the cost of saving ``v`` (its bytes; inputs the caller keeps, such
as parameters, are free; tuples and dicts of results cannot be saved). ``u_out -> v_in`` edges
(infinite) follow the data. The source feeds the inputs and every node the backward may not
recompute; the sink drains every value a backward-only node reads (not the forward's outputs:
the forward computes them). A minimum cut is then a set of saved values from which the
backward can recompute everything else it needs. An optional recompute price ``lam`` (bytes per FLOP)
adds a ``source -> v_in`` edge of ``lam * flops(v)``: cutting it means recomputing ``v``.
The solver is scipy's ``maximum_flow`` (integer capacities, Dinic).

Honouring the program's own recomputation: ops that autograd ran while computing gradients
but that do not read a tangent (``torch.utils.checkpoint`` and selective-checkpoint
recomputation, weight transposes of backward formulas) stay in the backward; the cut only
decides about values the forward computes.
"""
from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
import torch.fx as fx

from ..artifacts import PartitionPlan
from ..errors import BadArgument
from ..graph.ops import (bytes_of, flops_of, is_expensive, is_random, is_runtime_assert, is_view, op_facts,
                         recompute_ban, storage_of, tensor_bytes, unsafe_to_recompute)
from ..graph.naming import is_primal, is_tangent
from ..graph.nodes import ancestors, extract_graph, joint_outputs, saved_by_default, tangent_dependent
from .budget import TIE_BREAK_LAM, saved_for_budget, saved_for_recompute_budget
from .policies import Decision, NodeInfo, Policy

_INF = 1 << 30  # int32 capacities: finite capacities are scaled to sum below _FINITE_TOTAL
_FINITE_TOTAL = 1 << 28
_INFINITY = float("inf")  # an uncuttable edge, before scaling to _INF
RECOMPUTE_POLICY_PENALTY = 1024
# The default plan recomputes a value at most this many cheap ops away from one the forward
# keeps. Longer chains (a residual stream summed over every layer) are recomputed as a whole
# at the start of the backward, held there at the memory peak, in one pass over every layer's
# activations: little memory gained for real time (benchmarks/RESULTS.md, "Design measurements").
MAX_RECOMPUTE_CHAIN = 10



def _checked_decision(policy: Policy, info: NodeInfo) -> Optional[Decision]:
    """`policy`'s decision for one node: a `Decision` or None (no preference); anything else is
    refused, naming it (a string or a bool would otherwise count as no preference, silently)."""
    decision = policy(info)
    if decision is not None and not isinstance(decision, Decision):
        raise BadArgument(f"the partition policy returned {decision!r} for {info.name}, not a Decision or None",
                          "partition", "return Decision.SAVE, Decision.RECOMPUTE, Decision.OFFLOAD or None "
                          "(from aotgraph.partition.policies import Decision)")
    return decision

@dataclass
class JointNetwork:
    """A joint graph classified once for the flow network; reused across recompute prices."""

    module: fx.GraphModule
    num_fwd_outputs: int
    policy: Optional[Policy]
    price_expensive: bool = False  # budgets may recompute matmuls, convolutions, attention at their FLOP price
    save_matmul_inputs: bool = False  # see `_read_by_backward_matmul`
    fusing_compiler: bool = False  # the compiler fuses kernels (Inductor): see `_padding_for_fused_kernels`
    mutated_inputs: frozenset = frozenset()  # primal names the runtime overwrites after the forward
    transient_inputs: frozenset = frozenset()  # primal names the caller may write or drop before the backward
    outputs_kept: bool = False  # the caller keeps the forward's outputs for the backward anyway: free to save
    nodes: list = field(default_factory=list)

    def __post_init__(self):
        graph = self.module.graph
        self.fwd_outputs, self.bwd_outputs = joint_outputs(self.module, self.num_fwd_outputs)
        self.kept_outputs = frozenset(n for n in self.fwd_outputs if isinstance(n, fx.Node)) \
            if self.outputs_kept else frozenset()
        self._classify_nodes(graph)
        self.fwd_required = ancestors(self.fwd_outputs + list(self.forward_effects))
        self.index = {n: i for i, n in enumerate(self.nodes)}
        # An element of a tuple the forward computes (a random op the backward recorded, run in the
        # forward for its draws) is read in the forward too: it can be saved, the tuple cannot.
        self.pinned = set()
        for n in self.recorded_in_backward:
            if n not in self.fwd_required and not is_random(n) and not (
                    n.target is operator.getitem and isinstance(n.args[0], fx.Node) and n.args[0] not in self.pinned
                    and n.args[0] in self.index):
                self.pinned.add(n)
        forward_ops = [n for n in self.nodes if n not in self.pinned and not is_primal(n)]
        last = max(len(forward_ops) - 1, 1)
        self.decisions = {n: _checked_decision(self.policy, NodeInfo.of(n, i / last))
                          for i, n in enumerate(forward_ops)} if self.policy else {}
        self.save_cost: list[Optional[int]] = []
        self.forced_forward: list[Optional[str]] = []
        self.flops = [flops_of(n) for n in self.nodes]
        chain_depth: dict = {}
        for node in self.nodes:
            self.save_cost.append(self._save_cost(node))
            forced = self._forced_forward(node)
            if forced is None and not self.price_expensive and node not in self.pinned:
                forced = (_long_chain(node, chain_depth, can_save=self.save_cost[-1] is not None)
                          or _read_by_backward_matmul(node, self.backward_only, self.save_matmul_inputs)
                          or (_padding_for_fused_kernels(node) if self.fusing_compiler else None)
                          or (_reduction_for_fused_kernels(node) if self.fusing_compiler else None))
            self.forced_forward.append(forced)
        self._static_edges()

    # ---- classification -----------------------------------------------------
    def _classify_nodes(self, graph: fx.Graph) -> None:
        """One walk in graph order: `primals`, `tangents`, `backward_only` (nodes whose value
        depends on a tangent, the output node included), `nodes` (every other node but the
        output), `forward_effects` (random ops and runtime asserts among them: the forward runs
        them whether or not anything reads them) and `recorded_in_backward` (those of
        `nodes` recorded after autograd's first tangent-reading op: gradient computation)."""
        self.primals, self.tangents, self.nodes = [], [], []
        self.backward_only, self.forward_effects, self.recorded_in_backward = tangent_dependent(graph), set(), []
        in_backward = False
        for node in graph.nodes:
            if node.op == "placeholder":
                if is_tangent(node):
                    self.tangents.append(node)
                    continue
                self.primals.append(node)
            elif node in self.backward_only:
                in_backward = in_backward or node.op == "call_function"
                continue
            elif node.op == "output":
                continue
            elif is_random(node) or is_runtime_assert(node):
                self.forward_effects.add(node)
            self.nodes.append(node)
            if in_backward:
                self.recorded_in_backward.append(node)

    @functools.cached_property
    def input_storages(self) -> set:
        """Storage identities of the graph inputs (read by `storage_bytes` only)."""
        return {storage_of(p.meta["val"])[0] for p in self.primals if isinstance(p.meta.get("val"), torch.Tensor)}

    def _save_cost(self, node: fx.Node) -> Optional[int]:
        """Bytes to save `node` (times a penalty where a policy said RECOMPUTE); None: it
        cannot be saved (a tuple or dict of results). An input is free to save, unless the
        runtime overwrites it after the forward: then it is saved (the runtime clones its old
        value) only where the backward reads it itself; recomputing from it (batch norm from
        its running statistics) would cost that copy every call. A transient input (not a
        parameter or a static input of Dynamo's: the caller may drop it, or write it in place
        before the backward)
        costs its bytes, as in torch's min cut: saving it where eager's autograd saves a value
        computed from it would keep it alive, and make a caller's later in-place write into it
        fail the backward where eager's runs."""
        if is_primal(node):
            if node.name in self.mutated_inputs:  # (pinned readers run in the backward too: seed 1518, Inductor's
                # joint passes drop autograd's clone of an input before its in-place write as a no-op)
                return bytes_of(node) if any(user in self.backward_only or user in self.pinned
                                             for user in node.users) else None
            return bytes_of(node) if node.name in self.transient_inputs else 0
        size = bytes_of(node)
        if size is None:
            return None
        if node in self.kept_outputs:
            return 0
        if self.decisions.get(node) is Decision.RECOMPUTE and _can_recompute(node):
            return size * RECOMPUTE_POLICY_PENALTY  # saved only where recomputing is impossible
        return size

    def _forced_forward(self, node: fx.Node) -> Optional[str]:
        """Why `node` must be computed in the forward (never recomputed), or None."""
        unsafe = unsafe_to_recompute(node)
        if unsafe is not None or node in self.pinned:  # the program itself recomputes pinned nodes
            return unsafe
        decision = self.decisions.get(node)
        if decision is Decision.SAVE:
            return f"policy {getattr(self.policy, '__name__', 'policy')} said {decision.value}"
        if decision is Decision.RECOMPUTE or (self.price_expensive and is_expensive(node)):
            return None
        return recompute_ban(node)

    def _static_edges(self) -> None:
        """The flow network's CSR structure, built once: every edge and its reverse (capacity
        0 unless it is an edge itself), so that scipy's solver adds none and its flow matrix
        shares this structure. Vertex 0 is the source, 1 the sink, 2 + 2i / 3 + 2i are node
        i's in / out. Capacities that do not depend on the recompute price are filled in;
        `priced_slots` are where the price edges ``source -> v_in`` of `priced` nodes go.
        Plain lists: on the networks of small graphs, numpy's per-call costs would dominate."""
        self.size = 2 + 2 * len(self.nodes)
        rows: list[dict[int, float]] = [{} for _ in range(self.size)]  # tail -> {head: capacity}
        bwd_outputs = {n for n in self.bwd_outputs if isinstance(n, fx.Node)}
        inf = _INFINITY
        tie_broken: set[tuple[int, int]] = set()  # save edges one unit dearer after scaling
        for i, node in enumerate(self.nodes):
            v_in, v_out = 2 + 2 * i, 3 + 2 * i
            cost = self.save_cost[i]
            rows[v_in][v_out] = float(cost) if cost is not None else inf
            # One unit dearer: a view read through views only, and a transient input (a tie goes to
            # the value eager's autograd saves).
            if cost is not None and (_read_through_views_only(node) or node.name in self.transient_inputs):
                tie_broken.add((v_in, v_out))
            if self.forced_forward[i] is not None:
                rows[0][v_in] = inf
            if node in self.pinned:
                rows[v_in][1] = inf
            read_by_backward = node in bwd_outputs
            for user in node.users:
                if user in self.backward_only and user.op != "output":  # a forward output is the forward's
                    read_by_backward = True
                elif user.op != "output":
                    rows[v_out][2 + 2 * self.index[user]] = inf
            if read_by_backward:
                rows[v_out][1] = inf
        # Nodes a recompute price applies to: they cost FLOPs and nothing forces them forward.
        priced = [i for i, flops in enumerate(self.flops)
                  if flops and 2 + 2 * i not in rows[0] and self.nodes[i] not in self.pinned]
        for i in priced:
            rows[0][2 + 2 * i] = 0.0
        for tail, row in enumerate(rows):
            for head in list(row):
                rows[head].setdefault(tail, 0.0)
        indptr, heads, caps, ties = [0], [], [], []
        for tail, row in enumerate(rows):
            for head in sorted(row):
                heads.append(head)
                caps.append(row[head])
                ties.append((tail, head) in tie_broken)
            indptr.append(len(heads))
        self.priced = priced
        self.priced_flops = np.array([self.flops[i] for i in priced], dtype=np.float64)
        slot_of_head = {head: slot for slot, head in enumerate(heads[:indptr[1]])}
        self.priced_slots = np.array([slot_of_head[2 + 2 * i] for i in priced], dtype=np.int64)
        self.indptr_list, self.indices_list = indptr, heads
        self.indptr, self.indices = np.array(indptr, dtype=np.int32), np.array(heads, dtype=np.int32)
        self.static_caps = np.array(caps, dtype=np.float64)
        self.tie_breaks = np.array(ties, dtype=np.int32)

    # ---- solving ---------------------------------------------------------------
    def cut(self, lam) -> set:
        """Saved nodes of a minimum cut; `lam`: price of recomputing one FLOP in bytes
        (None: recompute nothing that costs FLOPs), or one such price per node."""
        if isinstance(lam, (list, tuple)):
            prices = np.array([np.inf if lam[i] is None else lam[i] for i in self.priced], dtype=np.float64)
        else:
            prices = np.full(len(self.priced), np.inf if lam is None else lam, dtype=np.float64)
        caps = self.static_caps.copy()
        caps[self.priced_slots] = prices * self.priced_flops
        infinite = np.isinf(caps)
        scale = max(1.0, caps[~infinite].sum() / _FINITE_TOTAL)
        # The tie-break (`_read_through_views_only`) is one unit of the scaled capacities: a
        # fraction of a byte before scaling would vanish in the rounding of a large graph's.
        scaled = np.where(infinite, _INF, np.ceil(np.where(infinite, 0, caps) / scale) + self.tie_breaks).astype(np.int32)
        network = self._flow_network
        network.data = scaled  # the structure is fixed: no sparse constructor (and its checks) per cut
        from scipy.sparse.csgraph import maximum_flow  # scipy costs 0.3 s to import: only when a cut is made

        result = maximum_flow(network, 0, 1)
        if result.flow_value >= _INF:
            raise AssertionError("min cut: the backward needs a value that can be neither saved nor recomputed")
        flow = result.flow
        if flow.nnz != len(scaled):
            raise AssertionError("min cut: scipy's flow matrix does not share the network's structure")
        source_side = self._reachable_from_source((scaled > flow.data).tolist())
        cut_nodes = [i for i in range(len(self.nodes)) if source_side[2 + 2 * i] and not source_side[3 + 2 * i]]
        return {self.nodes[i] for i in cut_nodes}

    @functools.cached_property
    def _flow_network(self):
        """The network's CSR matrix (scipy.sparse); `cut` sets its capacities."""
        import scipy.sparse as sp
        network = sp.csr_matrix((np.zeros(len(self.indices), dtype=np.int32), self.indices, self.indptr),
                                shape=(self.size, self.size))
        network.has_sorted_indices = True  # spares the solver its check
        return network

    def _reachable_from_source(self, open_edges: list) -> list:
        """Per vertex, whether the source reaches it through edges with residual capacity
        (`open_edges`, per edge of the CSR structure): the source side of the minimum cut. A
        plain walk: on small networks, cheaper than scipy's traversal's input checks and
        conversions; a few ms on a 10,000-node joint graph."""
        indptr, heads = self.indptr_list, self.indices_list
        reached = [False] * self.size
        reached[0] = True
        stack = [0]
        while stack:
            tail = stack.pop()
            for edge in range(indptr[tail], indptr[tail + 1]):
                if open_edges[edge] and not reached[heads[edge]]:
                    reached[heads[edge]] = True
                    stack.append(heads[edge])
        return reached

    def backward_closure(self, saved: set) -> tuple[list, list]:
        """(saved values the backward reads, in graph order; nodes it recomputes)."""
        return self._backward_needs(saved)[:2]

    def _backward_needs(self, saved: set) -> tuple[list, list, set]:
        """`backward_closure`, and every joint node the backward reads, itself included."""
        needed = ancestors(self.bwd_outputs, stop=saved | set(self.tangents))
        saved_list = [n for n in self.nodes if n in saved and n in needed]
        recomputed = [n for n in self.nodes if n in needed and n not in saved and n.op != "placeholder"]
        return saved_list, recomputed, needed

    def recompute_flops(self, saved: set) -> int:
        """FLOPs of what the backward recomputes when `saved` are saved."""
        return sum(self.flops[self.index[n]] for n in self.backward_closure(saved)[1])

    def forward_flops(self) -> int:
        """FLOPs of the forward: every op the forward outputs and random draws need."""
        return sum(flops_of(n) for n in self.fwd_required)

    def storage_bytes(self, nodes) -> int:
        """Bytes of the distinct storages behind `nodes`, outside the graph inputs."""
        seen, total = set(self.input_storages), 0
        for node in nodes:
            value = node.meta.get("val")
            if not isinstance(value, torch.Tensor):
                total += 8
                continue
            storage, nbytes = storage_of(value)
            if storage not in seen:
                seen.add(storage)
                total += nbytes
        return total

    def default_saved(self) -> list:
        """What `default_partition` saves: forward values the backward reads."""
        return saved_by_default(self.nodes, self.fwd_required, self.bwd_outputs, self.primals, self.tangents)

    def reason(self, node: fx.Node) -> str:
        if is_primal(node):
            if node.name in self.transient_inputs:
                return "graph input (not a parameter: saved at its bytes, cheaper than what it would recompute)"
            return "graph input (free: the caller keeps it alive)"
        forced = self.forced_forward[self.index[node]]
        if forced is None and node.op == "call_function" and node.args and isinstance(node.args[0], fx.Node) \
                and self.save_cost[self.index[node]] is not None and bytes_of(node.args[0]) is None:
            forced = self.forced_forward[self.index[node.args[0]]]  # a getitem: its op's reason
        if forced is not None:
            return f"not recomputable: {forced}"
        if self.decisions.get(node) is Decision.RECOMPUTE:
            return "policy said recompute, but the backward cannot (it would need an overwritten input or a random op)"
        return "min cut: cheaper to save than what recomputing it would need"

    def plan(self, saved: set, **plan_fields) -> tuple[PartitionPlan, list, list]:
        """(the plan for this set of saved values; the saved values the backward reads; those
        of them offloaded). `plan_fields`: budgets and note, as `PartitionPlan` spells them."""
        return self._plan(*self._backward_needs(saved)[:2], **plan_fields)

    def _plan(self, saved_list: list, recomputed: list, *, budget: Optional[int] = None,
              recompute_budget: Optional[int] = None, note: str = "") -> tuple[PartitionPlan, list, list]:
        offloaded = [n for n in saved_list if self.decisions.get(n) is Decision.OFFLOAD and not is_primal(n)
                     and isinstance(n.meta.get("val"), torch.Tensor)]
        plan = PartitionPlan(
            saved=tuple(n.name for n in saved_list),
            recomputed=tuple(n.name for n in recomputed),
            offloaded=tuple(n.name for n in offloaded),
            saved_bytes=self.storage_bytes(saved_list),
            offloaded_bytes=self.storage_bytes(offloaded),
            recompute_flops=sum(self.flops[self.index[n]] for n in recomputed),
            reasons=tuple((n.name, self.reason(n)) for n in saved_list),
            budget=budget,
            recompute_budget=recompute_budget,
            note=note,
        )
        return plan, saved_list, offloaded

    def build(self, saved: set, **plan_fields) -> tuple[fx.GraphModule, fx.GraphModule, PartitionPlan]:
        """Forward and backward modules for this set of saved values, and the plan (`plan`'s
        keyword fields: budgets, note)."""
        from .offload import offload_saved

        saved_list, recomputed, backward_needs = self._backward_needs(saved)
        plan, saved_list, offloaded = self._plan(saved_list, recomputed, **plan_fields)
        # fwd_required holds the random draws and runtime asserts the forward must make, and is closed under inputs.
        forward_needs = self.fwd_required | ancestors(saved_list, stop=self.fwd_required)
        forward = extract_graph(self.module, self.primals, self.fwd_outputs + saved_list, needed=forward_needs)
        backward = extract_graph(self.module, saved_list + self.tangents, self.bwd_outputs, needed=backward_needs,
                                 on_demand=set(recomputed))
        if offloaded:
            offload_saved(forward, backward, [n.name for n in offloaded], self.num_fwd_outputs)
        return forward, backward, plan


def _long_chain(node: fx.Node, chain_depth: dict, can_save: bool) -> Optional[str]:
    """Why recomputing `node` would redo too long a chain of cheap ops, or None. `chain_depth`
    (filled in graph order) counts the cheap ops back to the nearest value the forward keeps;
    views and getitems are free; a node refused here starts a new chain. A node that cannot
    be saved (a tuple) is never refused: its getitems are."""
    depth = max((chain_depth.get(a, 0) for a in node.all_input_nodes), default=0)
    if node.op == "call_function" and node.target is not operator.getitem and not is_view(node):
        depth += 1
    if depth > MAX_RECOMPUTE_CHAIN and can_save:
        return f"the end of a chain of more than {MAX_RECOMPUTE_CHAIN} cheap ops (recomputing it would redo them all)"
    chain_depth[node] = depth
    return None


_CASTS = (torch.ops.prims.convert_element_type.default, torch.ops.aten._to_copy.default)


def _read_by_backward_matmul(node: fx.Node, backward_only: set, any_value: bool) -> Optional[str]:
    """Why the default plan saves `node` rather than recomputing it: a matmul, convolution or
    attention of the backward reads it (through views), so recomputed it would need a kernel
    of its own every backward, fused into nothing. Always for a dtype cast of a graph input
    (a weight under autocast: half a weight's bytes, while the weight stays alive anyway;
    GPT-2 small: 49 kernels per step). With `any_value` (a fusing compiler, Inductor, whose
    other recomputes fuse into the backward's kernels) for every value: torch.compile's plan
    for Inductor, e.g. ResNet's ReLU outputs, which its convolutions' backward reads."""
    if node.op != "call_function" or node.target is operator.getitem or is_view(node):
        return None
    if not any_value:
        if node.target not in _CASTS or not node.args or not isinstance(node.args[0], fx.Node):
            return None
        source = node.args[0]
        while is_view(source):
            source = source.args[0]
        if source.op != "placeholder" or is_tangent(source):
            return None
    if _read_through_views(node, lambda user: user in backward_only and is_expensive(user)):
        return "read by a backward matmul/convolution (recomputed, it would need a kernel of its own)"
    return None


def _padding_for_fused_kernels(node: fx.Node) -> Optional[str]:
    """Why a fusing compiler's plan computes a padding in the forward only: recomputed, it fuses
    into its backward readers as a masked load, and inside a reduction that load cannot leave the
    loop (the mask includes the reduced index). GPT-2's loss pads its labels: the backward's
    log-softmax kernel, reading them through the recomputed pad, took 0.61 ms a step on the H200
    against 0.43 ms reading the saved pad (8x513 int64, 33 KB)."""
    if node.op == "call_function" and node.target is torch.ops.aten.constant_pad_nd.default:
        return "a padding (recomputed, it would fuse into the backward's kernels as a masked load)"
    return None


# A reduction is computed in the forward only when its inputs hold at least this many times its
# outputs' bytes (torch's partitioner draws its line at the same ratio).
REDUCTION_RATIO = 4


def _reduction_for_fused_kernels(node: fx.Node) -> Optional[str]:
    """Why a fusing compiler's plan computes a reduction in the forward only: one whose inputs
    hold at least `REDUCTION_RATIO` times its outputs' bytes (a norm's mean and variance, a
    softmax's maximum and sum). Recomputed, it reads its whole input again in a kernel of its own,
    since a reduction does not fuse into its readers as a pointwise op does; saved, it costs
    its small outputs. ResNet-50's plan recomputed 32 of its 53 batch norms' statistics in the
    backward (var_mean over each activation), where torch's saves them: its backward had 2495
    nodes against torch's 1945, 2372 now (benchmarks/RESULTS.md, session 21)."""
    if node.op != "call_function" or node.target is operator.getitem or is_view(node) or is_expensive(node):
        return None
    traits = op_facts(node.target)
    if traits.pointwise:
        return None
    out = tensor_bytes(node.meta.get("val"))
    read = sum(tensor_bytes(arg.meta.get("val")) for arg in node.all_input_nodes)
    if not out or REDUCTION_RATIO * out > read:
        return None
    return "a reduction (recomputed, it would read its whole input again in a kernel of its own)"


def _read_through_views(node: fx.Node, reads: Callable[[fx.Node], bool]) -> bool:
    """Whether a reader of `node`, directly or through views of it, is one `reads` accepts."""
    stack = list(node.users)
    while stack:
        user = stack.pop()
        if is_view(user):
            stack.extend(user.users)
        elif reads(user):
            return True
    return False


def _read_through_views_only(node: fx.Node) -> bool:
    """Whether `node`'s save edge takes the tie-break (one unit more of the cut's scaled
    capacities): `node` is computed by a fusing compiler's own kernels (no view, no matmul or
    convolution), every reader of it is a view, and a matmul or convolution reads one of those
    views. Of two equal cuts the plan then saves the view (the ``[B*T, C]`` view a matmul
    reads) rather than its base: Inductor writes the matmul's operand in the layout the matmul
    wants, and a saved base besides as a second buffer in a layout of its own choosing
    (ConvNeXt-T on the H200: 34 such kernels, 3.3 ms of a 21 ms step). A matmul's own output
    stays the value saved: a view of it is free."""
    if is_view(node) or is_expensive(node) or not node.users or not all(is_view(user) for user in node.users):
        return False
    return _read_through_views(node, is_expensive)


def _can_recompute(node: fx.Node) -> bool:
    """Safe to recompute: neither `node` nor, for a getitem, the op it reads from is unsafe."""
    if unsafe_to_recompute(node) is not None:
        return False
    parent = node.args[0] if node.target is operator.getitem else None
    return parent is None or unsafe_to_recompute(parent) is None


def split_with_plan(joint_module: fx.GraphModule, *, num_fwd_outputs: int, mutated_inputs=frozenset(),
                    transient_inputs=frozenset(),
                    fusing_compiler: bool = False, policy: Optional[Policy] = None,
                    memory_budget: Optional[float] = None, recompute_budget: Optional[float] = None,
                    save_matmul_inputs: Optional[bool] = None, outputs_kept: bool = False,
                    ) -> tuple[fx.GraphModule, fx.GraphModule, PartitionPlan]:
    """`min_cut_rematerialization_partition` with what the pipeline knows passed explicitly,
    returning the plan too. `mutated_inputs`: names of the primals the runtime overwrites
    after the forward (saved only where the backward reads them itself). `transient_inputs`:
    names of the primals that are not parameters or Dynamo's static inputs (saved at their
    bytes; the others are free: the caller keeps them). `fusing_compiler`:
    the compiler fuses kernels (the default of `save_matmul_inputs`). `outputs_kept`: the
    caller keeps the forward's outputs until the backward (a region's, which its caller's
    graph holds: the next block's operand), so saving one costs no bytes."""
    if memory_budget is not None and recompute_budget is not None:
        raise BadArgument("min_cut_rematerialization_partition got both memory_budget and recompute_budget",
                          "partition", "pass one: memory_budget bounds saved bytes, recompute_budget bounds "
                          "recompute FLOPs")
    budgeted = memory_budget is not None or recompute_budget is not None
    if save_matmul_inputs is None:
        save_matmul_inputs = fusing_compiler
    network = JointNetwork(joint_module, num_fwd_outputs, policy, price_expensive=budgeted,
                           save_matmul_inputs=save_matmul_inputs, fusing_compiler=fusing_compiler,
                           mutated_inputs=frozenset(mutated_inputs), transient_inputs=frozenset(transient_inputs),
                           outputs_kept=outputs_kept)
    if memory_budget is not None:
        saved, budget, note = saved_for_budget(network, memory_budget)
        return network.build(saved, budget=budget, note=note)
    if recompute_budget is not None:
        saved, budget, note = saved_for_recompute_budget(network, recompute_budget)
        return network.build(saved, recompute_budget=budget, note=note)
    return network.build(network.cut(TIE_BREAK_LAM))


def min_cut_rematerialization_partition(joint_module: fx.GraphModule, _joint_inputs=None, compiler: str = "inductor",
                                        *, num_fwd_outputs: int, policy: Optional[Policy] = None,
                                        memory_budget: Optional[float] = None,
                                        recompute_budget: Optional[float] = None,
                                        save_matmul_inputs: Optional[bool] = None,
                                        static_lifetime_input_indices=None):
    """Split a joint graph saving as few bytes as a min cut allows
    (functorch's ``min_cut_rematerialization_partition`` calling convention).

    Cheap ops (pointwise, views, reductions, norms, indexing) may be recomputed in the
    backward; matmuls, convolutions, attention, random and side-effecting ops never are,
    unless `policy` says RECOMPUTE (random and side-effecting ops: never). At most one budget:
    `memory_budget` (bytes as an int, or a float fraction in [0, 1] of the default partition's
    saved bytes) gets the least recompute whose saved bytes fit; `recompute_budget` (FLOPs as an
    int, or a float fraction in [0, 1] of the forward's FLOPs) the fewest saved bytes whose
    recompute FLOPs fit, ``0`` meaning "recompute no arithmetic, only views". Under either,
    matmuls, convolutions and attention are priced at their FLOPs instead of banned: see
    `budget.py`. `save_matmul_inputs`: save rather than recompute every value a backward
    matmul, convolution or attention reads (default: when the compiler fuses kernels, as
    Inductor does, so other recomputes fuse into the backward's kernels; False recomputes them
    too, for less memory and more kernels). Same output convention as `default_partition`.
    Through aotgraph's pipeline it runs as `split_with_plan`, whose plan becomes
    ``Partition.plan``. `static_lifetime_input_indices` is functorch's and is not used.
    """
    return split_with_plan(joint_module, num_fwd_outputs=num_fwd_outputs, policy=policy,
                           memory_budget=memory_budget, recompute_budget=recompute_budget,
                           save_matmul_inputs=save_matmul_inputs)[:2]


min_cut_rematerialization_partition.aotgraph_split = split_with_plan
