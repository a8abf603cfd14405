"""The program's ``requires_grad_()`` on its own inputs, before it reads them.

``x.requires_grad_(True)`` (or ``x.requires_grad = ...``) on a tensor input changes the caller's
tensor in eager: it requires grad from then on, and what the program computes from it after
carries gradients to it. Where the program sets the flag before any op reads the input, the
whole capture sees the input with its new flag, so the runtime sets the caller's flag the same way
before the graphs run (`InputInfo.sets_requires_grad`) and everything else follows as for an input
that arrived so. Set after a read, the reads before would have to see the old flag and the reads
after the new one: refused (`capture._requires_grad_changes`). The watch runs only in a second
walk over the program, which `capture` makes where the first saw an input's flag change.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.fx as fx

from ..torch_private.dispatch import CaptureFunctionMode

__all__ = ["RequiresGradFlags"]

_FLAG_SETTERS = (torch.Tensor.requires_grad_, torch.Tensor.requires_grad.__set__)


class RequiresGradFlags(CaptureFunctionMode):
    """While the program runs: for each tensor input whose flag it sets, whether an op had read
    the input before the last time it did (`node_of`: the recorder's node of each tensor; an
    input not read is still its placeholder, with no users)."""

    def __init__(self, program_fakes: Sequence[torch.Tensor], placeholders: Sequence[fx.Node], node_of: dict):
        super().__init__()
        self.placeholders = {id(f): p for f, p in zip(program_fakes, placeholders)}
        self.node_of = node_of
        self.read_before_set: dict[str, bool] = {}  # placeholder name -> read before its last flag set

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _FLAG_SETTERS and args:
            placeholder = self.placeholders.get(id(args[0]))
            if placeholder is not None:
                self.read_before_set[placeholder.name] = bool(placeholder.users) or (
                    self.node_of.get(id(args[0])) is not placeholder)
        return func(*args, **(kwargs or {}))

    def set_unread(self, name: str) -> bool:
        """Whether the program set the flag of input `name` before reading it (and never after)."""
        return self.read_before_set.get(name) is False
