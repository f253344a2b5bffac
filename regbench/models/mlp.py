"""Multi-layer perceptron: flatten -> [input dropout] -> (Linear, BN, act, dropout) x L -> Linear."""

from __future__ import annotations

import math

from torch import nn

from regbench.models.blocks import dropout_slot, hidden_layers
from regbench.regularizers import Slot


class MLP(nn.Module):
    def __init__(self, cfg, input_shape: tuple, num_classes: int):
        super().__init__()
        width = math.prod(input_shape)  # (C, H, W) or (C, L) flattened
        layers: list[nn.Module] = [nn.Flatten(), dropout_slot(cfg, Slot("input", 0))]
        head, width = hidden_layers(cfg, width)
        layers += head
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):  # x: (N, *input_shape) float -> logits (N, num_classes)
        return self.net(x)
