"""`none` and `standard` (inverted) dropout.

Standard dropout: Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks
from Overfitting", JMLR 2014, in its *inverted* form: units are kept with probability
1-p and scaled by 1/(1-p) during training, so evaluation is the identity.
"""

from regbench.regularizers.base import ActivationDropoutSpec, Dropout, DropoutSpec, register


@register
class NoDropout(DropoutSpec):
    name = "none"
    activation_slots = False


@register
class StandardDropout(ActivationDropoutSpec):
    name = "standard"
    module = Dropout
