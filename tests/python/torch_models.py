# SPDX-License-Identifier: MIT
"""Torch models built from fixed seeds, shared by the drop-in's tests and
tools/compare-auto-lirpa.py (whose auto_LiRPA bounds of them are
tests/data/goldens-torch/auto_lirpa.json)."""

import torch


class Residual(torch.nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(channels)
        self.conv2 = torch.nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return torch.relu(x + self.conv2(torch.relu(self.bn(self.conv1(x)))))


def models():
    """(name, model, input, eps): weights from fixed seeds, BN statistics
    away from 0/1 so that eval-mode batch norm matters."""
    torch.manual_seed(11)
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
                              torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                              torch.nn.ReLU(), torch.nn.Conv2d(4, 8, 3, stride=2, padding=1),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 16),
                              torch.nn.ReLU(), torch.nn.Linear(16, 10))
    residual = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, stride=2, padding=1), torch.nn.ReLU(),
                                   Residual(4), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 10))
    cifar = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 4, stride=2, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 4, stride=2, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(16 * 8 * 8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    for m in (cnn, residual, cifar):
        for layer in m.modules():
            if isinstance(layer, torch.nn.BatchNorm2d):
                layer.running_mean.uniform_(-0.5, 0.5)
                layer.running_var.uniform_(0.5, 2.0)
                layer.weight.data.uniform_(0.5, 1.5)
                layer.bias.data.uniform_(-0.2, 0.2)
    torch.manual_seed(5)
    small = torch.rand(2, 1, 8, 8)
    return [("mlp", mlp.eval(), small, 0.05), ("cnn_bn", cnn.eval(), small, 0.05),
            ("residual", residual.eval(), small, 0.05),
            ("cifar_cnn", cifar.eval(), torch.rand(1, 3, 32, 32), 2 / 255)]


def parameter_checksum(model):
    """Sum of every parameter and buffer: tells whether this torch built the
    same weights as the one that made the goldens."""
    with torch.no_grad():
        return float(sum(t.double().sum() for t in model.state_dict().values()
                         if t.is_floating_point()))
