"""`dropblock`: drop contiguous regions of conv feature maps.

Ghiasi, Lin & Le, "DropBlock: A regularization method for convolutional networks",
NeurIPS 2018. Element-wise dropout barely regularises conv maps (a dropped unit's
neighbours carry the same information), so DropBlock zeroes whole block_size x
block_size squares (segments of length block_size for 1-D signals):

  1. draw block centres ~ Bernoulli(gamma) at the positions where a whole block fits,
     gamma = p * size / (block_size^d * valid_size)    (Alg. 1, eq. 1; d = 1 or 2)
     so that about a fraction p of the map is dropped (ignoring block overlaps);
  2. grow each centre into its block (max-pool of the seed mask);
  3. zero the blocks and rescale by numel / kept (one scale for the whole batch).

One function for 1-D and 2-D maps, float rates and per-cell tensor rates: the steps of
`torchvision.ops.drop_block2d`, written out because torchvision draws its centres from the
global generator and has no 1-D version; here they come from the cell's noise stream
(regbench/regularizers/streams.py), so a cell drops the same blocks alone and in a stack.

Block size: must be odd (as torchvision requires: the max-pool keeps the map's size; config-validated). A block larger
than the map is clamped to the largest odd size that fits (a 2x2 map gets block 1, i.e.
element-wise dropout at rate p); torchvision alone would clamp to min(H, W), which can be
even, and then raise.

`dropout.schedule=linear`: the rate ramps linearly from 0 (t=0) to p (t=1, the end of
training); the training loop calls `set_progress(t)` at the start of every epoch, so the
last epoch runs at p*(E-1)/E. `constant`: p throughout.

Slots: the CNN's input and conv slots get DropBlock (a ResNet: its input and the residual branches of
its last two stages, between the convolutions); the fully-connected head has no
maps, so its hidden slots get standard dropout at a constant rate (no schedule).
`model=mlp` is rejected by `check`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from regbench.regularizers import streams
from regbench.regularizers.base import ConvDropoutSpec, Slot, is_off, register

EPS = 1e-6  # guards the rescale when (almost) everything is dropped, as in torchvision
SCHEDULES = ("constant", "linear")


def fit_block_size(block_size: int, *sizes: int) -> int:
    """The largest odd block size <= block_size that fits in a map of these sizes."""
    b = min(block_size, *sizes)
    return b if b % 2 == 1 else b - 1


def drop_block(x: torch.Tensor, p: float | torch.Tensor, block_size: int, training: bool = True,
               eps: float = EPS) -> torch.Tensor:
    """DropBlock on (N, C, L) or (N, C, H, W); block size clamped to the map (kept odd). p: a float or
    a 0-d tensor (one cell's rate in a stack)."""
    if not training or is_off(p):
        return x
    if x.ndim not in (3, 4):
        raise ValueError(f"drop_block expects (N, C, L) or (N, C, H, W), got shape {tuple(x.shape)}")
    spatial = x.shape[2:]
    b = fit_block_size(block_size, *spatial)
    valid = math.prod(s - b + 1 for s in spatial)
    gamma = p * math.prod(spatial) / (b ** len(spatial) * valid)  # <= p, since b * (L - b + 1) >= L
    centres = x[(..., *[slice(0, s - b + 1) for s in spatial])]  # (N, C, *valid): where a whole block fits
    seeds = (streams.rand_like(centres, gamma) < gamma).to(x.dtype)  # block centres ~ Bernoulli(gamma)
    seeds = F.pad(seeds, [b // 2] * (2 * len(spatial)))  # (N, C, *spatial)
    pool = F.max_pool1d if len(spatial) == 1 else F.max_pool2d
    keep = 1.0 - pool(seeds, kernel_size=b, stride=1, padding=b // 2)  # grow each centre to its block
    scale = keep.numel() / (eps + keep.sum(dtype=torch.float32))
    return x * keep * scale.to(x.dtype)


class DropBlock(nn.Module):
    """DropBlock with an optional linear ramp of the rate; identity in eval and at rate 0."""

    stochastic = True  # MC dropout (regbench/engine/uncertainty.py) keeps it in train mode at test time

    def __init__(self, p: float, block_size: int, schedule: str = "constant"):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {p}")
        if block_size < 1 or block_size % 2 == 0:
            raise ValueError(f"block_size must be an odd integer >= 1, got {block_size}")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        self.p = p  # target rate (a 0-d tensor per cell inside a stack)
        self.block_size = block_size
        self.schedule = schedule
        self.t = 0.0 if schedule == "linear" else 1.0  # the ramp's fraction of p in use now

    @property
    def rate(self):
        """The current rate: p * t (a float, or a 0-d tensor inside a stack)."""
        return self.p * self.t

    def set_progress(self, t: float) -> None:
        """t: fraction of training done, in [0, 1]. Linear schedule: rate = p * t."""
        if self.schedule == "linear":
            self.t = min(max(float(t), 0.0), 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_block(x, self.rate, self.block_size, self.training)

    def extra_repr(self) -> str:
        return f"p={float(self.p)}, block_size={self.block_size}, schedule={self.schedule}, rate={float(self.rate):.4g}"


@register
class DropBlockSpec(ConvDropoutSpec):
    name = "dropblock"
    why = "it drops blocks of conv feature maps"
    keys = ("block_size", "schedule")

    def fills(self, slot: Slot) -> bool:
        """A ResNet: inside the residual branches of the last two of its three stages (Ghiasi et al. 2018 put it
        in ResNet-50's groups 3 and 4, as timm's stages do; here after the first convolution's activation, timm
        puts it before); a plain CNN: every conv slot."""
        return super().fills(slot) and not (slot.place == "branch" and slot.index == 0)

    def conv_module(self, slot: Slot, p: float, cfg) -> nn.Module:
        return DropBlock(p, cfg.dropout.block_size, cfg.dropout.schedule)
