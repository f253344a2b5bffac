"""`alpha` dropout: dropout that keeps SELU's self-normalising fixed point (mean 0, variance 1).

Klambauer et al., "Self-Normalizing Neural Networks", NeurIPS 2017 (§"New Dropout
Technique"): dropped units are set to SELU's negative saturation value -lambda*alpha
instead of 0, then an affine map restores mean 0 and variance 1. It assumes SELU
activations and LeCun-normal init, so the spec declares `activation = "selu"` and the
model builder switches to both (a different model.activation is honoured with a warning).
The paper used rates of 0.05-0.1.

`nn.AlphaDropout` goes in every slot (input, conv, hidden). We use the module, which
passes `self.training`: the functional `F.alpha_dropout(x, p)` defaults to
training=False and silently does nothing.
"""

from __future__ import annotations

from torch import Tensor, nn

from regbench.core.model_kinds import LAYERED_MODELS
from regbench.regularizers.base import ActivationDropoutSpec, is_off, keep_mask, register

SELU_SATURATION = 1.7580993408473766  # -SELU(-inf) = lambda * alpha, the value a dropped unit takes (negated)


class AlphaDropout(nn.AlphaDropout):
    """torch's AlphaDropout module with its formula written out, the mask from the cell's noise stream
    (one formula for a float rate and a 0-d tensor rate, one cell of a stack):
    a * (x * keep - s * (1 - keep)) + a * s * p, a = ((1-p) (1 + p s^2))^-1/2."""

    stochastic = True

    def forward(self, x: Tensor) -> Tensor:  # any shape
        p = self.p
        if not self.training or is_off(p):
            return x
        keep = keep_mask(x, p)
        a = ((1 - p) * (1 + p * SELU_SATURATION**2)) ** -0.5
        return a * (x * keep - SELU_SATURATION * (1 - keep)) + a * SELU_SATURATION * p


@register
class Alpha(ActivationDropoutSpec):
    name = "alpha"
    activation = "selu"
    models = LAYERED_MODELS
    why = "its fixed point assumes a plain SELU network; residual sums and normalisation break it"
    module = AlphaDropout
