"""`gaussian` dropout: multiplicative Gaussian noise N(1, sigma^2) instead of a Bernoulli mask.

Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
JMLR 15, 2014, §10 ("Multiplicative Gaussian Noise"): multiplying by r ~ N(1, sigma^2)
with sigma^2 = p/(1-p) gives each unit the same mean and variance as inverted Bernoulli
dropout at rate p (keep w.p. 1-p, scale 1/(1-p): mean 1, variance p/(1-p)). The mean
is preserved, so evaluation is the identity, as for `standard`.
"""

from __future__ import annotations

import math

import torch

from regbench.regularizers import streams
from regbench.regularizers.base import ActivationDropoutSpec, FunctionalDropout, is_off, register


def gaussian_dropout(x: torch.Tensor, p: float | torch.Tensor, training: bool) -> torch.Tensor:
    """x * N(1, p/(1-p)) noise, drawn per element, in training; x otherwise. Any shape."""
    if not training or is_off(p):
        return x
    # one formula for a float rate and a 0-d tensor rate (one cell of a stack; 0 gives sigma 0: the identity)
    sigma = (p / (1 - p)) ** 0.5
    return x * (streams.randn_like(x, p) * sigma + 1)  # r ~ N(1, sigma^2), from the cell's noise stream


class GaussianDropout(FunctionalDropout):
    fn = staticmethod(gaussian_dropout)

    def extra_repr(self) -> str:
        p = float(self.p)
        return f"p={p}, sigma={math.sqrt(p / (1.0 - p)):.4g}"


@register
class Gaussian(ActivationDropoutSpec):
    name = "gaussian"
    module = GaussianDropout
