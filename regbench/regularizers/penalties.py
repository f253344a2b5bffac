"""Explicit weight penalties and constraints: L1 and max-norm.

Both act on *weights* only (`weight_names`: parameters with >= 2 dims, linear rows and conv filters, not
embeddings), never on biases or norm scales, matching the default of weight decay (engine/optimizers.py).
"""

from __future__ import annotations

import torch
from torch import nn

ZERO_TOL = 1e-3  # |w| below this counts as "near zero" in the sparsity column


def weight_names(model: nn.Module) -> set[str]:
    """The names of the model's weights: parameters with >= 2 dims (linear rows, conv filters), less those
    their module declares `not_weights` (a ViT's position embedding and class token: no unit's incoming
    weights; not decayed, as in timm and DeiT). Weight decay, L1 and max-norm act on these alone."""
    return {f"{prefix}.{name}" if prefix else name
            for prefix, module in model.named_modules()
            for name, p in module.named_parameters(recurse=False)
            if p.ndim >= 2 and name not in getattr(module, "not_weights", ())}


def weights(model: nn.Module) -> list[torch.Tensor]:
    """The weight tensors themselves (weight_names), found once per model: the functions below run every
    step and take this list (finding the names walks every module, ~1.5 ms a call for a ResNet-110)."""
    names = weight_names(model)
    return [p for name, p in model.named_parameters() if name in names]


def l1_penalty(ws: list[torch.Tensor]) -> torch.Tensor:
    """sum |w| over the weights ws; the loss adds reg.l1 times this (Tibshirani's lasso on weights)."""
    return sum(w.abs().sum() for w in ws)


def zero_fraction(ws: list[torch.Tensor], tol: float = ZERO_TOL) -> torch.Tensor:
    """Fraction of the weights ws with |w| < tol, as a device tensor (no host sync)."""
    near_zero = sum((w.detach().abs() < tol).sum() for w in ws)
    return near_zero.double() / sum(w.numel() for w in ws)


@torch.no_grad()
def apply_max_norm_(ws: list[torch.Tensor], c: float) -> None:
    """Max-norm (Srivastava et al. 2014, §5.1): after each step, rescale every unit's incoming
    weight vector to norm <= c. Row i of a Linear weight (out, in) and filter i of a conv
    weight (out, in, *k) are the incoming weights of output unit i.
    """
    for w in ws:
        flat = w.view(w.shape[0], -1)  # (units, fan_in)
        norms = flat.norm(dim=1, keepdim=True)
        flat.mul_(torch.clamp(c / (norms + 1e-12), max=1.0))
