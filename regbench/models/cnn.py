"""Small CNN for 1-D signals (mnist1d) and 2-D images.

[input dropout] -> per stage: Conv(k, same) -> [BN] -> act -> MaxPool(2) -> dropout slot
-> flatten -> head of Linear blocks (model.hidden) with dropout slots -> Linear.
1-D inputs (C, L) get Conv1d/MaxPool1d, images (C, H, W) get Conv2d/MaxPool2d.
"""

from __future__ import annotations

import math

from torch import nn

from regbench.models.blocks import dropout_slot, hidden_layers, layer_block
from regbench.regularizers import Slot

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d}


class CNN(nn.Module):
    def __init__(self, cfg, input_shape: tuple, num_classes: int):
        super().__init__()
        dims = len(input_shape) - 1  # spatial dims: 1 for (C, L), 2 for (C, H, W)
        channels, *spatial = input_shape
        k = cfg.model.kernel_size
        layers: list[nn.Module] = [dropout_slot(cfg, Slot("input", dims))]
        for i, out in enumerate(cfg.model.channels):
            conv = _CONV[dims](channels, out, k, padding=k // 2, bias=not cfg.model.batchnorm)
            stage = layer_block(cfg, conv, out, Slot("conv", dims, i))
            # Pool before the dropout slot so dropped maps are not re-mixed; skip once maps are 1 wide.
            if min(spatial) >= 2:
                stage.insert(len(stage) - 1, _POOL[dims](2))
                spatial = [s // 2 for s in spatial]
            layers += stage
            channels = out
        layers.append(nn.Flatten())
        width = channels * math.prod(spatial)
        head, width = hidden_layers(cfg, width)
        layers += head
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):  # x: (N, C, L) or (N, C, H, W) -> logits (N, num_classes)
        return self.net(x)

