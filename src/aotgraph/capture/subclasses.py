"""Tensor subclasses at the boundary of a compiled function: flattened to their inner tensors
for capture, rebuilt around the compiled graphs, gradients included.

A traceable wrapper subclass (``__tensor_flatten__`` / ``__tensor_unflatten__``: DTensor,
TwoTensor) among the flat inputs is replaced by its inner tensors; `SubclassProgram` is the
program over those: it rebuilds each input, runs the user's program (the subclass's
``__torch_dispatch__`` turns each op into ops on inner tensors, which the capture records,
collectives included) and returns the inner tensors of each subclass output. The graphs are
plain; `subclass_run` wraps the compiled entry so the caller passes and gets subclasses.

Gradients cross the boundary through two autograd Functions, in capture and at run time
alike: `_Unwrap` (a subclass -> its inner tensors; backward rebuilds the gradient in that
subclass's layout) and `_Wrap` (inner tensors -> a subclass; backward flattens the incoming
gradient). The gradient of an output, and the one eager computes for an input, are brought to
the layout the graph assumed (that of the output and of the input, as the fake run produced
them) by the subclass's own ``__coerce_same_metadata_as_tangent__`` (DTensor redistributes);
a gradient of another type is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from ..errors import UnsupportedOp
from ..torch_private.subclasses import is_traceable_wrapper_subclass

__all__ = ["SubclassLayout", "SubclassOutputs", "SubclassProgram", "subclass_layouts", "inner_example_args",
           "subclass_run", "refuse_subclass_outputs"]

_PLAIN_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)


@dataclass(frozen=True)
class SubclassLayout:
    """How one subclass value is flattened and rebuilt: its class, ``__tensor_flatten__``'s
    names (`tensor_attrs`: the inner tensors, in order; `opaque`: inner values that are not
    tensors, such as DTensor's device mesh, kept as they are) and context, its outer shape."""

    cls: type
    tensor_attrs: tuple[str, ...]
    opaque: tuple[tuple[str, Any], ...]
    ctx: Any
    outer_size: tuple[int, ...]
    outer_stride: tuple[int, ...]

    @staticmethod
    def of(value: torch.Tensor) -> "SubclassLayout":
        names, ctx = value.__tensor_flatten__()
        tensor_attrs, opaque = [], []
        for name in names:
            inner = getattr(value, name)
            if isinstance(inner, torch.Tensor):
                if is_traceable_wrapper_subclass(inner):
                    raise UnsupportedOp(
                        f"{type(value).__name__}.{name} is itself a {type(inner).__name__}: nested tensor subclasses "
                        "are not flattened yet", "capture", "pass the outer subclass's inner tensors instead")
                tensor_attrs.append(name)
            else:
                opaque.append((name, inner))
        return SubclassLayout(type(value), tuple(tensor_attrs), tuple(opaque), ctx, tuple(value.shape),
                              tuple(value.stride()))

    def key(self) -> tuple:
        """What the compiled graphs depend on, hashable."""
        return (self.cls, self.tensor_attrs, _hashable(self.opaque), _hashable(self.ctx), self.outer_size,
                self.outer_stride)

    def inner_tensors(self, value: torch.Tensor) -> list[torch.Tensor]:
        return [getattr(value, name) for name in self.tensor_attrs]

    def rebuild(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        inner = dict(zip(self.tensor_attrs, tensors))
        inner.update(self.opaque)
        return self.cls.__tensor_unflatten__(inner, self.ctx, self.outer_size, self.outer_stride)


def _hashable(value: Any) -> Any:
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)


class SubclassOutputs(UnsupportedOp):
    """The program returns a tensor subclass though it was captured as a plain program: the
    entry points capture it again as a `SubclassProgram`."""


def refuse_subclass_outputs(flat_out: Sequence[Any]) -> None:
    """Raise `SubclassOutputs` if an output leaf is a tensor subclass (a plain capture cannot return it)."""
    for position, value in enumerate(flat_out):
        if is_traceable_wrapper_subclass(value):
            raise SubclassOutputs(f"output leaf {position} is a {type(value).__name__} (a tensor subclass)", "capture",
                                  "compile it through aot_function/aot_module/torch.compile, which flatten tensor "
                                  "subclasses to their inner tensors")


def subclass_layouts(flat_args: Sequence[Any]) -> Optional[tuple[Optional[SubclassLayout], ...]]:
    """The layout of each subclass leaf (None for other leaves); None when there is none."""
    if all(type(a) in _PLAIN_TENSOR_TYPES or not isinstance(a, torch.Tensor) for a in flat_args):
        return None
    layouts = tuple(SubclassLayout.of(a) if is_traceable_wrapper_subclass(a) else None for a in flat_args)
    return layouts if any(layouts) else None


def inner_example_args(flat_args: Sequence[Any], layouts: Sequence[Optional[SubclassLayout]]) -> list:
    """The flat inputs of `SubclassProgram` to compile for: each subclass replaced by its inner
    tensors, as leaves that require grad where the subclass does (its gradient is theirs)."""
    inner_args = []
    for value, layout in zip(flat_args, layouts):
        if layout is None:
            inner_args.append(value)
            continue
        for tensor in layout.inner_tensors(value):
            leaf = tensor.detach()
            inner_args.append(leaf.requires_grad_() if value.requires_grad and leaf.is_floating_point() else leaf)
    return inner_args


def _flattened(values: Sequence[Any], layouts: Sequence[Optional[SubclassLayout]], alias: bool) -> list:
    """`values` with each subclass (its layout given) replaced by its inner tensors, through
    `_Unwrap` where a gradient must flow back; `alias`: new tensor objects on the same memory."""
    flat = []
    for value, layout in zip(values, layouts):
        if layout is None:
            flat.append(value)
        elif value.requires_grad and torch.is_grad_enabled():
            flat.extend(_Unwrap.apply(layout, alias, value))
        else:
            inner = layout.inner_tensors(value)
            flat.extend([t.detach() for t in inner] if alias else inner)
    return flat


def _rebuilt(flat: Sequence[Any], layouts: Sequence[Optional[SubclassLayout]]) -> list:
    """The inverse of `_flattened`: each layout's inner tensors rebuilt into its subclass, through
    `_Wrap` where a gradient must flow back."""
    values, position = [], 0
    for layout in layouts:
        if layout is None:
            values.append(flat[position])
            position += 1
            continue
        inner = flat[position:position + len(layout.tensor_attrs)]
        position += len(layout.tensor_attrs)
        if torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in inner):
            values.append(_Wrap.apply(layout, *inner))
        else:
            values.append(layout.rebuild(inner))
    return values


class _Unwrap(torch.autograd.Function):
    """A subclass -> its inner tensors (aliases of them with `alias`: the real subclass's own
    inner tensors must not take this Function's history); backward: the inner gradients
    rebuilt as a gradient of the subclass's layout."""

    @staticmethod
    def forward(ctx, layout: SubclassLayout, alias: bool, value: torch.Tensor):
        ctx.layout = layout
        ctx.inner = inner = layout.inner_tensors(value)
        return tuple(t.detach() for t in inner) if alias else tuple(inner)

    @staticmethod
    def backward(ctx, *grads):
        if all(g is None for g in grads):
            return None, None, None
        # An inner tensor without a gradient (unused): zeros, as eager's sum would add; one that
        # cannot have one (a jagged tensor's integer offsets, which name its ragged size: autograd
        # hands zeros for them) as it is.
        inner = [t if not (t.is_floating_point() or t.is_complex()) else g if g is not None else torch.zeros_like(t)
                 for g, t in zip(grads, ctx.inner)]
        grad = ctx.layout.rebuild(inner)
        return None, None, grad.detach() if grad.requires_grad else grad


class _Wrap(torch.autograd.Function):
    """Inner tensors -> the subclass of `layout`; backward: the incoming gradient brought to
    `layout` (see the module's docstring), flattened."""

    @staticmethod
    def forward(ctx, layout: SubclassLayout, *inner):
        ctx.layout = layout
        value = layout.rebuild(inner)
        return value.detach() if value.requires_grad else value

    @staticmethod
    def backward(ctx, grad):
        layout = ctx.layout
        return (None, *layout.inner_tensors(_in_layout(grad, layout)))


def _in_layout(grad: torch.Tensor, layout: SubclassLayout) -> torch.Tensor:
    """`grad` coerced to `layout`'s metadata, or refused."""
    if type(grad) is not layout.cls:
        raise UnsupportedOp(
            f"a gradient for a {layout.cls.__name__} arrived as a {type(grad).__name__}", "runtime",
            f"make the backward produce {layout.cls.__name__} gradients, or call the compiled function on plain tensors")
    coerce = getattr(grad, "__coerce_same_metadata_as_tangent__", None)
    if coerce is not None:
        coerced = coerce(layout.ctx)
        if coerced is not None:
            grad = coerced
    if tuple(grad.shape) != layout.outer_size:
        raise UnsupportedOp(f"a {layout.cls.__name__} gradient has shape {tuple(grad.shape)}, the value had "
                            f"{layout.outer_size}", "runtime", "report this program to aotgraph")
    return grad


class SubclassProgram:
    """``program(*inner_flat) -> inner outputs``: `fn` over the flat inputs `in_layouts`
    describes (``(args, kwargs) = tree_unflatten(leaves, in_spec)``), each subclass input
    rebuilt from its inner tensors, each subclass output flattened. The first call (the
    capture) fixes `out_layouts` and `out_spec`, which `outputs` uses to rebuild the user's
    outputs from the compiled graphs' inner outputs."""

    def __init__(self, fn: Callable, in_spec, in_layouts: tuple[Optional[SubclassLayout], ...]):
        self.fn, self.in_spec, self.in_layouts = fn, in_spec, in_layouts
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)
        self.out_layouts: Optional[tuple] = None
        self.out_spec = None

    def __call__(self, *inner_flat):
        inputs = _rebuilt(inner_flat, self.in_layouts)
        args, kwargs = tree_unflatten(inputs, self.in_spec)
        flat_out, out_spec = tree_flatten(self.fn(*args, **kwargs))
        _refuse_layout_changes(inputs, self.in_layouts)
        layouts = tuple(SubclassLayout.of(o) if is_traceable_wrapper_subclass(o) else None for o in flat_out)
        if self.out_layouts is None:
            self.out_layouts, self.out_spec = layouts, out_spec
        return tuple(_flattened(flat_out, layouts, alias=False))

    def outputs(self, inner_outputs: Sequence[Any]) -> Any:
        return tree_unflatten(_rebuilt(inner_outputs, self.out_layouts), self.out_spec)


def _refuse_layout_changes(inputs: Sequence[Any], layouts: Sequence[Optional[SubclassLayout]]) -> None:
    """Refuse a program that changed a subclass input's sizes or strides in place (``t_``,
    ``transpose_``, ``unsqueeze_``): the runtime writes data back into the inner tensors but does
    not rebuild the caller's subclass object in another layout (it would silently keep the old one)."""
    for position, (value, layout) in enumerate(zip(inputs, layouts)):
        if layout is not None and (tuple(value.shape), tuple(value.stride())) != (layout.outer_size,
                                                                                 layout.outer_stride):
            raise UnsupportedOp(
                f"the program changes the sizes or strides of flat input {position}, a {layout.cls.__name__} "
                f"(a tensor subclass), in place: {layout.outer_size} -> {tuple(value.shape)} (an in-place view op "
                "such as t_, transpose_, unsqueeze_)", "capture",
                "use the out-of-place view (x = x.t()) inside the compiled function, or change the layout outside it")


def subclass_run(program: SubclassProgram, run: Callable) -> Callable:
    """The compiled entry's `run` (over `program`'s inner inputs) as a function of the user's
    flat inputs, subclasses in and out."""
    layouts = program.in_layouts

    def run_with_subclasses(*flat_args):
        return program.outputs(run(*_flattened(flat_args, layouts, alias=True)))

    return run_with_subclasses
