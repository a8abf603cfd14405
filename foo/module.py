
import torch
from math import inf
from math import nan
NoneType = type(None)
import torch
from torch import device
import torch.fx._pytree as fx_pytree
import torch.utils._pytree as pytree

from torch.nn import *
class FxModule(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.load_state_dict(torch.load(r'foo/state_dict.pt'))



    def forward(self, primals_1):
        sin_default = torch.ops.aten.sin.default(primals_1)
        exp_default = torch.ops.aten.exp.default(sin_default);  sin_default = None
        return (exp_default, primals_1, exp_default)

