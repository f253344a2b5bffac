"""`dropconnect`: drop *weights* instead of activations.

Wan, Zeiler, Zhang, LeCun & Fergus, "Regularization of Neural Networks using
DropConnect", ICML 2013. In training every weight of a layer is kept with probability
1-p (a fresh Bernoulli mask M each forward pass): y = x (W * M)^T + b. Biases are not
masked. There is no upstream PyTorch implementation.

Scaling / inference: we use the *inverted* form, W * M / (1-p) in training, so the
expected weight is W and inference uses the plain (mean) weights. The paper's inference
(moment-matching a Gaussian over the pre-activation and sampling from it, §3.1) is NOT
implemented; mean-weight inference is the common practical choice.

`dropout.mask`:
  - batch:  one mask per forward pass, shared by all examples of the batch. Costs one
            extra weight-sized tensor.
  - sample: one mask per example, as in the paper. Costs a (N, *weight.shape) tensor of
            masked weights per layer (N = batch size), e.g. batch 64 x Linear(3072, 256)
            = 50M floats = 200 MB, kept for backward. Linear layers use a batched
            einsum; conv layers fold the batch into the channels and run one grouped
            convolution (groups = N * layer.groups), so there is no Python loop.

Which layers: every hidden Linear / Conv1d / Conv2d that the model builder passes to
`wrap_layer` (the conv stages and the hidden layers; not the final classifier), each at
its slot's rate (p_conv for conv stages, p / per_layer for hidden layers). The input has
no weight layer, so `dropout.p_input` does nothing here; activation slots are Identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from regbench.regularizers.base import DropoutSpec, inverted_dropout, is_off, register

MASKS = ("batch", "sample")
_CONV_FN = {1: F.conv1d, 2: F.conv2d}


def masked_weight(weight: torch.Tensor, p: float | torch.Tensor, batch: int | None = None) -> torch.Tensor:
    """weight * Bernoulli(1-p) / (1-p): one mask (batch=None) or one per example -> (batch, *weight.shape)."""
    shape = weight.shape if batch is None else (batch, *weight.shape)
    return inverted_dropout(weight, p, like=weight.expand(shape))  # from the cell's noise stream


def dropconnect_linear(x: torch.Tensor, layer: nn.Linear, p: float, per_sample: bool) -> torch.Tensor:
    """x: (N, ..., in) -> (N, ..., out) through `layer` with masked weights (training only)."""
    if not per_sample:
        return F.linear(x, masked_weight(layer.weight, p), layer.bias)
    w = masked_weight(layer.weight, p, batch=x.shape[0])  # (N, out, in)
    y = torch.einsum("n...i,noi->n...o", x, w)
    return y if layer.bias is None else y + layer.bias


def dropconnect_conv(x: torch.Tensor, layer: nn.Conv1d | nn.Conv2d, p: float, per_sample: bool) -> torch.Tensor:
    """x: (N, C, *spatial) -> (N, out, *spatial') through a conv layer with masked weights."""
    if not per_sample:
        return layer._conv_forward(x, masked_weight(layer.weight, p), layer.bias)
    if layer.padding_mode != "zeros":
        raise NotImplementedError("dropconnect with dropout.mask=sample supports padding_mode='zeros' only")
    n, c, *spatial = x.shape
    w = masked_weight(layer.weight, p, batch=n)  # (N, out, C/groups, *k)
    conv = _CONV_FN[len(spatial)]
    # Fold the batch into channels: example i only sees its own C channels and its own mask.
    y = conv(x.reshape(1, n * c, *spatial), w.reshape(-1, *w.shape[2:]), None,
             layer.stride, layer.padding, layer.dilation, groups=n * layer.groups)
    y = y.reshape(n, layer.out_channels, *y.shape[2:])
    if layer.bias is not None:
        y = y + layer.bias.view(1, -1, *([1] * len(spatial)))
    return y


class DropConnect(nn.Module):
    """Wraps a Linear / Conv1d / Conv2d layer; masks its weight in training, plain layer in eval.

    The wrapped layer stays a submodule (`self.layer`), so its parameters, initialisation,
    weight decay, max-norm and penalties apply unchanged (state_dict keys gain `layer.`).
    MC dropout sets only this module's `training` flag (not the inner layer's); forward reads it.
    """

    stochastic = True  # MC dropout (regbench/engine/uncertainty.py) keeps it in train mode at test time

    def __init__(self, layer: nn.Module, p: float, mask: str = "batch"):
        super().__init__()
        if not isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            raise TypeError(f"dropconnect wraps Linear/Conv1d/Conv2d layers, got {type(layer).__name__}")
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropconnect rate must be in [0, 1), got {p}")
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {', '.join(MASKS)}, got {mask!r}")
        self.layer = layer
        self.p = p
        self.mask = mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or is_off(self.p):
            return self.layer(x)
        per_sample = self.mask == "sample"
        if isinstance(self.layer, nn.Linear):
            return dropconnect_linear(x, self.layer, self.p, per_sample)
        return dropconnect_conv(x, self.layer, self.p, per_sample)

    def extra_repr(self) -> str:
        return f"p={self.p}, mask={self.mask}"


@register
class DropConnectSpec(DropoutSpec):
    name = "dropconnect"
    activation_slots = False  # it wraps weight layers: no input slot, nothing to place before BatchNorm
    keys = ("mask",)
    why = "it wraps the weight layers of an MLP or a plain CNN"

    def wrap_layer(self, layer: nn.Module, p: float, cfg) -> nn.Module:
        return DropConnect(layer, p, cfg.dropout.mask) if p > 0 else layer
