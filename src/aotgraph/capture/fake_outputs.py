"""A per-capture memo of the fake mode's results: op + argument layouts -> how to build the outputs.

A program repeats itself (twelve layers, then their backward), and the fake mode's own
dispatch cache pays per op for a key built from every argument's metadata in Python and
for rebuilding the outputs through its dispatcher. This memo keys each fake tensor's
layout once, when it is first seen or made, and builds a repeated op's outputs directly:
a fresh meta tensor (on the input's storage for views) wrapped as a FakeTensor, or the
argument itself for in-place ops. Each recipe is checked once against the fake mode's
real answer before it is stored; anything it cannot reproduce exactly is left to the
fake mode, every time.

With symbolic sizes (a shape environment) a layout keys each SymInt by its expression, and
a SymInt argument (``view(x, [s0 * 4, -1])``) by its expression too: equal expressions are
equal sizes, so the fake mode's answer (and every guard it added to the shape environment
while computing it) holds for a repeat as it did the first time. The rebuilt outputs carry the
first answer's SymInts. An answer with a symbol its arguments do not have (a fresh unbacked
size, ``nonzero``) is never replayed (switch ``symbolic_fake_memo``).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Optional

import sympy
import torch
from .. import config
from ..graph.sizes import size_keys
from ..graph.ops import ON_META_KERNEL_FULL_PRECISION_ON_CPU, op_facts
from .eager_layouts import INPUT_FORMAT_OUTPUT, with_eager_layout
from .layout_rules import RULES as LAYOUT_RULES
from .symbolic_layout_rules import FRESH, RULES as SYMBOLIC_LAYOUT_RULES, sizes_of as symbolic_sizes_of
from ..torch_private.dispatch import DisableTorchDispatch, dispatch_keys, no_python_dispatcher
from ..torch_private.symbolic import FloorDiv, node_expression
from ..torch_private.fake import (FakeTensor, FakeTensorConfig, FakeTensorMode, in_kernel_invocation_manager,
                                make_subclass, set_throw_on_mutable_data_ptr, set_warn_deprecated_on_mutable_data_ptr)

aten = torch.ops.aten

# Scalar argument types whose value (with the type: 1 and 1.0 promote differently) fully
# describes them in a key. Anything else (SymInts, storages, callables) leaves the op to the fake mode.
_PLAIN_SCALARS = frozenset({int, float, bool, complex, str, type(None), torch.dtype, torch.device, torch.layout,
                            torch.memory_format})
_SEQUENCES = (list, tuple, torch.Size)
_ARG = 0  # output recipe kinds: an argument returned as it is ...
_NEW = 1  # ... or a new tensor (on an argument's storage for views)
_NONE = 2


class FakeOutputs:
    """``run(func, args, kwargs, dispatch)``: ``dispatch(func, args, kwargs)`` (the fake mode),
    or the same outputs built from a recipe recorded on an earlier call with the same key."""

    def __init__(self, fake_mode: FakeTensorMode):
        self.fake_mode = fake_mode
        self.recipes: dict[tuple, Optional[tuple]] = {}  # key -> recipe; None: the fake mode answers
        self.new_fake: dict[torch.device, Callable] = {}  # device -> meta tensor -> FakeTensor
        # id(fake) -> (fake, layout): the fake is kept alive so that its id is not reused.
        self.layout_of: dict[int, tuple] = {}
        self.memo_on = config.enabled("fake_memo")
        self.symbolic_on = config.enabled("symbolic_fake_memo")
        self.meta_answers_on = config.enabled("meta_kernel_answers")
        self.strided_builds_on = config.enabled("strided_builds")
        self.layout_rules_on = config.enabled("layout_rules")
        self.symbolic_rules_on = config.enabled("symbolic_layout_rules")
        self.misses_apart_on = config.enabled("fake_misses_without_python_dispatcher")
        self.key_is_symbolic = False  # of the last key built
        self.ruled_numels: dict = {}  # of the last rule's fresh outputs: id -> elements of its storage
        self.shape_env = fake_mode.shape_env if self.symbolic_on else None
        self.fresh_layouts_on = config.enabled("layouts_after_replacements")
        self.replacements_seen = getattr(self.shape_env, "_replacements_version_counter", None)

    def run(self, func, args: tuple, kwargs: dict, dispatch: Callable) -> Any:
        if func in INPUT_FORMAT_OUTPUT:
            dispatch = self._in_eager_layout(dispatch)
        if not self.memo_on:
            return dispatch(func, args, kwargs)
        facts = op_facts(func)
        if not facts.fake_memo:
            out = dispatch(func, args, kwargs)
            if func._schema.is_mutable:
                self._forget_layouts(args, kwargs)
            return out
        tensors: list = []
        key = self._key(func, args, kwargs, tensors)
        if key is None:
            out = dispatch(func, args, kwargs)
            if func._schema.is_mutable:
                self._forget_layouts(args, kwargs)
            return out
        recipe = self.recipes.get(key, _MISSING)
        if recipe is _MISSING:
            out = None
            if func is aten._native_batch_norm_legit_functional.default:
                out = self._functional_batch_norm_outputs(args, kwargs, dispatch)
            elif self.layout_rules_on and func in LAYOUT_RULES and not self.key_is_symbolic:
                out = self._layout_rule_outputs(func, args, kwargs, tensors)
            elif self.symbolic_rules_on and self.key_is_symbolic and func in SYMBOLIC_LAYOUT_RULES:
                out = self._symbolic_rule_outputs(func, args, kwargs, tensors)
                if out is not None:  # built as `_build` builds: its recipe needs no check
                    recipe = self.recipes[key] = self._recipe_of(func, out, tensors, key, self.ruled_numels)
                    return out
            if out is None and self.meta_answers_on and facts.meta_kernel_answer and not self.key_is_symbolic:
                # (symbolic sizes: the fake mode's rules answer, with the shape environment)
                out = self._meta_kernel_outputs(func, args, kwargs, tensors)
            elif out is None and (func in _FAKE_RULE_WITHOUT_PYTHON_DISPATCHER
                                  or (self.misses_apart_on and not self.key_is_symbolic)):
                with no_python_dispatcher():
                    out = dispatch(func, args, kwargs)
            if out is None:
                out = dispatch(func, args, kwargs)
            recipe = self.recipes[key] = self._recipe_of(func, out, tensors, key)
            return out
        if recipe is None:
            out = dispatch(func, args, kwargs)
            if func._schema.is_mutable:
                self._forget_layouts(args, kwargs)
            return out
        return self._build(recipe, tensors)

    # ---- keys -------------------------------------------------------------------
    def _key(self, func, args, kwargs, tensors: list) -> Optional[tuple]:
        """The memo's key of the op; `key_is_symbolic` then says whether a symbolic size is in it."""
        self.key_is_symbolic = False
        if self.fresh_layouts_on and self.shape_env is not None:
            self._forget_replaced_layouts()
        parts = [func, torch.get_default_dtype(), torch.is_inference_mode_enabled()]
        if not self._add_parts(args, parts, tensors):
            return None
        if kwargs:
            for name, value in kwargs.items():
                parts.append(name)
                if not self._add_parts((value,), parts, tensors):
                    return None
        # A factory op without an explicit device reads the default device: left to the fake mode.
        return tuple(parts) if tensors or kwargs.get("device") is not None else None

    def _add_parts(self, values, parts: list, tensors: list) -> bool:
        layout_of = self.layout_of
        for value in values:
            kind = type(value)
            if kind is FakeTensor:
                known = layout_of.get(id(value))
                layout = known[1] if known is not None else self._layout(value)
                if layout is None:
                    return False
                if layout[-1]:
                    self.key_is_symbolic = True
                parts.append(layout)
                tensors.append(value)
            elif kind in _PLAIN_SCALARS:
                parts.append(kind)
                parts.append(value)
            elif (kind is torch.SymInt or kind is torch.SymFloat) and self.symbolic_on:
                # (a SymFloat: a float Dynamo passes as an input, batch norm's momentum and eps)
                parts.append(kind)
                parts.append(node_expression(value.node))
                self.key_is_symbolic = True
            elif kind in _SEQUENCES:
                parts.append(kind)
                parts.append(len(value))
                if not self._add_parts(value, parts, tensors):
                    return False
            else:
                return False
        return True

    def _forget_replaced_layouts(self) -> None:
        """Once the shape environment replaces a symbol (a guard ``Eq(s2, 64)``: a model's
        feature size checked against a layer norm's), the layouts remembered before name it
        still: they are forgotten, and computed again with the replacement (so that a rule
        comparing that size with 64 answers; switch ``layouts_after_replacements``). Where torch
        does not count its replacements (2.11), they stay as they were."""
        version = getattr(self.shape_env, "_replacements_version_counter", None)
        if version != self.replacements_seen:
            self.replacements_seen = version
            self.layout_of.clear()

    def _layout(self, fake) -> Optional[tuple]:
        """What the output of an op may depend on, for a fake tensor of this mode; None: not keyable."""
        if fake.fake_mode is not self.fake_mode or fake.constant is not None or fake.layout != torch.strided:
            return None
        shape, stride, offset = tuple(fake.shape), fake.stride(), fake.storage_offset()
        if not all(type(s) is int for s in (*shape, *stride, offset)):
            if not self.symbolic_on:
                return None  # symbolic sizes: the fake mode's shape environment decides
            shape, stride, offset = size_keys(shape), size_keys(stride), size_keys((offset,))[0]
            symbolic = True
        else:
            symbolic = False
        layout = (fake.dtype, shape, stride, offset, fake.fake_device, fake.is_conj(), fake.is_neg(), symbolic)
        self.layout_of[id(fake)] = (fake, layout)
        return layout

    def _forget_layouts(self, args, kwargs) -> None:
        """A mutating op the memo did not answer may have changed its arguments' layouts."""
        for value in (*args, *kwargs.values()):
            for item in value if type(value) in _SEQUENCES else (value,):
                if isinstance(item, torch.Tensor):
                    self.layout_of.pop(id(item), None)

    def _meta_kernel_outputs(self, func, args, kwargs, tensors: list) -> Any:
        """`func`'s outputs from its meta kernel, run on the fake arguments as the fake mode
        runs kernels (meta in the dispatch include set), wrapped as fakes on the arguments' device
        (views keep sharing their argument's storage). For these ops the fake mode would run a
        Python decomposition or reference op by op through its own dispatch instead, several
        times slower (switch ``meta_kernel_answers``). Batch norm of a half-precision input on the CPU only where a
        parameter or running statistic is float32: the meta kernel's statistics are float32,
        as the CUDA kernel's always are, but the CPU kernel's are float32 only in that mixed case
        (autocast's), half otherwise; the fake mode answers the others (it says half for the
        mixed case, which eager does not). None where it does not apply."""
        layouts = [self.layout_of[id(t)][1] for t in tensors]
        devices = {layout[4] for layout in layouts}
        if len(devices) != 1 or any(t._has_symbolic_sizes_strides for t in tensors):
            # (a fake made with a shape environment has symbolic sizes even where each is a
            # constant; C++ meta kernels that read them as plain ints, as slice does, raise)
            return None
        device = devices.pop()
        if func in ON_META_KERNEL_FULL_PRECISION_ON_CPU and device == _CPU and layouts[0][0] in _LOW_PRECISION \
                and (func is aten.native_batch_norm_backward.default
                     or not any(layout[0] == torch.float32 for layout in layouts[1:])):
            return None
        # The Python dispatcher (on for recording) would route the meta kernel's inner ops
        # through Python references too, slower; nothing it computes
        # is recorded, only the layouts of its outputs.
        with in_kernel_invocation_manager(self.fake_mode), no_python_dispatcher():
            out = func(*args, **kwargs)
        if isinstance(out, torch.Tensor):
            return self._as_fake(out, device)
        out = type(out)(o if o is None else self._as_fake(o, device) for o in out)
        return self._eager_layout(func, args, out) if func in INPUT_FORMAT_OUTPUT else out

    def _in_eager_layout(self, dispatch: Callable) -> Callable:
        """`dispatch` with its outputs put in eager's layout (`eager_layouts`)."""
        return lambda func, args, kwargs: self._eager_layout(func, args, dispatch(func, args, kwargs))

    def _eager_layout(self, func, args: tuple, out: tuple) -> tuple:
        if out[0] is None:
            return out
        return with_eager_layout(func, args, out, self._new_fake_on(out[0].fake_device))

    def _new_fake_on(self, device: torch.device) -> Callable:
        """This mode's ``meta -> FakeTensor`` on `device` (`_fake_maker`), made once per device."""
        return self.new_fake.get(device) or self.new_fake.setdefault(device, _fake_maker(self.fake_mode, device))

    def _layout_rule_outputs(self, func, args, kwargs, tensors: list) -> Optional[tuple]:
        """`func`'s outputs as fresh contiguous fakes of the layouts its rule in `layout_rules`
        computes from the arguments, on the first argument's device; None where the rule has no
        answer (switch ``layout_rules``)."""
        layouts = [self.layout_of[id(t)][1] for t in tensors]
        outputs = LAYOUT_RULES[func](args, kwargs, layouts)
        if outputs is None:
            return None
        device = layouts[0][4]
        new_fake = self._new_fake_on(device)
        with DisableTorchDispatch():
            outs = tuple(None if output is None else new_fake(torch.empty(output[0], dtype=output[1], device="meta"))
                         for output in outputs)
        return outs[0] if len(func._schema.returns) == 1 else outs

    def _symbolic_rule_outputs(self, func, args, kwargs, tensors: list) -> Optional[tuple]:
        """`func`'s outputs built from the layouts its rule in `symbolic_layout_rules` computes
        (fresh tensors, or views of an argument's storage); None where the rule has no answer
        (switch ``symbolic_layout_rules``)."""
        layouts = [self.layout_of[id(t)][1] for t in tensors]
        with symbolic_sizes_of(self.fake_mode.shape_env):
            outputs = SYMBOLIC_LAYOUT_RULES[func](args, kwargs, layouts, tensors)
        if outputs is None:
            return None
        device = layouts[0][4] if layouts else torch.device(kwargs["device"])  # (a factory: its device)
        new_fake = self._new_fake_on(device)
        outs = []
        self.ruled_numels = {}
        with DisableTorchDispatch():
            for output in outputs:
                if output is None:
                    outs.append(None)
                    continue
                if output[0] is FRESH:
                    _, shape, stride, numel, dtype = output
                    meta = torch.empty((numel,), dtype=dtype, device="meta").as_strided(shape, stride, 0)
                else:  # a view of an argument's storage
                    _, position, shape, stride, offset = output
                    meta = torch.empty(0, dtype=tensors[position].dtype, device="meta")
                    meta.set_(tensors[position].untyped_storage(), 0, (0,), (1,))
                    meta = meta.as_strided(shape, stride, offset)
                outs.append(new_fake(meta))
                if output[0] is FRESH:
                    self.ruled_numels[id(outs[-1])] = output[3]
        returns = func._schema.returns
        if len(returns) == 1:
            return outs if isinstance(returns[0].type, torch.ListType) else outs[0]
        return tuple(outs)

    def _functional_batch_norm_outputs(self, args, kwargs, dispatch: Callable) -> tuple:
        """Eager's ``_native_batch_norm_legit_functional``: the in-place op's outputs (recorded
        before functionalization, so remembered here), then the new running statistics as fresh
        contiguous tensors like the old ones. Its Python meta kernel costs a batch norm
        decomposition and returns float32 statistics for bfloat16 ones, which eager does not."""
        outs = self.run(aten._native_batch_norm_legit.default, args, kwargs, dispatch)
        running_mean, running_var = args[3], args[4]
        with DisableTorchDispatch():
            mean, var = (torch.empty(t.shape, dtype=t.dtype, device="meta") for t in (running_mean, running_var))
        device = running_mean.fake_device
        new_fake = self._new_fake_on(device)
        return (*outs, new_fake(mean), new_fake(var))

    def empty_strided(self, shape, stride, dtype: torch.dtype, device: torch.device) -> FakeTensor:
        """A fresh fake of this layout, made without a dispatch through the fake mode (a HOP's
        outputs, whose layouts capture already knows)."""
        with DisableTorchDispatch():
            meta = torch.empty_strided(shape, stride, dtype=dtype, device="meta")
        new_fake = self._new_fake_on(device)
        return new_fake(meta)

    def _as_fake(self, out: torch.Tensor, device: torch.device) -> FakeTensor:
        return out if isinstance(out, FakeTensor) else FakeTensor(self.fake_mode, out, device)

    # ---- recipes ----------------------------------------------------------------
    def _recipe_of(self, func, out, tensors: list, key: tuple, numels: Optional[dict] = None) -> Optional[tuple]:
        """How to rebuild `out` from the arguments, checked by rebuilding it; None if it cannot be.
        `numels`: the outputs were built as `_build` builds them, fresh ones on storages of these
        numbers of elements (by the outputs' ids): not checked."""
        if func._schema.is_mutable:
            before = [layout for layout in key if type(layout) is tuple]
            self._forget_layouts(tensors, {})
            after = [self._layout(t) for t in tensors]
            if after != before:
                return None  # the op changed an argument's layout: a recipe could not replay that
        if isinstance(out, FakeTensor):
            items, container = (out,), None
        elif type(out) in _SEQUENCES and out and all(o is None or isinstance(o, FakeTensor) for o in out):
            items, container = tuple(out), type(out)
        else:
            return None
        storages = [t.untyped_storage()._cdata for t in tensors]
        specs, fresh_storages = [], set()
        for item in items:
            if item is None:
                specs.append((_NONE,))
                continue
            position = next((k for k, t in enumerate(tensors) if t is item), None)
            if position is not None:
                specs.append((_ARG, position))
                continue
            layout = self._layout(item)
            if layout is None or layout[5] or layout[6] or item.requires_grad:
                return None
            storage = item.untyped_storage()._cdata
            alias = storages.index(storage) if storage in storages else None
            if alias is None:
                if layout[3] != 0 or storage in fresh_storages:
                    return None
                fresh_storages.add(storage)
            storage_numel = None
            if alias is None and layout[-1] and self.strided_builds_on:
                storage_numel = numels[id(item)] if numels is not None else _storage_numel(item)
            specs.append((_NEW, layout, alias, (tuple(item.shape), item.stride(), item.storage_offset()),
                          storage_numel))
        if self.symbolic_on and _has_new_symbols(specs, key):
            return None  # a fresh unbacked size (nonzero's length): a repeat has its own
        recipe = (container, tuple(specs))
        if numels is not None:
            return recipe
        rebuilt = self._build(recipe, tensors)
        for item, again in zip(items, rebuilt if container else (rebuilt,)):
            if item is not None and not _same_fake(item, again):
                return None
        return recipe

    def _build(self, recipe: tuple, tensors: list) -> Any:
        container, specs = recipe
        outs = []
        for spec in specs:
            kind = spec[0]
            if kind is _ARG:
                outs.append(tensors[spec[1]])
            elif kind is _NEW:
                layout, alias, (shape, stride, offset), storage_numel = spec[1], spec[2], spec[3], spec[4]
                dtype, device = layout[0], layout[4]
                with DisableTorchDispatch():
                    if alias is None and storage_numel is not None:
                        # symbolic sizes (switch ``strided_builds``): a fresh storage of the first
                        # answer's size, then its layout, without recomputing that size from it
                        meta = torch.empty((storage_numel,), dtype=dtype, device="meta").as_strided(shape, stride, 0)
                    elif alias is None:
                        meta = torch.empty_strided(shape, stride, dtype=dtype, device="meta")
                    elif layout[-1] and self.strided_builds_on:
                        # a view with symbolic sizes: as_strided of an empty tensor on the argument's
                        # storage, without set_'s bounds check of the symbolic layout against it
                        meta = torch.empty(0, dtype=dtype, device="meta")
                        meta.set_(tensors[alias].untyped_storage(), 0, (0,), (1,))
                        meta = meta.as_strided(shape, stride, offset)
                    else:  # a view: the layout set once, on the argument's storage
                        meta = torch.empty(0, dtype=dtype, device="meta")
                        meta.set_(tensors[alias].untyped_storage(), offset, shape, stride)
                new_fake = self.new_fake.get(device) or self._new_fake_on(device)  # (a hit's path: no call)
                fake = new_fake(meta)
                self.layout_of[id(fake)] = (fake, layout)
                outs.append(fake)
            else:
                outs.append(None)
        return outs[0] if container is None else container(outs)


@contextlib.contextmanager
def fake_cache_replaced(fake_mode: FakeTensorMode) -> Iterator[None]:
    """The fake mode's own dispatch cache turned off while a capture's memo answers repeats:
    otherwise every op the memo has not seen pays twice for a key and an entry. Restored afterwards; the cache never changes results."""
    enabled = getattr(fake_mode, "cache_enabled", None)
    if enabled is None or not config.enabled("fake_memo"):
        yield
        return
    fake_mode.cache_enabled = False
    try:
        yield
    finally:
        fake_mode.cache_enabled = enabled


_MISSING = object()
_CPU = torch.device("cpu")
_LOW_PRECISION = frozenset({torch.float16, torch.bfloat16})
# Ops the fake mode answers by a rule of its own (convolutions: the output layout of the backend
# eager would pick, cuDNN's channels-last included), run with the Python dispatcher off, as the
# fake mode runs kernels: with it on, the rule's inner tensor ops go through Python too (about
# half the time of a miss); nothing they compute is recorded. With static sizes every miss runs
# so (switch ``fake_misses_without_python_dispatcher``): its meta kernel is then the C++ one eager's
# kernel shares, not torch's Python reference run op by op (arange, index, to_copy: 1-2 ms a miss).
_FAKE_RULE_WITHOUT_PYTHON_DISPATCHER = frozenset({aten.convolution.default, aten.convolution_backward.default})


def _fake_maker(fake_mode: FakeTensorMode, device: torch.device) -> Callable:
    """``meta -> FakeTensor(fake_mode, meta, device)``, made cheaper: a fresh fake's
    Python state is the same for every tensor of one mode and device, so it is copied from a
    prototype instead of rebuilt argument by argument. Checked once against the constructor
    (state and dispatch keys); any difference, or the fake mode's debug tracing, keeps the constructor."""
    def construct(meta):
        return FakeTensor(fake_mode, meta, device)

    if FakeTensorConfig.debug or torch.compiler.is_exporting():
        return construct
    state = dict(vars(construct(torch.empty(0, device="meta"))))
    mark_data_ptr = (set_warn_deprecated_on_mutable_data_ptr if fake_mode._allow_unsafe_data_ptr_access
                     else set_throw_on_mutable_data_ptr)
    
    def copy_prototype(meta):
        fake = make_subclass(FakeTensor, meta, meta.requires_grad, dispatch_device=True, device_for_backend_keys=device)
        mark_data_ptr(fake)
        fake.__dict__.update(state)
        return fake

    expected, fast = construct(torch.empty(2, 3, device="meta")), copy_prototype(torch.empty(2, 3, device="meta"))
    same = (vars(expected) == vars(fast) and type(expected) is type(fast) and expected.device == fast.device
            and dispatch_keys(expected) == dispatch_keys(fast))
    return copy_prototype if same else construct



def _storage_numel(fake: FakeTensor) -> Any:
    """The number of elements `fake`'s storage holds (a SymInt with symbolic sizes), or None
    where its byte size is not a whole number of elements without a floor division."""
    nbytes, itemsize = fake.untyped_storage().nbytes(), fake.element_size()
    if type(nbytes) is int:
        return None
    numel = nbytes // itemsize
    return None if numel.node.expr.has(FloorDiv) else numel


def _has_new_symbols(specs: list, key: tuple) -> bool:
    """Whether an output layout in `specs` has a free symbol that no size in `key` has. An
    output's size written as one of the key's needs no look at its symbols (most outputs: a
    pointwise op's sizes are its argument's)."""
    in_key: set = set()
    _collect_expressions(key, in_key)
    others: set = set()
    for spec in specs:
        if spec[0] is _NEW:
            _collect_expressions(spec[1], others)
    others -= in_key
    if not others:
        return False
    known = set().union(*(expr.free_symbols for expr in in_key))
    return any(not expr.free_symbols <= known for expr in others)


def _collect_expressions(part: Any, into: set) -> None:
    """The sympy expressions (symbolic sizes) in `part`, a layout or a key, nested tuples."""
    if type(part) is tuple:
        for item in part:
            _collect_expressions(item, into)
    elif isinstance(part, sympy.Basic) and not part.is_Number:
        into.add(part)


def _same_fake(a: FakeTensor, b: FakeTensor) -> bool:
    return (a.dtype == b.dtype and size_keys(a.shape) == size_keys(b.shape)
            and size_keys(a.stride()) == size_keys(b.stride())
            and size_keys((a.storage_offset(),)) == size_keys((b.storage_offset(),))
            and a.fake_device == b.fake_device
            and a.requires_grad == b.requires_grad and a.is_conj() == b.is_conj() and a.is_neg() == b.is_neg()
            and _equal_sizes(a.untyped_storage().nbytes(), b.untyped_storage().nbytes()))


def _equal_sizes(a, b) -> bool:
    """Whether two sizes are equal, SymInts by their expressions expanded (``4*s0*(s1 - 1) + 4*s0``
    is ``4*s0*s1``), without a guard."""
    if type(a) is int and type(b) is int:
        return a == b
    a, b = size_keys((a, b))
    return a == b or sympy.expand(a - b) == 0
