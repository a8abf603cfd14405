"""Quantization-aware training: torch.ao's default fake-quant (``FusedMovingAvgObsFakeQuantize``,
what ``prepare_qat`` inserts with the x86/fbgemm qconfig) writes its observer's running min/max,
scale and zero point in one op, which capture replaces by its functional twin. Trained for a
few steps, the losses, gradients and every buffer are eager's; before its first call, the
per-channel one is refused (its first call sizes its observer)."""
import copy

import pytest
import torch
import torch.ao.quantization as quantization
import torch.nn as nn

import aotgraph


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = quantization.QuantStub(), quantization.DeQuantStub()
        self.fc1, self.relu, self.fc2 = nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)

    def forward(self, x):
        return self.dequant(self.fc2(self.relu(self.fc1(self.quant(x)))))


def _qat_model(calibrated=True):
    """A model prepared for QAT (per-tensor fake-quant for activations, per-channel for weights),
    after one eager batch (calibration: the per-channel observers take their sizes) if `calibrated`."""
    torch.manual_seed(0)
    model = _Net().train()
    model.qconfig = quantization.get_default_qat_qconfig("x86")
    model = quantization.prepare_qat(model)
    if calibrated:
        model(torch.randn(6, 8))
    return model


def _train(model, run, steps=4):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    torch.manual_seed(1)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = run(torch.randn(6, 8)).square().mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return torch.stack(losses)


@pytest.mark.parametrize("compiler", ["eager", "inductor"])
def test_fused_fake_quant_trains_as_in_eager(compiler):
    eager = _qat_model()
    model = copy.deepcopy(eager)
    assert any(isinstance(m, quantization.FusedMovingAvgObsFakeQuantize) for m in model.modules())
    expected = _train(eager, eager)
    got = _train(model, aotgraph.aot_module(model, compiler))
    tolerance = {"rtol": 1e-4, "atol": 1e-5} if compiler == "inductor" else {}
    torch.testing.assert_close(got, expected, **tolerance)
    for (name, value), reference in zip(model.state_dict().items(), eager.state_dict().values()):
        torch.testing.assert_close(value, reference, msg=name, **tolerance)


def test_per_channel_fake_quant_before_its_first_call_is_refused_with_what_to_do():
    """Its first call sizes the per-channel observer's min/max, which its functional twin's fake
    kernel does not: refused, saying to run the model once eagerly first."""
    model = _qat_model(calibrated=False)
    with pytest.raises(aotgraph.UnsupportedOp, match="_fused_moving_avg_obs_fq_helper.*per-channel.*eagerly"):
        aotgraph.aot_module(model, "eager")(torch.randn(6, 8))
