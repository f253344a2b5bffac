"""`spatial` dropout: drop whole feature maps (channels) instead of single activations.

Tompson et al., "Efficient Object Localization Using Convolutional Networks", CVPR 2015
(§3.2, "SpatialDropout"): neighbouring activations of a feature map are strongly
correlated, so dropping them one by one barely regularises; dropping the whole map
does. Each (example, channel) map is kept with probability 1-p and scaled by 1/(1-p)
(inverted, so evaluation is the identity).

Slots: the CNN's input slot and conv slots (a ResNet's: after each stage) get `nn.Dropout1d` on (N, C, L) or
`nn.Dropout2d` on (N, C, H, W). The fully-connected head of the CNN has no feature maps,
so its hidden slots get standard (element-wise) dropout. On a single-channel input
(digits, mnist1d) a nonzero `dropout.p_input` drops the *whole* input of an example.
`model=mlp` is rejected by `check` (nothing there is a feature map).
"""

from __future__ import annotations

from torch import Tensor, nn

from regbench.regularizers.base import ConvDropoutSpec, Slot, inverted_dropout, is_off, register


def channel_dropout(x: Tensor, p: float | Tensor) -> Tensor:
    """x: (N, C, *spatial) -> x with whole maps dropped: one keep draw per (example, channel)."""
    one_per_map = x[(..., *([slice(0, 1)] * (x.ndim - 2)))]  # (N, C, 1[, 1])
    return inverted_dropout(x, p, like=one_per_map)


class Dropout1d(nn.Dropout1d):
    """torch's Dropout1d module drawing from the cell's noise stream (channel_dropout, for a float rate
    and a 0-d tensor rate alike: one cell draws the same maps alone and stacked)."""

    stochastic = True

    def forward(self, x: Tensor) -> Tensor:  # (N, C, L)
        return channel_dropout(x, self.p) if self.training and not is_off(self.p) else x


class Dropout2d(nn.Dropout2d):
    """torch's Dropout2d module drawing from the cell's noise stream (as Dropout1d)."""

    stochastic = True

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W)
        return channel_dropout(x, self.p) if self.training and not is_off(self.p) else x


_CHANNEL_DROPOUT = {1: Dropout1d, 2: Dropout2d}  # spatial_dims -> module (Dropout2d on 3-D input warns)


@register
class Spatial(ConvDropoutSpec):
    name = "spatial"
    why = "it drops whole feature maps"
    places = ("stage", "head")  # a ResNet: after each stage (Tompson et al. after conv stages), not inside blocks

    def conv_module(self, slot: Slot, p: float, cfg) -> nn.Module:
        return _CHANNEL_DROPOUT[slot.spatial_dims](p)
