"""`original` dropout: the 2014 form, unscaled in training and scaled at test time.

Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
JMLR 15, 2014 (§2, Fig. 2): in training each unit is multiplied by a Bernoulli(1-p)
mask *without* rescaling; at test time the unit is always present and its outgoing
activation is multiplied by the keep probability 1-p, so the test output equals the
expected training output. `standard` is the inverted equivalent (scale 1/(1-p) in
training, identity at test time): in expectation the two differ only by the constant
factor 1-p. A following linear layer can absorb that factor, but weight decay and
BatchNorm statistics see it, so the original form is kept as its own type.
"""

from __future__ import annotations

import torch
from torch import nn

from regbench.regularizers.base import DropoutSpec, Slot, register


def original_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """x * Bernoulli(1-p) mask in training (no scaling); x * (1-p) otherwise. Any shape."""
    if p == 0.0:
        return x
    if not training:
        return x * (1.0 - p)
    mask = torch.empty_like(x).bernoulli_(1.0 - p)  # 1 = keep
    return x * mask


class OriginalDropout(nn.Module):
    """Unscaled dropout (JMLR 2014 form). Note: *not* the identity in eval: it scales by 1-p."""

    stochastic = True  # MC dropout (regbench/uncertainty.py) keeps it in train mode at test time

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return original_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


@register
class Original(DropoutSpec):
    name = "original"

    def slot_module(self, slot: Slot, p: float, cfg) -> nn.Module:
        return OriginalDropout(p) if p > 0 else nn.Identity()
