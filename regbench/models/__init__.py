"""The models built from config (MLP, CNN, ResNet, ViT), with named dropout and norm slots.

The catalogue layer (data, models, regularizers), above core: these three may import each other
(a mixing augmentation is a regularizer run by the data pipeline) and core; nothing higher."""

from __future__ import annotations

from torch import nn

from regbench.core.errors import ConfigError
from regbench.models.blocks import ACTIVATIONS, activation_name  # noqa: F401  (ACTIVATIONS: public here too)
from regbench.models.cnn import CNN
from regbench.models.mlp import MLP
from regbench.models.resnet import ResNet
from regbench.models.vit import ViT
from regbench.regularizers import DROPOUTS

# model.name -> class; core/model_kinds.py MODELS names the same (torch-free, for validation; a test checks they agree)
ARCHITECTURES: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": CNN, "resnet": ResNet, "vit": ViT}


def build_model(cfg, input_shape: tuple, num_classes: int) -> nn.Module:
    """cfg: the whole run config (model + dropout + reg sections are read)."""
    name = cfg.model.name
    if name not in ARCHITECTURES:
        raise ConfigError(f"unknown model {name!r}; valid choices: {', '.join(ARCHITECTURES)}")
    if name != "mlp" and len(input_shape) not in (2, 3):
        raise ConfigError(f"model={name} needs (C,L) or (C,H,W) inputs, got shape {tuple(input_shape)}; valid: mlp")
    model = ARCHITECTURES[name](cfg, input_shape, num_classes)
    if activation_name(cfg) == "selu":
        lecun_normal_(model)
    DROPOUTS.get(cfg.dropout.name).init_model(model, cfg)
    return model


def lecun_normal_(model: nn.Module) -> None:
    """LeCun-normal init (std = 1/sqrt(fan_in)), which SELU's self-normalisation assumes (Klambauer et al. 2017)."""
    for m in model.modules():
        weight = getattr(m, "weight", None)
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)) and weight is not None:
            nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="linear")  # gain 1 -> std 1/sqrt(fan_in)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def macs_per_example(model: nn.Module, input_shape: tuple) -> int:
    """Multiply-accumulates of one forward pass per example, counted over Linear/Conv layers
    (measured with hooks on a 2-example batch, so conv output sizes need no arithmetic here)."""
    import torch

    total = 0

    def count(module, inputs, output):
        nonlocal total
        per_output = module.weight[0].numel()  # fan-in of one output value (in * kernel / groups)
        total += per_output * output[0].numel()  # output[0]: one example's outputs

    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    hooks = [m.register_forward_hook(count) for m in layers]
    was_training = model.training
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model.eval()(torch.zeros(2, *input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total
