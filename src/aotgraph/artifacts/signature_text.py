"""A `Signature` as text (what ``print(joint.signature)`` shows): a table of the flat inputs,
one of the flat outputs, and the pytree structure of both in a compact form.

Inputs: position, shape, dtype, requires_grad, what the program mutates (data, metadata, the
storage's size).
Outputs: position, shape, dtype, requires_grad, what the output aliases (an input, an
earlier output). Non-tensor leaves show their constant. The structure writes each leaf
as ``*`` and a run of more than three leaves as ``*xN``: ``((*x8), {})``.
"""
from __future__ import annotations

from itertools import groupby

from torch.utils._pytree import TreeSpec

_LEAF_RUN = 3  # longer runs of sibling leaves are written *xN


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns, two spaces apart, indented; a row shorter than the header (a
    constant) does not widen the columns its last cell runs across."""
    full = [header, *(row for row in rows if len(row) == len(header))]
    widths = [max(len(row[i]) for row in full) for i in range(len(header))]
    return ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
            for row in [header, *rows]]


def _tensor_cells(info) -> tuple[str, str, str]:
    meta = info.meta
    return str(list(meta.shape)), str(meta.dtype).replace("torch.", ""), "yes" if meta.requires_grad else "no"


def _mutation(info) -> str:
    kinds = [kind for kind, mutated in (("data", info.mutates_data), ("metadata", info.mutates_metadata)) if mutated]
    if info.mutates_with_grad:
        kinds[0] += " (recorded by autograd)"
    resize = info.storage_resize
    if resize is not None:
        kinds.append(f"storage resized ({'arrives freed, ' if resize.arrives_freed else ''}"
                     f"{resize.bytes_after} bytes after)")
    return ", ".join(kinds) or "-"


def _alias(info) -> str:
    if info.is_input:
        return f"is input {info.base_input}"
    if info.base_input is not None:
        return f"view of input {info.base_input}"
    if info.base_output is not None:
        return f"view of output {info.base_output}"
    return "-"


def _leaf_rows(infos, last_cell) -> list[tuple[str, ...]]:
    return [(str(i), *_tensor_cells(info), last_cell(info)) if info.is_tensor else (str(i), f"constant {info.constant!r}")
            for i, info in enumerate(infos)]


def format_tree(spec: TreeSpec) -> str:
    """`spec` with leaves as ``*``: tuples ``(...)``, lists ``[...]``, dicts ``{'key': ...}``,
    other containers ``Name(...)``; runs of more than three sibling leaves as ``*xN``."""
    if spec.is_leaf():
        return "*"
    children = [format_tree(child) for child in spec.children()]
    if spec.type is dict:
        return "{" + ", ".join(f"{key!r}: {child}" for key, child in zip(spec.context, children)) + "}"
    parts: list[str] = []
    for is_leaf, run in groupby(children, key=lambda child: child == "*"):
        run = list(run)
        parts += [f"*x{len(run)}"] if is_leaf and len(run) > _LEAF_RUN else run
    inner = ", ".join(parts)
    if spec.type is tuple:
        return f"({inner},)" if len(children) == 1 else f"({inner})"
    if spec.type is list:
        return f"[{inner}]"
    name = getattr(spec.context, "__name__", None) or spec.type.__name__  # a namedtuple's context is its class
    return f"{name}({inner})"


def _tensors(leaves) -> str:
    count = sum(leaf.is_tensor for leaf in leaves)
    return f"{count} tensor" if count == 1 else f"{count} tensors"


def format_signature(signature) -> str:
    """The text of a `Signature`: inputs, outputs, structure (see the module docstring)."""
    inputs, outputs = signature.inputs, signature.outputs
    lines = [f"inputs: {len(inputs)} ({_tensors(inputs)})"]
    lines += _table(("#", "shape", "dtype", "requires_grad", "mutated"), _leaf_rows(inputs, _mutation))
    lines.append(f"outputs: {len(outputs)} ({_tensors(outputs)})")
    lines += _table(("#", "shape", "dtype", "requires_grad", "aliases"), _leaf_rows(outputs, _alias))
    lines.append(f"structure: in {format_tree(signature.in_spec)} -> out {format_tree(signature.out_spec)}")
    return "\n".join(lines)
