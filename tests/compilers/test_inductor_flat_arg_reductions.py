"""``argmax``/``argmin`` over a whole tensor computed from a transposed one, through Inductor.

Inductor returns the index in the order of the memory it reads (torch.compile's too, torch
2.11-2.13); aotgraph hands it a reduction over a flat view instead (switch
``flat_arg_reductions``). Found by the fuzzer (seed 2585: ``argmax(stack([x.t_(), x.t_()]))``)."""
from __future__ import annotations

import pytest
import torch

import aotgraph

PROGRAMS = {
    "argmax of a transposed product": lambda x: torch.argmax(x.t() * 2),
    "argmin of a transposed product": lambda x: torch.argmin(x.t() * -1),
    "argmax of a transposed copy": lambda x: torch.argmax(x.transpose(0, 1).contiguous()),
    "argmax of a stack of transposes": lambda x: torch.argmax(torch.stack([x.t(), x.t()])),
    "argmax along a dimension (unchanged)": lambda x: torch.argmax(x.t() * 2, dim=1),
    "argmax keeping dimensions": lambda x: torch.argmax(x.t() * 2, keepdim=True),
}


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_a_whole_tensor_argmax_of_a_transposed_tensor_equals_eager_through_inductor(name, dynamic):
    program = PROGRAMS[name]
    x = torch.zeros(4, 3)
    x[0, 1] = 5.0  # the largest element: index 4 of x.t() read row by row, 1 in memory order
    x[2, 0] = -5.0
    compiled = aotgraph.aot_function(program, "inductor", dynamic=dynamic)
    for inputs in (x, torch.randn(6, 5)):
        torch.testing.assert_close(compiled(inputs), program(inputs))  # switch off: 1 for 4
