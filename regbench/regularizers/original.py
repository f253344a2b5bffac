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

from regbench.regularizers.base import ActivationDropoutSpec, FunctionalDropout, is_off, keep_mask, register


def original_dropout(x: torch.Tensor, p: float | torch.Tensor, training: bool) -> torch.Tensor:
    """x * Bernoulli(1-p) mask in training (no scaling); x * (1-p) otherwise. Any shape."""
    if is_off(p):
        return x
    if not training:
        return x * (1.0 - p)
    return x * keep_mask(x, p)  # 1 = keep, from the cell's noise stream


class OriginalDropout(FunctionalDropout):
    """Unscaled dropout (JMLR 2014 form). Note: *not* the identity in eval: it scales by 1-p."""

    fn = staticmethod(original_dropout)


@register
class Original(ActivationDropoutSpec):
    name = "original"
    module = OriginalDropout
