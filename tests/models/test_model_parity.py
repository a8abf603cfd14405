"""Whole-model parity with eager: outputs, every parameter and input gradient, buffers."""
import pytest
import torch

from aotgraph import models
from parity import assert_module_parity, assert_training_parity


def _with_input_grad(inputs):
    return tuple(t.requires_grad_() if t.is_floating_point() else t for t in inputs)


def test_mlp_4_layers():
    torch.manual_seed(0)
    model, inputs = models.mlp(layers=4)
    assert sum(isinstance(m, torch.nn.Linear) for m in model) == 4
    parity = assert_module_parity(model, _with_input_grad(inputs))
    assert parity.grads_compared == 8 + 1  # 4 weights, 4 biases, the input


def test_transformer_encoder_stack():
    torch.manual_seed(0)
    model, inputs = models.transformer_stack(layers=2)
    assert model.training
    parity = assert_module_parity(model, _with_input_grad(inputs))
    assert parity.grads_compared == len(list(model.parameters())) + 1


def test_convnet_batchnorm_eval():
    torch.manual_seed(0)
    model, inputs = models.convnet_eval()
    assert not model.training
    # Non-trivial running statistics, so eval-mode BatchNorm does something.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    parity = assert_module_parity(model, _with_input_grad(inputs))
    assert parity.grads_compared == len(list(model.parameters())) + 1


def test_gpt_decoder_with_loss():
    torch.manual_seed(0)
    model, inputs = models.gpt(layers=2)
    parity = assert_module_parity(model, inputs)
    assert parity.eager_out.dim() == 0  # the loss
    # The tied LM head counts under both names.
    assert parity.grads_compared == len(list(model.named_parameters(remove_duplicate=False)))


def test_resnet_train_mode_updates_buffers():
    torch.manual_seed(0)
    model, inputs = models.resnet(blocks=2, width=8, batch=4, size=16)
    assert model.training
    parity = assert_module_parity(model, inputs)
    compiled_module = parity.compiled.orig_module
    bn = next(m for m in compiled_module.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert int(bn.num_batches_tracked) == 1
    assert not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))


def test_resnet_train_steps_with_sgd():
    torch.manual_seed(0)
    model, (images,) = models.resnet(blocks=2, width=8, batch=4, size=16)
    head = torch.nn.Sequential(model, torch.nn.LogSoftmax(dim=1))
    labels = torch.randint(0, 10, (4,))

    class WithLoss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = head

        def forward(self, x, y):
            return torch.nn.functional.nll_loss(self.net(x), y)

    batches = [(images + step, labels) for step in range(3)]
    compiled = assert_training_parity(WithLoss(), batches, lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9))
    assert len(compiled.aotgraph_entries) == 1


def test_gpt_with_dropout_draws_the_same_random_numbers_as_eager():
    torch.manual_seed(0)
    model, inputs = models.gpt(layers=1, dropout=0.1)
    assert model.training
    parity = assert_module_parity(model, inputs, seed=3)
    no_dropout = assert_module_parity(model.eval(), inputs, seed=3, backward=False)
    assert not torch.equal(parity.eager_out, no_dropout.eager_out)  # dropout did something


def test_dropout_with_the_default_probability():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    assert_module_parity(model, (torch.randn(4, 8, requires_grad=True),))


@pytest.mark.parametrize("make", [lambda: torch.nn.LSTM(3, 4, batch_first=True),
                                  lambda: torch.nn.GRU(3, 4, num_layers=2), lambda: torch.nn.RNN(3, 4)],
                         ids=["lstm", "gru", "rnn"])
@pytest.mark.parametrize("input_grad", [True, False], ids=["input_grad", "data"])
def test_recurrent_layers(make, input_grad):
    # The fused CPU LSTM kernel returns no workspace under no_grad (where the compiled
    # forward runs), so capture must trace the decomposed form; also when only the weights
    # require grad (an input of data), where torch's LSTM decomposition picks the fused kernel.
    torch.manual_seed(0)
    assert_module_parity(make(), (torch.randn(2, 5, 3, requires_grad=input_grad),))
