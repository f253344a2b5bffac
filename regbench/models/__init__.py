"""MLP and CNN built from config, with named dropout and norm slots."""

from __future__ import annotations

from torch import nn

from regbench.errors import ConfigError

# name -> activation class; alpha dropout switches the model to SELU.
ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "selu": nn.SELU,
}


def build_model(cfg, input_shape: tuple, num_classes: int) -> nn.Module:
    """cfg: the whole run config (model + dropout sections are read)."""
    from regbench.models.cnn import CNN
    from regbench.models.mlp import MLP

    if cfg.model.name == "mlp":
        return MLP(cfg, input_shape, num_classes)
    if cfg.model.name == "cnn":
        if len(input_shape) not in (2, 3):
            raise ConfigError(f"model=cnn needs (C,L) or (C,H,W) inputs, got shape {tuple(input_shape)}; valid: mlp")
        return CNN(cfg, input_shape, num_classes)
    raise ConfigError(f"unknown model {cfg.model.name!r}; valid choices: cnn, mlp")
