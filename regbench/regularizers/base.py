"""The dropout-slot mechanism shared by every dropout type."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from regbench.core.dropout_types import BUILT_IN, RATE_KEYS
from regbench.core.errors import ConfigError
from regbench.core.model_kinds import CONV_MODELS, LAYERED_MODELS
from regbench.core.registry import Registry
from regbench.regularizers import discovery, streams


@dataclass(frozen=True)
class Slot:
    """Where a dropout module sits in a model.

    kind sets the rate (resolve_rate): "input" (dropout.p_input), "conv" (p_conv, else p), "hidden" (p, or
    per_layer) and "attn" (p_attn: a transformer's attention weights). place says where a conv or hidden slot
    is in a residual network, so each type fills the places its paper puts it (DropoutSpec.places):
    "" (a plain CNN / MLP layer), "branch" (inside a residual branch: between a ResNet block's convolutions,
    a ViT block's attention output and MLP), "stage" (after a ResNet stage) or "head" (before a residual
    network's classifier)."""

    kind: str  # "input" | "conv" | "hidden" | "attn"
    spatial_dims: int  # 0 for (N, D) features, 1 for (N, C, L), 2 for (N, C, H, W)
    index: int = 0  # which conv stage / hidden layer (a residual network: which stage or block)
    place: str = ""  # "" | "branch" | "stage" | "head"


class DropoutSpec:
    """One dropout type. Subclasses override what they need.

    - `slot_module(slot, p, cfg)`: the module placed in an activation slot (Identity by default).
    - `wrap_layer(layer, p, cfg)`: wraps a Linear/Conv layer (DropConnect drops weights).
    - `activation`: the activation this type assumes (alpha dropout: "selu"), or None.
    - `init_model(model, cfg)`: custom init after the model is built (SELU models get
      LeCun-normal init from the model builder already).
    - `check(cfg)`: reject incompatible configs with ConfigError.
    A rate of exactly 0 must give back the plain layer / nn.Identity, so that strength 0
    reproduces the baseline bit for bit (no extra RNG draws).
    """

    name: str = ""
    activation: str | None = None
    # The models it acts on (None: every model); check() refuses the others, saying `why`.
    models: tuple[str, ...] | None = None
    why: str = ""
    # The places of a residual network it fills (Slot.place); "" (plain MLP / CNN slots), the input and the
    # attention weights are filled wherever the type acts at all.
    places: tuple[str, ...] = ("branch", "head")
    # What the type reads besides its rates, so a setting it ignores is refused (regbench/rules/active.py):
    activation_slots: bool = True  # modules in activation slots, so p_input and placement act (DropConnect: no)
    keys: tuple[str, ...] = ()  # dropout.* keys only this type reads, e.g. dropblock: block_size, schedule

    # `rate_keys` (dropout.* keys that set its strength; () = no regularization) and `colour` (in every report
    # figure; None: one derived from the name): a built-in type's come from core/dropout_types.py, which the
    # report reads without torch; a plugin's class sets them as class attributes.
    @property
    def rate_keys(self) -> tuple[str, ...]:
        return BUILT_IN[self.name].rate_keys if self.name in BUILT_IN else RATE_KEYS

    @property
    def colour(self) -> str | None:
        return BUILT_IN[self.name].colour if self.name in BUILT_IN else None

    def check(self, cfg) -> None:  # cfg: the whole run config
        model, models = cfg.model.name, self.acting_models()
        if models is not None and model not in models:
            valid = [name for name in DROPOUTS.names() if DROPOUTS.get(name).acts_on(model)]
            why = self.why or "it wraps weight layers, which only these models hand it"
            raise ConfigError(f"dropout={self.name} does not act on model={model} ({why}; it acts on "
                              f"model={'|'.join(models)}); valid dropout types for {model}: {', '.join(valid)}")

    def acting_models(self) -> tuple[str, ...] | None:
        """`models`; left unset by a type that only wraps weight layers (a plugin's DropConnect-like type):
        the models that call wrap_layer, the MLP and the plain CNN (residual networks place slots only)."""
        if self.models is None and not self.activation_slots and self.rate_keys:
            return LAYERED_MODELS
        return self.models

    def acts_on(self, model: str) -> bool:
        models = self.acting_models()
        return models is None or model in models

    def fills(self, slot: Slot) -> bool:
        """Whether this type puts its module at `slot` (the places its paper names)."""
        return not slot.place or slot.place in self.places

    def slot_module(self, slot: Slot, p: float, cfg) -> nn.Module:
        return nn.Identity()

    def wrap_layer(self, layer: nn.Module, p: float, cfg) -> nn.Module:
        return layer

    def init_model(self, model: nn.Module, cfg) -> None:
        """Called once after the model is built (custom initialisation)."""


def is_off(p: float | Tensor) -> bool:
    """A Python-float rate of exactly 0. A tensor rate (one cell of a stack, regbench/engine) is
    never "off" here: its value differs per cell, so the formula runs (at 0 it is the identity)."""
    return not isinstance(p, Tensor) and p == 0.0


def keep_mask(like: Tensor, p: float | Tensor) -> Tensor:
    """Bernoulli(1-p) keep mask (1 = keep) shaped and typed like `like`, from the cell's noise stream.

    Drawn as rand_like(like) >= p (regbench/regularizers/streams.py): a stack draws it cell by cell,
    and p may be a 0-d tensor holding one cell's rate (an in-place bernoulli_ on a fresh tensor cannot).
    """
    return (streams.rand_like(like, p) >= p).to(like.dtype)


def inverted_dropout(x: Tensor, p: float | Tensor, like: Tensor | None = None) -> Tensor:
    """x * Bernoulli(1-p) / (1-p), the mask drawn shaped like `like` (default x; a smaller shape
    broadcasts, e.g. one draw per feature map). The noise mask / (1-p) is formed as torch forms it
    and applied with one multiply (under vmap, 32 cells of (100, 100): 1.4 ms forward + backward
    against 2.2 ms for x * mask / (1-p)); in float32, rounded to x's dtype once at the end (bf16 under
    amp would otherwise round 1/(1-p) first)."""
    noise = (streams.rand_like(x if like is None else like, p) >= p) / (1 - p)  # float32 (p: 0-d float32 or float)
    return (x * noise).to(x.dtype)


class Dropout(nn.Dropout):
    """torch's nn.Dropout module (its type, `p`, repr) with the mask drawn from the cell's noise stream:
    x * Bernoulli(1-p) / (1-p), one formula for a float rate and a 0-d tensor rate (one cell of a stack),
    so a cell draws the same mask alone and stacked. (torch's fused kernel draws from the global generator.)"""

    stochastic = True

    def forward(self, x: Tensor) -> Tensor:  # any shape
        return inverted_dropout(x, self.p) if self.training and not is_off(self.p) else x


class FunctionalDropout(nn.Module):
    """Thin module over a functional core `fn(x, p, training)` (the timm pattern).

    Subclasses set `fn`; `stochastic = True` lets MC dropout (regbench/engine/uncertainty.py) find it.
    `p` is a float; inside a stack of cells (regbench/engine/stack.py) it becomes a 0-d tensor
    buffer holding each cell's rate, so every `fn` accepts both.
    """

    stochastic = True

    @staticmethod
    def fn(x, p: float, training: bool):
        raise NotImplementedError

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x):  # any shape
        return self.fn(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ActivationDropoutSpec(DropoutSpec):
    """A type that puts `module(p)` in every activation slot (nn.Identity at rate 0)."""

    module: type[nn.Module]

    def slot_module(self, slot: Slot, p: float, cfg) -> nn.Module:
        return type(self).module(p) if p > 0 and self.fills(slot) else nn.Identity()


class ConvDropoutSpec(DropoutSpec):
    """A type that acts on conv feature maps (model=cnn, and resnet where `places` says); the
    fully-connected head gets standard dropout at rate p. Subclasses implement `conv_module` and say `why`."""

    models = CONV_MODELS
    why = "it acts on conv feature maps"

    def conv_module(self, slot: Slot, p: float, cfg) -> nn.Module:
        raise NotImplementedError

    def slot_module(self, slot: Slot, p: float, cfg) -> nn.Module:
        if p == 0 or not self.fills(slot):
            return nn.Identity()
        if slot.spatial_dims in (1, 2):  # input and conv slots: (N, C, L) or (N, C, H, W)
            return self.conv_module(slot, p, cfg)
        return Dropout(p)  # (N, D) features: the fully-connected head


DROPOUTS: Registry[DropoutSpec] = Registry("dropout", loader=discovery.load)


def register(cls):
    """Class decorator: instantiate a DropoutSpec subclass and register it under cls.name."""
    DROPOUTS.register(cls.name)(cls())
    return cls


def resolve_rate(dropout_cfg, slot: Slot) -> float:
    """The rate of one slot from the per-slot settings (dropout.p, p_input, p_conv, per_layer)."""
    if slot.kind == "input":
        return float(dropout_cfg.p_input)
    if slot.kind == "conv":
        return float(dropout_cfg.p if dropout_cfg.p_conv is None else dropout_cfg.p_conv)
    if slot.kind == "hidden":
        if dropout_cfg.get("per_layer") is not None and not slot.place:
            return float(dropout_cfg.per_layer[slot.index])
        return float(dropout_cfg.p)
    if slot.kind == "attn":
        return float(dropout_cfg.p_attn)
    raise ConfigError(f"unknown slot kind {slot.kind!r}; valid choices: input, conv, hidden, attn")
