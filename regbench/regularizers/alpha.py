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

from torch import nn

from regbench.regularizers.base import ActivationDropoutSpec, register


@register
class Alpha(ActivationDropoutSpec):
    name = "alpha"
    colour = "#ff7f0e"  # in report figures
    activation = "selu"
    module = nn.AlphaDropout
