"""Optimizers, weight-decay parameter groups and the learning-rate schedule."""

from __future__ import annotations

import bisect
import math

import torch
from torch import nn

from regbench.regularizers.penalties import weight_names


def param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool) -> list[dict]:
    """Weight decay only on weights (penalties.weight_names: linear/conv kernels, not embeddings) unless
    asked otherwise.

    Decaying biases and BatchNorm scales mostly hurts (it fights the normalisation), which is
    why it is the common default; `optim.decay_norm_and_bias=true` includes them (and embeddings).
    """
    decay, no_decay = [], []
    names = weight_names(model)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if name in names or decay_norm_and_bias else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


class SGDW(torch.optim.SGD):
    """SGD with decoupled weight decay (Loshchilov & Hutter, ICLR 2019, Alg. 1 "SGDW").

    torch.optim.SGD only offers coupled L2 (decay added to the gradient, then fed through
    momentum). Here w <- w * (1 - lr * wd) is applied to the weights directly, before the
    plain SGD step, the way torch.optim.AdamW decouples Adam. Written by hand: torch has none.
    """

    def __init__(self, groups: list[dict], **kwargs):
        for g in groups:  # move each group's decay out of SGD's coupled path
            g["decoupled_weight_decay"] = g.pop("weight_decay", 0.0)
        super().__init__(groups, weight_decay=0.0, **kwargs)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            wd = group["decoupled_weight_decay"]
            if wd:
                for p in group["params"]:
                    if p.grad is not None:
                        p.mul_(1 - group["lr"] * wd)
        return super().step(closure)


def lr_factor(cfg, epochs: int, steps_per_epoch: int):
    """cfg: the optim section. The learning-rate multiplier after `step` optimizer steps (warm-up,
    then the schedule), per step so cosine is smooth. Lone runs hand it to LambdaLR; stacks call it."""
    total = epochs * steps_per_epoch
    warmup = cfg.warmup_epochs * steps_per_epoch
    schedule, gamma, step_size = cfg.schedule, cfg.gamma, cfg.step_size  # plain values: read every step
    drops = [int(m) * steps_per_epoch for m in (cfg.get("milestones") or ())]  # multistep: the steps of its drops

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "cosine":
            t = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        if schedule == "step":
            return gamma ** (step // (step_size * steps_per_epoch))
        if schedule == "multistep":  # torch's MultiStepLR, stepped per epoch
            return gamma ** bisect.bisect_right(drops, step)
        return 1.0

    return factor


def build_optimizer(cfg, model: nn.Module, epochs: int, steps_per_epoch: int):
    """cfg: the optim section. Returns (optimizer, per-step LambdaLR scheduler)."""
    groups = param_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias)
    if cfg.name == "sgd":
        sgd = SGDW if cfg.decoupled else torch.optim.SGD
        opt = sgd(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    elif cfg.name == "adam":  # weight_decay here is L2 added to the gradient (coupled)
        opt = torch.optim.Adam(groups, lr=cfg.lr)
    elif cfg.name == "adamw":  # decoupled weight decay (Loshchilov & Hutter 2019)
        opt = torch.optim.AdamW(groups, lr=cfg.lr)
    else:  # validate() has already rejected other names
        raise AssertionError(cfg.name)

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg, epochs, steps_per_epoch))
