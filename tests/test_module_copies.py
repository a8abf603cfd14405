"""Copies of compiled modules behave as copies of eager modules: ``copy.deepcopy`` of an
`aot_module` (EMA and target networks, swa_utils' AveragedModel) compiles its own module,
and ``torch.save`` of an `aot_module` or of a module compiled with the aotgraph backend
loads into a module that trains as eager does."""
import copy
import io

import pytest
import torch
import torch.nn as nn

import aotgraph


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2))


def test_a_deep_copy_compiles_its_own_module():
    x = torch.randn(6, 8)
    model = _net()
    compiled = aotgraph.aot_module(model)
    compiled(x).sum().backward()
    copied, reference = copy.deepcopy(compiled), copy.deepcopy(model)
    assert copied.orig_module is not model
    copied.eval()
    reference.eval()  # the copy compiles again for eval: of its own module, so dropout is off there
    torch.testing.assert_close(copied(x), reference(x))
    torch.testing.assert_close(copied.orig_module[1].running_mean, reference[1].running_mean)
    with torch.no_grad():
        for p in copied.parameters():
            p.mul_(0.5)  # the copy's weights are its own
    torch.testing.assert_close(copied(x), _halved(reference)(x))
    model.train()
    assert compiled.training and model[2].training  # the original is untouched


def _halved(module):
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(0.5)
    return module


def test_averaged_model_of_a_compiled_module_averages_as_eager():
    from torch.optim.swa_utils import AveragedModel

    x = torch.randn(6, 8)
    model = _net().eval()
    compiled = aotgraph.aot_module(model)
    averaged, reference = AveragedModel(compiled), AveragedModel(copy.deepcopy(model))
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1)
        averaged.update_parameters(compiled)
        reference.update_parameters(model)
    torch.testing.assert_close(averaged(x), reference(x))


@pytest.mark.parametrize("via", ["aot_module", "backend"])
def test_a_saved_compiled_module_loads_and_runs_as_eager(via, fresh_dynamo):
    x = torch.randn(6, 8)
    model = _net().eval()
    if via == "aot_module":
        compiled = aotgraph.aot_module(model, fw_compiler="eager")
    else:
        compiled = torch.compile(model, backend=aotgraph.backend(compiler="eager"))
    compiled(x)
    buffer = io.BytesIO()
    torch.save(compiled, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    torch.testing.assert_close(loaded(x), model(x))
