"""Building blocks shared by the models: a weight layer with its norm, activation and dropout slot (MLP, CNN);
the activation, norm and dropout-slot factories every model uses (ResNet and ViT place their slots themselves)."""

from __future__ import annotations

import logging

from torch import nn

from regbench.regularizers import DROPOUTS, Slot, resolve_rate

log = logging.getLogger("regbench")
# name -> activation class; alpha dropout switches the model to SELU.
ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "selu": nn.SELU,
}
NORMS = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d}  # spatial dims -> BatchNorm


def activation_name(cfg) -> str:
    """The activation the model uses.

    model.activation unset: what the dropout type needs (alpha dropout -> SELU), else the model's own
    (DEFAULT_ACTIVATION: GELU in a transformer's MLPs, as in ViT), else relu.
    Set explicitly to something else than the dropout type needs: honoured, with a warning.
    """
    wanted = DROPOUTS.get(cfg.dropout.name).activation
    chosen = cfg.model.activation
    if chosen is None:
        return wanted or DEFAULT_ACTIVATION.get(cfg.model.name, "relu")
    if wanted and chosen != wanted and not _warned.get(cfg.dropout.name):
        _warned[cfg.dropout.name] = True
        log.warning("dropout=%s assumes activation=%s; keeping model.activation=%s as asked",
                    cfg.dropout.name, wanted, chosen)
    return chosen


_warned: dict[str, bool] = {}
DEFAULT_ACTIVATION = {"vit": "gelu"}  # model -> its activation where model.activation is unset (else relu)


def dropout_slot(cfg, slot: Slot) -> nn.Module:
    spec = DROPOUTS.get(cfg.dropout.name)
    return spec.slot_module(slot, resolve_rate(cfg.dropout, slot), cfg)


def layer_block(cfg, layer: nn.Module, width: int, slot: Slot) -> list[nn.Module]:
    """weight layer -> [BatchNorm] -> activation -> dropout slot.

    With dropout.placement=before_norm the slot moves between the weight layer and
    BatchNorm, the ordering whose variance shift Li et al. (CVPR 2019) analyse.
    DropConnect-style types wrap the weight layer itself instead (rate of the slot).
    """
    spec = DROPOUTS.get(cfg.dropout.name)
    p = resolve_rate(cfg.dropout, slot)
    layer = spec.wrap_layer(layer, p, cfg)
    norm = [NORMS[slot.spatial_dims](width)] if cfg.model.batchnorm else []
    drop = dropout_slot(cfg, slot)
    act = ACTIVATIONS[activation_name(cfg)]()
    if cfg.dropout.get("placement", "after_activation") == "before_norm":
        return [layer, drop, *norm, act]
    return [layer, *norm, act, drop]


def hidden_layers(cfg, width: int) -> tuple[list[nn.Module], int]:
    """The fully-connected stack of model.hidden: (Linear, BN, act, dropout) per width.

    Returns the layers and the output width. The bias is dropped where BatchNorm follows
    (its shift makes the bias redundant).
    """
    layers: list[nn.Module] = []
    for i, hidden in enumerate(cfg.model.hidden):
        linear = nn.Linear(width, hidden, bias=not cfg.model.batchnorm)
        layers += layer_block(cfg, linear, hidden, Slot("hidden", 0, i))
        width = hidden
    return layers, width
